"""The mover's conformance suite, run on each of the three S3 implementations (SeaweedFS,
Ceph RGW, the JuiceFS gateway): round trips of every shape, upload/download/s3->s3,
verify, sync with --delete, resume after kill -9, and rclone (an independent client)
reading what we wrote. Sizes are small: the point is each store's behaviour, not volume.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

import trunkline
from conftest import bucket_digest, rclone_env, require_tool, sha256_file, tree_digest
from trunkline.engine.plan import MiB
from trunkline.testing import Fault, Proxy

PART = 5 * MiB
# every shape: empty, one byte, just below/at/above one part, several parts, many small,
# keys with spaces, '+', unicode and a dash that sorts before '/'
FILES = {
    "empty.bin": 0,
    "one.bin": 1,
    "below.bin": PART - 1,
    "exact.bin": PART,
    "three.bin": 2 * PART + 17,
    "dir/name with spaces+plus.bin": 1000,
    "dir/ünïcødé-ключ-鍵.bin": 777,
    "dir-x.bin": 5,
    **{f"many/s{i:03d}.bin": 100 + i for i in range(40)},
}


def _bucket(store) -> str:
    name = f"conf-{uuid.uuid4().hex[:10]}"
    store.create_bucket(name)
    return name





@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("conf-src")
    for rel, size in FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(size))
    return root


def test_upload_download_roundtrip(store_env, tree, tmp_path):
    b = _bucket(store_env)
    up = trunkline.copy(str(tree), f"s3://{b}/t/", recursive=True, part_size=PART,
                        max_connections=8)
    assert up.ok, up.failures
    assert up.objects == len(FILES)
    assert bucket_digest(store_env, b, "t/") == tree_digest(tree)
    head = store_env.client().head_object(Bucket=b, Key="t/three.bin")
    assert head["ContentLength"] == FILES["three.bin"]
    back = tmp_path / "back"
    down = trunkline.copy(f"s3://{b}/t/", str(back) + "/", recursive=True, part_size=PART,
                          max_connections=8)
    assert down.ok, down.failures
    assert tree_digest(back) == tree_digest(tree)


def test_single_objects_and_s3_to_s3(store_env, tree, tmp_path):
    b, b2 = _bucket(store_env), _bucket(store_env)
    assert trunkline.copy(str(tree / "three.bin"), f"s3://{b}/x/three.bin", part_size=PART).ok
    assert trunkline.copy(str(tree / "empty.bin"), f"s3://{b}/x/empty.bin").ok
    server = trunkline.copy(f"s3://{b}/x/", f"s3://{b2}/ss/", recursive=True, part_size=PART)
    assert server.ok, server.failures
    assert server.wire_bytes == 0          # server-side copy: no payload through us
    streamed = trunkline.copy(f"s3://{b}/x/", f"s3://{b2}/st/", recursive=True, part_size=PART,
                              server_side=False, max_memory=3 * PART)
    assert streamed.ok, streamed.failures
    want = {"three.bin": sha256_file(tree / "three.bin"), "empty.bin": sha256_file(tree / "empty.bin")}
    assert bucket_digest(store_env, b2, "ss/") == want
    assert bucket_digest(store_env, b2, "st/") == want
    out = tmp_path / "one.bin"
    assert trunkline.copy(f"s3://{b2}/st/three.bin", str(out), part_size=PART).ok
    assert sha256_file(out) == want["three.bin"]


def test_verify_then_detect_a_change(store_env, tree):
    b = _bucket(store_env)
    assert trunkline.copy(str(tree), f"s3://{b}/v/", recursive=True, part_size=PART).ok
    rep = trunkline.verify(str(tree), f"s3://{b}/v/")
    assert rep.ok, rep.mismatches
    assert rep.compared == len(FILES)
    # same size, other bytes: only content comparison can see it
    store_env.client().put_object(Bucket=b, Key="v/dir-x.bin", Body=b"XXXXX")
    rep = trunkline.verify(str(tree), f"s3://{b}/v/")
    assert [m.key for m in rep.mismatches] == ["dir-x.bin"]


def test_sync_with_delete(store_env, tree, tmp_path):
    b = _bucket(store_env)
    r = trunkline.sync(str(tree), f"s3://{b}/s/", connections=4, part_size="5M")
    assert r.ok, r.failures
    assert bucket_digest(store_env, b, "s/") == tree_digest(tree)
    again = trunkline.sync(str(tree), f"s3://{b}/s/", connections=4, part_size="5M")
    assert again.ok and again.copied == 0
    store_env.client().put_object(Bucket=b, Key="s/stray.bin", Body=b"stray")
    pruned = trunkline.sync(str(tree), f"s3://{b}/s/", delete=True)
    assert pruned.ok and pruned.deleted == 1
    assert bucket_digest(store_env, b, "s/") == tree_digest(tree)
    back = tmp_path / "back"
    assert trunkline.sync(f"s3://{b}/s/", str(back)).ok
    assert tree_digest(back) == tree_digest(tree)


def test_resume_after_kill(store_env, tmp_path):
    """kill -9 in the middle of a multipart upload, then the same command again: the
    object is complete and byte-identical, and the rerun found parts already done."""
    b = _bucket(store_env)
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(64 * MiB + 3))
    env = dict(os.environ, **store_env.env)
    args = [sys.executable, "-m", "trunkline.cli.main", "cp", "-q", "-c", "2",
            "--part-size", "5M", str(src), f"s3://{b}/big.bin"]
    p = subprocess.Popen([*args, "--bwlimit", "40M"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    # wait until the store holds some parts of the upload, then kill -9
    c = store_env.client()
    while time.monotonic() < deadline and p.poll() is None:
        # (the capability probe's own uploads live under .trunkline-probe-*/: not ours)
        ups = [u for u in c.list_multipart_uploads(Bucket=b).get("Uploads", [])
               if u["Key"] == "big.bin"]
        if ups and c.list_parts(Bucket=b, Key="big.bin",
                                UploadId=ups[0]["UploadId"]).get("Parts"):
            break
        time.sleep(0.1)
    # a part the store holds is journaled once its response is back: killed in between,
    # the rerun uploads it again (correct, but not what this test checks; CI caught that
    # window once). 0.3 s more: ~1 part at 40 MB/s, the 64 MiB upload still going
    time.sleep(0.3)
    assert p.poll() is None, "the copy ended before it could be killed"
    p.send_signal(signal.SIGKILL)
    p.communicate()
    fin = subprocess.run([*args, "--json"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert fin.returncode == 0, fin.stderr
    import json

    res = json.loads(fin.stdout)
    assert res["resumed_bytes"] > 0
    body = c.get_object(Bucket=b, Key="big.bin")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha256_file(src)
    assert not c.list_multipart_uploads(Bucket=b).get("Uploads")



def test_rclone_reads_what_we_write(store_env, tree, tmp_path):
    rclone = require_tool("rclone")
    b = _bucket(store_env)
    assert trunkline.copy(str(tree), f"s3://{b}/r/", recursive=True, part_size=PART).ok
    out = tmp_path / "by-rclone"
    p = subprocess.run([rclone, "copy", f"tl:{b}/r", str(out)], env=rclone_env(store_env),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert tree_digest(out) == tree_digest(tree)
    p = subprocess.run([rclone, "check", str(tree), f"tl:{b}/r"], env=rclone_env(store_env),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_upload_and_part_listings_past_one_page(store_env):
    """ListMultipartUploads and ListParts answer 1,000 entries a page (where the store
    pages at all): the mover's own reading of both (gc, resume) follows every page. The
    expectation is what the store said when each upload and part was made."""
    from concurrent.futures import ThreadPoolExecutor

    from trunkline.engine.jobs import EndpointCache

    b = _bucket(store_env)
    c = store_env.client()
    n = 1003
    keys = [f"u/k{i % 7}-\u00e9-{i}" for i in range(n)]
    with ThreadPoolExecutor(16) as ex:
        made = set(ex.map(lambda k: (k, c.create_multipart_upload(Bucket=b, Key=k)["UploadId"]),
                          keys))
        up = c.create_multipart_upload(Bucket=b, Key="parts")["UploadId"]
        etags = dict(ex.map(lambda p: (p, c.upload_part(Bucket=b, Key="parts", UploadId=up,
                                                        PartNumber=p, Body=b"%d" % p)["ETag"]),
                            range(1, n + 1)))
    ep = EndpointCache().get("s3")
    try:
        assert set(ep.list_multipart_uploads(b, "u/")) == made
        assert [u for u, _ in ep.uploads_for_key(b, keys[5])] == [dict(made)[keys[5]]]
        held = ep.list_parts(b, "parts", up)
        assert {p: e.strip('"') for p, (e, _) in held.items()} == \
            {p: e.strip('"') for p, e in etags.items()}
        assert {size for _, size in held.values()} == {1, 2, 3, 4}
    finally:
        with ThreadPoolExecutor(16) as ex:
            list(ex.map(lambda ku: ep.abort_multipart(b, ku[0], ku[1]), [*made, ("parts", up)]))


def test_a_source_replaced_during_a_multipart_server_side_copy_mixes_no_versions(
        store_env, monkeypatch):
    """The answer to the first UploadPartCopy is held while another writer replaces the
    source (same size: only the ETag tells the versions apart); the other parts follow.
    SeaweedFS and JuiceFS refuse them (412: each names the listed ETag); RGW 16.2 ignores
    the condition and copies the new version, so the HEAD of the source before the
    upload is completed is what finds it changed. Every store: "source changed", no
    object at the destination, no upload left."""
    b = _bucket(store_env)
    c = store_env.client()
    c.put_object(Bucket=b, Key="src.bin", Body=os.urandom(12 * MiB))
    released = threading.Event()   # the answer goes on once the source is replaced
    stall = Fault("stall", stall_s=30.0, until=released, method="PUT",
                  path_contains="/dst.bin?")
    out: dict = {}
    with Proxy(("127.0.0.1", store_env.port), faults=[stall]) as px:
        monkeypatch.setenv("AWS_ENDPOINT_URL", px.endpoint_url)
        t = threading.Thread(target=lambda: out.update(r=trunkline.copy(
            f"s3://{b}/src.bin", f"s3://{b}/dst.bin", part_size="5MiB", connections=1,
            retries=1, resume=False)))
        t.start()
        assert stall.wait_fired(60) and stall.fired == 1, \
            "no part copy was answered: the test proves nothing"
        c.put_object(Bucket=b, Key="src.bin", Body=os.urandom(12 * MiB))
        released.set()
        t.join(120)
    r = out["r"]
    assert not r.ok and len(r.failures) == 1, r.to_dict()
    assert "source changed" in r.failures[0].error, r.failures
    assert not c.list_objects_v2(Bucket=b, Prefix="dst.bin").get("Contents")
    assert not c.list_multipart_uploads(Bucket=b).get("Uploads")
