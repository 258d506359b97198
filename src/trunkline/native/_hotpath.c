/*
 * The mover's per-part loops in C, with the interpreter lock released for a whole part.
 *
 * Why this is ours and not a library's: the loop that receives a part, checksums it and
 * writes it at its offset (and the one that reads, checksums and sends) runs once per
 * byte moved. In Python each turn costs interpreter time that holds the GIL, which caps
 * what one process can move whatever the core count. Here the turn is a few system calls
 * and a hardware CRC32C (SSE4.2 crc32 instruction, or a table where the CPU lacks it);
 * progress is published through a counter the Python side reads while we run.
 *
 * Errors come back as OSError (errno set: ENOSPC, ETIMEDOUT, ECONNRESET...) or as
 * EOFError for a peer that closed before the part's last byte; the Python wrapper maps
 * them onto the project's exception tree.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#define ALIGN 4096

/* ---------------------------------------------------------------- CRC32C */

static uint32_t crc_table[8][256];
static int have_sse42 = 0;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        crc_table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (uint32_t i = 0; i < 256; i++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
#if defined(__x86_64__)
    __builtin_cpu_init();
    have_sse42 = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#endif
}

static uint32_t crc_sw(uint32_t crc, const unsigned char *p, size_t n) {
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc;
        crc = crc_table[7][w & 0xFF] ^ crc_table[6][(w >> 8) & 0xFF] ^
              crc_table[5][(w >> 16) & 0xFF] ^ crc_table[4][(w >> 24) & 0xFF] ^
              crc_table[3][(w >> 32) & 0xFF] ^ crc_table[2][(w >> 40) & 0xFF] ^
              crc_table[1][(w >> 48) & 0xFF] ^ crc_table[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xFF];
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc_hw(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}
#endif

/* The CRC32C of a well-kept library, handed over by the Python side (native/crc.py picks
 * it) with use_crc32c(): ISA-L's crc32_iscsi (its dispatcher: VPCLMULQDQ folding on
 * AVX-512 hosts, three crc32 streams elsewhere) or google-crc32c's crc32c_extend (three
 * streams); ours above is the fallback where neither can be found. */
typedef uint32_t (*crc_extend_fn)(uint32_t, const uint8_t *, size_t);
typedef unsigned int (*crc_iscsi_fn)(unsigned char *, int, unsigned int);
static crc_extend_fn lib_extend = NULL;
static crc_iscsi_fn lib_iscsi = NULL;
#define ISCSI_CHUNK (1u << 30)   /* ISA-L takes an int length */

/* A second sum some stores keep, CRC-32 (zlib's polynomial and convention): ISA-L's
 * crc32_gzip_refl, handed over with use_crc32(). Without it the Python loop sums it. */
typedef uint32_t (*crc32_fn)(uint32_t, const unsigned char *, uint64_t);
static crc32_fn lib_crc32 = NULL;

/* crc is the usual (finalised) CRC32C value; returns the updated one. ISA-L keeps its
 * register uninverted: ~crc32_iscsi(p, n, ~crc). */
static uint32_t crc32c_update(uint32_t crc, const unsigned char *p, size_t n) {
    if (lib_extend) return lib_extend(crc, p, n);
    uint32_t c = ~crc;
    if (lib_iscsi) {
        while (n) {
            size_t k = n < ISCSI_CHUNK ? n : ISCSI_CHUNK;
            c = lib_iscsi((unsigned char *)p, (int)k, c);
            p += k;
            n -= k;
        }
        return ~c;
    }
#if defined(__x86_64__)
    if (have_sse42) return ~crc_hw(c, p, n);
#endif
    return ~crc_sw(c, p, n);
}

/* CRC64NVME, the other second sum (crc64nvme.c: ours, with why) */
void tl_crc64nvme_init(void);
uint64_t tl_crc64nvme_update(uint64_t crc, const unsigned char *p, size_t n, int use_clmul);
int tl_crc64nvme_clmul(void);

/* ---------------------------------------------------------------- I/O helpers */

/* Wait until fd is ready for `events`; 0 ok, -1 with errno (ETIMEDOUT on timeout).
 * A blocking socket that returned EAGAIN has already waited its SO_RCVTIMEO/SO_SNDTIMEO
 * (that is how the mover's connections time out): that is the timeout itself. */
static int wait_fd(int fd, short events, int timeout_ms) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK)) { errno = ETIMEDOUT; return -1; }
    struct pollfd pfd = {.fd = fd, .events = events, .revents = 0};
    for (;;) {
        int r = poll(&pfd, 1, timeout_ms);
        if (r > 0) return 0;
        if (r == 0) { errno = ETIMEDOUT; return -1; }
        if (errno != EINTR) return -1;
    }
}

