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


def test_a_file_written_between_its_parts_is_not_stored_as_a_mix(aws_env, tmp_path):
    """Another writer changes the file's first MiB (its part already sent) and its last
    MiB (its part not yet read) while the upload runs. Each part's bytes were sent as
    summed, so no part check could see it: the store held an object the file never was,
    first part old and last part new, reported verified, exit 0. Now the file's size and
    modification time after each part's read must be those of the open: the object fails
    "changed during upload", nothing is at the key, no upload is left open, and the rerun
    stores the new file."""
    aws_env.create_bucket("upmix")
    size, part = 48 * MiB, 16 * MiB
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(size))
    changed = []

    def change(snap):   # part 1 sent, part 2 on its way, part 3 not yet read
        if not changed and snap.done_bytes >= part + MiB:
            with open(src, "r+b") as f:
                f.write(os.urandom(MiB))
                f.seek(size - MiB)
                f.write(os.urandom(MiB))
            changed.append(snap.done_bytes)

    r = trunkline.copy(str(src), "s3://upmix/k", part_size="16M", connections=1,
                       bwlimit="40M", on_progress=change)
    assert changed and changed[0] < 2 * part
    assert not r.ok and "changed during upload" in r.failures[0].error, r.failures
    c = aws_env.client()
    assert not c.list_objects_v2(Bucket="upmix").get("Contents")
    assert not c.list_multipart_uploads(Bucket="upmix").get("Uploads")
    again = trunkline.copy(str(src), "s3://upmix/k", part_size="16M")
    assert again.ok, again.failures
    assert sha(c.get_object(Bucket="upmix", Key="k")["Body"].read()) == sha(src.read_bytes())


@pytest.mark.parametrize("how", ["appended", "cut"])
def test_a_file_written_after_its_listing_is_refused_not_cut_to_the_listed_size(
        aws_env, tmp_path, monkeypatch, how):
    """A file grows (or shrinks) between the listing and the upload's open. The upload
    sent the listed length of the newer version as if it were the file (a prefix the
    file never was when it had another end), or tried a cut file 8 times. Now that object
    fails at once, "changed since it was listed", and the others are copied."""
    from trunkline.storage import local

    aws_env.create_bucket(f"uplisted-{how}")
    src = tmp_path / "src"
    src.mkdir()
    data = {n: os.urandom(3 * MiB) for n in ("a.bin", "b.bin", "c.bin")}
    for n, v in data.items():
        (src / n).write_bytes(v)
    real = local.walk

    def walk(root, on_skip=None):
        for f in real(root, on_skip):
            if f.rel == "b.bin":   # listed (f holds its stat); then another process
                if how == "appended":                     # writes to it
                    with open(src / "b.bin", "ab") as g:
                        g.write(b"more")
                else:
                    os.truncate(src / "b.bin", MiB)
            yield f

    monkeypatch.setattr(local, "walk", walk)
    r = trunkline.copy(str(src), f"s3://uplisted-{how}/up/", recursive=True, part_size="5M")
    assert [f.name for f in r.failures] == [str(src / "b.bin")], r.failures
    assert "changed since it was listed" in r.failures[0].error
    assert r.retries == 0
    c = aws_env.client()
    held = {o["Key"] for o in c.list_objects_v2(Bucket=f"uplisted-{how}").get("Contents", [])}
    assert held == {"up/a.bin", "up/c.bin"}
    for n in ("a.bin", "c.bin"):
        assert c.get_object(Bucket=f"uplisted-{how}", Key=f"up/{n}")["Body"].read() == data[n]
