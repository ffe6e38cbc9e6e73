"""``Vector`` (pgvector ``vector``) and the dense base it shares with ``HalfVector``.

A dense value holds exactly its wire bytes (``int16 dim, int16 unused = 0``, then ``dim`` big-endian
elements), so encoding it is free, decoding into it is one attribute store, and equality and
hashing follow the stored numbers.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, SupportsIndex, TypeAlias, TypeVar, overload

from ._common import (
    LITTLE_ENDIAN,
    VECTOR_MAX_DIM,
    as_element_list,
    be_struct,
    check_dim,
    fail,
    first_bad_element,
    floats_from_base64,
    format_f32,
    numpy_if_array,
    pack_f32_elements,
    parse_f32,
    position_in,
    short_repr,
    strip_pg,
)
from ._native import dense_vector_wire

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

DenseInput: TypeAlias = "Sequence[float] | array[Any] | npt.NDArray[Any] | DenseVector"

__all__ = ["DenseVector", "Vector", "decode_vector", "encode_vector"]

_D = TypeVar("_D", bound="DenseVector")
_HEADER = struct.Struct(">hh")
_pack_header = struct.Struct(">HH").pack


class DenseVector:
    """Common behaviour of :class:`Vector` and :class:`HalfVector` (not used directly)."""

    __slots__ = ("_wire",)

    _wire: bytes
    _kind: ClassVar[str] = ""
    _max_dim: ClassVar[int] = VECTOR_MAX_DIM
    _itemsize: ClassVar[int] = 4
    _code: ClassVar[str] = "f"
    _element: ClassVar[struct.Struct] = struct.Struct(">f")

    def __init__(self, values: DenseInput) -> None:
        self._wire = self._wire_from(values)

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def _wire_from(cls, values: Any) -> bytes:  # pragma: no cover - overridden
        raise NotImplementedError

    @classmethod
    def _from_wire(cls: type[_D], wire: bytes) -> _D:
        """Wrap wire bytes already known to be valid (decoders, batch encoders): no checks."""
        obj = object.__new__(cls)
        obj._wire = wire
        return obj

    @classmethod
    def from_binary(cls: type[_D], data: bytes | bytearray | memoryview) -> _D:
        """Parse pgvector's binary send/recv layout, validating it as the server would."""
        kind = cls._kind
        wire = bytes(data)
        if len(wire) < 4:
            fail(f"{kind} binary data is {len(wire)} bytes; the header alone takes 4")
        dim, unused = _HEADER.unpack_from(wire)
        check_dim(dim, kind, cls._max_dim)
        if unused != 0:
            fail(f"{kind} binary data: the unused header field must be 0, got {unused}")
        expected = 4 + cls._itemsize * dim
        if len(wire) != expected:
            fail(f"{kind} binary data is {len(wire)} bytes; {dim} dimensions take {expected}")
        if not _payload_is_finite(wire, cls._code, dim):
            first_bad_element(be_struct(f"{dim}{cls._code}").unpack_from(wire, 4), kind)
        return cls._from_wire(wire)

    @classmethod
    def from_text(cls: type[_D], text: str) -> _D:
        """Parse pgvector's text form, e.g. ``[1,2.5,-3e-05]``."""
        kind = cls._kind
        body = strip_pg(text)
        if len(body) < 2 or body[0] != "[" or body[-1] != "]":
            fail(f'{kind} text must look like "[1,2,3]", got {short_repr(text)}')
        inner = body[1:-1]
        if not strip_pg(inner):
            fail(f"{kind} must have at least 1 dimension")
        values: list[float] = []
        for index, part in enumerate(inner.split(",")):
            token = strip_pg(part)
            try:
                value = parse_f32(token)
            except ValueError:
                fail(f"{kind} text element {index} is not a number: {short_repr(token)}")
            if math.isinf(value) and "inf" not in token.lower():
                fail(f"{kind} element {index} ({token}) is out of range for {kind}")
            values.append(value)
        return cls(values)

    @classmethod
    def from_matrix(cls: type[_D], matrix: Any) -> list[_D]:
        """One value per row of a 2-D numpy array (or a sequence of rows).

        A numpy matrix is validated and converted in one pass for all rows, which makes this
        several times cheaper per row than building the values one by one; errors name the row.
        """
        if numpy_if_array(matrix) is not None:
            from ._ndarray import matrix_wires

            wires = matrix_wires(matrix, cls._kind)
            if wires is None:  # an object array: its rows are Python objects
                return cls.from_matrix(matrix.tolist())
            values: list[_D] = []
            append = values.append
            new = object.__new__
            for wire in wires:
                value = new(cls)
                value._wire = wire
                append(value)
            return values
        rows: list[_D] = []
        for index, row in enumerate(as_element_list(matrix, cls._kind)):
            try:
                rows.append(cls(row))
            except ValueError as exc:
                fail(f"row {index}: {exc}")
        return rows

    @classmethod
    def from_float_base64(cls: type[_D], data: str | bytes) -> _D:
        """Decode base64 of little-endian float32 values, as returned by embedding APIs such as
        OpenAI's ``encoding_format="base64"`` (the bytes of a ``'<f4'`` array)."""
        return cls(floats_from_base64(data, cls._kind))

    # -- access ------------------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """Number of dimensions."""
        return (len(self._wire) - 4) // self._itemsize

    def __len__(self) -> int:
        return (len(self._wire) - 4) // self._itemsize

    def to_list(self) -> list[float]:  # pragma: no cover - overridden
        """The elements as Python floats."""
        raise NotImplementedError

    # No __iter__ at run time: see the sequence protocol note in _common. Type checkers are told
    # about the iteration that __getitem__ provides.
    if TYPE_CHECKING:

        def __iter__(self) -> Iterator[float]: ...

    @overload
    def __getitem__(self, index: SupportsIndex) -> float: ...

    @overload
    def __getitem__(self, index: slice) -> list[float]: ...

    def __getitem__(self, index: SupportsIndex | slice) -> float | list[float]:
        if isinstance(index, slice):
            return self.to_list()[index]
        position = position_in(index, len(self), self._kind)
        value: float = self._element.unpack_from(self._wire, 4 + self._itemsize * position)[0]
        return value

    def to_numpy(self) -> npt.NDArray[np.float32]:
        """The elements as a new, writable native ``float32`` numpy array."""
        from ._ndarray import dense_to_numpy

        return dense_to_numpy(self._wire, self._itemsize)

    def to_binary(self) -> bytes:
        """pgvector's binary send/recv layout."""
        return self._wire

    def to_text(self) -> str:
        """pgvector's text layout, with each element as PostgreSQL prints a float4."""
        return "[" + ",".join(map(format_f32, self.to_list())) + "]"

    # -- comparison and display --------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DenseVector) or type(other) is not type(self):
            return NotImplemented
        # Equal bytes are equal numbers; different bytes can still be (0.0 and -0.0).
        return self._wire == other._wire or self.to_list() == other.to_list()

    def __hash__(self) -> int:
        # Hash the numbers, not the bytes, so 0.0 and -0.0 (equal) hash alike.
        return hash((self._kind, tuple(self.to_list())))

    def __repr__(self) -> str:
        values = self.to_list()
        if len(values) <= 6:
            shown = ", ".join(map(format_f32, values))
        else:
            head = ", ".join(map(format_f32, values[:3]))
            tail = ", ".join(map(format_f32, values[-2:]))
            shown = f"{head}, ..., {tail}"
        return f"{type(self).__name__}([{shown}], dim={len(values)})"


