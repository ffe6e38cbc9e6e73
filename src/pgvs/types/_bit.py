"""``Bit``: PostgreSQL ``bit`` / ``bit varying``, as used by pgvector's binary quantization.

Wire layout (varbit.c bit_send/bit_recv): ``int32`` bit length, then ``ceil(length / 8)`` bytes,
most significant bit first, the unused low bits of the last byte zero.
"""

from __future__ import annotations

import operator
import struct
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, SupportsIndex, TypeAlias, TypeVar, overload

from ._common import (
    BIT_MAX_LENGTH,
    as_element_list,
    fail,
    is_bool,
    numpy_if_array,
    position_in,
    short_repr,
    strip_pg,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from asyncpg import BitString

BitInput: TypeAlias = "str | Sequence[bool] | Sequence[int] | npt.NDArray[Any] | BitString | Bit"

__all__ = ["Bit", "decode_bit", "encode_bit"]

_B = TypeVar("_B", bound="Bit")
_LENGTH = struct.Struct(">i")
_BIT_CHARS = frozenset("01")


def _check_length(length: int) -> None:
    if length < 0:
        fail(f"bit length must not be negative, got {length}")
    if length > BIT_MAX_LENGTH:
        fail(f"bit length {length} exceeds PostgreSQL's maximum of {BIT_MAX_LENGTH}")


def _wire_from_digits(digits: str) -> bytes:
    """Wire bytes of a validated string of 0s and 1s."""
    length = len(digits)
    _check_length(length)
    size = (length + 7) // 8
    if not size:
        return _LENGTH.pack(0)
    # Pad to whole bytes with zeros on the right: the bits not in the string stay 0.
    packed = int(digits + "0" * (size * 8 - length), 2).to_bytes(size, "big")
    return _LENGTH.pack(length) + packed


def _digits_from_text(text: str) -> str:
    if not _BIT_CHARS.issuperset(text):
        position = next(i for i, char in enumerate(text) if char not in _BIT_CHARS)
        fail(f"bit string position {position} is {text[position]!r}; only 0 and 1 are allowed")
    return text


def _digit(position: int, value: object) -> str:
    if is_bool(value):
        return "1" if value else "0"
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        fail(f"bit element {position} is {type(value).__name__}, not a bool or 0/1")
    if number not in (0, 1):
        fail(f"bit element {position} is {short_repr(value)}; bits must be 0 or 1")
    return "1" if number else "0"


class Bit:
    """A bit string, for pgvector's ``bit(n)`` columns (Hamming / Jaccard distance).

    Build one from a string of ``0``/``1``, a sequence of bools (or 0/1 ints), a 1-D numpy bool
    array (or integer array of 0s and 1s), an ``asyncpg.BitString``, :meth:`from_bytes` (packed
    bytes + bit length), :meth:`from_binary` or :meth:`from_text`. Immutable, compared by value,
    hashable. The empty bit string is valid (``''::varbit``).
    """

    __slots__ = ("_wire",)

    _wire: bytes

    def __init__(self, value: BitInput) -> None:
        self._wire = _bit_wire(value)

    @classmethod
    def _from_wire(cls: type[_B], wire: bytes) -> _B:
        obj = object.__new__(cls)
        obj._wire = wire
        return obj

    @classmethod
    def from_bytes(
        cls: type[_B], data: bytes | bytearray | memoryview, length: int | None = None
    ) -> _B:
        """From packed bytes (most significant bit first) and the number of bits used
        (default: all of them). Bits past ``length`` in the last byte are cleared."""
        packed = bytes(data)
        if length is None:
            length = 8 * len(packed)
        _check_length(length)
        if (length + 7) // 8 != len(packed):
            fail(f"{len(packed)} bytes cannot hold exactly {length} bits")
        return cls._from_wire(_LENGTH.pack(length) + _clear_padding(packed, length))

    @classmethod
    def from_binary(cls: type[_B], data: bytes | bytearray | memoryview) -> _B:
        """Parse the ``bit``/``varbit`` binary layout (padding bits are cleared, as the server
        does)."""
        wire = bytes(data)
        if len(wire) < 4:
            fail(f"bit binary data is {len(wire)} bytes; the length alone takes 4")
        (length,) = _LENGTH.unpack_from(wire)
        _check_length(length)
        if len(wire) != 4 + (length + 7) // 8:
            fail(
                f"bit binary data is {len(wire)} bytes; {length} bits take {4 + (length + 7) // 8}"
            )
        return cls._from_wire(wire[:4] + _clear_padding(wire[4:], length))

    @classmethod
    def from_text(cls: type[_B], text: str) -> _B:
        """Parse PostgreSQL's text output of a bit string: ``0``s and ``1``s."""
        return cls._from_wire(_wire_from_digits(_digits_from_text(strip_pg(text))))

    # -- access ------------------------------------------------------------------------------------

    @property
    def length(self) -> int:
        """Number of bits."""
        length: int = _LENGTH.unpack_from(self._wire)[0]
        return length

    def __len__(self) -> int:
        return self.length

    def to_bytes(self) -> bytes:
        """The packed bits, most significant first, unused trailing bits zero."""
        return self._wire[4:]

    def to_list(self) -> list[bool]:
        """One bool per bit."""
        return [char == "1" for char in self.to_text()]

    # No __iter__ at run time: see the sequence protocol note in _common. Type checkers are told
    # about the iteration that __getitem__ provides.
    if TYPE_CHECKING:

        def __iter__(self) -> Iterator[bool]: ...

    @overload
    def __getitem__(self, index: SupportsIndex) -> bool: ...

    @overload
    def __getitem__(self, index: slice) -> list[bool]: ...

    def __getitem__(self, index: SupportsIndex | slice) -> bool | list[bool]:
        if isinstance(index, slice):
            return self.to_list()[index]
        position = position_in(index, self.length, "bit")
        return bool(self._wire[4 + position // 8] >> (7 - position % 8) & 1)

    def to_numpy(self) -> npt.NDArray[np.bool_]:
        """One numpy bool per bit."""
        from ._ndarray import bits_to_numpy

        return bits_to_numpy(self.length, self._wire[4:])

    def to_binary(self) -> bytes:
        """The ``bit``/``varbit`` binary send/recv layout."""
        return self._wire

    def to_text(self) -> str:
        """PostgreSQL's text form: one ``0`` or ``1`` per bit."""
        length = self.length
        packed = self._wire[4:]
        if not length:
            return ""
        return format(int.from_bytes(packed, "big"), f"0{8 * len(packed)}b")[:length]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Bit):
            return NotImplemented
        return self._wire == other._wire

    def __hash__(self) -> int:
        return hash(self._wire)

    def __repr__(self) -> str:
        length = self.length
        if length <= 64:
            return f"Bit({self.to_text()!r})"
        text = self.to_text()
        return f"Bit('{text[:16]}...{text[-8:]}', length={length})"


def _bitstring_type() -> type[Any] | None:
    """asyncpg's ``BitString`` class if asyncpg is loaded (this package never imports it)."""
    types = sys.modules.get("asyncpg.pgproto.types")
    cls: type[Any] | None = getattr(types, "BitString", None)
    return cls


def _clear_padding(packed: bytes, length: int) -> bytes:
    spare = 8 * len(packed) - length
    if not spare or not packed:
        return packed
    return packed[:-1] + bytes([packed[-1] & (0xFF << spare) & 0xFF])


def _bit_wire(value: Any) -> bytes:
    if isinstance(value, Bit):
        return value._wire
    if isinstance(value, str):
        return _wire_from_digits(_digits_from_text(value))
    bitstring = _bitstring_type()
    if bitstring is not None and isinstance(value, bitstring):
        return Bit.from_bytes(value.bytes, len(value))._wire
    if numpy_if_array(value) is not None:
        from ._ndarray import bits_from_array

        length, packed = bits_from_array(value)
        _check_length(length)
        return _LENGTH.pack(length) + packed
    if isinstance(value, bytes | bytearray | memoryview):
        fail("bytes are ambiguous as bits; use Bit.from_bytes(data, length) for packed bits")
    elements = as_element_list(value, "bit")
    return _wire_from_digits("".join(_digit(i, item) for i, item in enumerate(elements)))


def encode_bit(value: Any) -> bytes:
    """The ``bit``/``varbit`` wire bytes of a Bit, an ``asyncpg.BitString``, a 0/1 string, bools
    or a bool array.

    Bytes are taken as wire bytes already, and checked as :meth:`Bit.from_binary` does.
    """
    if type(value) is Bit:
        return value._wire
    if isinstance(value, bytes | bytearray | memoryview):
        return Bit.from_binary(value)._wire
    return _bit_wire(value)


def decode_bit(data: bytes) -> Bit:
    """A :class:`Bit` from wire bytes the server sent (trusted: no validation)."""
    return Bit._from_wire(data)
