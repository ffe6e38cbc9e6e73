"""``SparseVector``: pgvector ``sparsevec``.

Wire layout (sparsevec_send/recv): ``int32 dim, int32 nnz, int32 unused = 0``, then ``nnz`` int32
indices, 0-based and strictly ascending, then ``nnz`` float32 values, none of them zero. The text
layout counts from 1: ``{1:1.5,3:2}/5``. The Python API counts from 0, like any Python sequence.
"""

from __future__ import annotations

import itertools
import math
import operator
import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, SupportsIndex, TypeAlias, TypeVar, overload

from ._common import (
    SPARSEVEC_MAX_DIM,
    SPARSEVEC_MAX_NNZ,
    as_element_list,
    be_struct,
    check_dim,
    check_float32,
    element_as_float,
    fail,
    first_bad_element,
    floats_from_base64,
    format_f32,
    is_bool,
    numpy_if_array,
    pack_f32_elements,
    parse_f32,
    position_in,
    scipy_sparse_if,
    short_repr,
    strip_pg,
)
from ._vector import DenseVector

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from scipy.sparse import sparray, spmatrix

SparseInput: TypeAlias = (
    "Mapping[int, float] | Sequence[float] | npt.NDArray[Any] | DenseVector | SparseVector"
    " | sparray | spmatrix"
)

__all__ = ["SparseVector", "decode_sparsevec", "encode_sparsevec"]

_KIND = "sparsevec"
_S = TypeVar("_S", bound="SparseVector")
_INT = struct.Struct(">i")
_FLOAT = struct.Struct(">f")


def _as_index(value: object, what: str) -> int:
    if is_bool(value):
        fail(f"sparsevec {what} must be an integer, not a bool")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        fail(f"sparsevec {what} must be an integer, not {type(value).__name__}")


def _checked_dim(dim: object) -> int:
    number = _as_index(dim, "dim")
    check_dim(number, _KIND, SPARSEVEC_MAX_DIM)
    return number


def _wire(dim: int, indices: Sequence[int], values: Sequence[float]) -> bytes:
    """Wire bytes of already-validated parts (sorted unique 0-based indices, non-zero floats)."""
    nnz = len(indices)
    if nnz > SPARSEVEC_MAX_NNZ:
        fail(f"sparsevec cannot have more than {SPARSEVEC_MAX_NNZ} non-zero elements, got {nnz}")
    return be_struct(f"3i{nnz}i{nnz}f").pack(dim, nnz, 0, *indices, *values)


def _from_pairs(pairs: list[tuple[int, float]], dim: int) -> bytes:
    """Wire bytes of (0-based index, value) pairs in any order: checks, drops zeros, sorts."""
    checked: list[tuple[int, float]] = []
    for index, value in pairs:
        if not 0 <= index < dim:
            fail(
                f"sparsevec index {index} is out of range for dim {dim} "
                f"(indices are 0-based: 0 to {dim - 1})"
            )
        number = check_float32(
            index, element_as_float(index, value, _KIND, "value at index"), _KIND, "value at index"
        )
        checked.append((index, number))
    checked.sort(key=lambda pair: pair[0])
    for previous, current in itertools.pairwise(checked):
        if previous[0] == current[0]:
            fail(f"sparsevec index {current[0]} appears more than once")
    # pgvector stores no zeros (its text input drops them, its binary input refuses them).
    kept = [pair for pair in checked if pair[1] != 0]
    return _wire(dim, [pair[0] for pair in kept], [pair[1] for pair in kept])