/* Write all n bytes at off; -1 with errno on error (a 0-byte write is ENOSPC). */
static int pwrite_all(int fd, const unsigned char *p, size_t n, off_t off) {
    while (n) {
        ssize_t w = pwrite(fd, p, n, off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (w == 0) { errno = ENOSPC; return -1; }
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

/* Write one filled buffer: the aligned prefix through the O_DIRECT descriptor when the
 * offset and address allow it, the rest through the ordinary one. On EINVAL from the
 * direct descriptor (a filesystem that rejects the alignment) *direct_fd becomes -1 and
 * the write is retried buffered. */
static int write_chunk(int fd, int *direct_fd, const unsigned char *p, size_t n, off_t off) {
    if (*direct_fd >= 0 && (off % ALIGN) == 0 && ((uintptr_t)p % ALIGN) == 0) {
        size_t bulk = n & ~((size_t)ALIGN - 1);
        if (bulk) {
            if (pwrite_all(*direct_fd, p, bulk, off) == 0) {
                p += bulk;
                n -= bulk;
                off += (off_t)bulk;
            } else if (errno == EINVAL) {
                *direct_fd = -1;
            } else {
                return -1;
            }
        }
    }
    return n ? pwrite_all(fd, p, n, off) : 0;
}

static void publish(uint64_t *counter, uint64_t k) {
    if (counter) __atomic_fetch_add(counter, k, __ATOMIC_RELAXED);
}

/* The progress counter: None, or a writable, 8-byte-aligned buffer of at least 8 bytes
 * (a ctypes.c_uint64) the loop adds to atomically. 0 ok (view held when *out != NULL),
 * -1 with a Python exception set. */
static int get_counter(PyObject *obj, Py_buffer *view, uint64_t **out) {
    *out = NULL;
    if (obj == Py_None) return 0;
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE) < 0) return -1;
    if (view->len < 8 || ((uintptr_t)view->buf % 8) != 0) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "counter must be an aligned 8-byte buffer");
        return -1;
    }
    *out = (uint64_t *)view->buf;
    return 0;
}

/* Arguments the loops trust from here on: descriptors, a range that fits an off_t, a
 * buffer to move it through, a timeout. 0 ok, -1 with ValueError set. */
