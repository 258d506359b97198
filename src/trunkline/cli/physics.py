"""plan: the path physics (BDP, Mathis) as a command."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import physics as ph


def _default_window() -> int:
    """This host's largest TCP receive buffer (net.ipv4.tcp_rmem max), else 6 MiB."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 6 * 2**20


def _param(parser):
    """A click callback turning a unit string into a number, with a usage error if bad."""

    def cb(ctx, param, value):
        if value is None:
            return None
        try:
            return parser(value)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None

    return cb


def render(p: ph.Plan) -> str:
    """Human table: quantity, value, and one line of why."""
    rtt = ph.human_duration(p.rtt_s)
    rows = [
        ("data", ph.human_bytes(p.size_bytes), f"{p.size_bytes:,} bytes"),
        ("link", ph.human_bps(p.link_bps),
         f"payload {ph.human_bps(p.link_goodput * 8)} after TCP/IP+Ethernet headers "
         f"(MSS {p.mss})"),
        ("bandwidth x delay", ph.human_bytes(p.bdp_bytes),
         f"bytes in flight to fill the link over a {rtt} round trip"),
        ("window / RTT", ph.human_bps(p.window_ceiling * 8),
         f"one stream sends at most one {ph.human_bytes(p.window_bytes)} window per RTT"),
        ("Mathis (loss)", ph.human_bps(p.mathis_ceiling * 8),
         f"MSS/RTT x 1.22/sqrt(p) at loss p={p.loss:g}: a loss halves the window"),
        ("per stream", ph.human_bps(p.stream_ceiling * 8), f"the smaller bound: {p.limited_by}"),
        ("streams needed", f"{p.streams_needed}",
         "parallel connections that together fill the link"),
        ("memory needed", ph.human_bytes(p.memory_needed),
         f"{p.streams_needed} x (window + {ph.human_bytes(p.part_buffer_bytes)} part buffer)"),
        ("time, 1 stream", ph.human_duration(p.one_stream_time_s), "what a single stream takes"),
        ("time, full link", ph.human_duration(p.time_s),
         f"with {p.streams_needed} streams at link payload rate"),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return "\n".join(f"{a:<{w0}}  {b:>{w1}}  {c}" for a, b, c in rows)


def render_profile(prof: ph.SizeProfile, req_s: float, streams: int, regime: str) -> str:
    """The listing's side of the plan: objects per size class and what bounds the time."""
    lines = [f"objects           {prof.objects:,} ({ph.human_bytes(prof.size_bytes)})"]
    for cls, n, b in prof.histogram:
        if n:
            pct = 100 * n / prof.objects
            lines.append(f"  {cls:>8}  {n:>12,} objects ({pct:5.1f}%)  {ph.human_bytes(b):>10}")
    lines.append(f"time, requests    {ph.human_duration(req_s)}  one round trip per object "
                 f"over {streams} streams")
    lines.append(f"bound by          {regime}")
    return "\n".join(lines)


def register(cli: click.Group) -> None:
    @cli.command()
    @click.option("--size", default=None, callback=_param(ph.parse_size),
                  help="Data to move: 2PB (decimal), 500TiB, 64M (binary).")
    @click.option("--from", "source", default=None, metavar="URL",
                  help="Take size, object count and size histogram from the listing of "
                       "s3://bucket/prefix (instead of --size).")
    @click.option("--link", required=True, callback=_param(ph.parse_rate_bps),
                  help="Link rate in bits/s: 100G, 10Gbit/s (1.25GB/s for bytes).")
    @click.option("--rtt", required=True, callback=_param(ph.parse_duration),
                  help="Round-trip time: 30ms, 250us.")
    @click.option("--loss", default="0", show_default=True, callback=_param(ph.parse_loss),
                  help="Packet-loss probability: 1e-6 or 0.0001%.")
    @click.option("--window", default=None, callback=_param(ph.parse_size),
                  help="Max TCP window per stream [default: this host's tcp_rmem max].")
    @click.option("--mss", default=ph.DEFAULT_MSS, show_default=True, type=click.IntRange(64),
                  help="TCP maximum segment size in bytes.")
    @click.option("--part-buffer", default="8M", show_default=True,
                  callback=_param(ph.parse_size), help="User-space buffer per stream.")
    @click.option("--json", "as_json", is_flag=True, help="Machine output.")
    def plan(size, source, link, rtt, loss, window, mss, part_buffer, as_json):
        """Predict per-stream ceiling, streams, memory and time for a path."""
        if link <= 0 or rtt <= 0:
            raise click.BadParameter("--link and --rtt must be positive")
        if (window is not None and window <= 0) or part_buffer <= 0:
            raise click.BadParameter("--window and --part-buffer must be positive")
        if (size is None) == (source is None):
            raise click.UsageError("give exactly one of --size and --from")
        profile = None
        if source is not None:
            from ..api import objects as api_objects
            from .mover import run_api

            profile = run_api(False, lambda: ph.size_profile(
                o.size for o in api_objects.ls(source, recursive=True)))
            size = profile.size_bytes
        p = ph.plan(
            size_bytes=size,
            link_bps=link,
            rtt_s=rtt,
            loss=loss,
            window_bytes=window if window is not None else _default_window(),
            mss=mss,
            part_buffer_bytes=part_buffer,
        )
        if profile is None:
            click.echo(json.dumps(p.to_dict(), indent=2) if as_json else render(p))
            return
        req_s = ph.request_bound_time(profile.objects, rtt, p.streams_needed)
        regime = "small-object (request-bound)" if req_s > p.time_s else "bandwidth"
        if as_json:
            d = p.to_dict() | {"source": source, "profile": profile.to_dict(),
                               "request_bound_time_s": req_s, "regime": regime}
            click.echo(json.dumps(d, indent=2))
            return
        click.echo(render(p))
        click.echo(render_profile(profile, req_s, p.streams_needed, regime))
