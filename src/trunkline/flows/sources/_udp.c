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
    if (max_msgs < 1 || max_msgs > MAX_MSGS || slot < 1 || slot > (1 << 20) ||
        buf.len < slot * (Py_ssize_t)max_msgs) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "recv_many: bad max_msgs, slot or buffer size");
        return NULL;
    }
    struct mmsghdr msgs[MAX_MSGS];
    struct iovec iov[MAX_MSGS];
    struct sockaddr_storage addrs[MAX_MSGS];
    char *base = buf.buf;
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
        PyBuffer_Release(&buf);
        if (e == EAGAIN || e == EWOULDBLOCK || e == EINTR)
            return PyList_New(0);
        errno = e;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
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

static PyMethodDef methods[] = {
    {"recv_many", recv_many, METH_VARARGS,
     "recv_many(fd, buf, max_msgs, slot) -> [(bytes | None, host, port)]: one recvmmsg "
     "call (MSG_DONTWAIT, lock released) into slots of buf."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_udp", "recvmmsg for the flow collector", -1, methods,
};

PyMODINIT_FUNC PyInit__udp(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "MAX_MSGS", MAX_MSGS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
