"""sync, verify and gc: parse, call ``trunkline.api``, print. No logic here."""

from __future__ import annotations

import json
import sys

import click

from ..text import safe
from ..units import human_bytes
from .mover import (
    _progress,
    build_options,
    connect_early,
    echo_skipped,
    echo_unverified,
    on_processes,
    run_api,
    transfer_options,
)


class _OrderedFilters(click.Command):
    """Keeps the command-line order of --include/--exclude (click keeps it per option
    only), because filter rules are tried in the order given, first match wins."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        kinds = []
        for a in args:
            if a == "--":
                break
            for flag, include in (("--include", True), ("--exclude", False)):
                if a == flag or a.startswith(flag + "="):
                    kinds.append(include)
        ctx.meta["trunkline.filter_order"] = kinds
        return super().parse_args(ctx, args)


def _ordered(include: tuple[str, ...], exclude: tuple[str, ...]) -> list[tuple[bool, str]]:
    kinds = click.get_current_context().meta.get("trunkline.filter_order", [])
    inc, exc = list(include), list(exclude)
    out = [(k, (inc if k else exc).pop(0)) for k in kinds if (inc if k else exc)]
    return out + [(True, g) for g in inc] + [(False, g) for g in exc]


def filter_options(f):
    f = click.option("--exclude", multiple=True, metavar="GLOB",
                     help="Skip keys matching GLOB (repeatable; rules apply in order).")(f)
    f = click.option("--include", multiple=True, metavar="GLOB",
                     help="Only keys matching GLOB (repeatable; first matching rule wins).")(f)
    return f


def register(cli: click.Group) -> None:
    @cli.command(cls=_OrderedFilters)
    @click.argument("src")
    @click.argument("dst")
    @click.option("--delete", is_flag=True,
                  help="Delete destination keys absent from the source (after all copies).")
    @click.option("--dry-run", "-n", is_flag=True, help="Print what would change; change nothing.")
    @click.option("--checksum", is_flag=True,
                  help="Compare content (CRC32C/ETag) instead of modification times.")
    @click.option("--no-server-side", is_flag=True,
                  help="Stream s3->s3 through this host even on one endpoint.")
    @click.option("--processes", "-P", type=click.IntRange(1, 256), default=None,
                  metavar="N",
                  help="Copy with N engine processes on this host, each taking shards of "
                       "what is to be copied. Default: one per CPU up to 8 when the first "
                       "1,000 objects to copy are small, else one (-P 1: always one). See "
                       "docs/cluster.md.")
    @filter_options
    @transfer_options
    def sync(src, dst, delete, dry_run, checksum, no_server_side, processes, include, exclude,
             as_json, quiet, debug, **topts):
        """Make DST hold what SRC holds, copying only new and changed objects."""
        connect_early(src, dst)
        from ..api import sync as api_sync

        def show(a):
            if dry_run:
                click.echo(f"{a.op}\t{safe(a.rel)}\t({a.reason})")

        options = run_api(debug, build_options, server_side=not no_server_side, **topts)
        prog = None if dry_run else _progress(quiet, as_json)
        kw = dict(delete=delete, dry_run=dry_run, checksum=checksum,
                  filters=_ordered(include, exclude), options=options, on_action=show,
                  processes=processes if processes is not None else "auto")
        if prog is not None:
            with prog:
                r = run_api(debug, api_sync, src, dst, on_progress=prog.update, **kw)
        else:
            r = run_api(debug, api_sync, src, dst, **kw)
        if as_json:
            click.echo(json.dumps(r.to_dict(), indent=2))
        else:
            verb = "would copy" if dry_run else "copied"
            gone = "would delete" if dry_run else "deleted"
            failed = f", failed {r.failed}" if r.failed else ""
            skipped = f", {len(r.skipped)} skipped (not files)" if r.skipped else ""
            click.echo(f"{verb} {r.copied} ({human_bytes(r.copied_bytes)}){failed}, {r.unchanged} "
                       f"unchanged, {gone} {r.deleted}, {r.excluded} excluded{skipped}; listed "
                       f"{r.src_objects} source / {r.dst_objects} destination in "
                       f"{r.seconds:.2f} s" + on_processes(r.transfer), err=True)
        failures = list(r.failures) + (r.transfer.failures if r.transfer else [])
        if r.transfer is not None and not as_json:
            t = r.transfer
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(t.verified.items()))
            click.echo(f"verified {sum(t.verified.values())} objects"
                       + (f" ({kinds})" if kinds else "") + f", unverified {len(t.unverified)}",
                       err=True)
            echo_unverified(t.unverified)
        if not as_json:
            echo_skipped(r.skipped)
        for f in failures:
            click.echo(f"trunkline: failed: {safe(f)}", err=True)
        sys.exit(0 if r.ok else 1)

    @cli.command(cls=_OrderedFilters)
    @click.argument("src")
    @click.argument("dst")
    @click.option("--no-extra", is_flag=True, help="Do not report keys only in DST.")
    @click.option("--size-only", is_flag=True, help="Compare sizes only, not content.")
    @click.option("--checkers", type=click.IntRange(1, 256), default=16, show_default=True,
                  help="Parallel hashes and HEADs.")
    @click.option("--no-read", is_flag=True,
                  help="Never read objects back: a pair no stored checksum settles is "
                       "reported unverified.")
    @click.option("--require-verified", is_flag=True,
                  help="An unverified pair is a failure (exit 1).")
    @filter_options
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON report on stdout.")
    @click.option("--debug", is_flag=True, help="Tracebacks on errors.")
    def verify(src, dst, no_extra, size_only, checkers, no_read, require_verified, include,
               exclude, as_json, debug):
        """Compare SRC with DST without copying; one line per mismatch, exit 1 if any."""
        connect_early(src, dst)
        from ..api import verify as api_verify

        def show(m):
            if not as_json:
                click.echo(safe(m))

        r = run_api(debug, api_verify, src, dst, extra=not no_extra, size_only=size_only,
                    filters=_ordered(include, exclude), checkers=checkers, read=not no_read,
                    require_verified=require_verified, on_mismatch=show)
        if as_json:
            click.echo(json.dumps(r.to_dict(), indent=2))
        else:
            for u in r.unverified:
                click.echo(f"unverified: {safe(u.name)}: {safe(u.reason)}")
            echo_skipped(r.skipped)
            how = ", ".join(f"{k} {v}" for k, v in sorted(r.methods.items()))
            state = "OK" if r.ok else "MISMATCH" if r.mismatches else "UNVERIFIED"
            click.echo(f"{state}: {len(r.mismatches)} mismatches; "
                       f"{r.compared} compared ({how or 'none'}), {len(r.unverified)} "
                       f"unverified; {r.src_objects} source / "
                       f"{r.dst_objects} destination objects in {r.seconds:.2f} s", err=True)
        sys.exit(0 if r.ok else 1)

    @cli.command()
    @click.option("--state-dir", type=click.Path(file_okay=False), default=None,
                  help="Where resume journals live (default ~/.local/state/trunkline).")
    @click.option("--abort-uploads", is_flag=True,
                  help="Abort their multipart uploads, delete partial files, remove journals.")
    @click.option("--older-than", default=None, metavar="AGE",
                  help="Only journals idle for AGE (30m, 12h, 1d; default 1h with "
                       "--abort-uploads, 0 for all). A running copy's journal is always spared.")
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON report on stdout.")
    @click.option("--debug", is_flag=True, help="Tracebacks on errors.")
    def gc(state_dir, abort_uploads, older_than, as_json, debug):
        """List resume journals and what interrupted transfers left on the stores."""
        from ..api import gc as api_gc

        r = run_api(debug, api_gc, state_dir, abort_uploads=abort_uploads,
                    older_than=older_than)
        if as_json:
            click.echo(json.dumps(r.to_dict(), indent=2))
        else:
            for j in r.journals:
                state = "removed" if j.removed else "kept"
                click.echo(f"{j.id[:12]}  {safe(j.src)} -> {safe(j.dst)}  idle {_age(j.age_s)}  "
                           f"{j.done}/{j.objects} objects  {human_bytes(j.bytes_done)} done  "
                           f"{len(j.uploads)} uploads  {len(j.partial_files)} partial files"
                           + (f"  [{state}]" if abort_uploads else ""))
                for u in j.uploads:
                    tag = " aborted" if u["aborted"] else ""
                    click.echo(f"    upload {u['upload_id']}  {safe(u['dst'])}"
                               f"{' (discarded)' if u['discarded'] else ''}{tag}")
                for p in j.partial_files:
                    click.echo(f"    partial {safe(p)}")
            click.echo(f"{len(r.journals)} journals in {r.state_dir}"
                       + (f"; aborted {r.aborted} uploads, removed {r.removed} journals"
                          if abort_uploads else ""), err=True)
        for e in r.errors:
            click.echo(f"trunkline: failed: {safe(e)}", err=True)
        for jid in r.running:
            click.echo(f"trunkline: {jid[:12]} spared: its copy is running", err=True)
        if r.spared:
            click.echo(f"trunkline: {len(r.spared)} journals younger than the minimum age "
                       "spared (--older-than 0 includes them)", err=True)
        sys.exit(1 if r.errors else 0)


def _age(s: float) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{s / n:.1f}{unit}"
    return f"{s:.0f}s"

