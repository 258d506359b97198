/* Batch receive for the flow collector: recvmmsg(2), many datagrams per system call.
 *
 * Why C: at tens of thousands of datagrams per second one Python-level recvfrom per
 * datagram (a system call, an address tuple, a getnameinfo) is a large part of the
 * receive loop's cost, and the receive loop is what must never fall behind the socket.
 * Here one call fills up to `max_msgs` slots of a caller-owned buffer with the lock
 * released, then copies each datagram out as bytes (the decoder keeps references to
 * them) with its source address as text. Optional: trunkline.flows.sources.udp has the
 * Python loop (recvfrom) that gives the same results, for builds without a compiler.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_MSGS 256

static PyObject *host_text(const struct sockaddr_storage *sa, int *port) {
    char text[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        *port = ntohs(a->sin_port);
        if (!inet_ntop(AF_INET, &a->sin_addr, text, sizeof text))
            return PyErr_SetFromErrno(PyExc_OSError);
        return PyUnicode_FromString(text);
    }
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        *port = ntohs(a->sin6_port);
        if (a->sin6_scope_id == 0) {
            if (!inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text))
                return PyErr_SetFromErrno(PyExc_OSError);
        } else {  /* link-local "fe80::1%eth0", as Python's recvfrom says it */
            int rc = getnameinfo((const struct sockaddr *)a, sizeof *a, text, sizeof text,
                                 NULL, 0, NI_NUMERICHOST);
            if (rc != 0) {
                PyErr_Format(PyExc_OSError, "getnameinfo: %s", gai_strerror(rc));
                return NULL;
            }
        }
        return PyUnicode_FromString(text);
    }
    *port = 0;
    return PyUnicode_FromString("");
}

#define BATCH_ERROR (-1) /* an exception is set and the buffer released */
#define BATCH_NONE (-2)  /* nothing waiting (EAGAIN) or interrupted; the buffer released */

/* One recvmmsg into max_msgs slots of buf: checks the arguments, points each message at
 * its slot and address, receives without the GIL. -> datagrams received (>= 0, buffer
 * still held), or BATCH_ERROR / BATCH_NONE (buffer released). */
static int recv_batch(int fd, Py_buffer *buf, int max_msgs, Py_ssize_t slot,
                      struct mmsghdr *msgs, struct iovec *iov,
                      struct sockaddr_storage *addrs, const char *who) {
    if (max_msgs < 1 || max_msgs > MAX_MSGS || slot < 1 || slot > (1 << 20) ||
        buf->len < slot * (Py_ssize_t)max_msgs) {
        PyBuffer_Release(buf);
        PyErr_Format(PyExc_ValueError, "%s: bad max_msgs, slot or buffer size", who);
        return BATCH_ERROR;
    }
    char *base = buf->buf;
    memset(msgs, 0, sizeof(struct mmsghdr) * (size_t)max_msgs);
    for (int i = 0; i < max_msgs; i++) {
        iov[i].iov_base = base + (Py_ssize_t)i * slot;
        iov[i].iov_len = (size_t)slot;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &addrs[i];
        msgs[i].msg_hdr.msg_namelen = sizeof addrs[i];
    }
    int n;
    Py_BEGIN_ALLOW_THREADS
    n = recvmmsg(fd, msgs, (unsigned)max_msgs, MSG_DONTWAIT, NULL);
    Py_END_ALLOW_THREADS
    if (n < 0) {
        int e = errno;
        PyBuffer_Release(buf);
        if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR)
            return BATCH_NONE;
        errno = e;
        PyErr_SetFromErrno(PyExc_OSError);
        return BATCH_ERROR;
    }
    return n;
}

/* recv_many(fd, buf, max_msgs, slot) -> [(bytes | None, host, port), ...]
 * None marks a datagram longer than its slot (MSG_TRUNC): never decoded from a part.
 * An empty list: nothing waiting (EAGAIN) or interrupted. */