class SparseVector:
    """A pgvector ``sparsevec``: ``dim`` up to 1,000,000,000, at most 16,000 non-zero float32s.

    ``SparseVector({0: 1.5, 2: 2.0}, dim=5)`` takes 0-based indices in any order (they are
    sorted); ``SparseVector([1.5, 0, 2.0, 0, 0])`` or a 1-D numpy array keeps the non-zero
    elements of a dense input; a ``scipy.sparse`` array or matrix of any format with one row
    (shape ``(1, dim)``, or ``(dim,)`` for 1-D sparse arrays) is taken as is, summing entries
    stored twice as scipy does. ``to_coo()`` gives a 1 x dim ``coo_array`` back. Zero values are
    dropped, as pgvector does; out-of-range or repeated indices, NaN, infinities and non-numbers
    raise :class:`pgvs.errors.ValidationError` naming the index. Immutable, compared by value.
    """

    __slots__ = ("_wire",)

    _wire: bytes

    def __init__(self, data: SparseInput, dim: int | None = None) -> None:
        self._wire = _sparse_wire(data, dim)

    @classmethod
    def _from_wire(cls: type[_S], wire: bytes) -> _S:
        obj = object.__new__(cls)
        obj._wire = wire
        return obj

    @classmethod
    def from_indices(
        cls: type[_S], indices: Sequence[int], values: Sequence[float], dim: int
    ) -> _S:
        """From parallel sequences of 0-based indices and values (any order, no repeats)."""
        index_list = as_element_list(indices, _KIND)
        value_list = as_element_list(values, _KIND)
        if len(index_list) != len(value_list):
            fail(
                f"sparsevec got {len(index_list)} indices but {len(value_list)} values; "
                "they must pair up"
            )
        size = _checked_dim(dim)
        pairs = [
            (_as_index(index, f"index at position {position}"), value)
            for position, (index, value) in enumerate(zip(index_list, value_list, strict=True))
        ]
        return cls._from_wire(_from_pairs(pairs, size))

    @classmethod
    def from_binary(cls: type[_S], data: bytes | bytearray | memoryview) -> _S:
        """Parse pgvector's binary layout, validating it as the server would."""
        wire = bytes(data)
        if len(wire) < 12:
            fail(f"sparsevec binary data is {len(wire)} bytes; the header alone takes 12")
        dim, nnz, unused = be_struct("3i").unpack_from(wire)
        check_dim(dim, _KIND, SPARSEVEC_MAX_DIM)
        if nnz < 0 or nnz > SPARSEVEC_MAX_NNZ or nnz > dim:
            fail(f"sparsevec binary data: {nnz} non-zero elements is impossible for dim {dim}")
        if unused != 0:
            fail(f"sparsevec binary data: the unused header field must be 0, got {unused}")
        expected = 12 + 8 * nnz
        if len(wire) != expected:
            fail(f"sparsevec binary data is {len(wire)} bytes; {nnz} elements take {expected}")
        indices = be_struct(f"{nnz}i").unpack_from(wire, 12)
        values = be_struct(f"{nnz}f").unpack_from(wire, 12 + 4 * nnz)
        previous = -1
        for index in indices:
            if not 0 <= index < dim:
                fail(f"sparsevec binary data: index {index} is out of range for dim {dim}")
            if index <= previous:
                fail("sparsevec binary data: indices must be strictly ascending")
            previous = index
        if not math.isfinite(sum(values)):
            first_bad_element(values, _KIND)
        if 0.0 in values:
            fail("sparsevec binary data must not contain zero values")
        return cls._from_wire(wire)

    @classmethod
    def from_text(cls: type[_S], text: str) -> _S:
        """Parse pgvector's text form, e.g. ``{1:1.5,3:2}/5`` (indices counted from 1)."""
        body = strip_pg(text)
        close = body.find("}")
        slash = body.find("/", close + 1)
        if not body.startswith("{") or close < 0 or slash < 0 or strip_pg(body[close + 1 : slash]):
            fail(f'sparsevec text must look like "{{1:1.5,3:2}}/5", got {short_repr(text)}')
        dim_text = strip_pg(body[slash + 1 :])
        if not dim_text.isdigit():
            fail(f"sparsevec text has no valid dimension count: {short_repr(text)}")
        dim = _checked_dim(int(dim_text))
        pairs: list[tuple[int, float]] = []
        inner = body[1:close]
        if strip_pg(inner):
            for part in inner.split(","):
                index_text, colon, value_text = part.partition(":")
                index_text = strip_pg(index_text)
                value_text = strip_pg(value_text)
                if not colon or not index_text.isdigit():
                    fail(f"sparsevec text element {short_repr(part)} is not index:value")
                position = int(index_text)
                if not 1 <= position <= dim:
                    fail(
                        f"sparsevec text index {position} is out of range for dim {dim} "
                        f"(text indices are 1-based: 1 to {dim})"
                    )
                try:
                    value = parse_f32(value_text)
                except ValueError:
                    fail(f"sparsevec text value at index {position} is not a number")
                if math.isinf(value) and "inf" not in value_text.lower():
                    fail(f"sparsevec value at index {position} ({value_text}) is out of range")
                pairs.append((position - 1, value))
        return cls._from_wire(_from_pairs(pairs, dim))

    @classmethod
    def from_float_base64(cls: type[_S], data: str | bytes, dim: int | None = None) -> _S:
        """The non-zero elements of base64 little-endian float32 values (a dense embedding as
        embedding APIs return it with ``encoding_format="base64"``)."""
        return cls(floats_from_base64(data, _KIND), dim)

    # -- access ------------------------------------------------------------------------------------
    #
    # Methods here read the wire bytes through the private helpers, never through the public
    # properties, which pgvs.compat overrides with other libraries' call shapes (``indices()``).

    def _count(self) -> int:
        return (len(self._wire) - 12) // 8

    def _index_tuple(self) -> tuple[int, ...]:
        indices: tuple[int, ...] = be_struct(f"{self._count()}i").unpack_from(self._wire, 12)
        return indices

    def _value_tuple(self) -> tuple[float, ...]:
        nnz = self._count()
        values: tuple[float, ...] = be_struct(f"{nnz}f").unpack_from(self._wire, 12 + 4 * nnz)
        return values

    @property
    def dim(self) -> int:
        """Number of dimensions (zeros included)."""
        dim: int = be_struct("i").unpack_from(self._wire)[0]
        return dim

    @property
    def nnz(self) -> int:
        """Number of stored (non-zero) elements."""
        return self._count()

    def __len__(self) -> int:
        return self.dim

    @property
    def indices(self) -> list[int]:
        """0-based positions of the non-zero elements, ascending."""
        return list(self._index_tuple())

    @property
    def values(self) -> list[float]:
        """The non-zero elements, in index order."""
        return list(self._value_tuple())

    def to_dict(self) -> dict[int, float]:
        """``{0-based index: value}`` of the non-zero elements."""
        return dict(zip(self._index_tuple(), self._value_tuple(), strict=True))

    def to_list(self) -> list[float]:
        """The dense elements, zeros included (``dim`` floats: mind very large dims)."""
        dense = [0.0] * self.dim
        for index, value in zip(self._index_tuple(), self._value_tuple(), strict=True):
            dense[index] = value
        return dense

    def to_numpy(self) -> npt.NDArray[np.float32]:
        """The dense elements as a float32 numpy array of length ``dim``."""
        from ._ndarray import sparse_to_numpy

        return sparse_to_numpy(self.dim, list(self._index_tuple()), list(self._value_tuple()))

    def to_coo(self) -> Any:
        """A 1 x ``dim`` ``scipy.sparse.coo_array`` of float32 (needs scipy installed)."""
        from ._scipy import to_coo

        return to_coo(self.dim, self._index_tuple(), self._value_tuple())

    def to_binary(self) -> bytes:
        """pgvector's binary send/recv layout."""
        return self._wire

    def to_text(self) -> str:
        """pgvector's text layout: ``{index:value,...}/dim`` with 1-based indices."""
        items = ",".join(
            f"{index + 1}:{format_f32(value)}"
            for index, value in zip(self._index_tuple(), self._value_tuple(), strict=True)
        )
        return f"{{{items}}}/{self.dim}"

    # No __iter__ at run time: see the sequence protocol note in _common. Type checkers are told
    # about the iteration that __getitem__ provides.
    if TYPE_CHECKING:

        def __iter__(self) -> Iterator[float]: ...

    @overload
    def __getitem__(self, index: SupportsIndex) -> float: ...

    @overload
    def __getitem__(self, index: slice) -> list[float]: ...

    def __getitem__(self, index: SupportsIndex | slice) -> float | list[float]:
        """The dense element at ``index`` (0.0 where nothing is stored)."""
        if isinstance(index, slice):
            return self.to_list()[index]
        position = position_in(index, self.dim, _KIND)
        # Binary search in the wire bytes: O(log nnz) per element, so iterating is O(dim log nnz).
        wire = self._wire
        nnz = self._count()
        low, high = 0, nnz
        while low < high:
            middle = (low + high) // 2
            if _INT.unpack_from(wire, 12 + 4 * middle)[0] < position:
                low = middle + 1
            else:
                high = middle
        if low < nnz and _INT.unpack_from(wire, 12 + 4 * low)[0] == position:
            value: float = _FLOAT.unpack_from(wire, 12 + 4 * nnz + 4 * low)[0]
            return value
        return 0.0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SparseVector):
            return NotImplemented
        # Canonical bytes (sorted, no zeros, no -0.0 since that is a zero) mean equal values.
        return self._wire == other._wire

    def __hash__(self) -> int:
        return hash(self._wire)

    def __repr__(self) -> str:
        pairs = list(zip(self._index_tuple(), self._value_tuple(), strict=True))
        shown = [f"{index}: {format_f32(value)}" for index, value in pairs[:4]]
        if len(pairs) > 5:
            shown.append("...")
        if len(pairs) >= 5:
            index, value = pairs[-1]
            shown.append(f"{index}: {format_f32(value)}")
        return f"SparseVector({{{', '.join(shown)}}}, dim={self.dim}, nnz={len(pairs)})"


