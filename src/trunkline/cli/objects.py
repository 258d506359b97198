"""ls, du, rm, cat, mb: the everyday verbs on a store. Parse, call ``api.objects``, print.

Keys come from someone else's bucket: every key is printed terminal-safe (control
characters escaped), and ``--json`` prints one JSON object per line so that a listing of
millions of keys streams instead of building one document.
"""

from __future__ import annotations

import json
import sys
import time

import click

from ..telemetry.units import human_bytes
from ..text import safe
from .mover import connect_early, run_api

# The API (and through it botocore) is imported inside each command: `trunkline --help`
# and the flow lens's commands must not pay the S3 stack's start-up.

printable = safe   # one terminal-safe escape for every command (trunkline/text.py)


def _utc(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))   # 2 µs; datetime's: 3.6


def _url(endpoint: str | None, bucket: str, key: str) -> str:
    scheme = "s3://" if endpoint in (None, "s3") else f"{endpoint}:"
    return f"{scheme}{bucket}/{key}"


def _entry_dict(o, endpoint: str | None, bucket: str) -> dict:
    if o.is_prefix:
        return {"type": "prefix", "key": o.key, "url": _url(endpoint, bucket, o.key)}
    return {"type": "object", "key": o.key, "url": _url(endpoint, bucket, o.key),
            "size": o.size, "mtime": _utc(o.mtime), "etag": (o.etag or "").strip('"'),
            "etag_kind": _etag_kind(o.etag),
            "checksum_algorithms": list(o.checksum_algorithms)}


def _etag_kind(etag: str | None) -> str:
    from ..api.objects import etag_kind

    return etag_kind(etag)


def register(group: click.Group) -> None:
    @group.command("ls")
    @click.argument("url")
    @click.option("--recursive", "-r", is_flag=True, help="Every object under the prefix.")
    @click.option("--long", "-l", "long_", is_flag=True,
                  help="Also the ETag, what it proves (md5, multipart:N) and checksum kinds.")
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
    @click.option("--debug", is_flag=True, help="Tracebacks on errors.")
    def ls_cmd(url, recursive, long_, as_json, debug):
        """List objects (and prefixes, one level down without -r) under s3://bucket[/prefix]."""
        connect_early(url)
        from ..api import objects as objs

        loc = run_api(debug, objs._remote, url, "ls")

        def show():
            # one buffered stream, flushed at the end: click.echo flushes every line (a
            # write(2) per key, and a third of a 100,000-key listing's time)
            out = click.get_text_stream("stdout")
            n = 0
            try:
                for o in objs.ls(loc, recursive=recursive):
                    n += 1
                    if as_json:
                        line = json.dumps(_entry_dict(o, loc.endpoint, loc.bucket))
                    elif o.is_prefix:
                        line = f"{'':20}  {'DIR':>10}  {'':>14}  {printable(o.key)}"
                    else:
                        line = (f"{_utc(o.mtime):20}  {human_bytes(o.size):>10}  "
                                f"{o.size:>14}  {printable(o.key)}")
                        if long_:
                            algos = ",".join(o.checksum_algorithms) or "-"
                            line += (f"  {printable((o.etag or '').strip(chr(34)))}  "
                                     f"{_etag_kind(o.etag)}  {printable(algos)}")
                    out.write(line + "\n")
            finally:
                out.flush()
            return n

        run_api(debug, show)

    @group.command("du")
    @click.argument("url")
    @click.option("--depth", "-d", type=click.IntRange(0, 1), default=0,
                  help="1: one line per first-level prefix below URL.")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
    @click.option("--debug", is_flag=True, help="Tracebacks on errors.")
    def du_cmd(url, depth, as_json, debug):
        """Objects and bytes under s3://bucket[/prefix]."""
        from ..api import objects as objs

        rep = run_api(debug, objs.du, url, depth=depth)
        if as_json:
            click.echo(json.dumps(rep.to_dict()))
            return
        for name, (n, b) in sorted(rep.groups.items()):
            click.echo(f"{n:>12,} objects  {human_bytes(b):>10}  {b:>16,} bytes  "
                       f"{printable(name)}")
        click.echo(f"{rep.objects:>12,} objects  {human_bytes(rep.bytes):>10}  "
                   f"{rep.bytes:>16,} bytes  {printable(rep.url)}")

    @group.command("rm")
    @click.argument("url")
    @click.option("--recursive", "-r", is_flag=True, help="Everything under the prefix.")
    @click.option("--dry-run", is_flag=True, help="Print what would be deleted; delete nothing.")
    @click.option("--force", is_flag=True, help="Allow rm -r of a whole bucket.")
    @click.option("--quiet", "-q", is_flag=True, help="No line per object.")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
    @click.option("--debug", is_flag=True, help="Tracebacks on errors.")
    def rm_cmd(url, recursive, dry_run, force, quiet, as_json, debug):
        """Delete objects: one key, a glob's matches, or everything under a prefix (-r)."""
        from ..api import objects as objs

        loc = run_api(debug, objs._remote, url, "rm")
        verb = "would delete" if dry_run else "deleted"

        def each(o) -> None:
            if not quiet and not as_json:
                click.echo(f"{verb}: {printable(_url(loc.endpoint, loc.bucket, o.key))}")

        res = run_api(debug, objs.rm, loc, recursive=recursive, dry_run=dry_run, force=force,
                      on_deleted=each)
        for key, err in res.failures:
            click.echo(f"trunkline: rm: {printable(key)}: {printable(err)}", err=True)
        if as_json:
            click.echo(json.dumps(res.to_dict()))
        elif not quiet:
            click.echo(f"{verb} {res.deleted:,} objects ({human_bytes(res.bytes)})"
                       + (f", {len(res.failures)} failed" if res.failures else ""))
        if not res.ok:
            sys.exit(1)

    @group.command("cat")
    @click.argument("url")
    @click.option("--connections", "-c", type=click.IntRange(1, 256), default=8,
                  show_default=True, help="Parallel ranged GETs.")
    @click.option("--part-size", default="8MiB", show_default=True,
                  help="Bytes per ranged GET (at most connections + 1 parts in memory).")
    @click.option("--debug", is_flag=True, help="Tracebacks on errors.")
    def cat_cmd(url, connections, part_size, debug):
        """Write one object to stdout, in order, checked against the store's checksum."""
        connect_early(url)
        from ..api import objects as objs
        from ..units import parse_size

        size = run_api(debug, parse_size, part_size)
        run_api(debug, objs.cat, url, sys.stdout.buffer, part_size=size,
                connections=connections)

    @group.command("mb")
    @click.argument("url")
    @click.option("--debug", is_flag=True, help="Tracebacks on errors.")
    def mb_cmd(url, debug):
        """Make a bucket: s3://bucket or NAME:bucket."""
        from ..api import objects as objs

        name = run_api(debug, objs.mb, url)
        click.echo(f"make_bucket: {printable(name)}")
