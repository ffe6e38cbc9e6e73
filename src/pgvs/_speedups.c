/*
 * pgvs._speedups: the optional native fast path of the `vector` and `halfvec` encoders.
 *
 * dense_vector_wire(values) turns a 1-D, C-contiguous buffer of native float32 ('f') or float64
 * ('d') numbers, or an exact list/tuple of exact floats and ints, into pgvector's `vector` binary
 * layout (int16 dim, int16 unused, dim big-endian float32 values) in one pass that also checks
 * every element is finite. dense_halfvec_wire(values) does the same for `halfvec` (float16
 * elements, rounded through float32 as the server's text input does, refusing values that
 * round beyond ±65504).
 *
 * float32_rows(rows, dim) turns an exact list or tuple of exact lists/tuples of exact floats and ints
 * (a list of vectors, as JSON and LangChain hand them over) into one native-order float32 matrix
 * buffer of len(rows) * dim elements, in one pass and without a Python object per element: the
 * bulk write path's conversion, which numpy does about four times slower for nested lists.
 *
 * Which values reach it is the callers' decision (pgvs.types passes exact numpy arrays,
 * array.array and exact lists/tuples): the function itself would also take a memoryview or a
 * ctypes array, which the public API treats differently (a memoryview is wire bytes there).
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

/* pgvector's VECTOR_MAX_DIM and HALFVEC_MAX_DIM (vector.h, halfvec.h), both 16,000;
 * pgvs.types.VECTOR_MAX_DIM and HALFVEC_MAX_DIM must agree. */
#define MAX_DIM 16000

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

/* Output element widths: pgvector `vector` (float32) and `halfvec` (float16). */
#define F32_WIDTH 4
#define F16_WIDTH 2

/* Writes `value` as big-endian float32; returns 1 when it is NaN or infinite. */
static inline uint32_t
put_f32(unsigned char *out, float value)
{
    uint32_t bits;
    memcpy(&bits, &value, 4);
    uint32_t non_finite = (bits & F32_EXPONENT_MASK) == F32_EXPONENT_MASK;
    bits = to_big_endian(bits);
    memcpy(out, &bits, 4);
    return non_finite;
}

/* Writes `value` rounded to float16 (to nearest, ties to even) as big-endian; returns 1 when it
 * is NaN or infinite or rounds beyond ±65504, which is exactly when the result would be a half
 * infinity or NaN. Integer arithmetic only: the result must not depend on the FPU's rounding
 * mode (numpy's and CPython's float16 conversions do not either). */
static inline uint32_t
put_f16(unsigned char *out, float value)
{
    uint32_t bits;
    memcpy(&bits, &value, 4);
    uint32_t magnitude = bits & 0x7fffffffu;
    uint32_t half;
    if (magnitude >= 0x38800000u) {
        /* A normal half (or too large): rebias the exponent (127 -> 15) and round the 23-bit
         * significand to 10 bits; adding 0xfff plus the kept lowest bit and truncating is
         * round-half-to-even, and a carry correctly bumps the exponent. NaN, infinity and
         * anything rounding to 2^16 or more land on 0x7c00 or above. */
        if (magnitude >= F32_EXPONENT_MASK) {
            return 1;
        }
        half = (magnitude - 0x38000000u + 0xfffu + ((magnitude >> 13) & 1u)) >> 13;
        if (half >= 0x7c00u) {
            return 1;
        }
    }
    else if (magnitude < 0x33000000u) {
        /* Below 2^-25, half the smallest subnormal half (2^-25 itself ties to even, to 0):
         * zero. This includes float32 zeros and subnormals. */
        half = 0;
    }
    else {
        /* A subnormal half m * 2^-24 (m = 1024, the smallest normal, when rounding carries):
         * the float32 value is significand * 2^(exponent - 150) with the implicit bit set, so
         * m = significand / 2^(126 - exponent), a shift of 14 to 24 bits, rounded half to even
         * by hand. */
        uint32_t exponent = magnitude >> 23;
        uint32_t significand = (magnitude & 0x007fffffu) | 0x00800000u;
        uint32_t shift = 126u - exponent;
        uint32_t kept = significand >> shift;
        uint32_t dropped = significand & ((1u << shift) - 1u);
        uint32_t halfway = 1u << (shift - 1u);
        half = kept + (dropped > halfway || (dropped == halfway && (kept & 1u)));
    }
    half |= (bits >> 16) & 0x8000u;
    out[0] = (unsigned char)(half >> 8);
    out[1] = (unsigned char)(half & 0xffu);
    return 0;
}

static inline uint32_t
put(unsigned char *out, Py_ssize_t index, float value, int width)
{
    if (width == F32_WIDTH) {
        return put_f32(out + 4 * index, value);
    }
    return put_f16(out + 2 * index, value);
}

/* A new bytes object for `dim` elements of `width` bytes with the (int16 dim, int16 unused)
 * header filled in, or NULL (error set). */
