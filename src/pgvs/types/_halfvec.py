"""``HalfVector``: pgvector ``halfvec``, big-endian IEEE float16 elements on the wire."""

from __future__ import annotations

import struct
from array import array
from collections.abc import Callable
from typing import Any

from ._common import (
    HALF_MAX,
    HALFVEC_MAX_DIM,
    as_element_list,
    be_struct,
    check_dim,
    fail,
    numpy_if_array,
    pack_f32_elements,
    short_repr,
)
from ._native import dense_halfvec_wire
from ._vector import _NATIVE_INPUTS, DenseVector

__all__ = ["HalfVector", "decode_halfvec", "encode_halfvec"]

_pack_header = struct.Struct(">HH").pack
_HALF = struct.Struct(">e")


class HalfVector(DenseVector):
    """A pgvector ``halfvec``: 1 to 16,000 finite float16 values.

    Built like :class:`Vector`. Each value is rounded to float32 and then to float16, which is
    what the server does with text input; a value that rounds beyond ±65504 is refused with its
    position, as are NaN, infinities, non-numbers and bools. ``to_list()`` and ``to_numpy()``
    give the stored half-precision numbers exactly, as float / float32.
    """

    __slots__ = ()

    _kind = "halfvec"
    _max_dim = HALFVEC_MAX_DIM
    _itemsize = 2
    _code = "e"
    _element = _HALF

    @classmethod
    def _wire_from(cls, values: Any) -> bytes:
        if _dense_halfvec_wire is not None and type(values) in _NATIVE_INPUTS:
            wire = _dense_halfvec_wire(values)
            if wire is not None:
                return wire
        np = numpy_if_array(values)
        if np is not None:
            _use_numpy(np)
            return _array_wire(values)
        return cls._wire_from_python(values)

    @classmethod
    def _wire_from_python(cls, values: Any) -> bytes:
        """:meth:`_wire_from` in pure Python: the reference the C fast path must agree with."""
        if isinstance(values, DenseVector):
            if isinstance(values, HalfVector):  # subclasses (pgvs.compat) too
                return values._wire
            values = values.to_list()
        np = numpy_if_array(values)
        if np is not None:
            from ._ndarray import halfvec_wire_python

            _use_numpy(np)
            return halfvec_wire_python(values)
        if isinstance(values, array):
            values = values.tolist()
        elements = as_element_list(values, "halfvec")
        dim = len(elements)
        check_dim(dim, "halfvec", HALFVEC_MAX_DIM)
        # Through float32 first, as the server's text input does (strtof, then to half).
        singles = be_struct(f"{dim}f").unpack(pack_f32_elements(elements, "halfvec"))
        try:
            payload = be_struct(f"{dim}e").pack(*singles)
        except OverflowError:
            for index, value in enumerate(singles):
                try:
                    _HALF.pack(value)
                except OverflowError:
                    fail(
                        f"halfvec element {index} ({short_repr(elements[index])}) is out of "
                        f"range for halfvec (float16 holds at most ±{HALF_MAX:g})"
                    )
            raise
        return _pack_header(dim, 0) + payload

    def to_list(self) -> list[float]:
        """The elements as Python floats (exact)."""
        return list(be_struct(f"{self.dim}e").unpack_from(self._wire, 4))


_dense_halfvec_wire = dense_halfvec_wire


def _array_wire(arr: Any) -> bytes:
    """``halfvec`` wire bytes of a numpy array: the compiled path for exact arrays, then Python."""
    if _dense_halfvec_wire is not None and type(arr) is _ndarray:
        wire = _dense_halfvec_wire(arr)
        if wire is not None:
            return wire
    from ._ndarray import halfvec_wire_python

    return halfvec_wire_python(arr)


class _NoArrayType:
    """Stands in for numpy.ndarray until numpy is in use, so the type test below never matches."""


_ndarray: type = _NoArrayType
_np_halfvec_wire: Callable[[Any], bytes] = HalfVector._wire_from


def _use_numpy(np: Any) -> None:
    """Called with numpy's module once an array has been seen (so numpy is imported)."""
    global _ndarray, _np_halfvec_wire
    _ndarray = np.ndarray
    _np_halfvec_wire = _array_wire


def encode_halfvec(value: Any) -> bytes:
    """The ``halfvec`` wire bytes of a HalfVector, numpy array or sequence (what asyncpg calls).

    Bytes are taken as wire bytes already, and checked as :meth:`HalfVector.from_binary` does.
    """
    cls = type(value)
    if cls is _ndarray:
        return _np_halfvec_wire(value)
    if cls is HalfVector:
        wire: bytes = value._wire
        return wire
    if isinstance(value, bytes | bytearray | memoryview):
        return HalfVector.from_binary(value)._wire
    return HalfVector._wire_from(value)


def decode_halfvec(data: bytes) -> HalfVector:
    """A :class:`HalfVector` from wire bytes the server sent (trusted: no validation)."""
    return HalfVector._from_wire(data)