static int check_range(int fd_a, int fd_b, long long offset, long long length,
                       Py_ssize_t buflen, int timeout_ms) {
    if (fd_a < 0 || fd_b < 0) {
        PyErr_SetString(PyExc_ValueError, "file descriptors must be >= 0");
        return -1;
    }
    if (offset < 0 || length < 0 || offset > LLONG_MAX - length) {
        PyErr_Format(PyExc_ValueError, "bad range: offset %lld, length %lld", offset, length);
        return -1;
    }
    if (buflen <= 0) {
        PyErr_SetString(PyExc_ValueError, "buf must not be empty");
        return -1;
    }
    if (timeout_ms < -1) {
        PyErr_SetString(PyExc_ValueError, "timeout_ms must be >= -1 (-1: none)");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- recv_to_file */

/* have: bytes of the range already at the start of buf (those that came with the response
 * head): checksummed and written with the first buffer, not read from the socket. */
static PyObject *recv_to_file(PyObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"sock_fd", "file_fd", "offset", "length", "buf", "timeout_ms",
                            "counter", "direct_fd", "crc", "have", "crc32", "crc64", NULL};
    int sock_fd, file_fd, timeout_ms, direct_fd = -1;
    long long offset, length, have = 0;
    unsigned int crc = 0;
    Py_buffer buf, ctr = {0};
    PyObject *ctr_obj = Py_None, *crc32_obj = Py_None, *crc64_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iiLLw*i|OiILOO", names, &sock_fd, &file_fd,
                                     &offset, &length, &buf, &timeout_ms, &ctr_obj,
                                     &direct_fd, &crc, &have, &crc32_obj, &crc64_obj))
        return NULL;
    /* crc64: None, or the CRC64NVME to continue alongside the CRC32C; one second sum */
    int sum64 = crc64_obj != Py_None;
    uint64_t c64 = 0;
    if (sum64) {
        if (crc32_obj != Py_None) {
            PyBuffer_Release(&buf);
            PyErr_SetString(PyExc_ValueError, "crc32 and crc64: one second sum at most");
            return NULL;
        }
        c64 = PyLong_AsUnsignedLongLong(crc64_obj);
        if (c64 == (unsigned long long)-1 && PyErr_Occurred()) {
            PyBuffer_Release(&buf);
            return NULL;
        }
    }
    if (have < 0 || have > length || have > (long long)buf.len) {
        PyBuffer_Release(&buf);
        PyErr_Format(PyExc_ValueError, "have %lld: not within the range and the buffer", have);
        return NULL;
    }
    /* crc32: None, or the CRC-32 to continue alongside the CRC32C (needs use_crc32) */
    int sum32 = crc32_obj != Py_None;
    uint32_t c32 = 0;
    if (sum32) {
        unsigned long v = PyLong_AsUnsignedLong(crc32_obj);
        if ((v == (unsigned long)-1 && PyErr_Occurred()) || v > 0xFFFFFFFFul || !lib_crc32) {
            PyBuffer_Release(&buf);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, v > 0xFFFFFFFFul
                                ? "crc32 must fit 32 bits" : "no CRC-32 library (use_crc32)");
            return NULL;
        }
        c32 = (uint32_t)v;
    }
    uint64_t *counter = NULL;
    if (get_counter(ctr_obj, &ctr, &counter) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    if (check_range(sock_fd, file_fd, offset, length, buf.len, timeout_ms) < 0) {
        if (counter) PyBuffer_Release(&ctr);
        PyBuffer_Release(&buf);
        return NULL;
    }
    unsigned char *base = (unsigned char *)buf.buf;
    size_t cap = (size_t)buf.len;
    long long got = 0;
    int err = 0, eof = 0;
    uint32_t c = crc;

    Py_BEGIN_ALLOW_THREADS
    while (got < length && !err && !eof) {
        size_t want = (size_t)((length - got) < (long long)cap ? (length - got) : (long long)cap);
        size_t fill = got == 0 ? (size_t)have : 0;
        /* fill the buffer (or the rest of the part): full buffers keep direct writes aligned */
        while (fill < want) {
            ssize_t r = recv(sock_fd, base + fill, want - fill, 0);
            if (r > 0) {
                fill += (size_t)r;
                continue;
            }
            if (r == 0) { eof = 1; break; }
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (wait_fd(sock_fd, POLLIN, timeout_ms) < 0) { err = errno; break; }
                continue;
            }
            err = errno;
            break;
        }
        if (fill) {
            c = crc32c_update(c, base, fill);
            if (sum32) c32 = lib_crc32(c32, base, (uint64_t)fill);
            if (sum64) c64 = tl_crc64nvme_update(c64, base, fill, 1);
            if (write_chunk(file_fd, &direct_fd, base, fill, (off_t)(offset + got)) < 0) {
                err = errno;
                break;
            }
            got += (long long)fill;
            publish(counter, fill);
        }
    }
    Py_END_ALLOW_THREADS

    if (counter) PyBuffer_Release(&ctr);
    PyBuffer_Release(&buf);
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (eof) {
        return PyErr_Format(PyExc_EOFError, "peer closed after %lld of %lld bytes", got, length);
    }
    if (sum32) return Py_BuildValue("(IiI)", c, direct_fd, c32);
    if (sum64) return Py_BuildValue("(IiK)", c, direct_fd, (unsigned long long)c64);
    return Py_BuildValue("(IiO)", c, direct_fd, Py_None);
}

