"""``cp``, and what every mover command shares: the transfer flags, the options they build,
the mapping of failures to exit codes. Parse, call the API, print."""

from __future__ import annotations

import json
import sys

import click

from ..text import safe
from ..units import human_bytes, parse_size
from .exits import guarded


class SizeParam(click.ParamType):
    name = "size"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            return parse_size(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


SIZE = SizeParam()


def run_api(debug: bool, fn, *args, **kw):
    """Call the API and map its failures to exit codes, each as one clear line
    (``cli/exits.py``: UsageError 2, any other TrunklineError or OSError 1, else a bug
    with its traceback). ``--debug`` also logs the tuner's and the cluster's decisions."""
    if debug:   # the tuner's decisions (and the cluster driver's events) as they happen
        import logging

        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="trunkline: %(name)s: %(message)s")
    return guarded(debug, fn, *args, **kw)


def connect_early(*locations: str) -> None:
    """Begin the connection (TCP, and TLS for https) to the store of each ``s3://``/``NAME:``
    location while the command loads (``wire/preconnect.py``): a far store's handshakes
    overlap the imports.
    Only where the endpoint's URL is configured (an address known without botocore); any
    doubt, and nothing is begun (the command connects as usual)."""
    try:
        from ..config import ca_bundle, endpoint_address, resolve_endpoint
        from ..url import parse_location
        from ..wire import preconnect

        for text in locations:
            loc = parse_location(text)
            if loc.is_local:
                continue
            cfg = resolve_endpoint(loc.endpoint or "s3")
            if not cfg.url:
                continue
            scheme, host, port = endpoint_address(cfg.url)
            if scheme in ("http", "https"):
                tls = scheme == "https"
                preconnect.begin(host, port, tls=tls, cafile=ca_bundle(cfg) if tls else None)
    except Exception:  # noqa: BLE001 - an optimisation: the command reports what is wrong
        pass


