"""asyncpg_vector's names on pgvs' types and codecs.

``from asyncpg_vector import HalfVector, SparseVector, Vector, register_vector`` becomes
``from pgvs.compat.asyncpg_vector import HalfVector, SparseVector, Vector, register_vector``.

The classes are thin subclasses of pgvs' types with asyncpg_vector's methods added: ``size()``,
``to_float_list()``, ``from_float_list()``, ``from_float_base64()``, ``to_database_binary()``,
``from_database_binary()``, ``SparseVector.nnz()`` (a method; pgvs has a property), the
``type_name`` / ``cosine_similarity`` class attributes, and asyncpg_vector's constructors: the
raw big-endian element bytes (``Vector(payload)``, ``SparseVector(size, indices, values)``).
Values are checked as pgvs checks them; README.md, "Moving from pgvector-python /
asyncpg_vector", lists what pgvs refuses that asyncpg_vector lets through (empty vectors first).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, TypeVar

import asyncpg

from ..types import HalfVector as _HalfVector
from ..types import SparseVector as _SparseVector
from ..types import Vector as _Vector
from ..types._common import check_dim, fail
from ..types._vector import DenseVector as _DenseVector
from ._shared import install

__all__ = ["BasicVector", "DenseVector", "HalfVector", "SparseVector", "Vector", "register_vector"]

_DENSE_HEADER = struct.Struct(">HH")
_SPARSE_HEADER = struct.Struct(">iii")


class _PgvsValue(Protocol):
    """What BasicVector's methods use: every subclass also derives from a pgvs type."""

    @property
    def dim(self) -> int: ...

    def to_list(self) -> list[float]: ...

    def to_binary(self) -> bytes: ...


class BasicVector:
    """The common base of the three types, for ``isinstance`` checks and the methods they
    share."""

    __slots__ = ()

    type_name: ClassVar[str] = ""
    cosine_similarity: ClassVar[str] = ""

    def size(self: _PgvsValue) -> int:
        """Number of dimensions, zeros included (pgvs: ``.dim``)."""
        return self.dim

    def to_float_list(self: _PgvsValue) -> list[float]:
        """The elements as Python floats, zeros included (pgvs: ``to_list()``)."""
        return self.to_list()

    def to_database_binary(self: _PgvsValue) -> bytes:
        """pgvector's binary layout (pgvs: ``to_binary()``)."""
        return self.to_binary()


_D = TypeVar("_D", bound="DenseVector")


class DenseVector(_DenseVector, BasicVector):
    """Base of :class:`Vector` and :class:`HalfVector`. ``DenseVector(payload)`` takes the
    big-endian elements without pgvector's 4-byte header, as asyncpg_vector stores them."""

    __slots__ = ()

    def __init__(self, data: Any = None) -> None:
        if isinstance(data, bytes | bytearray | memoryview):
            payload = bytes(data)
            if len(payload) % self._itemsize:
                fail(
                    f"{self._kind} element bytes: {len(payload)} is not a multiple of "
                    f"{self._itemsize}"
                )
            dim = len(payload) // self._itemsize
            check_dim(dim, self._kind, self._max_dim)
            data = self.from_binary(_DENSE_HEADER.pack(dim, 0) + payload)
        # None (asyncpg_vector's empty vector) is refused as every empty vector is.
        super().__init__([] if data is None else data)

    @classmethod
    def from_float_list(cls: type[_D], vec: Sequence[float]) -> _D:
        """From a sequence of numbers (pgvs: the constructor)."""
        return cls._from_wire(cls._wire_from(vec))

    @classmethod
    def from_database_binary(cls: type[_D], data: bytes) -> _D:
        """Parse pgvector's binary layout, checked (pgvs: ``from_binary()``)."""
        return cls.from_binary(data)

    def __str__(self) -> str:
        return f"{type(self).__name__}(size={self.dim})"


class Vector(DenseVector, _Vector):
    """asyncpg_vector's ``Vector`` on :class:`pgvs.Vector`."""

    __slots__ = ()

    type_name: ClassVar[str] = "vector"
    cosine_similarity: ClassVar[str] = "vector_cosine_ops"


class HalfVector(DenseVector, _HalfVector):
    """asyncpg_vector's ``HalfVector`` on :class:`pgvs.HalfVector`."""

    __slots__ = ()

    type_name: ClassVar[str] = "halfvec"
    cosine_similarity: ClassVar[str] = "halfvec_cosine_ops"


class SparseVector(_SparseVector, BasicVector):
    """asyncpg_vector's ``SparseVector`` on :class:`pgvs.SparseVector`.

    ``SparseVector(size, indices, values)`` takes the indices (0-based) and values as big-endian
    int32 / float32 bytes, as asyncpg_vector stores them; build one from numbers with
    :meth:`from_float_list` (a dense sequence) or as a :class:`pgvs.SparseVector`.
    """

    __slots__ = ()

    type_name: ClassVar[str] = "sparsevec"
    cosine_similarity: ClassVar[str] = "sparsevec_cosine_ops"

    def __init__(
        self, size: int | None = None, indices: bytes | None = None, values: bytes | None = None
    ) -> None:
        if size is None and indices is None and values is None:
            super().__init__([])  # refused: a sparsevec has at least 1 dimension
            return
        if not isinstance(indices, bytes | bytearray) or not isinstance(values, bytes | bytearray):
            fail(
                "SparseVector(size, indices, values) takes the indices and values as big-endian "
                "int32 / float32 bytes; build one from numbers with SparseVector.from_float_list()"
            )
        if len(indices) != len(values) or len(indices) % 4:
            fail(
                f"sparsevec got {len(indices)} bytes of indices and {len(values)} bytes of "
                "values; they must pair up, 4 bytes each"
            )
        header = _SPARSE_HEADER.pack(size, len(indices) // 4, 0)
        super().__init__(_SparseVector.from_binary(header + indices + values))

    def nnz(self) -> int:  # type: ignore[override]
        """Number of stored (non-zero) elements (pgvs: the ``.nnz`` property)."""
        return self._count()

    @classmethod
    def from_float_list(cls, vec: Sequence[float]) -> SparseVector:
        """The non-zero elements of a dense sequence of numbers."""
        return cls._from_wire(_SparseVector(vec).to_binary())

    @classmethod
    def from_float_base64(cls, data: str | bytes, dim: int | None = None) -> SparseVector:
        """The non-zero elements of base64 little-endian float32 values."""
        return cls._from_wire(_SparseVector.from_float_base64(data, dim).to_binary())

    @classmethod
    def from_database_binary(cls, data: bytes) -> SparseVector:
        """Parse pgvector's binary layout, checked (pgvs: ``from_binary()``)."""
        return cls.from_binary(data)

    def __str__(self) -> str:
        return f"SparseVector(size={self.dim}, nnz={self._count()})"


async def register_vector(conn: asyncpg.Connection[Any], schema: str | None = None) -> None:
    """Install pgvs' binary codecs for ``vector``, ``halfvec`` and ``sparsevec``, returning this
    module's ``Vector``, ``HalfVector`` and ``SparseVector``.

    Parameters may be those types, pgvs' own, lists, tuples or numpy arrays of numbers.
    ``schema`` defaults to wherever the ``vector`` extension is installed (asyncpg_vector
    assumes ``public``). ``bit``/``varbit`` keep asyncpg's codec, as with asyncpg_vector.
    """
    await install(
        conn,
        schema,
        {
            "vector": Vector._from_wire,
            "halfvec": HalfVector._from_wire,
            "sparsevec": SparseVector._from_wire,
        },
    )