/* ---------------------------------------------------------------- file_to_sock */

static PyObject *file_to_sock(PyObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"file_fd", "sock_fd", "offset", "length", "buf", "timeout_ms",
                            "counter", "crc", NULL};
    int sock_fd, file_fd, timeout_ms;
    long long offset, length;
    unsigned int crc = 0;
    Py_buffer buf, ctr = {0};
    PyObject *ctr_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iiLLw*i|OI", names, &file_fd, &sock_fd,
                                     &offset, &length, &buf, &timeout_ms, &ctr_obj, &crc))
        return NULL;
    uint64_t *counter = NULL;
    if (get_counter(ctr_obj, &ctr, &counter) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    if (check_range(file_fd, sock_fd, offset, length, buf.len, timeout_ms) < 0) {
        if (counter) PyBuffer_Release(&ctr);
        PyBuffer_Release(&buf);
        return NULL;
    }
    unsigned char *base = (unsigned char *)buf.buf;
    size_t cap = (size_t)buf.len;
    long long sent = 0;
    int err = 0, short_file = 0;
    uint32_t c = crc;

    Py_BEGIN_ALLOW_THREADS
    while (sent < length && !err && !short_file) {
        size_t want = (size_t)((length - sent) < (long long)cap ? (length - sent) : (long long)cap);
        ssize_t r = pread(file_fd, base, want, (off_t)(offset + sent));
        if (r < 0) {
            if (errno == EINTR) continue;
            err = errno;
            break;
        }
        if (r == 0) { short_file = 1; break; }  /* the file shrank under us */
        c = crc32c_update(c, base, (size_t)r);
        size_t off = 0;
        while (off < (size_t)r) {
            ssize_t w = send(sock_fd, base + off, (size_t)r - off, MSG_NOSIGNAL);
            if (w > 0) { off += (size_t)w; continue; }
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (wait_fd(sock_fd, POLLOUT, timeout_ms) < 0) { err = errno; break; }
                continue;
            }
            err = w < 0 ? errno : EPIPE;
            break;
        }
        if (err) break;
        sent += r;
        publish(counter, (uint64_t)r);
    }
    Py_END_ALLOW_THREADS

    if (counter) PyBuffer_Release(&ctr);
    PyBuffer_Release(&buf);
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (short_file) {
        return PyErr_Format(PyExc_EOFError, "file ended after %lld of %lld bytes", sent, length);
    }
    return PyLong_FromUnsignedLong(c);
}

/* ---------------------------------------------------------------- file_crc */

/* An upload's checksum pass: its CRC32C goes in the request head, before the body, so
 * the part is read once to sum it and then sent. The bytes of the last read stay in buf
 * (a part that fits is then sent from there, not read again). */