def _payload_is_finite(wire: bytes, code: str, dim: int) -> bool:
    """Whether every element of dense wire bytes is finite (with numpy's help if it is loaded)."""
    if sys.modules.get("numpy") is not None:
        from ._ndarray import dense_wire_is_finite

        return dense_wire_is_finite(wire, code)
    return math.isfinite(sum(be_struct(f"{dim}{code}").unpack_from(wire, 4)))


class Vector(DenseVector):
    """A pgvector ``vector``: 1 to 16,000 finite float32 values.

    Build one from a sequence of numbers, an ``array.array``, a 1-D numpy array of any real
    dtype (values are rounded to float32), another dense vector, or with :meth:`from_binary`,
    :meth:`from_text`, :meth:`from_float_base64` or :meth:`from_matrix`. Everything is checked
    before it can reach a server: NaN, infinities, values beyond float32 (e.g. ``1e39``),
    non-numbers and bools raise :class:`pgvs.errors.ValidationError` (a ``ValueError``) naming
    the element. Values are immutable, compare by value and are hashable.
    """

    __slots__ = ()

    _kind = "vector"
    _max_dim = VECTOR_MAX_DIM
    _itemsize = 4
    _code = "f"

    @classmethod
    def _wire_from(cls, values: Any) -> bytes:
        if _dense_vector_wire is not None and type(values) in _NATIVE_INPUTS:
            wire = _dense_vector_wire(values)
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
            if isinstance(values, Vector):  # subclasses (pgvs.compat) hold valid wire bytes too
                return values._wire
            values = values.to_list()
        np = numpy_if_array(values)
        if np is not None:
            from ._ndarray import vector_wire_python

            _use_numpy(np)
            return vector_wire_python(values)
        if isinstance(values, array) and values.typecode == "f":
            dim = len(values)
            check_dim(dim, "vector", VECTOR_MAX_DIM)
            if not math.isfinite(sum(values)):
                first_bad_element(values, "vector")
            swapped = values[:]
            if LITTLE_ENDIAN:
                swapped.byteswap()
            return _pack_header(dim, 0) + swapped.tobytes()
        if isinstance(values, array):
            values = values.tolist()
        elements = as_element_list(values, "vector")
        check_dim(len(elements), "vector", VECTOR_MAX_DIM)
        return _pack_header(len(elements), 0) + pack_f32_elements(elements, "vector")

    def to_list(self) -> list[float]:
        """The elements as Python floats."""
        values = array("f")
        values.frombytes(memoryview(self._wire)[4:])
        if LITTLE_ENDIAN:
            values.byteswap()
        return values.tolist()


