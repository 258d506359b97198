"""probe: measure the path to a bucket and recommend connections and part size."""

from __future__ import annotations

import json

import click

from .. import physics as ph
from .mover import run_api


def render(r) -> str:
    """Human table: quantity, value, and one line of why."""
    ms = ph.human_duration
    rows = [
        ("object read", f"{r.object_size / 2**20:.0f} MiB",
         r.object_key + (" (temporary, deleted)" if r.wrote_object else "")),
        ("TCP connect", ms(r.connect_s), "handshake to the first hop"),
        ("TCP RTT", ms(r.tcp_rtt_s) if r.tcp_rtt_s else "n/a", "kernel TCP_INFO smoothed RTT"),
        ("request RTT", ms(r.rtt_s), "smallest HEAD time to first byte: the path used below"),
        ("TTFB HEAD / GET", f"{ms(r.ttfb_head_s)} / {ms(r.ttfb_get_s)}",
         "median over small requests"),
        ("1 connection", ph.human_bps(r.one_stream * 8),
         f"body rate; {ph.human_bps(r.one_stream_goodput * 8)} with request gaps"),
        ("path window", ph.human_bytes(r.window_bytes),
         "what one connection carries per RTT (1 connection x RTT)"),
        ("sweep", "  ".join(f"{n}:{ph.human_bps(b * 8)}" for n, b in r.sweep),
         "streams: aggregate goodput"),
        ("saturates at", f"{r.saturating_streams} streams",
         f"{ph.human_bps(r.peak * 8)}; one more doubling gained <= 5 %"),
        ("bandwidth x delay", ph.human_bytes(r.bdp_bytes), "bytes in flight at the peak rate"),
        ("recommend", f"-c {r.recommended_connections} --part-size "
                      f"{r.recommended_part_size >> 20}M",
         "connections that reach the peak; parts whose TTFB costs <= 10 %"),
        ("store clock", "n/a" if r.clock_offset_s is None else
         f"{r.clock_offset_s:+.1f} s +/- {r.clock_error_s:.1f}",
         "the store's Date against this host's clock (sync's times for uploads)"),
        ("expected ceiling", ph.human_bps(r.expected_ceiling * 8),
         f"min(peak, connections x window/RTT = "
         f"{ph.human_bps(r.per_stream_ceiling * 8)} each)"),
    ]
    w0 = max(len(a) for a, _, _ in rows)
    w1 = max(len(b) for _, b, _ in rows)
    lines = [f"{a:<{w0}}  {b:>{w1}}  {c}" for a, b, c in rows]
    lines += [f"note: {n}" for n in r.notes]
    lines.append(f"(probe took {r.seconds:.1f} s; the tuner of `trunkline cp` finds this "
                 "by itself, pin it with the flags above)")
    return "\n".join(lines)


def register(cli: click.Group) -> None:
    @cli.command()
    @click.argument("location")
    @click.option("--duration", type=click.FloatRange(1, 300), default=10.0, show_default=True,
                  help="Seconds the measurement may take (about).")
    @click.option("--write", is_flag=True,
                  help="Upload a temporary 64 MiB object under the prefix, read it, delete it.")
    @click.option("--max-streams", type=click.IntRange(1, 1024), default=64, show_default=True,
                  help="Largest number of parallel streams the sweep tries.")
    @click.option("--json", "as_json", is_flag=True, help="Machine output.")
    @click.option("--debug", is_flag=True, help="Tracebacks on errors.")
    def probe(location, duration, write, max_streams, as_json, debug):
        """Measure RTT, TTFB, one-connection throughput and the saturating concurrency of
        the path to s3://bucket/prefix; recommend connections and part size."""
        from ..api import probe as run_probe

        r = run_api(debug, run_probe, location, duration=duration, write=write,
                    max_streams=max_streams)
        click.echo(json.dumps(r.to_dict(), indent=2) if as_json else render(r))