static PyObject *file_crc(PyObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"file_fd", "offset", "length", "buf", "crc", NULL};
    int file_fd;
    long long offset, length;
    unsigned int crc = 0;
    Py_buffer buf;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iLLw*|I", names, &file_fd, &offset, &length,
                                     &buf, &crc))
        return NULL;
    if (check_range(file_fd, file_fd, offset, length, buf.len, -1) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    unsigned char *base = (unsigned char *)buf.buf;
    size_t cap = (size_t)buf.len;
    long long done = 0;
    int err = 0;
    uint32_t c = crc;

    Py_BEGIN_ALLOW_THREADS
    while (done < length) {
        /* a part that fits is gathered whole in buf (a short read continues after it) */
        size_t at = length <= (long long)cap ? (size_t)done : 0;
        size_t want = (size_t)((length - done) < (long long)(cap - at) ? (length - done)
                                                                       : (long long)(cap - at));
        ssize_t r = pread(file_fd, base + at, want, (off_t)(offset + done));
        if (r < 0) {
            if (errno == EINTR) continue;
            err = errno;
            break;
        }
        if (r == 0) break;  /* the file shrank under us */
        c = crc32c_update(c, base + at, (size_t)r);
        done += r;
    }
    Py_END_ALLOW_THREADS

    PyBuffer_Release(&buf);
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (done < length) {
        return PyErr_Format(PyExc_EOFError, "file ended after %lld of %lld bytes", done, length);
    }
    return PyLong_FromUnsignedLong(c);
}

/* ---------------------------------------------------------------- partial files */

/* A download's partial file, created and given its blocks in one call without the GIL:
 * with many small objects each system call that gives the lock up is a hand-over between
 * a dozen workers (storage/partial.py keeps the rules and the Python path; these are the
 * same steps in the same order). Returns (fd, errno of the reservation or 0): a failed
 * reservation leaves the file to the caller, who removes it as it removes any partial. */
static PyObject *create_reserved(PyObject *self, PyObject *args) {
    int dir_fd;
    PyObject *name = NULL;
    long long size;
    if (!PyArg_ParseTuple(args, "iO&L", &dir_fd, PyUnicode_FSConverter, &name, &size))
        return NULL;
    const char *path = PyBytes_AS_STRING(name);
    int fd, err = 0, reserve_err = 0;
    Py_BEGIN_ALLOW_THREADS
    fd = openat(dir_fd, path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        err = errno;
    } else if (size > 0) {
        int r = posix_fallocate(fd, 0, (off_t)size);
        if (r == EOPNOTSUPP || r == EINVAL) {  /* no preallocation here: writes are checked */
            if (ftruncate(fd, (off_t)size) < 0) reserve_err = errno;
        } else if (r) {
            reserve_err = r;
        }
    }
    Py_END_ALLOW_THREADS
    if (err) {
        errno = err;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, name);
        Py_DECREF(name);
        return NULL;
    }
    Py_DECREF(name);
    return Py_BuildValue("(ii)", fd, reserve_err);
}

/* The commit of a partial file, in one call without the GIL: size check, stamp (an xattr
 * a filesystem may refuse), mtime, fsync, then rename by directory descriptor only if the
 * name still holds the inode we wrote. Returns (0, 0) done, (1, 0) the name holds another
 * inode now (nothing renamed), (2, size) the file has the wrong size; a failed system
 * call raises OSError. The mtime is split into seconds and nanoseconds as os.utime does
 * (rounded down), so both paths stamp the same time. */
