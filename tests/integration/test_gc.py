"""gc: a `trunkline cp` killed with -9 mid-upload leaves a journal and an open multipart
upload; gc lists both, --older-than spares it, --abort-uploads aborts it and removes the
journal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from trunkline.cli.main import cli
from trunkline.engine.journal import list_journals
from trunkline.engine.plan import MiB
from trunkline.storage.local import partial_path


@pytest.fixture
def env(s3server, tmp_path, monkeypatch):
    for k, v in s3server.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("TRUNKLINE_CONFIG", "/nonexistent/trunkline.toml")
    state = tmp_path / "state"
    monkeypatch.setenv("TRUNKLINE_STATE_DIR", str(state))
    return s3server, state


def _killed_upload(tmp_path, bucket: str) -> None:
    big = tmp_path / "bigfile"
    with open(big, "wb") as f:
        for _ in range(30):
            f.write(os.urandom(4 * MiB))   # 120 MiB: ~2.4 s at 50 MiB/s
    p = subprocess.Popen(
        [sys.executable, "-m", "trunkline.cli.main", "cp", "-q", "-c", "2", "--part-size", "5M",
         "--bwlimit", "50M", str(big), f"s3://{bucket}/big"],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    # on a loaded machine start-up can take longer: kill once the upload is open
    deadline = time.monotonic() + 30
    while not any(j.pending_uploads for j in list_journals()) and time.monotonic() < deadline:
        assert p.poll() is None, p.communicate()
        time.sleep(0.1)
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=30)


def test_gc_lists_and_aborts_orphaned_upload(env, tmp_path):
    s3, state = env
    bucket = f"gc-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(bucket)
    _killed_upload(tmp_path, bucket)
    c = s3.client()
    uploads = c.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["Key"] for u in uploads] == ["big"]
    upload_id = uploads[0]["UploadId"]
    assert len(list_journals(state)) == 1

    res = CliRunner().invoke(cli, ["gc", "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    [j] = rep["journals"]
    assert j["dst"] == f"s3://{bucket}/big" and j["objects"] == 1 and j["done"] == 0
    assert [u["upload_id"] for u in j["uploads"]] == [upload_id]
    assert not j["removed"]

    # a journal touched moments ago may belong to a running transfer: --older-than spares it
    res = CliRunner().invoke(cli, ["gc", "--abort-uploads", "--older-than", "1h"])
    assert res.exit_code == 0, res.output
    assert "0 journals" in res.stderr
    assert c.list_multipart_uploads(Bucket=bucket).get("Uploads", [])

    res = CliRunner().invoke(cli, ["gc", "--abort-uploads", "--older-than", "0", "--state-dir", str(state)])
    assert res.exit_code == 0, res.output
    assert upload_id in res.stdout and "aborted" in res.stdout
    assert "aborted 1 uploads, removed 1 journals" in res.stderr
    assert c.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert list_journals(state) == []
    assert not list(state.glob("*.sqlite*"))


def test_gc_removes_partial_download(env, tmp_path):
    s3, state = env
    bucket = f"gcd-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(bucket)
    c = s3.client()
    c.put_object(Bucket=bucket, Key="obj", Body=os.urandom(40 * MiB))
    dst = tmp_path / "dl" / "obj"
    dst.parent.mkdir()
    p = subprocess.Popen(
        [sys.executable, "-m", "trunkline.cli.main", "cp", "-q", "-c", "1", "--part-size", "5M",
         "--bwlimit", "10M", f"s3://{bucket}/obj", str(dst)],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    partial = Path(partial_path(str(dst)))
    time.sleep(1.5)
    deadline = time.monotonic() + 30
    while not partial.exists() and time.monotonic() < deadline:
        assert p.poll() is None, p.communicate()
        time.sleep(0.1)
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=30)
    assert partial.exists()
    from trunkline import gc

    rep = gc()
    assert [j.partial_files for j in rep.journals] == [[str(partial)]]
    rep = gc(abort_uploads=True, older_than=0)
    assert rep.removed == 1 and not partial.exists() and list_journals(state) == []


def test_gc_abort_spares_running_and_young_journals(tmp_path):
    """A running copy holds its journal's lock: never touched. An idle journal updated
    within the default minimum age is spared too, unless --older-than says otherwise."""
    from trunkline import gc
    from trunkline.engine.journal import Journal

    state = tmp_path / "state"
    running = Journal.open(state, "s3://b/run/", "/dst/run/", {})
    idle = Journal.open(state, "s3://b/idle/", "/dst/idle/", {})
    idle.close()
    try:
        rep = gc(state, abort_uploads=True)
        assert rep.running == [running.id] and rep.spared == [idle.id]
        assert rep.removed == 0 and len(list_journals(state)) == 2
        rep = gc(state, abort_uploads=True, older_than="0")
        assert rep.running == [running.id] and rep.removed == 1
        assert [j.id for j in list_journals(state)] == [running.id]
    finally:
        running.close()
