"""Downloads written around the page cache: bytes exact, and the bulk really bypasses it."""

from __future__ import annotations

import os
import subprocess

import pytest

from trunkline.engine.direct_io import MIN_SIZE, DirectWriter, aligned_buffer, open_direct
from trunkline.tools import find_tool

MiB = 2**20


def _file(tmp_path, size: int):
    path = str(tmp_path / "part.tlpart")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, size)
    return path, fd


def _direct_file(tmp_path, size: int) -> tuple[str, int, DirectWriter]:
    """A partial file of ``size`` bytes and its writer; skips where O_DIRECT is refused."""
    path, fd = _file(tmp_path, size)
    dfd = open_direct(path, size)
    if dfd is None:
        os.close(fd)
        pytest.skip("this filesystem has no O_DIRECT")
    return path, fd, DirectWriter(fd, dfd)


def _memory_backed(path) -> bool:
    """tmpfs/ramfs keep every page in memory: no page cache to bypass there."""
    out = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True)
    return out.stdout.strip() in ("tmpfs", "ramfs")


def _resident_pages(path: str) -> int:
    """Pages of ``path`` in the page cache, by util-linux ``fincore`` (an outside view)."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "-o", "RES", path],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0]) // 4096


def test_aligned_bulk_direct_tail_buffered_bytes_exact(tmp_path):
    size = 6 * MiB + 12345                    # an object whose last chunk is unaligned
    data = os.urandom(size)
    path, fd, w = _direct_file(tmp_path, size)
    buf = aligned_buffer(MiB)
    # out of order, like parts from several connections
    offsets = list(range(0, size, MiB))[::-1]
    for off in offsets:
        n = min(MiB, size - off)
        buf[:n] = data[off:off + n]
        w.pwrite(buf[:n], off)
    w.close()
    os.close(fd)
    with open(path, "rb") as f:
        assert f.read() == data


def test_direct_writes_leave_no_page_cache(tmp_path):
    if find_tool("fincore") is None or _memory_backed(tmp_path):
        pytest.skip("needs fincore (util-linux) and a disk-backed filesystem")
    size = 8 * MiB
    path, fd, w = _direct_file(tmp_path, size)
    buf = aligned_buffer(MiB)
    buf[:] = os.urandom(MiB)
    for off in range(0, size, MiB):
        w.pwrite(buf, off)
    w.close()
    direct_pages = _resident_pages(path)
    # the same bytes through the ordinary descriptor stay cached: the check can tell
    for off in range(0, size, MiB):
        os.pwrite(fd, buf, off)
    os.close(fd)
    assert direct_pages == 0
    assert _resident_pages(path) == size // 4096


@pytest.mark.parametrize("case", ["offset", "length", "address"])
def test_unaligned_chunks_go_buffered_and_stay_exact(tmp_path, case):
    size = 5 * MiB
    data = os.urandom(size)
    path, fd, w = _direct_file(tmp_path, size)

    def own(a: int, b: int) -> tuple[memoryview, int]:
        """data[a:b] in a page-aligned buffer of its own, written at offset a."""
        mv = aligned_buffer(b - a)
        mv[:] = data[a:b]
        return mv, a

    if case == "address":     # a bytearray slice one byte in: not page-aligned in memory
        raw = memoryview(bytearray(size + 1))
        raw[1:] = data
        pieces = [(raw[1 + o:1 + o + MiB], o) for o in range(0, size, MiB)]
    elif case == "offset":    # aligned buffers at offsets that are not
        cut = [0, 100, 100 + MiB, size]
        pieces = [own(a, b) for a, b in zip(cut, cut[1:], strict=False)]
    else:                     # an aligned start whose length is not a block multiple
        cut = [0, MiB - 1, size]
        pieces = [own(a, b) for a, b in zip(cut, cut[1:], strict=False)]
    for chunk, off in pieces:
        w.pwrite(chunk, off)
    w.close()
    os.close(fd)
    with open(path, "rb") as f:
        assert f.read() == data


def test_small_objects_and_opt_out_use_the_page_cache(tmp_path):
    path, fd = _file(tmp_path, MIN_SIZE - 1)
    assert open_direct(path, MIN_SIZE - 1) is None
    os.close(fd)


@pytest.mark.parametrize("direct", [True, False])
def test_download_from_seaweedfs_bypasses_the_page_cache(aws_env, tmp_path, direct):
    """A real download: byte-identical either way; with direct I/O (the default) at most
    the unaligned tail of the file is left in the page cache."""
    import hashlib

    import trunkline

    if find_tool("fincore") is None or _memory_backed(tmp_path):
        pytest.skip("needs fincore (util-linux) and a disk-backed filesystem")
    aws_env.create_bucket("dio")
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(40 * MiB + 777))       # multipart: ranged GETs, odd tail
    assert trunkline.copy(str(src), "s3://dio/obj.bin", part_size="8M").ok
    out = tmp_path / "out.bin"
    r = trunkline.copy("s3://dio/obj.bin", str(out), part_size="8M", direct_io=direct)
    assert r.ok
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()
    # (the sha256 above read the file back; measure the write path on a second copy)
    out2 = tmp_path / "out2.bin"
    assert trunkline.copy("s3://dio/obj.bin", str(out2), part_size="8M", direct_io=direct).ok
    pages = _resident_pages(str(out2))
    if direct:
        assert pages <= 1, f"{pages} pages cached after a direct download"
    else:
        assert pages == (40 * MiB + 777 + 4095) // 4096


def _refusing_fd() -> int:
    """A descriptor whose writes the kernel refuses with EINVAL, as a filesystem that wants
    another alignment refuses a direct write: /proc/self/oom_score_adj parses what it is
    given, and a block of zeros is no number."""
    fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY | os.O_CLOEXEC)
    with pytest.raises(OSError) as e:
        os.pwrite(fd, bytes(4096), 0)
    if e.value.errno != 22:
        os.close(fd)
        pytest.skip(f"no EINVAL here: {e.value}")
    return fd


def _open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.mark.parametrize("loop", ["native", "python"])
def test_a_refused_direct_descriptor_is_closed_with_the_writer(tmp_path, monkeypatch, loop):
    """After EINVAL the writes go buffered (bytes exact) and the refused descriptor is
    closed with the writer: not leaked, and not closed while a neighbour may write."""
    import socket
    import threading

    from trunkline import native
    from trunkline.engine.receive import receive_to_file
    from trunkline.wire.connection import Connection

    if loop == "native" and native._hotpath is None:
        pytest.skip("built without a C compiler")
    monkeypatch.setattr(native, "NATIVE", loop == "native")
    size = 3 * MiB + 5
    data = os.urandom(size)
    srv = socket.create_server(("127.0.0.1", 0))

    def serve():
        s, _ = srv.accept()
        s.recv(65536)
        s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + data)
        s.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    path, fd = _file(tmp_path, size)
    bad = _refusing_fd()
    w = DirectWriter(fd, bad)
    conn = Connection("127.0.0.1", srv.getsockname()[1], read_timeout=10)
    conn.request("GET", b"GET /o HTTP/1.1\r\nHost: x\r\n\r\n")
    head = conn.read_head()
    assert head.status == 200
    receive_to_file(conn, size, fd, 0, aligned_buffer(MiB), writer=w)
    t.join(10)
    conn.close()
    srv.close()
    assert w.dfd is None and _open(bad)      # refused: buffered now, kept open until...
    w.close()
    assert not _open(bad)                    # ... the writer closes it
    os.close(fd)
    with open(path, "rb") as f:
        assert f.read() == data


def test_renamed_folders_are_synced_once_per_batch_and_never_leak(tmp_path):
    """``DirSync`` holds one descriptor per folder (however many files were renamed in
    it), syncs and closes them all when asked or when its bound is reached."""
    from trunkline.storage.partial import DirSync, PartialFile

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = fds()
    ds = DirSync(limit=3)
    for folder, n in (("a", 5), ("b", 2)):
        for i in range(n):
            p = PartialFile(str(tmp_path / folder / f"f{i}"), 10)
            p.pwrite(b"x" * 10, 0)
            p.commit(dir_sync=ds)
    assert fds() == before + 2                 # a and b, once each
    p = PartialFile(str(tmp_path / "c" / "f"), 1)
    p.pwrite(b"y", 0)
    p.commit(dir_sync=ds)                      # the third folder reaches the bound
    assert fds() == before
    ds.sync()                                  # nothing gathered: nothing to do
    assert sorted(x.name for x in (tmp_path / "a").iterdir()) == [f"f{i}" for i in range(5)]
    assert (tmp_path / "c" / "f").read_bytes() == b"y"


def test_folder_cache_walks_once_never_follows_a_swap_and_recovers_a_removed_folder(tmp_path):
    """``FolderCache``: a folder is opened (walked without following symlinks) once and
    lent as duplicates; a symlink swapped in for a cached folder is not followed (the
    vetted folder keeps the files); a removed folder is walked, and created, again; the
    cache is bounded and closes everything it holds."""
    import shutil

    from trunkline.storage.partial import FolderCache, PartialFile

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    def put(path, data: bytes, fc) -> None:
        p = PartialFile(str(path), len(data), folders=fc)
        p.pwrite(data, 0)
        p.commit()

    before = fds()
    fc = FolderCache(limit=2)
    for i in range(5):
        put(tmp_path / "a" / f"f{i}", b"a%d" % i, fc)
    assert fds() == before + 1                        # one descriptor for a, however many files
    # someone swaps b for a symlink to a folder of theirs after b was opened
    put(tmp_path / "b" / "first", b"1", fc)
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "b").rename(tmp_path / "b-vetted")
    (tmp_path / "b").symlink_to(outside)
    put(tmp_path / "b" / "second", b"2", fc)
    assert list(outside.iterdir()) == []             # nothing followed the link
    assert (tmp_path / "b-vetted" / "second").read_bytes() == b"2"
    # a folder removed during the run is walked (and created) again
    shutil.rmtree(tmp_path / "a")
    put(tmp_path / "a" / "again", b"x", fc)
    assert (tmp_path / "a" / "again").read_bytes() == b"x"
    put(tmp_path / "c" / "f", b"c", fc)              # a third folder: the oldest is closed
    assert fds() == before + 2
    fc.close()
    assert fds() == before


def test_folder_cache_lends_each_folder_right_while_workers_race_its_eviction(tmp_path):
    """8 threads open 6 folders through a cache of 2 (each open may drop a folder another
    thread is duplicating at that moment): every descriptor lent names the folder asked
    for, and once the cache is closed no descriptor is left open."""
    import threading

    from trunkline.storage.partial import FolderCache

    dirs = [tmp_path / f"d{i}" for i in range(6)]
    for d in dirs:
        d.mkdir()
    inode = {str(d): d.stat().st_ino for d in dirs}
    fc = FolderCache(limit=2)
    wrong: list[str] = []

    def work(seed: int) -> None:
        for k in range(400):
            path = str(dirs[(seed * 7 + k * 5) % len(dirs)])
            fd = fc.open(path)
            try:
                if os.fstat(fd).st_ino != inode[path]:
                    wrong.append(path)
            finally:
                os.close(fd)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    fc.close()
    assert not wrong, wrong[:5]
    # none of this process's descriptors names one of the folders (counting them all would
    # also count what other code of the process opens or closes meanwhile, such as a
    # finalizer the collector runs: a CI run once saw 16 where 17 were open before)
    left = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue   # (the listing's own descriptor, closed by now)
        if target.startswith(str(tmp_path)):
            left.append(target)
    assert not left, left