static PyObject *
new_wire(Py_ssize_t dim, int width, unsigned char **elements)
{
    PyObject *wire = PyBytes_FromStringAndSize(NULL, 4 + width * dim);
    if (wire == NULL) {
        return NULL;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(wire);
    out[0] = (unsigned char)(dim >> 8);
    out[1] = (unsigned char)(dim & 0xff);
    out[2] = 0;
    out[3] = 0;
    *elements = out + 4;
    return wire;
}

/* `wire` if every element was stored, else None (the wire is dropped). Steals `wire`. */
static PyObject *
finish(PyObject *wire, uint32_t refused)
{
    if (refused) {
        Py_DECREF(wire);
        Py_RETURN_NONE;
    }
    return wire;
}

static PyObject *
wire_from_view(const Py_buffer *view, int width)
{
    char kind = native_float_kind(view->format);
    Py_ssize_t itemsize = kind == 'f' ? 4 : 8;
    if (kind == 0 || view->ndim != 1 || view->itemsize != itemsize ||
        !PyBuffer_IsContiguous(view, 'C')) {
        Py_RETURN_NONE;
    }
    Py_ssize_t dim = view->shape[0];
    if (dim < 1 || dim > MAX_DIM || view->len != dim * itemsize) {
        Py_RETURN_NONE;
    }
    unsigned char *out;
    PyObject *wire = new_wire(dim, width, &out);
    if (wire == NULL) {
        return NULL;
    }
    /* One flag for the whole row keeps the loops free of early exits. */
    uint32_t refused = 0;
    const unsigned char *in = (const unsigned char *)view->buf;
    if (kind == 'f') {
        for (Py_ssize_t i = 0; i < dim; i++) {
            float value;
            memcpy(&value, in + 4 * i, 4);
            refused |= put(out, i, value, width);
        }
    }
    else {
        for (Py_ssize_t i = 0; i < dim; i++) {
            double value;
            memcpy(&value, in + 8 * i, 8);
            /* Through float32 first, as the Python path and the server's text input do. */
            refused |= put(out, i, (float)value, width);
        }
    }
    return finish(wire, refused);
}

static PyObject *
wire_from_buffer(PyObject *values, int width)
{
    Py_buffer view;
    /* Strides are asked for (not contiguity) so that exporters such as numpy describe
     * non-contiguous arrays instead of raising; contiguity is checked by wire_from_view. */
    if (PyObject_GetBuffer(values, &view, PyBUF_RECORDS_RO) < 0) {
        /* Not a buffer, or an exporter that refuses this request: not for this path. */
        if (PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_BufferError) ||
            PyErr_ExceptionMatches(PyExc_ValueError)) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        return NULL;
    }
    PyObject *wire = wire_from_view(&view, width);
    PyBuffer_Release(&view);
    return wire;
}

/* `item` as a double when it is an exact float, or an exact int within a double's range
 * (never bools, subclasses or other numbers: the Python path decides about those): 0, else 1.
 * Reads no attribute and calls no Python code. */
static inline int
exact_number(PyObject *item, double *value)
{
    if (PyFloat_CheckExact(item)) {
        *value = PyFloat_AS_DOUBLE(item);
        return 0;
    }
    if (PyLong_CheckExact(item)) {
        *value = PyLong_AsDouble(item);
        if (*value == -1.0 && PyErr_Occurred()) {
            /* Too large for a double: the Python path reports the element. */
            PyErr_Clear();
            return 1;
        }
        return 0;
    }
    return 1;
}

/* An exact list or tuple of exact floats and ints (never bools, subclasses or other numbers:
 * the Python path decides about those). Reads no attribute and calls no Python code, so the
 * items cannot change under it while the GIL is held. */
static PyObject *
wire_from_items(Py_ssize_t dim, PyObject *const *items, int width)
{
    if (dim < 1 || dim > MAX_DIM) {
        Py_RETURN_NONE;
    }
    unsigned char *out;
    PyObject *wire = new_wire(dim, width, &out);
    if (wire == NULL) {
        return NULL;
    }
    uint32_t refused = 0;
    for (Py_ssize_t i = 0; i < dim; i++) {
        double value;
        if (exact_number(items[i], &value)) {
            Py_DECREF(wire);
            Py_RETURN_NONE;
        }
        refused |= put(out, i, (float)value, width);
    }
    return finish(wire, refused);
}

static PyObject *
dense_wire(PyObject *values, int width)
{
    PyObject *wire;
    if (PyList_CheckExact(values)) {
#ifdef Py_GIL_DISABLED
        Py_BEGIN_CRITICAL_SECTION(values);
#endif
        wire = wire_from_items(PyList_GET_SIZE(values), PySequence_Fast_ITEMS(values), width);
#ifdef Py_GIL_DISABLED
        Py_END_CRITICAL_SECTION();
#endif
        return wire;
    }
    if (PyTuple_CheckExact(values)) {
        return wire_from_items(PyTuple_GET_SIZE(values), PySequence_Fast_ITEMS(values), width);
    }
    return wire_from_buffer(values, width);
}

