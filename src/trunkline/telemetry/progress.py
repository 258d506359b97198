"""The live progress display: rate in Gbit/s, bytes, objects, ETA, active connections.

Fed by engine snapshots (a sans-I/O view of counters); rendered by rich on a terminal.
The rate is over a sliding window so that a stall shows as a falling rate, not an average.
"""

from __future__ import annotations

from collections import deque

from rich.console import Console
from rich.live import Live
from rich.text import Text

from ..engine.run import Snapshot
from ..units import human_bytes


class RateWindow:
    """Bytes/s over the last ``span`` seconds of snapshots."""

    def __init__(self, span: float = 3.0):
        self.span = span
        self.points: deque[tuple[float, int]] = deque()

    def add(self, t: float, total: int) -> float:
        self.points.append((t, total))
        while len(self.points) > 2 and t - self.points[0][0] > self.span:
            self.points.popleft()
        t0, b0 = self.points[0]
        return (total - b0) / (t - t0) if t > t0 else 0.0


def render_line(s: Snapshot, rate: float) -> str:
    total = human_bytes(s.total_bytes) + ("" if s.listing_done else "+")
    pct = f"{100 * s.done_bytes / s.total_bytes:5.1f}%" if s.total_bytes else "  -  "
    eta = "-"
    if s.listing_done and rate > 0 and s.total_bytes > s.done_bytes:
        secs = (s.total_bytes - s.done_bytes) / rate
        eta = f"{int(secs // 60)}:{int(secs % 60):02d}"
    objs = f"{s.objects}/{s.total_objects}" + ("" if s.listing_done else "+")
    extra = ""
    if s.retries:
        extra += f"  retries {s.retries}"
    if s.failed:
        extra += f"  FAILED {s.failed}"
    return (
        f"{pct}  {human_bytes(s.done_bytes)} / {total}  {rate * 8 / 1e9:6.2f} Gbit/s  "
        f"objects {objs}  conns {s.active}  ETA {eta}{extra}"
    )


class LiveProgress:
    """Context manager; pass ``update`` as the engine's on_tick callback."""

    def __init__(self, console: Console | None = None, label: str = ""):
        self.console = console or Console(stderr=True)
        self.label = label
        self.window = RateWindow()
        self.live = Live(Text(""), console=self.console, refresh_per_second=8, transient=False)

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)

    def update(self, s: Snapshot) -> None:
        rate = self.window.add(s.t, s.done_bytes)
        line = render_line(s, rate)
        self.live.update(Text((self.label + "  " if self.label else "") + line))
