"""A run of small objects (downloads, uploads) keeps its threads on the CPU it started on
(engine/affinity.py), until its first large object; against a real SeaweedFS, affinity
read from the threads that do the work."""

from __future__ import annotations

import os
import threading

import pytest

import trunkline
from trunkline.engine.affinity import OneCore, current_cpu
from trunkline.engine.scheduler import Runner

MiB = 1024 * 1024

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                                reason="one core for the run needs a host with more than one")


def _seed(aws_env, tmp_path, bucket: str, sizes: list[int]) -> None:
    aws_env.create_bucket(bucket)
    src = tmp_path / "src"
    src.mkdir()
    for i, n in enumerate(sizes):
        (src / f"{i:03d}.bin").write_bytes(os.urandom(n))
    r = trunkline.copy(f"{src}/", f"s3://{bucket}/s/", recursive=True, resume=False,
                       part_size="8MiB")
    assert r.ok, r.failures


def _spy(monkeypatch) -> list[tuple[str, frozenset[int]]]:
    """(object name, the CPUs the worker moving it may use), for each part moved."""
    seen: list[tuple[str, frozenset[int]]] = []
    run_part = Runner._run_part

    def spy(self, job, part, buf, st):
        seen.append((job.plan.name, frozenset(os.sched_getaffinity(0))))
        return run_part(self, job, part, buf, st)

    monkeypatch.setattr(Runner, "_run_part", spy)
    return seen


def test_small_downloads_stay_on_one_core_and_the_caller_stays_free(aws_env, tmp_path,
                                                                     monkeypatch):
    _seed(aws_env, tmp_path, "onecore", [8192] * 120)
    seen = _spy(monkeypatch)
    before = os.sched_getaffinity(0)
    r = trunkline.copy("s3://onecore/s/", f"{tmp_path}/dst/", recursive=True, resume=False)
    assert r.ok and r.objects == 120, r.failures
    masks = {m for _, m in seen}
    assert len(masks) == 1 and len(next(iter(masks))) == 1, masks   # one CPU, all along
    assert os.sched_getaffinity(0) == before      # the caller's thread was never pinned
    # a thread started after the run may use every core (nothing inherited)
    got: list[set[int]] = []
    t = threading.Thread(target=lambda: got.append(os.sched_getaffinity(0)))
    t.start()
    t.join()
    assert got == [before]


def test_small_uploads_stay_on_one_core(aws_env, tmp_path, monkeypatch):
    src = tmp_path / "up"
    src.mkdir()
    for i in range(120):
        (src / f"{i:03d}.bin").write_bytes(os.urandom(8192))
    aws_env.create_bucket("oneup")
    seen = _spy(monkeypatch)
    r = trunkline.copy(f"{src}/", "s3://oneup/u/", recursive=True, resume=False)
    assert r.ok and r.objects == 120, r.failures
    masks = {m for _, m in seen}
    assert len(masks) == 1 and len(next(iter(masks))) == 1, masks


def test_the_first_large_object_lets_the_run_use_every_core(aws_env, tmp_path, monkeypatch):
    """Small objects first, then large ones: the run held a core at its start, and the
    parts of the large objects are moved by threads that may use every CPU again (the
    lister lets go before it queues the first large part; how many small objects were
    moved on one core by then depends on how far the lister had got)."""
    _seed(aws_env, tmp_path, "mixed", [8192] * 40 + [24 * MiB] * 2)
    seen = _spy(monkeypatch)
    held: list[bool] = []
    hold = OneCore.hold

    def spy_hold(self) -> bool:
        held.append(hold(self))
        return held[-1]

    monkeypatch.setattr(OneCore, "hold", spy_hold)
    allowed = frozenset(os.sched_getaffinity(0))
    r = trunkline.copy("s3://mixed/s/", f"{tmp_path}/dst/", recursive=True, resume=False,
                       part_size="8MiB")
    assert r.ok and r.objects == 42, r.failures
    assert held == [True]
    large = [m for name, m in seen if name.endswith(("/040.bin", "/041.bin"))]
    assert len(large) == 6 and all(m == allowed for m in large), large


def test_no_one_core_leaves_the_run_free(aws_env, tmp_path, monkeypatch):
    _seed(aws_env, tmp_path, "free", [8192] * 60)
    seen = _spy(monkeypatch)
    allowed = frozenset(os.sched_getaffinity(0))
    r = trunkline.copy("s3://free/s/", f"{tmp_path}/dst/", recursive=True, resume=False,
                       one_core=False)
    assert r.ok and r.objects == 60, r.failures
    assert {m for _, m in seen} == {allowed}


def test_current_cpu_is_one_this_thread_may_use():
    assert current_cpu() in os.sched_getaffinity(0)
