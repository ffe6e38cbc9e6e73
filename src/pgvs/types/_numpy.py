"""The numpy side of the codecs: the ``vector`` encoders :func:`pgvs.register_vector` installs
once numpy is in use, and the array encoders that try the compiled path first.

The layouts themselves (arrays to and from wire bytes, in pure Python) live in
:mod:`._ndarray`, which the value classes import lazily. This module sits above both, so that no
import among them forms a cycle: only :mod:`pgvs.codecs` (and callers that want these names)
import it. Every name :mod:`._ndarray` offers is re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from ._common import VECTOR_MAX_DIM
from ._native import DenseVectorWire, dense_halfvec_wire, dense_vector_wire
from ._ndarray import (
    _BE_F32,
    _HEADERS,
    _PROBES,
    F32,
    Float32Array,
    _isfinite,
    _join,
    _vdot,
    bits_from_array,
    bits_to_numpy,
    decode_halfvec,
    decode_vector,
    dense_to_numpy,
    dense_wire_is_finite,
    halfvec_wire_python,
    matrix_wires,
    sparse_from_dense,
    sparse_to_numpy,
    vector_wire_python,
)
from ._vector import Vector as _Vector
from ._vector import encode_vector as _encode_vector_general

_ndarray = np.ndarray
# The compiled encoders as this module reads them (None without the extension; swapped for None
# by tests that emulate a pure-Python install).
_dense_vector_wire = dense_vector_wire
_dense_halfvec_wire = dense_halfvec_wire


def vector_wire(arr: npt.NDArray[Any]) -> bytes:
    """The pgvector ``vector`` wire bytes of a 1-D numeric array, validated."""
    if _dense_vector_wire is not None and type(arr) is _ndarray:
        wire = _dense_vector_wire(arr)
        if wire is not None:
            return wire
    return vector_wire_python(arr)


def halfvec_wire(arr: npt.NDArray[Any]) -> bytes:
    """The pgvector ``halfvec`` wire bytes of a 1-D numeric array, validated.

    Values are rounded to float32 and then to float16, as the server does with text input; a
    value that rounds beyond ±65504 (that is, |x| >= 65520) is refused with its position.
    """
    if _dense_halfvec_wire is not None and type(arr) is _ndarray:
        wire = _dense_halfvec_wire(arr)
        if wire is not None:
            return wire
    return halfvec_wire_python(arr)


def encode_vector_python(value: Any) -> bytes:
    """The ``vector`` codec encoder in pure Python, with the numpy float32 row as its fast path
    (what is installed without the extension, and the reference the C path must agree with).
    """
    cls = type(value)
    if cls is _ndarray:
        if value.dtype is F32 and value.ndim == 1:
            dim = value.size
            if 0 < dim <= VECTOR_MAX_DIM and _isfinite(_vdot(value, _PROBES[dim])):
                return _join((_HEADERS[dim], value.astype(_BE_F32)))
        # Other dtypes and shapes, or not finite: this path converts or names the element.
        return vector_wire_python(value)
    if cls is _Vector:  # e.g. rows from Vector.from_matrix: already validated wire bytes
        wire: bytes = value.to_binary()
        return wire
    if isinstance(value, bytes | bytearray | memoryview):
        return _encode_vector_general(value)  # wire bytes, checked as Vector.from_binary does
    return _Vector._wire_from_python(value)


def _native_first(native: DenseVectorWire) -> Callable[[Any], bytes]:
    def encode_vector(value: Any) -> bytes:
        """The ``vector`` codec encoder: the C fast path for numpy rows, else the Python one."""
        cls = type(value)
        if cls is _ndarray:
            wire = native(value)
            if wire is not None:
                return wire
            # Bad values, or a shape or dtype the C path leaves alone: the Python path
            # converts what it can and names the offending element otherwise.
            return vector_wire_python(value)
        if cls is _Vector:
            vector_wire: bytes = value.to_binary()
            return vector_wire
        return _encode_vector_general(value)

    return encode_vector


#: What :func:`pgvs.register_vector` installs for ``vector`` once numpy is in use.
encode_vector: Callable[[Any], bytes] = (
    encode_vector_python if _dense_vector_wire is None else _native_first(_dense_vector_wire)
)


__all__ = [
    "F32",
    "Float32Array",
    "bits_from_array",
    "bits_to_numpy",
    "decode_halfvec",
    "decode_vector",
    "dense_to_numpy",
    "dense_wire_is_finite",
    "encode_vector",
    "encode_vector_python",
    "halfvec_wire",
    "halfvec_wire_python",
    "matrix_wires",
    "sparse_from_dense",
    "sparse_to_numpy",
    "vector_wire",
    "vector_wire_python",
]
