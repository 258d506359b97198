"""A partial file created and committed by the core (``native.create_reserved``,
``native.commit_partial``: one call each, no GIL) and by the Python steps gives the same
file, the same stamp and mtime to the nanosecond, and the same failures: a full disk, a
planted file or symlink at the partial's name, a file replaced or cut under us."""

from __future__ import annotations

import errno
import os

import pytest

from conftest import mounted_tmpfs
from trunkline import native
from trunkline.errors import IntegrityError
from trunkline.storage.partial import STAMP_XATTR, PartialFile, UnsafeDestination, partial_name

CORES = ["native", "python"]


@pytest.fixture(params=CORES)
def core(request, monkeypatch):
    if request.param == "native" and native._hotpath is None:
        pytest.skip("built without a C compiler")
    monkeypatch.setattr(native, "NATIVE", request.param == "native")
    assert native.files_native() == (request.param == "native")
    return request.param


def _write(path, data: bytes, *, stamp: bytes | None, mtime: float | None) -> None:
    p = PartialFile(str(path), len(data))
    p.pwrite(data, 0)
    p.commit(mtime, stamp=stamp)


def test_both_cores_write_the_same_file_stamp_and_mtime(tmp_path, monkeypatch):
    if native._hotpath is None:
        pytest.skip("built without a C compiler")
    data = os.urandom(300_001)
    out = {}
    for c in CORES:
        monkeypatch.setattr(native, "NATIVE", c == "native")
        for mtime in (1_700_000_000.123456789, 1.5e9, 0.0, None, -1.25):
            f = tmp_path / c / f"f-{mtime}"
            _write(f, data, stamp=b'{"etag":"x"}', mtime=mtime)
            st = os.stat(f)
            out[(c, mtime)] = (f.read_bytes() == data, st.st_size,
                               st.st_mtime_ns if mtime else None,
                               os.getxattr(f, STAMP_XATTR), oct(st.st_mode & 0o777),
                               sorted(x.name for x in f.parent.iterdir() if "tlpart" in x.name))
    for mtime in (1_700_000_000.123456789, 1.5e9, 0.0, None, -1.25):
        assert out[("native", mtime)] == out[("python", mtime)], mtime
        assert out[("native", mtime)][0] and out[("native", mtime)][5] == []


def test_a_commit_leaves_no_descriptor_open(tmp_path, core):
    """The core closes the file with the rename (one system call fewer per object); the
    Python steps close it after: either way nothing is left open, and nothing twice."""
    before = len(os.listdir("/proc/self/fd"))
    for i in range(20):
        p = PartialFile(str(tmp_path / f"f{i}"), 3)
        p.pwrite(b"abc", 0)
        p.commit(None)
        assert p.fd == -1 and p.dir_fd == -1
        p.close()   # again: a no-op, never a close of a number reused since
    assert len(os.listdir("/proc/self/fd")) == before
    assert all((tmp_path / f"f{i}").read_bytes() == b"abc" for i in range(20))


def test_empty_object(tmp_path, core):
    _write(tmp_path / "empty", b"", stamp=None, mtime=None)
    assert (tmp_path / "empty").read_bytes() == b""


def test_a_planted_file_or_symlink_at_the_partial_name_is_removed_not_followed(tmp_path, core):
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    (tmp_path / partial_name("a")).symlink_to(target)
    (tmp_path / partial_name("b")).write_bytes(b"stale from a killed run")
    _write(tmp_path / "a", b"A" * 5000, stamp=None, mtime=None)
    _write(tmp_path / "b", b"B" * 10, stamp=None, mtime=None)
    assert target.read_bytes() == b"precious"
    assert (tmp_path / "a").read_bytes() == b"A" * 5000
    assert (tmp_path / "b").read_bytes() == b"B" * 10
    assert not (tmp_path / "a").is_symlink()


def test_a_partial_replaced_under_us_is_not_renamed(tmp_path, core):
    p = PartialFile(str(tmp_path / "x"), 4)
    p.pwrite(b"ours", 0)
    os.unlink(tmp_path / p.name)                        # someone swaps the name's inode
    (tmp_path / p.name).write_bytes(b"evil")
    with pytest.raises(UnsafeDestination):
        p.commit(None)
    assert not (tmp_path / "x").exists()
    p.close()


def test_a_file_cut_under_us_is_an_error(tmp_path, core):
    p = PartialFile(str(tmp_path / "x"), 100)
    p.pwrite(b"z" * 100, 0)
    os.ftruncate(p.fd, 50)
    with pytest.raises(OSError) as e:
        p.commit(None)
    assert e.value.errno == errno.EIO and "50 bytes, expected 100" in str(e.value)
    assert isinstance(e.value, IntegrityError)   # so the engine never resumes from it
    assert not (tmp_path / "x").exists()
    p.discard()


@pytest.fixture
def tiny_fs(tmp_path):
    with mounted_tmpfs(tmp_path / "tiny", "1m") as mnt:
        yield mnt


def test_a_full_disk_fails_at_create_and_leaves_nothing(tiny_fs, core):
    with pytest.raises(OSError) as e:
        PartialFile(str(tiny_fs / "big"), 4 << 20)
    assert e.value.errno == errno.ENOSPC
    assert os.listdir(tiny_fs) == []
    _write(tiny_fs / "fits", b"q" * 1000, stamp=None, mtime=None)   # space left is usable
    assert (tiny_fs / "fits").read_bytes() == b"q" * 1000