static PyObject *
dense_vector_wire(PyObject *module, PyObject *values)
{
    (void)module;
    return dense_wire(values, F32_WIDTH);
}

static PyObject *
dense_halfvec_wire(PyObject *module, PyObject *values)
{
    (void)module;
    return dense_wire(values, F16_WIDTH);
}

/* One row of float32_rows: `dim` exact floats/ints of `items` as native float32 into `out`;
 * 0 when every one was stored and finite, 1 when the row is not for this path. */
static int
row_to_f32(PyObject *const *items, Py_ssize_t dim, float *out)
{
    uint32_t refused = 0;
    for (Py_ssize_t i = 0; i < dim; i++) {
        double value;
        if (exact_number(items[i], &value)) {
            return 1;
        }
        float narrowed = (float)value;
        uint32_t bits;
        memcpy(&bits, &narrowed, 4);
        refused |= (bits & F32_EXPONENT_MASK) == F32_EXPONENT_MASK;
        out[i] = narrowed;
    }
    return (int)refused;
}

static PyObject *
float32_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "float32_rows(rows, dim) takes two arguments");
        return NULL;
    }
    PyObject *rows = args[0];
    Py_ssize_t dim = PyLong_AsSsize_t(args[1]);
    if (dim == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!(PyList_CheckExact(rows) || PyTuple_CheckExact(rows)) || dim < 1 || dim > MAX_DIM) {
        Py_RETURN_NONE;
    }
    PyObject *result = NULL;
#ifdef Py_GIL_DISABLED
    Py_BEGIN_CRITICAL_SECTION(rows);
#endif
    Py_ssize_t count = PySequence_Fast_GET_SIZE(rows);
    PyObject *const *row_items = PySequence_Fast_ITEMS(rows);
    PyObject *buffer = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)sizeof(float) * dim * count);
    if (buffer != NULL) {
        float *out = (float *)PyByteArray_AS_STRING(buffer);
        int refused = 0;
        for (Py_ssize_t r = 0; r < count && !refused; r++) {
            PyObject *row = row_items[r];
            /* Elements of a nested list are read without calling Python code, so no row can
             * change under this loop while it holds the GIL (or the row's critical section). */
            if (PyList_CheckExact(row)) {
#ifdef Py_GIL_DISABLED
                Py_BEGIN_CRITICAL_SECTION(row);
#endif
                refused = PyList_GET_SIZE(row) != dim ||
                          row_to_f32(PySequence_Fast_ITEMS(row), dim, out + r * dim);
#ifdef Py_GIL_DISABLED
                Py_END_CRITICAL_SECTION();
#endif
            }
            else if (PyTuple_CheckExact(row)) {
                refused = PyTuple_GET_SIZE(row) != dim ||
                          row_to_f32(PySequence_Fast_ITEMS(row), dim, out + r * dim);
            }
            else {
                refused = 1;
            }
        }
        if (refused) {
            Py_DECREF(buffer);
            Py_INCREF(Py_None);
            result = Py_None;
        }
        else {
            result = buffer;
        }
    }
#ifdef Py_GIL_DISABLED
    Py_END_CRITICAL_SECTION();
#endif
    return result;
}

PyDoc_STRVAR(float32_rows_doc,
             "float32_rows(rows, dim, /)\n--\n\n"
             "A bytearray of len(rows) * dim native float32 values from an exact list/tuple\n"
             "of exact lists/tuples of exact floats and ints, each of length dim and finite in\n"
             "float32; None for anything else (the caller's general path decides).");

PyDoc_STRVAR(dense_vector_wire_doc,
             "dense_vector_wire(values, /)\n--\n\n"
             "pgvector `vector` wire bytes of a 1-D contiguous float32/float64 buffer, or of\n"
             "an exact list/tuple of exact floats and ints, whose elements are all finite in\n"
             "float32; None for anything else (the caller's general path decides).");

PyDoc_STRVAR(dense_halfvec_wire_doc,
             "dense_halfvec_wire(values, /)\n--\n\n"
             "pgvector `halfvec` wire bytes of the same inputs as dense_vector_wire (values\n"
             "rounded to float32, then to float16, ties to even), or None when any element is\n"
             "not finite or rounds beyond +-65504, or for anything else.");

static PyMethodDef speedups_methods[] = {
    {"dense_vector_wire", dense_vector_wire, METH_O, dense_vector_wire_doc},
    {"dense_halfvec_wire", dense_halfvec_wire, METH_O, dense_halfvec_wire_doc},
    {"float32_rows", (PyCFunction)(void (*)(void))float32_rows, METH_FASTCALL, float32_rows_doc},
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
    .m_doc = "Optional native fast path of pgvs's vector and halfvec encoders (pure Python is "
             "the reference).",
    .m_size = 0,
    .m_methods = speedups_methods,
    .m_slots = speedups_slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
