"""numpy arrays to and from the wire layouts: imported only once a numpy array is seen or asked for.

This module knows the layouts, not the value classes (``_vector``, ``_halfvec``, ...), which
import it lazily; :mod:`._numpy` adds the codec encoders that need both. The hot paths (one 768-d
float32 row in, wire bytes out; wire bytes in, float32 row out) are written for the common case
first and fall back to a slow path that validates everything and names the offending position.
None of these functions calls the compiled encoder: they are the pure-Python reference.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from ._common import (
    HALF_MAX,
    HALFVEC_MAX_DIM,
    SPARSEVEC_MAX_DIM,
    SPARSEVEC_MAX_NNZ,
    VECTOR_MAX_DIM,
    check_dim,
    check_float32,
    fail,
    pack_f32_elements,
    short_repr,
)

F32 = np.dtype(np.float32)
_BE_F32 = np.dtype(">f4")
_BE_F16 = np.dtype(">f2")
_BE_U32 = np.dtype(">u4")
_BE_U16 = np.dtype(">u2")
_U8 = np.dtype(np.uint8)

_isfinite = math.isfinite
_frombuffer = np.frombuffer
# (bytes.join takes any buffer; numpy's stubs do not say ndarray is one)
_join: Callable[[tuple[bytes, Any]], bytes] = b"".join
# vdot's C implementation: unlike ndarray.dot it does not turn a float32 overflow (huge but
# finite elements) into a RuntimeWarning, and it skips the __array_function__ dispatch.
_vdot: Callable[[Any, Any], Any] = getattr(np.vdot, "_implementation", np.vdot)
_pack_dense_header = struct.Struct(">HH").pack
_ndarray = np.ndarray
# Float32 values at or beyond this round to infinity in float16 (65504 is the largest half; the
# halfway point to the next power of two rounds to even, i.e. up).
_HALF_OVERFLOW = 65520.0

Float32Array = npt.NDArray[np.float32]


class _ProbeCache(dict[int, Any]):
    """dim -> a read-only float32 vector of 1e-20s, the finiteness probe of the hot path.

    ``vdot(row, probe)`` is finite exactly when every element of ``row`` is: finite float32
    values times 1e-20 cannot overflow (so, unlike ``row.dot(row)``, huge valid values are not
    sent down the slow path), while NaN and ±inf propagate. A BLAS dot is the cheapest whole-row
    reduction numpy offers for this (far under ``isfinite().all()``); ``vdot`` rather than
    ``ndarray.dot`` because it never emits a RuntimeWarning (``inf - inf``) for a row that is
    about to be refused with a ValidationError anyway. The compiled path does not need it.
    """

    def __missing__(self, dim: int) -> Any:
        probe = np.full(dim, 1e-20, dtype=np.float32)
        probe.flags.writeable = False
        self[dim] = probe
        return probe


_PROBES = _ProbeCache()


class _HeaderCache(dict[int, bytes]):
    """dim -> the 4-byte ``int16 dim, int16 unused`` header of vector and halfvec."""

    def __missing__(self, dim: int) -> bytes:
        header = _pack_dense_header(dim, 0)
        self[dim] = header
        return header


_HEADERS = _HeaderCache()


# -- dense: vector and halfvec ----------------------------------------------------------------------


def _to_float32(arr: npt.NDArray[Any], kind: str) -> Float32Array:
    """``arr`` as float32 (itself when it already is), refusing non-numeric and bool dtypes."""
    code = arr.dtype.kind
    if code == "b":
        fail(f"{kind} input is a bool array; {kind} elements must be numbers")
    if code not in "fiu":
        fail(f"{kind} input must be a numeric array, got dtype {arr.dtype}")
    if arr.dtype == F32:
        return arr
    # Overflow to inf is reported below with its position, not as a numpy warning.
    with np.errstate(over="ignore", invalid="ignore"):
        return arr.astype(F32)


def _check_finite(a32: Float32Array, original: npt.NDArray[Any], kind: str) -> None:
    """Raise for the first element that is NaN, infinite, or overflowed float32."""
    if np.isfinite(a32).all():
        return
    position = tuple(int(i) for i in np.argwhere(~np.isfinite(a32))[0])
    value = float(original[position].item())
    if len(position) == 1:
        check_float32(position[0], value, kind)
        return
    try:
        check_float32(position[-1], value, kind)
    except ValueError as exc:
        fail(f"row {position[0]}: {exc}")


def _as_float32(arr: npt.NDArray[Any], kind: str, max_dim: int) -> Float32Array:
    """A validated 1-D float32 array with the same values (rounded), or a ValidationError."""
    if arr.ndim != 1:
        fail(f"{kind} input must be a 1-D array, got an array of shape {arr.shape}")
    a32 = _to_float32(arr, kind)
    check_dim(arr.shape[0], kind, max_dim)
    if not _isfinite(_vdot(a32, a32)):
        _check_finite(a32, arr, kind)
    return a32


def _refuse_masked(arr: npt.NDArray[Any], kind: str) -> None:
    """Masked arrays are refused: their data under the mask is arbitrary (often NaN or junk),
    and no pgvector type has a notion of a missing element."""
    ma = sys.modules.get("numpy.ma")
    if ma is not None and isinstance(arr, ma.MaskedArray):
        fail(
            f"{kind} input is a numpy masked array; fill or drop the masked elements first "
            "(e.g. arr.filled(0.0) or arr.compressed())"
        )


def vector_wire_python(arr: npt.NDArray[Any]) -> bytes:
    """:func:`vector_wire` in pure Python: the reference the C fast path must agree with."""
    if type(arr) is not _ndarray:
        _refuse_masked(arr, "vector")
    if arr.dtype is F32 and arr.ndim == 1:
        dim = arr.size
        if 0 < dim <= VECTOR_MAX_DIM and _isfinite(_vdot(arr, arr)):
            return _join((_HEADERS[dim], arr.astype(_BE_F32)))
    if arr.dtype.kind == "O":
        if arr.ndim != 1:
            fail(f"vector input must be a 1-D array, got an array of shape {arr.shape}")
        values = arr.tolist()
        check_dim(len(values), "vector", VECTOR_MAX_DIM)
        return _HEADERS[len(values)] + pack_f32_elements(values, "vector")
    a32 = _as_float32(arr, "vector", VECTOR_MAX_DIM)
    return _join((_HEADERS[a32.shape[0]], a32.astype(_BE_F32)))


def halfvec_wire_python(arr: npt.NDArray[Any]) -> bytes:
    """:func:`halfvec_wire` in pure Python: the reference the C fast path must agree with."""
    if type(arr) is not _ndarray:
        _refuse_masked(arr, "halfvec")
    if arr.dtype.kind == "O":
        if arr.ndim != 1:
            fail(f"halfvec input must be a 1-D array, got an array of shape {arr.shape}")
        values = arr.tolist()
        check_dim(len(values), "halfvec", HALFVEC_MAX_DIM)
        arr = np.frombuffer(pack_f32_elements(values, "halfvec"), _BE_F32)
    a32 = _as_float32(arr, "halfvec", HALFVEC_MAX_DIM)
    _check_half_range(a32, arr)
    return _join((_HEADERS[a32.shape[0]], a32.astype(_BE_F16)))


def _check_half_range(a32: Float32Array, original: npt.NDArray[Any]) -> None:
    """Refuse finite float32 values that float16 cannot hold (the server would too)."""
    if a32.size == 0:
        return
    if a32.item(a32.argmax()) < _HALF_OVERFLOW and a32.item(a32.argmin()) > -_HALF_OVERFLOW:
        return
    position = tuple(int(i) for i in np.argwhere(np.abs(a32) >= _HALF_OVERFLOW)[0])
    prefix = f"row {position[0]}: " if len(position) == 2 else ""
    fail(
        f"{prefix}halfvec element {position[-1]} ({short_repr(original[position].item())}) is "
        f"out of range for halfvec (float16 holds at most ±{HALF_MAX:g})"
    )


def matrix_wires(matrix: npt.NDArray[Any], kind: str) -> list[bytes] | None:
    """Wire bytes of every row of a 2-D array, validated in one pass over the whole matrix.

    None for an object array: its rows hold Python objects, which the caller converts one by one.
    """
    _refuse_masked(matrix, kind)
    if matrix.ndim != 2:
        fail(f"expected a 2-D array of {kind} rows, got an array of shape {matrix.shape}")
    rows, dim = matrix.shape
    if matrix.dtype.kind == "O":
        return None
    check_dim(dim, kind, VECTOR_MAX_DIM if kind == "vector" else HALFVEC_MAX_DIM)
    a32 = _to_float32(matrix, kind)
    flat = a32.reshape(-1)
    if not _isfinite(_vdot(flat, flat)):  # the cheap test first, as for a single row
        _check_finite(a32, matrix, kind)
    # One array holding every row exactly as on the wire (header, then the elements), so a
    # single conversion pass and one tobytes() serve all rows; each row is then one slice.
    if kind == "vector":
        wire = np.empty((rows, dim + 1), _BE_F32)
        wire.view(_BE_U32)[:, 0] = dim << 16
        wire[:, 1:] = a32
        step = 4 + 4 * dim
    else:
        _check_half_range(a32, matrix)
        wire = np.empty((rows, dim + 2), _BE_F16)
        header = wire.view(_BE_U16)
        header[:, 0] = dim
        header[:, 1] = 0
        wire[:, 2:] = a32
        step = 4 + 2 * dim
    data = wire.tobytes()
    return [data[start : start + step] for start in range(0, rows * step, step)]


def dense_wire_is_finite(wire: bytes, code: str) -> bool:
    """Whether every element of ``vector`` (code ``f``) / ``halfvec`` (``e``) wire bytes is
    finite; the header is assumed checked."""
    values = _frombuffer(wire, _BE_F32 if code == "f" else _BE_F16, -1, 4).astype(F32)
    return _isfinite(_vdot(values, values)) or bool(np.isfinite(values).all())


def decode_vector(data: bytes) -> Float32Array:
    """A writable native float32 array from ``vector`` wire bytes (one byte-swapping copy)."""
    return _frombuffer(data, _BE_F32, -1, 4).astype(F32)


def decode_halfvec(data: bytes) -> Float32Array:
    """A writable native float32 array from ``halfvec`` wire bytes (exact: f16 ⊂ f32)."""
    return _frombuffer(data, _BE_F16, -1, 4).astype(F32)


# -- sparsevec -------------------------------------------------------------------------------------


def sparse_from_dense(arr: npt.NDArray[Any]) -> tuple[int, list[int], list[float]]:
    """(dim, 0-based indices, float32 values) of the non-zero elements of a 1-D array."""
    _refuse_masked(arr, "sparsevec")
    if arr.dtype.kind == "O":
        values = arr.tolist()
        if arr.ndim != 1:
            fail(f"sparsevec input must be a 1-D array, got an array of shape {arr.shape}")
        arr = np.frombuffer(pack_f32_elements(values, "sparsevec"), _BE_F32)
    a32 = _as_float32(arr, "sparsevec", SPARSEVEC_MAX_DIM)
    indices = np.flatnonzero(a32)
    if indices.shape[0] > SPARSEVEC_MAX_NNZ:
        fail(
            f"sparsevec cannot have more than {SPARSEVEC_MAX_NNZ} non-zero elements, "
            f"got {indices.shape[0]}"
        )
    return a32.shape[0], indices.tolist(), a32[indices].tolist()


def sparse_to_numpy(dim: int, indices: list[int], values: list[float]) -> Float32Array:
    dense = np.zeros(dim, F32)
    dense[indices] = values
    return dense


# -- bit -------------------------------------------------------------------------------------------


def bits_from_array(arr: npt.NDArray[Any]) -> tuple[int, bytes]:
    """(length, packed bytes) of a 1-D bool array, or an integer array of 0s and 1s."""
    _refuse_masked(arr, "bit")
    if arr.ndim != 1:
        fail(f"bit input must be a 1-D array, got an array of shape {arr.shape}")
    code = arr.dtype.kind
    if code in "iu":
        bad = np.flatnonzero((arr != 0) & (arr != 1))
        if bad.shape[0]:
            position = int(bad[0])
            fail(
                f"bit element {position} is {short_repr(arr[position].item())}; bits must be 0 "
                "or 1 (use Bit.from_bytes() for packed bytes)"
            )
    elif code != "b":
        fail(f"bit input must be a bool array or an array of 0s and 1s, got dtype {arr.dtype}")
    return arr.shape[0], np.packbits(arr.astype(bool)).tobytes()


def bits_to_numpy(length: int, packed: bytes) -> npt.NDArray[np.bool_]:
    return np.unpackbits(np.frombuffer(packed, _U8), count=length).astype(bool)


def dense_to_numpy(wire: bytes, itemsize: int) -> Float32Array:
    return decode_vector(wire) if itemsize == 4 else decode_halfvec(wire)
