"""Small objects travel through the scheduler's queue in batches (``scheduler.batch_full``),
against a real SeaweedFS: every object still lands whole, and a worker that goes down in
the middle of a batch leaves each object of it finished or listed as failed, never open.
"""

from __future__ import annotations

import hashlib
import os

import pytest

import trunkline
from trunkline.engine import scheduler
from trunkline.engine.scheduler import Runner

N = 300


def _sha(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _seed(aws_env, tmp_path, bucket: str) -> dict[str, str]:
    """N small objects at s3://bucket/s/ (uploaded by the engine); their sha256 by name."""
    aws_env.create_bucket(bucket)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(N):
        (src / f"{i:03d}.bin").write_bytes(os.urandom(4096 + 37 * i))
    r = trunkline.copy(f"{src}/", f"s3://{bucket}/s/", recursive=True, resume=False)
    assert r.ok and r.objects == N, r.failures
    return {p.name: _sha(p) for p in src.iterdir()}


def test_small_objects_go_in_batches_and_each_lands_whole(aws_env, tmp_path, monkeypatch):
    want = _seed(aws_env, tmp_path, "batches")
    items: list[int] = []
    put = Runner._put

    def spy(self, item, force: bool = False) -> None:
        if item is not None:
            items.append(len(item))
        put(self, item, force)

    monkeypatch.setattr(Runner, "_put", spy)
    dst = tmp_path / "dst"
    r = trunkline.copy("s3://batches/s/", f"{dst}/", recursive=True, resume=False)
    assert r.ok and r.objects == N, r.failures
    assert sum(items) == N
    assert items[0] == 1                       # the first object goes at once
    assert max(items) > 1, items               # behind a queue, they go in batches
    assert max(items) <= scheduler.BATCH
    assert {p.name: _sha(p) for p in dst.iterdir()} == want


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_worker_going_down_mid_batch_leaves_nothing_unfinished(aws_env, tmp_path,
                                                                  monkeypatch):
    """A part's errors end in ``_run_part`` (retried, then the object fails); an exception
    that escapes it (a bug) fails the objects of that worker's batch, each listed and
    cleaned up, and the worker goes on with the next: every object is either at its
    name, whole, or in the failures, and no partial file is left. (The local disk under
    the journal is the exception that stops the run: ``test_journal.py``.)"""
    want = _seed(aws_env, tmp_path, "crash")
    run_part = Runner._run_part
    crashed: list[str] = []

    def crash_once(self, job, part, buf, st) -> None:
        if not crashed and job.plan.name.endswith("/150.bin"):
            crashed.append(job.plan.name)
            raise SystemExit("worker thread goes down")
        run_part(self, job, part, buf, st)

    monkeypatch.setattr(Runner, "_run_part", crash_once)
    dst = tmp_path / "dst"
    r = trunkline.copy("s3://crash/s/", f"{dst}/", recursive=True, resume=False)
    assert crashed
    failed = {f.name.rsplit("/", 1)[-1] for f in r.failures}
    assert "150.bin" in failed
    landed = {p.name: _sha(p) for p in dst.iterdir()}
    assert set(landed) | failed == set(want)
    assert not set(landed) & failed
    assert r.objects == len(landed)
    assert all(landed[n] == want[n] for n in landed)   # (no partial file among them either)
