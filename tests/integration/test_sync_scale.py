"""Acceptance: sync of an unchanged tree of 100,000 small objects transfers nothing,
finishes in listing time, and its memory does not grow with the number of keys (peak RSS of
the sync process at 100,000 vs 10,000 keys). Prints the figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trunkline.embedded_s3 import EmbeddedS3, weed_binary
from trunkline.engine.jobs import EndpointCache
from trunkline.storage.local import walk

pytestmark = pytest.mark.slow

N_DIRS, PER_DIR = 100, 1000  # 100,000 files of 0-16 bytes; p0 holds the first 10,000


def _tree(root: Path) -> None:
    for i in range(N_DIRS):
        sub = root / f"p{i // 10}" / f"d{i:03d}"
        sub.mkdir(parents=True)
        for j in range(PER_DIR):
            (sub / f"f{j:04d}").write_bytes(os.urandom((i * PER_DIR + j) % 17))


def _seed(s3: EmbeddedS3, root: Path, bucket: str) -> None:
    """Put the tree into the bucket through SeaweedFS's filer (weed filer.copy): 3x faster
    than 100,000 S3 PUTs on a shared 2-core box. Keys become all/<root name>/..."""
    arg = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in s3.proc.args if "=" in a}  # type: ignore[union-attr]
    filer = f"{s3.host}:{arg['-filer.port']}.{arg['-filer.port.grpc']}"
    subprocess.run([weed_binary(), "filer.copy", "-c", "16", str(root) + "/",
                    f"http://{filer}/buckets/{bucket}/all/"],
                   check=True, capture_output=True, timeout=240)


def _sync(env: dict, src: Path, dst: str) -> tuple[dict, float, float]:
    """(result, wall seconds, peak RSS MiB) of `trunkline sync` in its own process."""
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "trunkline.cli.main", "sync", "-q", "--json",
                          str(src), dst], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.stdout.read(), p.stderr.read()  # type: ignore[union-attr]
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    assert p.returncode == 0, err.decode()[-2000:]
    return json.loads(out), wall, ru.ru_maxrss / 1024


def _ls(env: dict, url: str) -> tuple[int, float]:
    """(distinct keys printed, peak RSS MiB) of `trunkline ls -r --json` in its own process;
    the output is counted as it streams, never held."""
    p = subprocess.Popen([sys.executable, "-m", "trunkline.cli.main", "ls", "-r", "--json", url],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    n, last = 0, ""
    for line in p.stdout:  # type: ignore[union-attr]
        key = json.loads(line)["key"]
        assert key > last  # ListObjectsV2 order: each key once, ascending
        n, last = n + 1, key
    err = p.stderr.read()  # type: ignore[union-attr]
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    assert p.returncode == 0, err.decode()[-2000:]
    return n, ru.ru_maxrss / 1024


def test_unchanged_100k_sync_is_listing_time_and_bounded_memory(tmp_path):
    root = tmp_path / "tree"
    t0 = time.monotonic()
    _tree(root)
    make_s = time.monotonic() - t0
    with EmbeddedS3(data_dir=tmp_path / "weed") as s3:
        s3.create_bucket("scale")
        env = dict(os.environ, **s3.env, TRUNKLINE_CONFIG="/nonexistent/trunkline.toml")
        t0 = time.monotonic()
        _seed(s3, root, "scale")
        seed_s = time.monotonic() - t0

        small, small_s, small_rss = _sync(env, root / "p0", "s3://scale/all/tree/p0")
        assert small["copied"] == 0 and small["unchanged"] == 10 * PER_DIR

        big, big_s, big_rss = _sync(env, root, "s3://scale/all/tree")
        assert big["copied"] == 0 and big["unchanged"] == N_DIRS * PER_DIR
        assert big["transfer"]["bytes"] == 0 and big["transfer"]["requests"] == 0

        # `trunkline ls -r --json` streams: every key once, memory flat from 10k to 100k
        ls_small, ls_small_rss = _ls(env, "s3://scale/all/tree/p0/")
        ls_big, ls_big_rss = _ls(env, "s3://scale/all/tree/")
        assert ls_small == 10 * PER_DIR and ls_big == N_DIRS * PER_DIR

        # listing alone, in this process: the store's listing plus the local walk
        old = {k: os.environ.get(k) for k in (*s3.env, "TRUNKLINE_CONFIG")}
        os.environ.update(s3.env, TRUNKLINE_CONFIG="/nonexistent/trunkline.toml")
        try:
            t0 = time.monotonic()
            n_remote = sum(1 for _ in EndpointCache().get("s3").list("scale", "all/tree/"))
            remote_s = time.monotonic() - t0
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        t0 = time.monotonic()
        n_local = sum(1 for _ in walk(str(root)))
        local_s = time.monotonic() - t0
        assert n_remote == n_local == N_DIRS * PER_DIR

    listing_s = remote_s + local_s
    print(f"\n[sync-scale] tree of {n_local} files made in {make_s:.1f} s")
    print(f"[sync-scale] seeded the bucket (weed filer.copy) in {seed_s:.1f} s")
    print(f"[sync-scale] listing: S3 {remote_s:.2f} s + local walk {local_s:.2f} s "
          f"= {listing_s:.2f} s")
    print(f"[sync-scale] unchanged sync 10k: {small_s:.2f} s wall, peak RSS {small_rss:.0f} MiB")
    print(f"[sync-scale] unchanged sync 100k: {big_s:.2f} s wall (in-process "
          f"{big['seconds']:.2f} s), peak RSS {big_rss:.0f} MiB")
    print(f"[sync-scale] ls -r --json: 10k keys peak RSS {ls_small_rss:.0f} MiB, "
          f"100k keys {ls_big_rss:.0f} MiB")
    assert ls_big_rss < ls_small_rss + 25, (ls_small_rss, ls_big_rss)
    # finishes in listing time: interpreter start-up and the on-disk index are the rest
    assert big["seconds"] < 1.5 * listing_s + 2.0, (big["seconds"], listing_s)
    # bounded: ten times the keys, (almost) the same memory
    assert big_rss < small_rss + 25, (small_rss, big_rss)