static PyObject *recv_many(PyObject *self, PyObject *args) {
    int fd, max_msgs;
    Py_ssize_t slot;
    Py_buffer buf;
    (void)self;
    if (!PyArg_ParseTuple(args, "iw*in", &fd, &buf, &max_msgs, &slot))
        return NULL;
    struct mmsghdr msgs[MAX_MSGS];
    struct iovec iov[MAX_MSGS];
    struct sockaddr_storage addrs[MAX_MSGS];
    const char *base = buf.buf;
    int n = recv_batch(fd, &buf, max_msgs, slot, msgs, iov, addrs, "recv_many");
    if (n == BATCH_ERROR)
        return NULL;
    if (n == BATCH_NONE)
        return PyList_New(0);
    PyObject *out = PyList_New(n);
    if (!out) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        int port = 0;
        PyObject *data;
        if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
            data = Py_NewRef(Py_None);
        } else {
            data = PyBytes_FromStringAndSize(base + (Py_ssize_t)i * slot,
                                             (Py_ssize_t)msgs[i].msg_len);
        }
        PyObject *host = data ? host_text(&addrs[i], &port) : NULL;
        PyObject *pnum = host ? PyLong_FromLong(port) : NULL;
        PyObject *item = pnum ? PyTuple_New(3) : NULL;
        if (!item) {
            Py_XDECREF(data);
            Py_XDECREF(host);
            Py_XDECREF(pnum);
            Py_DECREF(out);
            PyBuffer_Release(&buf);
            return NULL;
        }
        PyTuple_SET_ITEM(item, 0, data);
        PyTuple_SET_ITEM(item, 1, host);
        PyTuple_SET_ITEM(item, 2, pnum);
        PyList_SET_ITEM(out, i, item);
    }
    PyBuffer_Release(&buf);
    return out;
}

/* The frame the receive process sends its collector: per datagram a 28-byte head
 * (u32 payload length or FRAME_TRUNC, u16 port, u16 family, u32 IPv6 scope id,
 * 16 address bytes; native byte order: both ends are one machine) then the payload.
 * One copy out of the slots, no Python object per datagram on the receiving side. */
#define HEAD 28
#define FRAME_TRUNC 0xFFFFFFFFu

static void put_head(char *p, uint32_t len, const struct sockaddr_storage *sa) {
    uint16_t port = 0, fam = (uint16_t)sa->ss_family;
    uint32_t scope = 0;
    memset(p, 0, HEAD);
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        port = ntohs(a->sin_port);
        memcpy(p + 12, &a->sin_addr, 4);
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        port = ntohs(a->sin6_port);
        scope = a->sin6_scope_id;
        memcpy(p + 12, &a->sin6_addr, 16);
    }
    memcpy(p, &len, 4);
    memcpy(p + 4, &port, 2);
    memcpy(p + 6, &fam, 2);
    memcpy(p + 8, &scope, 4);
}

