"""Start-up of a short copy: ``trunkline cp`` of one small object, in a fresh process, loads
none of the heavy modules it does not need (issue 18: within 0.12 s of process start).

Why a subprocess: only a fresh interpreter shows what the command itself imports (this
test process has loaded everything already). The command runs for real against the
session's SeaweedFS, both directions, and the bytes are checked; the modules loaded by
the time it exits are then held against the list of what a copy with keys in the
environment has no use for.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trunkline.testing.hostile_s3 import HostileS3
from trunkline.wire import preconnect

FORBIDDEN = ("numpy", "pyarrow", "duckdb", "matplotlib", "rich", "awscrt", "botocore",
             "ray", "pandas", "asyncio", "boto3", "s3transfer", "email")
"""Not needed to copy one object with keys from the environment: each costs 10-300 ms."""

NOT_FOR_ONE_KEY = ("xml.parsers.expat", "xml.etree.ElementTree", "logging", "random", "traceback",
                   "encodings.idna")
"""Loaded only when needed (a listing or an error body to parse, a tuner decision to log, a
retry's jitter, --debug, a non-ASCII host name): a download of one key needs none of them,
and together they cost it ~10 ms."""

RUN = """
import atexit, json, sys
out = sys.argv.pop(1)
def dump():
    with open(out, "w") as f:
        json.dump(sorted(sys.modules), f)
atexit.register(dump)
sys.argv[0] = "trunkline"
from trunkline.cli.main import main
main()
"""


def _cp(env: dict[str, str], src: str, dst: str, mods: Path) -> list[str]:
    r = subprocess.run([sys.executable, "-c", RUN, str(mods), "cp", "-q", src, dst],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(mods.read_text())


@pytest.fixture
def cp_env(aws_env, tmp_path):
    env = dict(os.environ)
    env.update(aws_env.env, TRUNKLINE_CONFIG="/nonexistent/trunkline.toml",
               TRUNKLINE_STATE_DIR=str(tmp_path / "state"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def test_cp_of_a_small_object_loads_no_heavy_module(aws_env, cp_env, tmp_path):
    aws_env.create_bucket("startup")
    data = os.urandom(300_000)
    src = tmp_path / "small.bin"
    src.write_bytes(data)
    up = _cp(cp_env, str(src), "s3://startup/small.bin", tmp_path / "up.json")
    back = tmp_path / "back.bin"
    down = _cp(cp_env, "s3://startup/small.bin", str(back), tmp_path / "down.json")
    assert hashlib.sha256(back.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    # an upload's first contact with a store probes what it keeps (storage/capabilities.py,
    # through botocore; the suite keeps no answer on disk): botocore is allowed there
    # (and the email package botocore itself uses), nothing else
    for direction, mods, allowed in (("upload", up, {"botocore", "awscrt", "email"}),
                                     ("download", down, set())):
        heavy = sorted({m for m in mods if m.split(".")[0] in set(FORBIDDEN) - allowed})
        assert not heavy, f"{direction} loaded {heavy[:12]}"
    assert "trunkline.engine.scheduler" in down   # it did run the engine (not a no-op)
    assert not set(NOT_FOR_ONE_KEY) & set(down), sorted(set(NOT_FOR_ONE_KEY) & set(down))
    # each of the package's modules came from its bytecode: compiling them from source
    # was half of the copy's start-up where no process writes bytecode (`make setup`)
    ours = [m for m in down if m.split(".")[0] == "trunkline"]
    assert len(ours) > 40
    stale = [m for m in ours if not _bytecode_is_current(m)]
    assert not stale, f"compiled from source at each start: {stale[:8]} (run `make setup`)"


def _bytecode_is_current(name: str) -> bool:
    """The import system would load ``name`` from its ``.pyc``: one exists, and its
    header names the source's mtime and size (PEP 552's timestamp form)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.has_location or not spec.origin.endswith(".py"):
        return True   # a compiled extension or a namespace: nothing to compile
    cached = Path(spec.cached)
    if not cached.exists():
        return False
    head = cached.read_bytes()[:16]
    st = os.stat(spec.origin)
    return (head[:4] == importlib.util.MAGIC_NUMBER and int.from_bytes(head[4:8], "little") == 0
            and int.from_bytes(head[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
            and int.from_bytes(head[12:16], "little") == st.st_size & 0xFFFFFFFF)


def test_a_multipart_upload_and_a_server_side_copy_load_no_botocore(aws_env, cp_env, tmp_path):
    """Create, complete and abort, and the store's own copies (UploadPartCopy, CopyObject),
    go over trunkline's own connections: with the store's capabilities known (on disk from
    an earlier probe), neither a multipart upload nor a server-side copy needs botocore
    (~0.25 s to import and build a client)."""
    aws_env.create_bucket("startup4")
    data = os.urandom(12 * 2**20 + 7)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    env = dict(cp_env, TRUNKLINE_PROBE_TTL="3600")
    runs = [  # the first probes the store (botocore); the others read its answer
        ("m1", str(src), "s3://startup4/big1.bin"),
        ("m2", str(src), "s3://startup4/big2.bin"),
        ("c1", "s3://startup4/big2.bin", "s3://startup4/copy.bin"),   # UploadPartCopy x3
        ("c2", "s3://startup4/copy.bin", "s3://startup4/dir/"),       # with --part-size 16MiB:
    ]                                                                  # one CopyObject
    for name, a, b in runs:
        ps = "16MiB" if name == "c2" else "5MiB"
        r = subprocess.run([sys.executable, "-c", RUN, str(tmp_path / f"{name}.json"), "cp",
                            "-q", "--part-size", ps, a, b],
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
    for name, mod in (("m2", "multipart"), ("c1", "copy"), ("c2", "copy")):
        mods = json.loads((tmp_path / f"{name}.json").read_text())
        assert "botocore" not in {m.split(".")[0] for m in mods}, name
        assert f"trunkline.engine.ops.{mod}" in mods, name
    c = aws_env.client()
    for key in ("big2.bin", "copy.bin", "dir/copy.bin"):
        assert c.get_object(Bucket="startup4", Key=key)["Body"].read() == data, key


def test_the_check_sees_a_heavy_import(aws_env, cp_env, tmp_path):
    """The module list can fail the test: a heavy import on the way shows in it."""
    aws_env.create_bucket("startup2")
    (tmp_path / "s.bin").write_bytes(b"x" * 1000)
    run = RUN.replace("from trunkline.cli.main", "import numpy\nfrom trunkline.cli.main")
    r = subprocess.run([sys.executable, "-c", run, str(tmp_path / "n.json"), "cp", "-q",
                        str(tmp_path / "s.bin"), "s3://startup2/t.bin"],
                       env=cp_env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "numpy" in json.loads((tmp_path / "n.json").read_text())


GC_RUN = """
import gc, json, sys, threading, time
out, argv0 = sys.argv.pop(1), sys.argv.pop(1)
sys.argv[0] = argv0
before = gc.isenabled()
import trunkline.cli.main as m
seen = {"enabled_before": before, "off_after_import": not gc.isenabled()}
def record():
    seen["enabled_at_exit"] = gc.isenabled()
    seen["frozen"] = gc.get_freeze_count()
    with open(out, "w") as f:
        json.dump(seen, f)
import atexit
atexit.register(record)
if sys.argv[1:] == ["--sleep"]:
    time.sleep(1.5)   # no command: only the safety net can turn it back on
    sys.exit(0)
m.main()
"""


def _gc_run(env, tmp_path, argv0: str, *args: str) -> dict:
    out = tmp_path / f"gc-{len(list(tmp_path.iterdir()))}.json"
    r = subprocess.run([sys.executable, "-c", GC_RUN, str(out), argv0, *args], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text())


def test_the_collector_is_off_while_a_command_loads_and_back_on_for_its_work(
        aws_env, cp_env, tmp_path):
    """The entry point (argv[0] ``trunkline``) turns the cyclic collector off while the
    modules load; the command's work starts with what was imported frozen and the
    collector on. A program that imports the CLI keeps its collector; without a command,
    the safety net turns it back on."""
    aws_env.create_bucket("startup3")
    (tmp_path / "s.bin").write_bytes(b"y" * 5000)
    cli = _gc_run(cp_env, tmp_path, "/venv/bin/trunkline", "cp", "-q",
                  str(tmp_path / "s.bin"), "s3://startup3/s.bin")
    assert cli["enabled_before"] and cli["off_after_import"]
    assert cli["enabled_at_exit"] and cli["frozen"] > 1000
    other = _gc_run(cp_env, tmp_path, "/usr/bin/my-program", "--version")
    assert not other["off_after_import"] and other["enabled_at_exit"]
    assert other["frozen"] == 0
    net = _gc_run(cp_env, tmp_path, "/venv/bin/trunkline", "--sleep")
    assert net["off_after_import"] and net["enabled_at_exit"]


LEAVE_RUN = """
import atexit, sys, threading, time
out, mode = sys.argv[1], sys.argv[2]
import trunkline.cli.main                      # the entry point's start (begin) as `trunkline`
from trunkline.cli.startup import leave, work_begins
work_begins()                                  # as a command's work does (its net thread ends)
atexit.register(lambda: open(out + ".atexit", "w").close())
class Teardown:                                # freed by the interpreter's teardown only
    def __del__(self, open=open, path=out + ".teardown"):   # globals are gone by then
        open(path, "w").close()
kept = Teardown()
if mode == "thread":                           # a thread still writing when the command ends
    def late():
        time.sleep(0.3)
        open(out + ".thread", "w").close()
    threading.Thread(target=late).start()
sys.stdout.write("buffered, no newline")       # a pipe: block-buffered until flushed
if mode == "api":
    try:
        leave(7)
    except SystemExit as e:                    # a program's own exit stays catchable
        sys.stdout.write(f" caught {e.code}")
        sys.exit(5)
leave(3)
"""


@pytest.mark.parametrize("mode", ["cli", "thread", "api"])
def test_the_cli_leaves_without_teardown_but_loses_nothing(tmp_path, mode):
    """``startup.leave``: at the CLI's end, exit handlers run and buffered output is
    written before ``os._exit`` skips the teardown; a thread still running makes it a
    normal exit (the thread finishes); in a program whose main module is not the CLI
    (here ``-c``; ``runpy`` in test_capability_cache.py) it is a plain ``SystemExit``."""
    out = str(tmp_path / "o")
    script = tmp_path / "trunkline"        # as the console script is named
    script.write_text(LEAVE_RUN)
    entry = ["-c", LEAVE_RUN] if mode == "api" else [str(script)]
    r = subprocess.run([sys.executable, *entry, out, mode], capture_output=True,
                       text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path
                                                                      if p)))
    assert r.stdout.startswith("buffered, no newline"), (r.stdout, r.stderr)
    assert os.path.exists(out + ".atexit")
    if mode == "api":
        assert r.returncode == 5 and r.stdout.endswith("caught 7")
    else:
        assert r.returncode == 3, r.stderr
    if mode == "thread":
        assert os.path.exists(out + ".thread")
    if mode != "thread":   # the fast exit skipped the teardown; a program's went through it
        assert os.path.exists(out + ".teardown") == (mode == "api")


class _Timed(HostileS3):
    """The hostile server, behaving, that times each connection from its accept to its
    first request byte."""

    def _serve(self, c: socket.socket) -> None:
        accepted = time.monotonic()
        try:
            c.recv(1, socket.MSG_PEEK)
        except OSError:
            return
        self.gaps.append(time.monotonic() - accepted)
        super()._serve(c)


def test_the_cli_connects_to_the_store_while_it_loads(tmp_path):
    """``cp`` begins its store's TCP connection as soon as its arguments are parsed
    (``wire/preconnect.py``): the first connection is open well before its first request,
    the ~40 ms the engine's imports take; a far store's handshake hides in them."""
    with _Timed() as s:
        s.gaps = []
        s.put("b", "k", b"x" * 1000)
        env = dict(os.environ, **s.env, TRUNKLINE_CONFIG="/nonexistent/trunkline.toml",
                   TRUNKLINE_STATE_DIR=str(tmp_path / "state"),
                   PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        r = subprocess.run([sys.executable, "-m", "trunkline.cli.main", "cp", "-q", "s3://b/k",
                            str(tmp_path / "k")], env=env, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "k").read_bytes() == b"x" * 1000
        assert s.gaps and max(s.gaps) > 0.005, s.gaps   # the early one: open, then loading


def test_an_early_connection_is_only_ever_a_shortcut():
    """Never begun, refused, or taken already: ``take`` says None and the caller connects
    as usual; a begun one is handed out once."""
    assert preconnect.take("127.0.0.1", 9, 1.0) is None
    with socket.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]
        preconnect.begin("127.0.0.1", port)
        sock = preconnect.take("127.0.0.1", port, 5.0)
        assert sock is not None and sock.getpeername()[1] == port
        sock.close()
        assert preconnect.take("127.0.0.1", port, 5.0) is None
    preconnect.begin("127.0.0.1", port)        # nothing listens there now
    assert preconnect.take("127.0.0.1", port, 5.0) is None
