"""Shared helpers for trunkline's benchmarks: measured child processes, machine facts,
datasets of incompressible bytes, verification, the iperf3 loopback ceiling, tables.

Nothing here is timed by itself; every timed figure comes from :func:`run_measured`,
which measures one child process: wall seconds from just before it is spawned to the
moment ``wait4`` reaps it, and its own CPU (user + sys) and peak RSS from ``wait4``'s
rusage (so the harness's work never counts against a tool). The spawn and the ``wait4``
happen in ``mover_launch.py``, a tiny process, so that the peak RSS does not start at the
harness's own size (Linux carries ``ru_maxrss`` across fork + exec).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import select
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trunkline.tools import find_tool

KiB = 1024
MiB = 1024 * 1024
_ERRORISH = re.compile(
    r"error|fail|exception|denied|refused|incorrect|invalid|no such|not found", re.IGNORECASE
)
LAUNCHER = Path(__file__).resolve().parent / "mover_launch.py"
GB = 1e9  # CPU s/GB and Gbit/s use decimal units, as network figures do


# --------------------------------------------------------------------------- processes


@dataclass
class Measured:
    """One child process, measured."""

    argv: list[str]
    exit_code: int
    wall_s: float
    user_s: float
    sys_s: float
    maxrss_mib: float
    timed_out: bool = False
    stdout_tail: str = ""
    stderr_tail: str = ""

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    @property
    def last_err_line(self) -> str:
        """The last line that says error/fail (usage text often ends a message), else the last."""
        for text in (self.stderr_tail, self.stdout_tail):
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            if lines:
                for ln in reversed(lines):
                    if _ERRORISH.search(ln):
                        return ln[:200]
                return lines[-1][:200]
        return f"exit {self.exit_code}"


def add_content_md5(request, **_) -> None:
    """A botocore hook for the bench's own client: DeleteObjects with ``Content-MD5``, which
    MinIO-derived stores (the JuiceFS gateway) require; botocore now sends only
    ``x-amz-checksum-crc32``. (trunkline's own deletes carry it: ``storage/s3.py``.)"""
    import base64
    import hashlib

    body = request.body or b""
    if isinstance(body, str):
        body = body.encode()
    if isinstance(body, bytes) and "Content-MD5" not in request.headers:
        request.headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()


def prefault(nbytes: int) -> float:
    """Touch ``nbytes`` of fresh memory and free it at once; returns the seconds it took.

    Why: this machine is a VM with a virtio balloon that reports free pages to the host.
    The first touch of a reported page costs ~2.7 s of system time per GB (measured:
    `dd` of 14 GB into /dev/shm took 38 s of sys), so a download that writes into the
    page cache is billed 0.5 or 2 s of sys per GiB depending on which pages it happens to
    get. Called right before a child starts, the pages it writes are ones the guest owns.
    """
    import ctypes
    import mmap

    t = time.perf_counter()
    if nbytes <= 0:
        return 0.0
    m = mmap.mmap(-1, nbytes)
    buf = (ctypes.c_char * nbytes).from_buffer(m)
    ctypes.memset(buf, 1, nbytes)
    del buf
    m.close()
    return time.perf_counter() - t


def _tail(path: Path, limit: int = 8192) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_measured(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 900.0,
    log_dir: Path,
    tag: str = "run",
    launcher: bool = True,
) -> Measured:
    """Run ``argv`` to completion in its own process group and measure it.

    stdout/stderr go to files under ``log_dir`` (no pipe can stall the child). The wait
    is on a pidfd, so a timeout (or Ctrl-C) kills the whole group before it is reaped.
    With ``launcher`` (the default) the command is started by ``mover_launch.py``, a tiny
    process, and wall/CPU/peak RSS are the ones it measured around the command: started
    straight from this (large) process, a child's ``ru_maxrss`` would begin at our RSS.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    out_p, err_p = log_dir / f"{tag}.out", log_dir / f"{tag}.err"
    res_p = log_dir / f"{tag}.rusage"
    res_p.unlink(missing_ok=True)
    cmd = list(argv)
    if launcher:
        cmd = [sys.executable, "-S", "-I", str(LAUNCHER), str(res_p), *cmd]
    with open(out_p, "wb") as fo, open(err_p, "wb") as fe:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=fo,
            stderr=fe,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    pid = proc.pid
    reaped = False
    timed_out = False
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            timed_out = True
            _kill_group(pid)
        _, status, ru = os.wait4(pid, 0)
        t1 = time.perf_counter()
        reaped = True
    finally:
        os.close(fd)
        if not reaped:  # interrupted (Ctrl-C, SIGTERM): leave nothing running
            _kill_group(pid)
            try:
                os.wait4(pid, 0)
            except ChildProcessError:
                pass
            proc.returncode = -9
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped by us; keep Popen from waiting again
    if timed_out:
        _kill_group(pid)  # any grandchildren left in the group
    wall, user, sys_, rss_kib = t1 - t0, ru.ru_utime, ru.ru_stime, ru.ru_maxrss
    if launcher:
        try:
            w, u, s, r, _st = res_p.read_text().split()
            wall, user, sys_, rss_kib = float(w), float(u), float(s), int(r)
        except (OSError, ValueError):
            pass  # killed before it could report: keep the outer figures
    return Measured(
        argv=list(argv),
        exit_code=code,
        wall_s=wall,
        user_s=user,
        sys_s=sys_,
        maxrss_mib=rss_kib / 1024.0,  # Linux: KiB
        timed_out=timed_out,
        stdout_tail=_tail(out_p),
        stderr_tail=_tail(err_p),
    )


def capture(argv: Sequence[str], timeout: float = 30.0, env: dict[str, str] | None = None) -> str:
    """stdout+stderr of a short command, or '' when it cannot run."""
    try:
        r = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def venv_bin(name: str) -> str | None:
    """A tool beside this interpreter (the project's venv) first, then on PATH."""
    return find_tool(name)


# --------------------------------------------------------------------------- machine


def machine_info() -> dict[str, object]:
    info: dict[str, object] = {
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": os.getloadavg(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["mem_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                info["os"] = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return info


def pkg_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


# --------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class Dataset:
    name: str
    count: int
    size: int  # bytes per object

    @property
    def total_bytes(self) -> int:
        return self.count * self.size

    def describe(self) -> str:
        return f"{self.count} x {human_bytes(self.size)} = {human_bytes(self.total_bytes)}"


@dataclass
class Generated:
    """A dataset on local disk: file name -> size and sha256 (files are flat)."""

    dataset: Dataset
    root: Path
    sizes: dict[str, int] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)


def human_bytes(n: float) -> str:
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            v = n / div
            return f"{v:g} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{int(n)} B"


def generate_dataset(ds: Dataset, root: Path, chunk: int = 4 * MiB) -> Generated:
    """Write ``ds`` as flat files of random (incompressible) bytes, hashing as we go."""
    root.mkdir(parents=True, exist_ok=True)
    gen = Generated(ds, root)
    width = max(5, len(str(ds.count)))
    for i in range(ds.count):
        name = f"f{i:0{width}d}.bin"
        h = hashlib.sha256()
        left = ds.size
        with open(root / name, "wb") as f:
            while left > 0:
                b = os.urandom(min(chunk, left))
                h.update(b)
                f.write(b)
                left -= len(b)
        gen.sizes[name] = ds.size
        gen.sha256[name] = h.hexdigest()
    return gen


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(4 * MiB):
            h.update(b)
    return h.hexdigest()


def compare_listing(found: dict[str, int], expected: dict[str, int]) -> str | None:
    """None when ``found`` (basename -> size) matches; else one line saying what is off."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = sorted(k for k in expected if k in found and found[k] != expected[k])
    if not (missing or extra or wrong):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if wrong:
        k = wrong[0]
        parts.append(f"{len(wrong)} wrong size (e.g. {k}: {found[k]} != {expected[k]})")
    if extra:
        parts.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
    return "verify: " + "; ".join(parts)


def local_listing(root: Path) -> tuple[dict[str, int], dict[str, Path]]:
    """basename -> size and basename -> path for every file under root (any nesting)."""
    sizes: dict[str, int] = {}
    paths: dict[str, Path] = {}
    if root.exists():
        for dirpath, _dirs, files in os.walk(root):
            for fn in files:
                p = Path(dirpath) / fn
                sizes[fn] = p.stat().st_size
                paths[fn] = p
    return sizes, paths


# --------------------------------------------------------------------------- iperf3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def iperf3_ceiling(
    streams: Iterable[int] = (1, 8), seconds: int = 3, log_dir: Path | None = None
) -> dict[str, object]:
    """Loopback TCP ceiling: an iperf3 server on 127.0.0.1, one client per stream count."""
    exe = find_tool("iperf3")
    if not exe:
        return {"error": "iperf3 not installed"}
    port = _free_port()
    server = subprocess.Popen(
        [exe, "-s", "-B", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    result: dict[str, object] = {"seconds": seconds}
    try:
        for n in streams:
            data = None
            last_err = "no answer"
            for _attempt in range(20):  # the server may need a moment to listen
                try:
                    r = subprocess.run(
                        [exe, "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds),
                         "-P", str(n), "-J"],
                        capture_output=True, text=True, timeout=seconds + 30,
                        stdin=subprocess.DEVNULL,
                    )  # fmt: skip
                except subprocess.TimeoutExpired:
                    r = None
                if r is not None and r.returncode == 0:
                    # iperf3 -J exits 0 even when it could not connect: look inside
                    try:
                        got = json.loads(r.stdout)
                    except ValueError:
                        got = {"error": "unparsable output"}
                    bps = got.get("end", {}).get("sum_received", {}).get("bits_per_second")
                    if not got.get("error") and bps:
                        data = bps
                        break
                    last_err = got.get("error") or "no sum_received"
                time.sleep(0.25)
            if data is None:
                result[f"P{n}"] = None
                result[f"P{n}_error"] = last_err
                continue
            result[f"P{n}"] = round(data / 1e9, 2)
    finally:
        _kill_group(server.pid)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    return result


# --------------------------------------------------------------------------- stats, tables


def median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def fmt(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "—"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return "\n".join(lines)


def to_jsonable(obj: object) -> object:
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)  # type: ignore[arg-type]
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(type(obj))
