/*
 * pgvs._speedups: the optional native fast path of the `vector` encoder.
 *
 * dense_vector_wire(values) turns a 1-D, C-contiguous buffer of native float32 ('f') or float64
 * ('d') numbers into pgvector's `vector` binary layout (int16 dim, int16 unused, dim big-endian
 * float32 values) in one pass that also checks every element is finite.
 *
 * It never raises for bad input. It returns None whenever it cannot vouch for the result (not a
 * buffer, wrong format, shape or size, or any NaN/±Inf, including float64 values that overflow
 * float32), and the pure-Python encoder then handles the value and names the offending element.
 * The pure-Python path is the reference: both must produce byte-identical output, which the test
 * suite checks on tables of edge cases and on random input.
 *
 * Only the float -> float32 rounding of the C cast is relied on (IEEE 754 round-to-nearest-even,
 * overflow to infinity, as numpy's astype does); do not build this file with -ffast-math.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* pgvector's VECTOR_MAX_DIM (vector.h); pgvs.types.VECTOR_MAX_DIM must agree. */
#define VECTOR_MAX_DIM 16000

/* All exponent bits set: infinity (zero mantissa) or NaN (non-zero mantissa). */
#define F32_EXPONENT_MASK 0x7f800000u

static inline uint32_t
to_big_endian(uint32_t bits)
{
#if PY_BIG_ENDIAN
    return bits;
#elif defined(_MSC_VER)
    return _byteswap_ulong(bits);
#else
    return __builtin_bswap32(bits);
#endif
}

/* Element kind of a buffer format string: 'f', 'd', or 0 for anything else (foreign byte
 * order, other types, repeat counts). */
static char
native_float_kind(const char *format)
{
    if (format == NULL) {
        return 0;
    }
    switch (format[0]) {
    case '@':
    case '=':
        format++;
        break;
#if PY_LITTLE_ENDIAN
    case '<':
#else
    case '>':
    case '!':
#endif
        format++;
        break;
    default:
        break;
    }
    if ((format[0] == 'f' || format[0] == 'd') && format[1] == '\0') {
        return format[0];
    }
    return 0;
}

static PyObject *
dense_vector_wire(PyObject *module, PyObject *values)
{
    (void)module;
    Py_buffer view;
    /* Strides are asked for (not contiguity) so that exporters such as numpy describe
     * non-contiguous arrays instead of raising; contiguity is checked below. */
    if (PyObject_GetBuffer(values, &view, PyBUF_RECORDS_RO) < 0) {
        /* Not a buffer, or an exporter that refuses this request: not for this path. */
        if (PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_BufferError) ||
            PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        return NULL;
    }

    PyObject *wire = NULL;
    char kind = native_float_kind(view.format);
    Py_ssize_t itemsize = kind == 'f' ? 4 : 8;
    if (kind == 0 || view.ndim != 1 || view.itemsize != itemsize ||
        !PyBuffer_IsContiguous(&view, 'C')) {
        goto not_for_us;
    }
    Py_ssize_t dim = view.shape[0];
    if (dim < 1 || dim > VECTOR_MAX_DIM) {
        goto not_for_us;
    }

    wire = PyBytes_FromStringAndSize(NULL, 4 + 4 * dim);
    if (wire == NULL) {
        goto done;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(wire);
    out[0] = (unsigned char)(dim >> 8);
    out[1] = (unsigned char)(dim & 0xff);
    out[2] = 0;
    out[3] = 0;
    out += 4;

    /* One flag for the whole row keeps the loop branch-free (and vectorizable). */
    uint32_t non_finite = 0;
    if (kind == 'f') {
        const unsigned char *in = (const unsigned char *)view.buf;
        for (Py_ssize_t i = 0; i < dim; i++) {
            uint32_t bits;
            memcpy(&bits, in + 4 * i, 4);
            non_finite |= (bits & F32_EXPONENT_MASK) == F32_EXPONENT_MASK;
            bits = to_big_endian(bits);
            memcpy(out + 4 * i, &bits, 4);
        }
    }
    else {
        const unsigned char *in = (const unsigned char *)view.buf;
        for (Py_ssize_t i = 0; i < dim; i++) {
            double value;
            memcpy(&value, in + 8 * i, 8);
            float rounded = (float)value;
            uint32_t bits;
            memcpy(&bits, &rounded, 4);
            non_finite |= (bits & F32_EXPONENT_MASK) == F32_EXPONENT_MASK;
            bits = to_big_endian(bits);
            memcpy(out + 4 * i, &bits, 4);
        }
    }
    if (non_finite) {
        Py_CLEAR(wire);
        goto not_for_us;
    }
    goto done;

not_for_us:
    wire = Py_None;
    Py_INCREF(wire);
done:
    PyBuffer_Release(&view);
    return wire;
}

PyDoc_STRVAR(dense_vector_wire_doc,
             "dense_vector_wire(values, /)\n--\n\n"
             "pgvector `vector` wire bytes of a 1-D contiguous float32/float64 buffer whose\n"
             "elements are all finite in float32, or None (the caller's general path decides).");

static PyMethodDef speedups_methods[] = {
    {"dense_vector_wire", dense_vector_wire, METH_O, dense_vector_wire_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot speedups_slots[] = {
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#ifdef Py_GIL_DISABLED
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pgvs._speedups",
    .m_doc = "Optional native fast path of pgvs's vector encoder (pure Python is the reference).",
    .m_size = 0,
    .m_methods = speedups_methods,
    .m_slots = speedups_slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
