"""Uploads through the compiled core against a real SeaweedFS: the same objects with the
core on and off (``TRUNKLINE_NATIVE``), and a file changed between a part's checksum pass
and its send fails that part instead of reaching the store as bytes nobody summed."""

from __future__ import annotations

import hashlib
import os

import pytest

import trunkline
from trunkline import native

MiB = 2**20


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.mark.parametrize("core", ["native", "python"])
@pytest.mark.parametrize("size,part", [(1, "5M"), (700_000, "5M"), (5 * MiB + 3, "5M"),
                                       (3 * 5 * MiB + 17, "5M"), (12 * MiB + 1, "16M")])
def test_upload_is_byte_identical_either_way(aws_env, tmp_path, monkeypatch, core, size, part):
    if core == "native" and native._hotpath is None:
        pytest.skip("built without a C compiler")
    monkeypatch.setattr(native, "NATIVE", core == "native")
    aws_env.create_bucket("upn")
    data = os.urandom(size)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    key = f"o-{core}-{size}"
    r = trunkline.copy(str(src), f"s3://upn/{key}", part_size=part, connections=4)
    assert r.ok, r.failures
    body = aws_env.client().get_object(Bucket="upn", Key=key)["Body"].read()
    assert sha(body) == sha(data)


@pytest.mark.parametrize("core", ["native", "python"])
@pytest.mark.parametrize("probe", ["off", "on"])
def test_file_changed_between_sum_and_send_fails_the_part(aws_env, tmp_path, monkeypatch,
                                                          core, probe):
    """The send is slowed by a rate cap; once it is under way another writer changes the
    part's last MiB, so the bytes sent no longer have the sum the head announced. Whoever checks
    refuses them: the store, where the capability probe found that it verifies CRC32C
    (the body then goes by sendfile), else we do, before the body's last byte (probe
    off: nothing known of the store). Either way the part fails and nothing is left at
    the key."""
    from trunkline.storage import capabilities

    if core == "native" and native._hotpath is None:
        pytest.skip("built without a C compiler")
    monkeypatch.setattr(native, "NATIVE", core == "native")
    monkeypatch.setenv("TRUNKLINE_PROBE", "1" if probe == "on" else "0")
    capabilities.forget()
    aws_env.create_bucket("upc")
    size = 16 * MiB
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(size))

    changed = []

    def change(snap):   # once the body is on its way (after the checksum pass)
        if not changed and snap.done_bytes >= MiB:
            with open(src, "r+b") as f:
                f.seek(size - MiB)
                f.write(os.urandom(MiB))
            changed.append(snap.done_bytes)

    r = trunkline.copy(str(src), "s3://upc/changed", part_size="16M", connections=1,
                       bwlimit="6M", retries=0, on_progress=change)
    assert changed and changed[0] < size - MiB
    assert not r.ok
    store_checks = (r.capabilities or {}).get("used", {}).get("store_verifies_crc32c")
    ours = "changed during upload" in r.failures[0].error
    assert ours == (not store_checks), (store_checks, r.failures)
    assert not aws_env.client().list_objects_v2(Bucket="upc").get("Contents")
