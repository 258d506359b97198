"""The live view, rendered from snapshots (pure): the rich view on a terminal shows the
largest objects in flight, the sparkline and the tuner's decision; the line view has no
control character even when object names carry them."""

from __future__ import annotations

import io
import os

from rich.console import Console

from trunkline.telemetry.progress import (
    LineProgress,
    RateWindow,
    render_line,
    render_view,
    sparkline,
)
from trunkline.telemetry.snapshot import Snapshot


def snap(t: float, done: int, **kw) -> Snapshot:
    s = Snapshot(t=t, elapsed=t, done_bytes=done, wire_bytes=done, total_bytes=10 << 30,
                 objects=3, total_objects=9, listing_done=True, active=12, retries=2,
                 slowdowns=0, errors=0, requests=40, ttfb_total=0.1, failed=1)
    for k, v in kw.items():
        object.__setattr__(s, k, v)
    return s


def test_sparkline_scales_to_its_maximum():
    assert sparkline([0, 1, 2, 4]) == "▁▃▅█"
    assert sparkline([0, 0]) == "▁▁" and len(sparkline(list(range(100)), width=30)) == 30


def test_rate_is_a_stall_not_negative_when_a_retry_takes_bytes_back():
    w = RateWindow(span=3.0)
    assert w.add(0.0, 0) == 0.0
    assert w.add(1.0, 10 << 20) == 10 << 20
    assert w.add(2.0, 4 << 20) == 2 << 20        # a part of 6 MiB failed: its bytes go back
    assert w.add(3.0, 0) == 0.0                  # everything taken back: 0, never below
    assert "-" not in render_line(snap(3.0, 0), w.add(3.5, 0)).split("Gbit/s")[0]


def test_rich_view_shows_in_flight_objects_largest_first():
    flying = [(f"shard-{i}.tar", (i + 1) << 20, i << 19) for i in range(8)]
    s = snap(5.0, 3 << 30, in_flight=flying, decision="grow 16 -> 24 connections")
    out = io.StringIO()
    Console(file=out, width=140, force_terminal=False).print(
        render_view(s, 1.25e9, [1e9, 1.2e9, 1.25e9], "upload"))
    text = out.getvalue()
    assert "10.00 Gbit/s" in text and "retries 2" in text and "failed 1" in text
    assert "tuner: grow 16 -> 24" in text
    shown = sorted((text.index(n), n) for n in (f"shard-{i}.tar" for i in range(8)) if n in text)
    assert [n for _, n in shown] == [f"shard-{i}.tar" for i in (7, 6, 5, 4, 3)]


def test_line_view_one_line_a_second_without_control_characters():
    out = io.StringIO()
    lp = LineProgress(out, label="cp")
    for i in range(31):                       # 3 s of ticks every 0.1 s
        lp.update(snap(1 + i / 10, i << 26, in_flight=[("evil\x1b[2Jname", 1, 0)]))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert all(c.isprintable() for line in lines for c in line)


def _seed(aws_env, tmp_path, bucket: str) -> None:
    import trunkline

    aws_env.create_bucket(bucket)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"shard-{i}.bin").write_bytes(os.urandom(24 << 20))
    assert trunkline.copy(f"{src}/", f"s3://{bucket}/d/", recursive=True).ok


def test_live_view_on_a_real_terminal(aws_env, tmp_path):
    """cp on a pty: the view updates and names the objects in flight."""
    import pty
    import select
    import subprocess
    import sys

    _seed(aws_env, tmp_path, "liveview")
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "trunkline.cli.main", "cp", "-r", "--no-resume",
                          "--bwlimit", "0.2Gbit", "s3://liveview/d/", f"{tmp_path}/dst/"],
                         stdin=slave, stdout=slave, stderr=slave,
                         env=dict(os.environ, COLUMNS="120", LINES="40", TERM="xterm"))
    os.close(slave)
    out = bytearray()
    while True:
        r, _, _ = select.select([master], [], [], 60)
        if not r:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:          # the child closed the terminal
            break
        if not chunk:
            break
        out.extend(chunk)
    assert p.wait(60) == 0, out.decode(errors="replace")[-2000:]
    text = out.decode(errors="replace")
    assert text.count("Gbit/s") >= 5                        # it updated, several times
    assert "shard-" in text and "objects" in text and "conns" in text
    assert "\x1b[" in text                                   # drawn as a live display


def test_progress_lines_when_not_a_terminal(aws_env, tmp_path):
    import subprocess
    import sys

    _seed(aws_env, tmp_path, "lineview")
    r = subprocess.run([sys.executable, "-m", "trunkline.cli.main", "cp", "-r", "--no-resume",
                        "--bwlimit", "0.2Gbit", "s3://lineview/d/", f"{tmp_path}/dst/"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if "Gbit/s" in line]
    assert len(lines) >= 2 and all(c.isprintable() for line in lines for c in line)
    q = subprocess.run([sys.executable, "-m", "trunkline.cli.main", "cp", "-r", "-q",
                        "--no-resume", "s3://lineview/d/", f"{tmp_path}/dst2/"],
                       capture_output=True, text=True, timeout=120)
    assert q.returncode == 0 and q.stderr == "" and q.stdout == ""