# The exact types the compiled encoder is given besides exact numpy arrays (_array_wire): lists
# and tuples of floats/ints and array.array. Subclasses and anything else take the Python path.
_NATIVE_INPUTS = frozenset({list, tuple, array})
_dense_vector_wire = dense_vector_wire


def _array_wire(arr: Any) -> bytes:
    """``vector`` wire bytes of a numpy array: the compiled path for exact arrays, then Python."""
    if _dense_vector_wire is not None and type(arr) is _ndarray:
        wire = _dense_vector_wire(arr)
        if wire is not None:
            return wire
    from ._ndarray import vector_wire_python

    return vector_wire_python(arr)


# -- codec functions ---------------------------------------------------------------------------------


class _NoArrayType:
    """Stands in for numpy.ndarray until numpy is in use, so the type test below never matches."""


_ndarray: type = _NoArrayType
_np_vector_wire: Callable[[Any], bytes] = Vector._wire_from


def _use_numpy(np: Any) -> None:
    """Called with numpy's module once an array has been seen (so numpy is imported)."""
    global _ndarray, _np_vector_wire
    _ndarray = np.ndarray
    _np_vector_wire = _array_wire


def encode_vector(value: Any) -> bytes:
    """The ``vector`` wire bytes of a Vector, numpy array or sequence (what asyncpg calls).

    Bytes are taken as wire bytes already, and checked as :meth:`Vector.from_binary` does.
    """
    cls = type(value)
    if cls is _ndarray:
        return _np_vector_wire(value)
    if cls is Vector:
        wire: bytes = value._wire
        return wire
    if isinstance(value, bytes | bytearray | memoryview):
        return Vector.from_binary(value)._wire
    return Vector._wire_from(value)


def decode_vector(data: bytes) -> Vector:
    """A :class:`Vector` from wire bytes the server sent (trusted: no validation)."""
    return Vector._from_wire(data)
