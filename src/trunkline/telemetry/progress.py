"""The live progress display: what a transfer is doing, updated several times a second.

On a terminal (rich): an overall bar with rate and ETA, a sparkline of the rate over the
last minute, the largest objects in flight with their own bars, retries and failures so
far, connections and the tuner's last decision. Not on a terminal (CI, logs, pipes): one
plain line per second, without a control character. Fed by engine snapshots (a sans-I/O
view of counters). Rates are over a sliding window so that a stall shows as a falling
rate, not an average.
"""

from __future__ import annotations

import sys
from collections import deque
from typing import TYPE_CHECKING, TextIO

from ..text import safe
from ..units import human_bytes
from .snapshot import Snapshot

if TYPE_CHECKING:   # rich is imported where a terminal view is drawn (~60 ms of start-up)
    from rich.console import Console, Group

SPARK = "▁▂▃▄▅▆▇█"
IN_FLIGHT_ROWS = 5


class RateWindow:
    """Bytes/s over the last ``span`` seconds of snapshots; never below 0: a part that
    failed and is fetched again takes its bytes back from the done count, and that is a
    stall, not a negative rate."""

    def __init__(self, span: float = 3.0):
        self.span = span
        self.points: deque[tuple[float, int]] = deque()

    def add(self, t: float, total: int) -> float:
        self.points.append((t, total))
        while len(self.points) > 2 and t - self.points[0][0] > self.span:
            self.points.popleft()
        t0, b0 = self.points[0]
        return max(0.0, (total - b0) / (t - t0)) if t > t0 else 0.0


def sparkline(values: list[float], width: int = 30) -> str:
    """The last ``width`` values as block characters scaled to their maximum."""
    vals = values[-width:]
    top = max(vals, default=0.0)
    if top <= 0:
        return SPARK[0] * len(vals)
    return "".join(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1) + 0.5))]
                   for v in vals)


def _eta(s: Snapshot, rate: float) -> str:
    if s.listing_done and rate > 0 and s.total_bytes > s.done_bytes:
        secs = (s.total_bytes - s.done_bytes) / rate
        return f"{int(secs // 3600)}:{int(secs % 3600 // 60):02d}:{int(secs % 60):02d}" \
            if secs >= 3600 else f"{int(secs // 60)}:{int(secs % 60):02d}"
    return "-"


def render_line(s: Snapshot, rate: float) -> str:
    total = human_bytes(s.total_bytes) + ("" if s.listing_done else "+")
    pct = f"{100 * s.done_bytes / s.total_bytes:5.1f}%" if s.total_bytes else "  -  "
    objs = f"{s.objects}/{s.total_objects}" + ("" if s.listing_done else "+")
    extra = ""
    if s.retries:
        extra += f"  retries {s.retries}"
    if s.failed:
        extra += f"  FAILED {s.failed}"
    return (
        f"{pct}  {human_bytes(s.done_bytes)} / {total}  {rate * 8 / 1e9:6.2f} Gbit/s  "
        f"objects {objs}  conns {s.active}  ETA {_eta(s, rate)}{extra}"
    )


def render_view(s: Snapshot, rate: float, history: list[float], label: str = "") -> Group:
    """The rich view of one snapshot (pure: snapshot in, renderable out)."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    head = Table.grid(padding=(0, 1))
    head.add_column(no_wrap=True)
    head.add_column(no_wrap=True)
    bar = ProgressBar(total=max(s.total_bytes, 1), completed=s.done_bytes, width=40)
    total = human_bytes(s.total_bytes) + ("" if s.listing_done else "+")
    head.add_row(bar, Text(f"{human_bytes(s.done_bytes)} / {total}  "
                           f"{rate * 8 / 1e9:.2f} Gbit/s  ETA {_eta(s, rate)}"))
    objs = f"{s.objects}/{s.total_objects}" + ("" if s.listing_done else "+")
    head.add_row(Text(sparkline(history), style="cyan"),
                 Text(f"objects {objs}  conns {s.active}  retries {s.retries}  "
                      f"slowdowns {s.slowdowns}  failed {s.failed}",
                      style="red" if s.failed else ""))
    parts: list = []
    if label:
        parts.append(Text(label, style="bold"))
    parts.append(head)
    decision = getattr(s, "decision", "")
    if decision:
        parts.append(Text(f"tuner: {safe(decision)}", style="dim"))
    flying = sorted(getattr(s, "in_flight", ()), key=lambda o: -o[1])[:IN_FLIGHT_ROWS]
    if flying:
        t = Table.grid(padding=(0, 1))
        t.add_column(no_wrap=True)
        t.add_column(no_wrap=True, justify="right")
        t.add_column(no_wrap=True, overflow="ellipsis", max_width=60)
        for name, size, done in flying:
            t.add_row(ProgressBar(total=max(size, 1), completed=done, width=20),
                      Text(f"{human_bytes(done)}/{human_bytes(size)}"), Text(safe(name)))
        parts.append(t)
    return Group(*parts)


class LiveProgress:
    """On a terminal: the rich view. Context manager; ``update`` is the engine's tick."""

    def __init__(self, console: Console | None = None, label: str = ""):
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        self.console = console or Console(stderr=True)
        self.label = label
        self.window = RateWindow()
        self.history: deque[float] = deque(maxlen=60)
        self._last_sample = 0.0
        self.live = Live(Text(""), console=self.console, refresh_per_second=8, transient=False)

    def __enter__(self) -> LiveProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)

    def update(self, s: Snapshot) -> None:
        rate = self.window.add(s.t, s.done_bytes)
        if s.t - self._last_sample >= 1.0:    # one sparkline point a second
            self._last_sample = s.t
            self.history.append(rate)
        self.live.update(render_view(s, rate, list(self.history), self.label))


class LineProgress:
    """Not on a terminal: one plain line every ``every`` seconds, no control characters."""

    def __init__(self, stream: TextIO | None = None, label: str = "", every: float = 1.0):
        self.stream = stream or sys.stderr
        self.label, self.every = label, every
        self.window = RateWindow()
        self._last = 0.0

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def update(self, s: Snapshot) -> None:
        rate = self.window.add(s.t, s.done_bytes)
        if not self._last:
            self._last = s.t
            return
        if s.t - self._last >= self.every:
            self._last = s.t
            prefix = f"{self.label}  " if self.label else ""
            print(f"{prefix}{render_line(s, rate)}", file=self.stream, flush=True)


def progress_for(quiet: bool, as_json: bool, stream: TextIO | None = None):
    """The display a command should use: none with ``-q`` (or ``--json`` on stdout with a
    terminal's stderr also silent), the rich view on a terminal, lines otherwise."""
    if quiet:
        return None
    stream = stream or sys.stderr
    if stream.isatty():
        from rich.console import Console

        return LiveProgress(Console(file=stream))
    return LineProgress(stream)