def transfer_options(f):
    """The TransferOptions flags; their help text shows the defaults of ``options.py``."""
    from ..options import DEFAULTS as D

    opts = [
        click.option("--max-connections", type=click.IntRange(1, 4096), default=None,
                     help=f"Upper bound for the tuner (default {D.max_connections})."),
        click.option("--connections", "-c", type=click.IntRange(1, 4096), default=None,
                     help="Pin the number of parallel connections (disables their tuning)."),
        click.option("--part-size", type=SIZE, default=None,
                     help="Pin the part size of ranged GETs and multipart PUTs "
                          f"(default: tuned from {_size(D.initial_part_size)})."),
        click.option("--no-tune", is_flag=True,
                     help="Static settings: no closed-loop tuning."),
        click.option("--bwlimit", default=None,
                     help="Cap the overall rate: 500M (MiB/s, bytes) or 4Gbit (bits/s)."),
        click.option("--bwlimit-endpoint", multiple=True, metavar="NAME=RATE",
                     help="Cap one endpoint's rate (repeatable), e.g. s3=2Gbit."),
        click.option("--max-memory", type=SIZE, default=None,
                     help="Bound on part buffers when streaming between stores "
                          f"(default {_size(D.max_memory)})."),
        click.option("--direct-io/--no-direct-io", default=D.direct_io, show_default=True,
                     help="Write downloads of 4MiB+ around the page cache (O_DIRECT)."),
        click.option("--one-core/--no-one-core", default=D.one_core, show_default=True,
                     help="Keep a run of small objects on the CPU it started on, until "
                          "its first large object (its threads then hand the interpreter "
                          "lock around without crossing cores)."),
        click.option("--retries", type=click.IntRange(0, 100), default=None,
                     help=f"Retries per part after the first try (default {D.retries})."),
        click.option("--timeout", "read_timeout", type=float, default=None,
                     help="Seconds without a byte before a connection is retried "
                          f"(default {D.read_timeout:g})."),
        click.option("--min-rate", default=None, metavar="RATE[,DURATION]",
                     help="A response body slower than RATE for DURATION fails and is "
                          "retried on a new connection (default "
                          f"{_size(int(D.min_rate))},{D.min_rate_window:g}s; 0: off)."),
        click.option("--no-resume", is_flag=True,
                     help="Start fresh instead of resuming an interrupted run of this copy."),
        click.option("--state-dir", type=click.Path(file_okay=False), default=None,
                     help="Where resume journals live (default ~/.local/state/trunkline)."),
        click.option("--require-verified", is_flag=True,
                     help="Fail an object that nothing could check (no checksum or ETag of "
                          "the store fits): by default it is reported as unverified."),
        click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout."),
        click.option("--quiet", "-q", is_flag=True, help="No progress display and no summary (failures only)."),
        click.option("--debug", is_flag=True,
                     help="Tracebacks on errors; the tuner's decisions as they happen."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _size(n: int) -> str:
    """'16MiB' as typed on a command line."""
    return human_bytes(n, digits=0).replace(" ", "")


def build_options(max_connections, connections, part_size, no_tune, bwlimit, bwlimit_endpoint,
                  max_memory, retries, read_timeout, no_resume, state_dir,
                  direct_io=True, server_side=True, require_verified=False, min_rate=None,
                  one_core=True):
    """The one TransferOptions of a command, from its flags (unset flags: the defaults)."""
    from ..options import TransferOptions

    per = {}
    for item in bwlimit_endpoint:
        name, sep, rate = item.partition("=")
        if not sep or not name or not rate:
            raise click.BadParameter(f"expected NAME=RATE, got {item!r}",
                                     param_hint="--bwlimit-endpoint")
        per[name] = rate
    return TransferOptions.build(
        max_connections=max_connections, connections=connections, part_size=part_size,
        tune=not no_tune, bwlimit=bwlimit, bwlimit_endpoint=per or None, max_memory=max_memory,
        retries=retries, read_timeout=read_timeout, resume=not no_resume, state_dir=state_dir,
        direct_io=direct_io, server_side=server_side,
        require_verified=require_verified, min_rate=min_rate, one_core=one_core)


def _report(result, as_json: bool, quiet: bool = False) -> None:
    """The end of a transfer: JSON, or one summary line (none with -q), then failures."""
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    elif not quiet:
        click.echo(
            f"{human_bytes(result.bytes)} in {result.seconds:.2f} s = {result.gbps:.2f} Gbit/s, "
            f"{result.objects} objects, {result.retries} retries"
            + on_processes(result)
            + (f", resumed {human_bytes(result.resumed_bytes + result.skipped_bytes)}"
               if result.resumed_bytes or result.skipped_bytes else ""),
            err=True,
        )
        if result.verified or result.unverified:
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(result.verified.items()))
            click.echo(f"verified {sum(result.verified.values())} objects"
                       + (f" ({kinds})" if kinds else "")
                       + f", unverified {len(result.unverified)}", err=True)
    if not as_json:
        echo_unverified(result.unverified)
        echo_skipped(result.skipped)
    for f in result.failures:
        click.echo(f"trunkline: failed: {safe(f)}", err=True)
    if result.failures:
        click.echo("trunkline: rerun the same command to resume (--no-resume starts over)",
                   err=True)


def on_processes(result) -> str:
    """", N engine processes" for a summary line where several moved it, else ""."""
    if getattr(result, "cluster", "") != "processes":
        return ""
    return f", {result.options.get('workers')} engine processes"


UNVERIFIED_SHOWN = 10
"""Unverified objects named per reason on stderr; ``--json`` lists every one."""


def echo_unverified(unverified) -> None:
    """The unverified objects on stderr, grouped by reason, the first few of each by name:
    a million small objects from a store that keeps no checksum are one reason, not a
    million lines."""
    _echo_by_reason("unverified", ((u.name, u.reason) for u in unverified))


def echo_skipped(skipped) -> None:
    """A local source's names that are not files (``local.walk``), as ``echo_unverified``."""
    _echo_by_reason("skipped", ((s.name, s.reason) for s in skipped))


def _echo_by_reason(label: str, items) -> None:
    by_reason: dict[str, list[str]] = {}
    for name, reason in items:
        by_reason.setdefault(reason, []).append(name)
    for reason, names in by_reason.items():
        for n in names[:UNVERIFIED_SHOWN]:
            click.echo(f"trunkline: {label}: {safe(n)}: {safe(reason)}", err=True)
        if len(names) > UNVERIFIED_SHOWN:
            click.echo(f"trunkline: {label}: ... and {len(names) - UNVERIFIED_SHOWN} more: "
                       f"{safe(reason)} (--json lists every one)", err=True)


def _progress(quiet: bool, as_json: bool):
    """Rich view on a terminal, a line a second otherwise (stderr), nothing with -q."""
    from ..telemetry.progress import progress_for

    return progress_for(quiet, as_json)


def _check_flows_to(ctx, param, value):
    if value is None:
        return None
    from ..telemetry.flows_export import check_flows_to

    try:
        return check_flows_to(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _check_ray(ctx, param, value):
    if value is None or value in ("auto", "local") or value.startswith("ray://") or (
        ":" in value and "/" not in value
    ):
        return value
    raise click.BadParameter(f"{value!r} is not a Ray address (auto, local, ray://HOST:PORT, "
                             "HOST:PORT); put --ray after SRC DST or write --ray=ADDRESS")


def register(cli: click.Group) -> None:
    @cli.command()
    @click.argument("src")
    @click.argument("dst")
    @click.option("--recursive", "-r", is_flag=True, help="Copy a prefix or folder.")
    @click.option("--no-server-side", is_flag=True,
                  help="Stream s3->s3 through this host even on one endpoint.")
    @click.option("--flows-to", default=None, metavar="udp://HOST:PORT",
                  callback=_check_flows_to,
                  help="Send the transfer's connections as IPFIX flow records to a collector.")
    @click.option("--flows-store", type=click.Path(file_okay=False), default=None,
                  metavar="DIR|s3://BUCKET/PREFIX",
                  help="Write the transfer's connections as flow records into this flow store "
                       "(a directory or an S3 prefix, docs/flows-lake.md).")
    @click.option("--ray", "ray_address", default=None, is_flag=False, flag_value="auto",
                  metavar="[ADDRESS]", callback=_check_ray,
                  help="Move with every node of a Ray cluster: auto (default), local, "
                       "ray://HOST:PORT. Needs trunkline[ray]. See docs/cluster.md.")
    @click.option("--per-node-dest", is_flag=True,
                  help="With --ray: DST is a local path on each node ({node} = node tag).")
    @click.option("--workers-per-node", type=click.IntRange(1, 256), default=None,
                  metavar="N",
                  help="With --ray: engine processes per node (default 1). One process "
                       "moves small objects as fast as its interpreter allows; more use "
                       "more cores.")
    @click.option("--processes", "-P", type=click.IntRange(1, 256), default=None,
                  metavar="N",
                  help="Move with N engine processes on this host, each taking shards of "
                       "the listing (many small objects: one process is bound by its "
                       "interpreter). No Ray needed. Default: one per CPU up to 8 when the "
                       "listing's first 1,000 objects are small, else one (-P 1: always "
                       "one). See docs/cluster.md.")
    @transfer_options
    def cp(src, dst, recursive, no_server_side, flows_to, flows_store, ray_address,
           per_node_dest, workers_per_node, processes, as_json, quiet, debug, **topts):
        """Copy SRC to DST: local <-> s3://bucket/key, s3 -> s3, NAME:bucket/key endpoints."""
        connect_early(src, dst)
        from ..api import copy

        options = run_api(debug, build_options, server_side=not no_server_side, **topts)
        prog = _progress(quiet, as_json)
        kw = dict(recursive=recursive, options=options, flows_to=flows_to,
                  flows_store=flows_store)
        if workers_per_node is not None and not (ray_address or per_node_dest):
            raise click.UsageError("--workers-per-node needs --ray")
        if processes is not None and (ray_address or per_node_dest):
            raise click.UsageError("--processes is for this host; with --ray use "
                                   "--workers-per-node")
        kw.update(processes=processes if processes is not None else "auto")
        if ray_address or per_node_dest:
            kw.update(cluster=ray_address or "auto", per_node_dest=per_node_dest)
        if workers_per_node is not None:
            kw.update(workers_per_node=workers_per_node)
        if prog is not None:
            with prog:
                result = run_api(debug, copy, src, dst, on_progress=prog.update, **kw)
        else:
            result = run_api(debug, copy, src, dst, **kw)
        _report(result, as_json, quiet)
        sys.exit(0 if result.ok else 1)