def _sparse_wire(data: Any, dim: int | None) -> bytes:
    if isinstance(data, SparseVector):
        if dim is not None and _checked_dim(dim) != data.dim:
            fail(f"sparsevec dim={dim} does not match the given SparseVector's {data.dim}")
        return data._wire
    if scipy_sparse_if(data) is not None:  # before Mapping: dok_array / dok_matrix are dicts
        from ._scipy import sparse_pairs

        size, pairs = sparse_pairs(data)
        if dim is not None and _checked_dim(dim) != size:
            fail(f"sparsevec dim={dim} does not match the scipy input's {size} columns")
        return _from_pairs(pairs, _checked_dim(size))
    if isinstance(data, Mapping):
        if dim is None:
            fail("sparsevec from a mapping needs dim=: SparseVector({index: value}, dim=...)")
        size = _checked_dim(dim)
        pairs = [(_as_index(key, "index"), value) for key, value in data.items()]
        return _from_pairs(pairs, size)
    if numpy_if_array(data) is not None:
        from ._ndarray import sparse_from_dense

        size, indices, values = sparse_from_dense(data)
    else:
        if isinstance(data, DenseVector):
            data = data.to_list()
        elements = as_element_list(data, _KIND)
        size = len(elements)
        check_dim(size, _KIND, SPARSEVEC_MAX_DIM)
        floats = be_struct(f"{size}f").unpack(pack_f32_elements(elements, _KIND))
        indices = [index for index, value in enumerate(floats) if value != 0]
        values = [floats[index] for index in indices]
    if dim is not None and _checked_dim(dim) != size:
        fail(f"sparsevec dim={dim} does not match the {size} elements given")
    return _wire(size, indices, values)


def encode_sparsevec(value: Any) -> bytes:
    """The ``sparsevec`` wire bytes of a SparseVector or a dense sequence / numpy array.

    A bare mapping is refused: it does not say how many dimensions there are. Wrap it as
    ``SparseVector(mapping, dim=...)``. Bytes are taken as wire bytes already, and checked as
    :meth:`SparseVector.from_binary` does.
    """
    if type(value) is SparseVector:
        return value._wire
    if isinstance(value, bytes | bytearray | memoryview):
        return SparseVector.from_binary(value)._wire
    if isinstance(value, Mapping) and scipy_sparse_if(value) is None:
        fail("a mapping is not a sparsevec by itself; pass SparseVector(mapping, dim=...)")
    return _sparse_wire(value, None)


def decode_sparsevec(data: bytes) -> SparseVector:
    """A :class:`SparseVector` from wire bytes the server sent (trusted: no validation)."""
    return SparseVector._from_wire(data)
