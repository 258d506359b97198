/* The collector's build step: decoded records to Arrow-ready columns.
 *
 * Why C: these loops run once per stored record and field, in the writer of every
 * collector worker, and each holds the interpreter lock in its NumPy form.
 * - ipv4_text: every stored flow carries two addresses as text (the schema's choice:
 *   DuckDB casts it to INET, every reader understands it). The vectorised NumPy version
 *   (columns._ipv4_text_numpy) takes ~0.17 us per address, about a third of a collected
 *   record's CPU; here one loop writes the bytes and the offsets (~0.01 us per address).
 * - gather: the fields of a template's records, big-endian and of any width 1..8, from
 *   the records of every datagram (thousands of small buffers) into one native column
 *   per field, in one pass: NumPy needs a joined copy of all records and then a strided,
 *   byte-swapping conversion per field.
 * Both release the interpreter lock. Optional: without a compiler the NumPy versions are
 * used; tests/unit/test_flow_columns.py checks each against its twin.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

static char digits[256][4];   /* each octet's decimal text, not terminated */
static uint8_t ndigits[256];

static void init_tables(void) {
    for (int i = 0; i < 256; i++) {
        char s[4];
        int n = snprintf(s, sizeof s, "%d", i);
        memcpy(digits[i], s, (size_t)n);
        ndigits[i] = (uint8_t)n;
    }
}

/* ipv4_text(addrs) -> (offsets, data): addrs is a C-contiguous buffer of uint32 in host
 * order (format 'I' or 'L' of 4 bytes); offsets are n + 1 int32, data the UTF-8 bytes. */
static PyObject *ipv4_text(PyObject *self, PyObject *args) {
    Py_buffer in;
    if (!PyArg_ParseTuple(args, "y*", &in))
        return NULL;
    if (in.len % 4 != 0) {
        PyBuffer_Release(&in);
        return PyErr_Format(PyExc_ValueError, "%zd bytes is not a whole number of uint32",
                            in.len);
    }
    Py_ssize_t n = in.len / 4;
    if (n > (INT32_MAX - 16) / 15) {  /* offsets are int32: at most 15 bytes an address */
        PyBuffer_Release(&in);
        return PyErr_Format(PyExc_OverflowError, "%zd addresses exceed an Arrow string "
                            "array's 2 GiB", n);
    }
    PyObject *offsets = PyBytes_FromStringAndSize(NULL, (n + 1) * 4);
    PyObject *data = offsets ? PyBytes_FromStringAndSize(NULL, n * 15 + 4) : NULL;  /* + a last 4-byte copy */
    if (!data) {
        Py_XDECREF(offsets);
        PyBuffer_Release(&in);
        return NULL;
    }
    const unsigned char *src = in.buf;
    int32_t *off = (int32_t *)PyBytes_AS_STRING(offsets);
    char *out = PyBytes_AS_STRING(data);
    int32_t pos = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t a;
        memcpy(&a, src + 4 * i, 4);
        off[i] = pos;
        for (int shift = 24; shift >= 0; shift -= 8) {
            unsigned octet = (a >> shift) & 0xFF;
            memcpy(out + pos, digits[octet], 4);  /* 4 bytes copied, ndigits kept */
            pos += ndigits[octet];
            if (shift)
                out[pos++] = '.';
        }
    }
    off[n] = pos;
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&in);
    if (_PyBytes_Resize(&data, pos) < 0) {
        Py_DECREF(offsets);
        return NULL;
    }
    return Py_BuildValue("(NN)", offsets, data);
}

/* Width in bytes of the native column for a field of `width` bytes (1..8). */
static int out_width(long width) {
    return width == 1 ? 1 : width == 2 ? 2 : width <= 4 ? 4 : 8;
}

/* gather(parts, itemsize, fields) -> [bytes per field]: parts is a sequence of
 * C-contiguous buffers, each a whole number of records of `itemsize` bytes; fields a
 * sequence of (offset, width) with 1 <= width <= 8 and offset + width <= itemsize. Each
 * field comes back as native unsigned integers of 1, 2, 4 or 8 bytes (out_width), one per
 * record of all the parts in order. */
