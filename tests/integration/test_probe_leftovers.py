"""What a capability probe killed mid-way (kill -9) leaves in a bucket is removed by the
next probe: at once when its owner (named in the probe's prefix: this host's digest and
the process id) is a process of this host that is gone, after ``STALE_S`` otherwise. A
live prober's files and another host's are left alone. Real SeaweedFS."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from trunkline.storage import capabilities as caps


def _leftover(c, bucket: str, owner: str | None) -> str:
    name = uuid.uuid4().hex[:12] if owner is None else f"{owner}-{uuid.uuid4().hex[:12]}"
    prefix = f".trunkline-probe-{name}/"
    c.put_object(Bucket=bucket, Key=prefix + "obj", Body=b"x")
    c.create_multipart_upload(Bucket=bucket, Key=prefix + "multipart")
    return prefix


def test_next_probe_removes_what_a_dead_prober_left(s3server):
    bucket = f"probe-left-{uuid.uuid4().hex[:8]}"
    s3server.create_bucket(bucket)
    c = s3server.client()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tag = caps._host_tag()
    gone = _leftover(c, bucket, f"{tag}p{dead.pid}")
    live = _leftover(c, bucket, f"{tag}p{os.getppid()}")   # a running process of this host
    other = _leftover(c, bucket, f"{'0' * 8}p{dead.pid}")   # another host's: cannot tell
    old_style = _leftover(c, bucket, None)                  # no owner in the name
    r = caps.probe(c, bucket, full=False)
    assert r.error is None, r.error
    keys = {o["Key"] for o in c.list_objects_v2(Bucket=bucket).get("Contents", [])}
    ups = {u["Key"] for u in c.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}
    for prefix in (live, other, old_style):  # younger than STALE_S and not provably dead
        assert prefix + "obj" in keys and prefix + "multipart" in ups
    assert not any(k.startswith(gone) for k in keys | ups)
    # and the probe's own prefix names this process, in the shape the cleaner trusts
    assert caps._OWNED.match(f".trunkline-probe-{tag}p{os.getpid()}-{'a' * 12}/")