static PyObject *commit_partial(PyObject *self, PyObject *args) {
    int fd, dir_fd;
    PyObject *name = NULL, *final = NULL, *mtime_obj;
    long long size;
    Py_buffer stamp = {0};
    int has_stamp = 0;
    PyObject *stamp_obj;
    if (!PyArg_ParseTuple(args, "iiO&O&LOO", &fd, &dir_fd, PyUnicode_FSConverter, &name,
                          PyUnicode_FSConverter, &final, &size, &stamp_obj, &mtime_obj))
        goto fail;
    if (stamp_obj != Py_None) {
        if (PyObject_GetBuffer(stamp_obj, &stamp, PyBUF_SIMPLE) < 0) goto fail;
        has_stamp = 1;
    }
    int has_mtime = 0;
    struct timespec ts[2];
    if (mtime_obj != Py_None) {
        double m = PyFloat_AsDouble(mtime_obj);
        if (m == -1.0 && PyErr_Occurred()) goto fail;
        if (m != 0.0) {   /* as ``if mtime:`` */
            double ip, fp = modf(m, &ip);
            fp = floor(fp * 1e9);
            if (fp >= 1e9) { fp -= 1e9; ip += 1.0; }
            else if (fp < 0) { fp += 1e9; ip -= 1.0; }
            ts[0].tv_sec = (time_t)ip;
            ts[0].tv_nsec = (long)fp;
            ts[1] = ts[0];
            has_mtime = 1;
        }
    }
    const char *src = PyBytes_AS_STRING(name), *dst = PyBytes_AS_STRING(final);
    int err = 0, code = 0;
    long long got = 0;
    Py_BEGIN_ALLOW_THREADS
    struct stat st, now;
    if (fstat(fd, &st) < 0) { err = errno; goto done; }
    if ((long long)st.st_size != size) { code = 2; got = (long long)st.st_size; goto done; }
    if (has_stamp && fsetxattr(fd, "user.trunkline", stamp.buf, (size_t)stamp.len, 0) < 0) {
        if (errno != ENOTSUP && errno != EPERM && errno != ENOSPC && errno != E2BIG) {
            err = errno;
            goto done;
        }
    }
    if (has_mtime && futimens(fd, ts) < 0) { err = errno; goto done; }
    if (fsync(fd) < 0) { err = errno; goto done; }
    if (fstatat(dir_fd, src, &now, AT_SYMLINK_NOFOLLOW) < 0) { err = errno; goto done; }
    if (now.st_dev != st.st_dev || now.st_ino != st.st_ino) { code = 1; goto done; }
    if (renameat(dir_fd, src, dir_fd, dst) < 0) { err = errno; goto done; }
    close(fd);   /* done with it: one system call fewer for the caller (the rename stands) */
done:;
    Py_END_ALLOW_THREADS
    if (has_stamp) PyBuffer_Release(&stamp);
    if (err) {
        errno = err;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, name);
        Py_DECREF(name);
        Py_DECREF(final);
        return NULL;
    }
    Py_DECREF(name);
    Py_DECREF(final);
    return Py_BuildValue("(iL)", code, got);
fail:
    Py_XDECREF(name);
    Py_XDECREF(final);
    return NULL;
}

static PyObject *crc32c_py(PyObject *self, PyObject *args) {
    Py_buffer b;
    unsigned int crc = 0;
    if (!PyArg_ParseTuple(args, "y*|I", &b, &crc)) return NULL;
    uint32_t c;
    Py_BEGIN_ALLOW_THREADS
    c = crc32c_update(crc, (const unsigned char *)b.buf, (size_t)b.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLong(c);
}

/* use_crc32c(address, convention): 1 a crc32c_extend, 2 a crc32_iscsi, 0 our own. Called
 * once at import, before any worker thread runs a loop. */
static PyObject *use_crc32c(PyObject *self, PyObject *args) {
    unsigned long long addr;
    int conv;
    if (!PyArg_ParseTuple(args, "Ki", &addr, &conv)) return NULL;
    if (conv < 0 || conv > 2 || (conv && !addr) || (!conv && addr)) {
        PyErr_Format(PyExc_ValueError, "use_crc32c: bad address or convention %d", conv);
        return NULL;
    }
    lib_extend = conv == 1 ? (crc_extend_fn)(uintptr_t)addr : NULL;
    lib_iscsi = conv == 2 ? (crc_iscsi_fn)(uintptr_t)addr : NULL;
    Py_RETURN_NONE;
}

/* use_crc32(address of a crc32_gzip_refl, or 0): the second sum recv_to_file can take. */
static PyObject *use_crc32(PyObject *self, PyObject *arg) {
    unsigned long long addr = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred()) return NULL;
    lib_crc32 = (crc32_fn)(uintptr_t)addr;
    Py_RETURN_NONE;
}