static PyObject *gather(PyObject *self, PyObject *args) {
    PyObject *parts_obj, *fields_obj;
    Py_ssize_t itemsize;
    if (!PyArg_ParseTuple(args, "OnO", &parts_obj, &itemsize, &fields_obj))
        return NULL;
    if (itemsize <= 0)
        return PyErr_Format(PyExc_ValueError, "itemsize %zd", itemsize);
    PyObject *parts = PySequence_Fast(parts_obj, "parts must be a sequence");
    if (!parts)
        return NULL;
    PyObject *fields = PySequence_Fast(fields_obj, "fields must be a sequence");
    if (!fields) {
        Py_DECREF(parts);
        return NULL;
    }
    Py_ssize_t np_ = PySequence_Fast_GET_SIZE(parts), nf = PySequence_Fast_GET_SIZE(fields);
    Py_buffer *bufs = PyMem_Calloc(np_ ? np_ : 1, sizeof(Py_buffer));
    long *off = PyMem_Calloc(nf ? nf : 1, sizeof(long));
    long *wid = PyMem_Calloc(nf ? nf : 1, sizeof(long));
    char **out = PyMem_Calloc(nf ? nf : 1, sizeof(char *));
    PyObject *result = NULL;
    Py_ssize_t held = 0, n = 0;
    if (!bufs || !off || !wid || !out) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t f = 0; f < nf; f++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fields, f);
        if (!PyArg_ParseTuple(item, "ll", &off[f], &wid[f]))
            goto done;
        if (wid[f] < 1 || wid[f] > 8 || off[f] < 0 || off[f] + wid[f] > itemsize) {
            PyErr_Format(PyExc_ValueError, "field (%ld, %ld) outside a %zd-byte record",
                         off[f], wid[f], itemsize);
            goto done;
        }
    }
    for (; held < np_; held++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(parts, held), &bufs[held],
                               PyBUF_C_CONTIGUOUS) < 0)
            goto done;
        if (bufs[held].len % itemsize != 0) {
            PyErr_Format(PyExc_ValueError, "part %zd: %zd bytes is not a whole number of "
                         "%zd-byte records", held, bufs[held].len, itemsize);
            held++;
            goto done;
        }
        n += bufs[held].len / itemsize;
    }
    result = PyList_New(nf);
    if (!result)
        goto done;
    for (Py_ssize_t f = 0; f < nf; f++) {
        PyObject *b = PyBytes_FromStringAndSize(NULL, n * out_width(wid[f]));
        if (!b) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, f, b);
        out[f] = PyBytes_AS_STRING(b);
    }
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t row = 0;
    for (Py_ssize_t p = 0; p < np_; p++) {  /* a part is a datagram's records: in cache,
                                                field after field */
        const unsigned char *base = bufs[p].buf;
        Py_ssize_t count = bufs[p].len / itemsize;
        for (Py_ssize_t f = 0; f < nf; f++) {
            const unsigned char *q = base + off[f];
            int w = out_width(wid[f]);
            for (Py_ssize_t r = 0; r < count; r++, q += itemsize) {
                uint64_t v = 0;
                for (long k = 0; k < wid[f]; k++)
                    v = (v << 8) | q[k];
                switch (w) {
                case 1: ((uint8_t *)out[f])[row + r] = (uint8_t)v; break;
                case 2: ((uint16_t *)out[f])[row + r] = (uint16_t)v; break;
                case 4: ((uint32_t *)out[f])[row + r] = (uint32_t)v; break;
                default: ((uint64_t *)out[f])[row + r] = v; break;
                }
            }
        }
        row += count;
    }
    Py_END_ALLOW_THREADS
done:
    for (Py_ssize_t i = 0; i < held; i++)
        PyBuffer_Release(&bufs[i]);
    PyMem_Free(bufs);
    PyMem_Free(off);
    PyMem_Free(wid);
    PyMem_Free(out);
    Py_DECREF(parts);
    Py_DECREF(fields);
    return result;
}

static PyMethodDef methods[] = {
    {"gather", gather, METH_VARARGS,
     "gather(parts, itemsize, [(offset, width)]) -> [bytes]: big-endian fields of every "
     "record as native columns of 1, 2, 4 or 8 bytes"},
    {"ipv4_text", ipv4_text, METH_VARARGS,
     "ipv4_text(uint32 host-order buffer) -> (int32 offsets bytes, text bytes)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_columns",
    "Records to Arrow-ready columns: fields gathered, IPv4 addresses as text.", -1, methods,
};

PyMODINIT_FUNC PyInit__columns(void) {
    init_tables();
    return PyModule_Create(&module);
}