/* recv_frame(fd, buf, max_msgs, slot) -> (count, frame bytes); (0, b"") when nothing. */
static PyObject *recv_frame(PyObject *self, PyObject *args) {
    int fd, max_msgs;
    Py_ssize_t slot;
    Py_buffer buf;
    (void)self;
    if (!PyArg_ParseTuple(args, "iw*in", &fd, &buf, &max_msgs, &slot))
        return NULL;
    struct mmsghdr msgs[MAX_MSGS];
    struct iovec iov[MAX_MSGS];
    struct sockaddr_storage addrs[MAX_MSGS];
    const char *base = buf.buf;
    int n = recv_batch(fd, &buf, max_msgs, slot, msgs, iov, addrs, "recv_frame");
    if (n == BATCH_ERROR)
        return NULL;
    if (n == BATCH_NONE)
        return Py_BuildValue("(iy#)", 0, "", (Py_ssize_t)0);
    Py_ssize_t total = 0;
    for (int i = 0; i < n; i++) {
        int trunc = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
        total += HEAD + (trunc ? 0 : (Py_ssize_t)msgs[i].msg_len);
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (!out) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    char *p = PyBytes_AS_STRING(out);
    for (int i = 0; i < n; i++) {
        int trunc = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
        uint32_t len = trunc ? FRAME_TRUNC : (uint32_t)msgs[i].msg_len;
        put_head(p, len, &addrs[i]);
        p += HEAD;
        if (!trunc) {
            memcpy(p, base + (Py_ssize_t)i * slot, len);
            p += len;
        }
    }
    PyBuffer_Release(&buf);
    return Py_BuildValue("(iN)", n, out);
}

/* parse_frame(frame) -> [(bytes | None, host, port), ...], as recv_many gives them. */
static PyObject *parse_frame(PyObject *self, PyObject *args) {
    Py_buffer fr;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*", &fr))
        return NULL;
    PyObject *out = PyList_New(0);
    const char *p = fr.buf, *end = p + fr.len;
    while (out && p < end) {
        uint32_t len, scope;
        uint16_t port, fam;
        if (end - p < HEAD)
            goto bad;
        memcpy(&len, p, 4);
        memcpy(&port, p + 4, 2);
        memcpy(&fam, p + 6, 2);
        memcpy(&scope, p + 8, 4);
        struct sockaddr_storage sa;
        memset(&sa, 0, sizeof sa);
        sa.ss_family = fam;
        if (fam == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&sa;
            a->sin_port = htons(port);
            memcpy(&a->sin_addr, p + 12, 4);
        } else if (fam == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&sa;
            a->sin6_port = htons(port);
            a->sin6_scope_id = scope;
            memcpy(&a->sin6_addr, p + 12, 16);
        }
        p += HEAD;
        PyObject *data;
        if (len == FRAME_TRUNC) {
            data = Py_NewRef(Py_None);
        } else {
            if ((Py_ssize_t)len > end - p)
                goto bad;
            data = PyBytes_FromStringAndSize(p, (Py_ssize_t)len);
            p += len;
        }
        int hport = 0;
        PyObject *host = data ? host_text(&sa, &hport) : NULL;
        PyObject *pnum = host ? PyLong_FromLong(port) : NULL;
        PyObject *item = pnum ? PyTuple_New(3) : NULL;
        if (!item) {
            Py_XDECREF(data);
            Py_XDECREF(host);
            Py_XDECREF(pnum);
            Py_CLEAR(out);
            break;
        }
        PyTuple_SET_ITEM(item, 0, data);
        PyTuple_SET_ITEM(item, 1, host);
        PyTuple_SET_ITEM(item, 2, pnum);
        if (PyList_Append(out, item) < 0)
            Py_CLEAR(out);
        Py_DECREF(item);
    }
    PyBuffer_Release(&fr);
    return out;
bad:
    Py_DECREF(out);
    PyBuffer_Release(&fr);
    PyErr_SetString(PyExc_ValueError, "parse_frame: a datagram runs past the frame");
    return NULL;
}

static PyMethodDef methods[] = {
    {"recv_many", recv_many, METH_VARARGS,
     "recv_many(fd, buf, max_msgs, slot) -> [(bytes | None, host, port)]: one recvmmsg "
     "call (MSG_DONTWAIT, lock released) into slots of buf."},
    {"recv_frame", recv_frame, METH_VARARGS,
     "recv_frame(fd, buf, max_msgs, slot) -> (count, frame): recv_many's datagrams as "
     "one frame (a 28-byte head + payload each) for the pipe to the collector."},
    {"parse_frame", parse_frame, METH_VARARGS,
     "parse_frame(frame) -> [(bytes | None, host, port)]: a frame back into datagrams."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_udp", "recvmmsg for the flow collector", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__udp(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "MAX_MSGS", MAX_MSGS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