/* crc64nvme(data, crc=0, clmul=True) -> the CRC64NVME of data continued from crc (the
 * Python loop's sum, and the tests' handle on both ways of computing it) */
static PyObject *crc64nvme(PyObject *self, PyObject *args, PyObject *kw) {
    static char *names[] = {"data", "crc", "clmul", NULL};
    Py_buffer data;
    unsigned long long crc = 0;
    int clmul = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|Kp", names, &data, &crc, &clmul))
        return NULL;
    uint64_t v;
    if (data.len >= 65536) {
        Py_BEGIN_ALLOW_THREADS
        v = tl_crc64nvme_update(crc, data.buf, (size_t)data.len, clmul);
        Py_END_ALLOW_THREADS
    } else {
        v = tl_crc64nvme_update(crc, data.buf, (size_t)data.len, clmul);
    }
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLongLong(v);
}

static PyMethodDef methods[] = {
    {"crc64nvme", (PyCFunction)(void (*)(void))crc64nvme, METH_VARARGS | METH_KEYWORDS,
     "crc64nvme(data, crc=0, clmul=True) -> CRC64NVME of data continued from crc."},
    {"use_crc32", use_crc32, METH_O,
     "use_crc32(address of crc32_gzip_refl, or 0) -> None: recv_to_file's crc32= sum."},
    {"use_crc32c", use_crc32c, METH_VARARGS,
     "use_crc32c(address, convention) -> None: 1 a crc32c_extend, 2 a crc32_iscsi, "
     "(0, 0) our own CRC32C."},
    {"recv_to_file", (PyCFunction)(void (*)(void))recv_to_file, METH_VARARGS | METH_KEYWORDS,
     "recv_to_file(sock_fd, file_fd, offset, length, buf, timeout_ms, counter=None, "
     "direct_fd=-1, crc=0, have=0, crc32=None) -> (crc32c, direct_fd, crc32 or None): "
     "receive length bytes (the first have of them already at the start of buf), write "
     "them at offset, without the GIL; with crc32 a CRC-32 is continued too."},
    {"file_to_sock", (PyCFunction)(void (*)(void))file_to_sock, METH_VARARGS | METH_KEYWORDS,
     "file_to_sock(file_fd, sock_fd, offset, length, buf, timeout_ms, counter=None, crc=0) "
     "-> crc32c: read length bytes at offset and send them, without the GIL."},
    {"file_crc", (PyCFunction)(void (*)(void))file_crc, METH_VARARGS | METH_KEYWORDS,
     "file_crc(file_fd, offset, length, buf, crc=0) -> crc32c: read length bytes at offset "
     "through buf and checksum them, without the GIL."},
    {"crc32c", crc32c_py, METH_VARARGS, "crc32c(data, crc=0) -> the updated CRC32C."},
    {"create_reserved", create_reserved, METH_VARARGS,
     "create_reserved(dir_fd, name, size) -> (fd, reserve_errno): O_EXCL|O_NOFOLLOW create, "
     "then posix_fallocate (ftruncate where unsupported), without the GIL."},
    {"commit_partial", commit_partial, METH_VARARGS,
     "commit_partial(fd, dir_fd, name, final_name, size, stamp, mtime) -> (code, size): "
     "size check, xattr stamp, mtime, fsync, inode check, renameat, close(fd) once renamed, "
     "without the GIL."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_hotpath", NULL, -1, methods};

PyMODINIT_FUNC PyInit__hotpath(void) {
    crc_init();
    tl_crc64nvme_init();
    PyObject *m = PyModule_Create(&module);
    if (m && (PyModule_AddIntConstant(m, "HARDWARE_CRC", have_sse42) < 0 ||
              PyModule_AddIntConstant(m, "CLMUL_CRC64", tl_crc64nvme_clmul()) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
