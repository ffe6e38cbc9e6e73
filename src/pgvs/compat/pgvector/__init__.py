"""pgvector-python's value types, as thin subclasses of pgvs' own.

``from pgvector import Vector, HalfVector, SparseVector, Bit`` becomes
``from pgvs.compat.pgvector import Vector, HalfVector, SparseVector, Bit``, and
``from pgvector.asyncpg import register_vector`` becomes
``from pgvs.compat.pgvector.asyncpg import register_vector``.

What is added to the pgvs types: ``dimensions()``; ``SparseVector.indices()`` and ``.values()``
as methods (pgvs has properties) and the positional ``SparseVector(mapping, dimensions)``;
``Vector([True, False])`` (and ``HalfVector``) storing 1.0 / 0.0; ``Bit(bytes)`` as packed bits,
8 per byte; ``HalfVector.to_numpy()`` as float16. Everything else (``to_list``, ``to_numpy``,
``to_text``, ``to_binary``, ``from_text``, ``from_binary``, ``SparseVector.to_coo`` and
``scipy.sparse`` input) is pgvs' own, and so are the checks: see README.md, "Moving from
pgvector-python / asyncpg_vector", for where pgvs refuses what pgvector-python lets through.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import ValidationError
from ...types import Bit as _Bit
from ...types import HalfVector as _HalfVector
from ...types import SparseVector as _SparseVector
from ...types import Vector as _Vector
from .._shared import bools_as_numbers

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["Bit", "HalfVector", "SparseVector", "Vector"]


class Vector(_Vector):
    """pgvector-python's ``Vector``: a :class:`pgvs.Vector` with ``dimensions()``, taking
    bools as 1.0 / 0.0."""

    __slots__ = ()

    def __init__(self, value: Any) -> None:
        try:
            super().__init__(value)
        except ValidationError:
            converted = bools_as_numbers(value)
            if converted is value:
                raise
            super().__init__(converted)

    def dimensions(self) -> int:
        """Number of dimensions (pgvs: ``.dim``)."""
        return self.dim


class HalfVector(_HalfVector):
    """pgvector-python's ``HalfVector``: a :class:`pgvs.HalfVector` with ``dimensions()``,
    taking bools as 1.0 / 0.0, whose ``to_numpy()`` is float16."""

    __slots__ = ()

    def __init__(self, value: Any) -> None:
        try:
            super().__init__(value)
        except ValidationError:
            converted = bools_as_numbers(value)
            if converted is value:
                raise
            super().__init__(converted)

    def dimensions(self) -> int:
        """Number of dimensions (pgvs: ``.dim``)."""
        return self.dim

    def to_numpy(self) -> npt.NDArray[np.float16]:  # type: ignore[override]
        """The elements as a float16 array (pgvs gives float32, which holds them exactly)."""
        return super().to_numpy().astype("float16")


class SparseVector(_SparseVector):
    """pgvector-python's ``SparseVector``: ``SparseVector(mapping, dimensions)``,
    ``SparseVector(dense)``, ``SparseVector(scipy_sparse_row)``, with ``dimensions()``,
    ``indices()`` and ``values()`` as methods (0-based indices, as in pgvs)."""

    __slots__ = ()

    def __init__(self, value: Any, dimensions: int | None = None, /) -> None:
        super().__init__(value, dimensions)

    def dimensions(self) -> int:
        """Number of dimensions, zeros included (pgvs: ``.dim``)."""
        return self.dim

    def indices(self) -> list[int]:  # type: ignore[override]
        """0-based positions of the non-zero elements (pgvs: the ``.indices`` property)."""
        return list(self._index_tuple())

    def values(self) -> list[float]:  # type: ignore[override]
        """The non-zero elements, in index order (pgvs: the ``.values`` property)."""
        return list(self._value_tuple())


class Bit(_Bit):
    """pgvector-python's ``Bit``: a :class:`pgvs.Bit` that also takes ``bytes`` as packed bits,
    8 per byte, most significant first (pgvs: ``Bit.from_bytes(data, length)``)."""

    __slots__ = ()

    def __init__(self, value: Any) -> None:
        if isinstance(value, bytes | bytearray):
            value = _Bit.from_bytes(value)
        super().__init__(value)
