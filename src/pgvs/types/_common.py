"""Pieces shared by the wire types: pgvector's limits, float32 text I/O, input checks.

Nothing here imports numpy. Whether a value is a numpy array is decided by looking for numpy in
``sys.modules``: an array cannot exist unless numpy was imported by someone already.
"""

from __future__ import annotations

import base64
import binascii
import math
import operator
import re
import struct
import sys
from array import array
from collections.abc import Iterable, Mapping, Sequence, Set
from fractions import Fraction
from functools import lru_cache
from numbers import Real
from types import ModuleType
from typing import Any, NoReturn, SupportsIndex

from ..errors import ValidationError

# Limits as compiled into pgvector 0.8 (vector.h, halfvec.h, sparsevec.h) and PostgreSQL
# (varbit.h: VARBITMAXLEN = INT_MAX - BITS_PER_BYTE + 1).
VECTOR_MAX_DIM = 16000
HALFVEC_MAX_DIM = 16000
SPARSEVEC_MAX_DIM = 1_000_000_000
SPARSEVEC_MAX_NNZ = 16000
BIT_MAX_LENGTH = 2**31 - 8

FLOAT32_MAX = 3.4028234663852886e38
HALF_MAX = 65504.0

LITTLE_ENDIAN = sys.byteorder == "little"

# Values whose element types are all in here go through struct without a per-element look.
PLAIN_NUMBER_TYPES = frozenset({float, int})

_F32 = struct.Struct("<f")
_U32 = struct.Struct("<I")
_F32_MAX_BITS = 0x7F7FFFFF
_TWO_POW_128 = 2.0**128
_SMALLEST_SUBNORMAL_HALF = 2.0**-150


def numpy_if_array(value: object) -> ModuleType | None:
    """numpy's module when ``value`` is a numpy array, else None (never imports numpy)."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        return np
    return None


def scipy_sparse_if(value: object) -> ModuleType | None:
    """``scipy.sparse`` when ``value`` is one of its arrays or matrices, else None (never imports
    scipy, as :func:`numpy_if_array` never imports numpy)."""
    sparse = sys.modules.get("scipy.sparse")
    if sparse is not None and sparse.issparse(value):
        return sparse
    return None


def fail(message: str) -> NoReturn:
    raise ValidationError(message)


@lru_cache(maxsize=128)
def be_struct(fmt: str) -> struct.Struct:
    """A cached big-endian Struct; building one costs more than packing a 768-d vector."""
    return struct.Struct(">" + fmt)


# -- float32 text I/O ------------------------------------------------------------------------------
#
# pgvector prints each element with PostgreSQL's float_to_shortest_decimal_bufn (Ryu): the fewest
# significant digits that read back as the same float32, the closest such string to the exact
# value, in fixed notation for decimal exponents -4..5 and otherwise as d.ddde+XX. PostgreSQL
# builds Ryu without STRICTLY_SHORTEST, so a decimal lying exactly halfway to a neighbour is never
# chosen even where round-half-even would read it back correctly (96813696 prints as
# 9.6813696e+07, not 9.68137e+07 as numpy would). Python has no float32 repr, so the digits are
# searched for by precision, with an exact rational check wherever a double cannot tell which
# side of a bound a decimal lies on.


def _f32_bits(value: float) -> int:
    bits: int = _U32.unpack(_F32.pack(value))[0]
    return bits


def _bits_to_f32(bits: int) -> float:
    value: float = _F32.unpack(_U32.pack(bits))[0]
    return value


def _halfway_points(magnitude: float) -> tuple[float, float]:
    """For a positive float32, the halfway points to its neighbours (both exact in double)."""
    bits = _f32_bits(magnitude)
    below = _bits_to_f32(bits - 1) if bits > 1 else 0.0
    above = _bits_to_f32(bits + 1) if bits < _F32_MAX_BITS else _TWO_POW_128
    return (magnitude + below) / 2, (magnitude + above) / 2


def _strictly_between(text: str, low: float, high: float) -> bool:
    """Whether the decimal ``text`` lies strictly between two doubles, exactly."""
    nearest = float(text)
    if low < nearest < high:
        # The bounds are doubles and ``nearest`` is the double closest to the decimal, so the
        # decimal cannot be on the other side of a bound.
        return True
    if nearest != low and nearest != high:
        return False
    exact = Fraction(text)
    bound = Fraction(nearest)
    return exact > bound if nearest == low else exact < bound


def format_f32(value: float) -> str:
    """PostgreSQL's shortest text for a float32 value (given as a Python float)."""
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    magnitude = -value if value < 0 else value
    low, high = _halfway_points(magnitude)
    digits = 0
    exponent = 0
    for precision in range(1, 10):
        mantissa, _, exp_text = f"{magnitude:.{precision - 1}e}".partition("e")
        rounded = int(mantissa.replace(".", ""))
        exponent = int(exp_text) - (precision - 1)
        # The correctly rounded candidate first; at a power of two the interval is lopsided and
        # only a neighbour of it may fit.
        for candidate in (rounded, rounded + 1, rounded - 1):
            if candidate > 0 and _strictly_between(f"{candidate}e{exponent}", low, high):
                digits = candidate
                break
        if digits:
            break
    else:  # pragma: no cover - nine digits always identify a float32
        raise AssertionError(f"no shortest form found for {value!r}")
    while digits % 10 == 0:
        digits //= 10
        exponent += 1
    text = str(digits)
    sci = exponent + len(text) - 1
    sign = "-" if value < 0 else ""
    if -4 <= sci < 6:
        if exponent >= 0:
            return sign + text + "0" * exponent
        if sci >= 0:
            return f"{sign}{text[: sci + 1]}.{text[sci + 1 :]}"
        return f"{sign}0.{'0' * (-sci - 1)}{text}"
    fraction = f".{text[1:]}" if len(text) > 1 else ""
    return f"{sign}{text[0]}{fraction}e{'-' if sci < 0 else '+'}{abs(sci):02d}"


_FLOAT_SYNTAX = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NON_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def parse_f32(text: str) -> float:
    """Read a decimal as the float32 strtof() would give (returned as a Python float).

    Returns ``inf``/``-inf`` for overflow and ``nan``/``inf`` for those words, so the caller can
    report them with a position; raises ValueError for anything that is not a decimal number.
    """
    if not _FLOAT_SYNTAX.fullmatch(text):
        if text.lower() in _NON_FINITE:
            return float(text)
        raise ValueError(text)
    nearest = float(text)
    try:
        result: float = _F32.unpack(_F32.pack(nearest))[0]
    except OverflowError:
        return math.copysign(math.inf, nearest)
    if result == nearest or math.isinf(nearest):
        return result
    # Rounding the nearest double instead of the decimal itself differs only when that double
    # sits exactly on a float32 halfway point: settle those with exact arithmetic.
    magnitude = abs(result)
    near_magnitude = abs(nearest)
    if magnitude == 0:
        low, high = 0.0, _SMALLEST_SUBNORMAL_HALF
    else:
        low, high = _halfway_points(magnitude)
    if near_magnitude == high:
        smaller, larger = magnitude, _bits_to_f32(_f32_bits(magnitude) + 1)
    elif near_magnitude == low:
        smaller, larger = _bits_to_f32(_f32_bits(magnitude) - 1), magnitude
    else:
        return result
    exact = abs(Fraction(text))
    bound = Fraction(near_magnitude)
    if exact == bound:
        chosen = smaller if _f32_bits(smaller) & 1 == 0 else larger
    else:
        chosen = larger if exact > bound else smaller
    return math.copysign(chosen, nearest)


_WHITESPACE = " \t\n\r\v\f"


def strip_pg(text: str) -> str:
    """Strip the whitespace pgvector's parsers skip (C isspace in the C locale)."""
    return text.strip(_WHITESPACE)


def floats_from_base64(data: str | bytes, kind: str) -> array[float]:
    """float32 values from base64 of their little-endian bytes (as embedding APIs such as
    OpenAI's ``encoding_format="base64"`` send them, i.e. a ``'<f4'`` array's bytes)."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        fail(f"{kind}: invalid base64 data ({exc})")
    if len(raw) % 4:
        fail(
            f"{kind}: base64 data decodes to {len(raw)} bytes, not a whole number of float32 values"
        )
    values = array("f")
    values.frombytes(raw)
    if not LITTLE_ENDIAN:
        values.byteswap()
    return values


# -- dense input -----------------------------------------------------------------------------------


def is_bool(value: object) -> bool:
    """True for Python and numpy bools (numpy 2 names its scalar type ``numpy.bool``)."""
    cls = type(value)
    return cls is bool or (cls.__module__ == "numpy" and cls.__name__ in ("bool", "bool_"))


def short_repr(value: object, limit: int = 40) -> str:
    """repr() cut to ``limit`` characters, for error messages about user values."""
    try:
        text = repr(value)
    except ValueError:  # ints past sys.get_int_max_str_digits()
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- the sequence protocol of the value types ---------------------------------------------------
#
# Vector, HalfVector, SparseVector and Bit have __len__ and __getitem__ but deliberately no
# __iter__. asyncpg encodes an array parameter by walking into every element that is Sized and
# an instance of collections.abc.Iterable (asyncpg/protocol/codecs/array.pyx,
# _is_sub_array_iterable), and Iterable recognises a class by __iter__ alone. Without it, a list
# of values is a one-dimensional vector[] / sparsevec[] / bit[] parameter, while iter(), list()
# and for-loops still work through __getitem__ (Python's sequence iteration protocol).


def position_in(index: SupportsIndex, length: int, kind: str) -> int:
    """``index`` (negative counts from the end) as a position in ``0..length-1``, or an
    IndexError, as a list would raise it."""
    position = operator.index(index)
    if position < 0:
        position += length
    if not 0 <= position < length:
        raise IndexError(f"{kind} index {index} is out of range for length {length}")
    return position


def is_element_sequence(value: object) -> bool:
    """Iterable, or iterable through the sequence protocol like the value types."""
    cls = type(value)
    return isinstance(value, Iterable) or (hasattr(cls, "__getitem__") and hasattr(cls, "__len__"))


def describe(value: object) -> str:
    if value is None:
        return "None"
    return type(value).__name__


def as_element_list(values: object, kind: str) -> list[Any] | tuple[Any, ...]:
    """The elements of a non-numpy dense input, as a list or tuple, or a ValidationError."""
    if isinstance(values, list | tuple):
        return values
    if isinstance(values, str | bytes | bytearray | memoryview):
        hint = (
            f"; use {_class_name(kind)}.from_binary() for wire bytes"
            if not isinstance(values, str)
            else f"; use {_class_name(kind)}.from_text() to parse text"
        )
        fail(f"{kind} values must be a sequence of numbers, not {type(values).__name__}{hint}")
    if isinstance(values, Mapping | Set):
        fail(f"{kind} values must be an ordered sequence of numbers, not {type(values).__name__}")
    if is_element_sequence(values):
        items: list[Any] = list(values)  # type: ignore[call-overload]
        return items
    hint = ""
    if isinstance(values, Real):
        # What asyncpg hands the encoder of vector[] (etc.) for [[1, 2], [3, 4]] or a list of
        # numpy rows: it takes list and array elements for sub-arrays and passes their numbers.
        hint = (
            f"; in an array parameter ({kind}[]), wrap each element as {_class_name(kind)}(...): "
            "asyncpg reads a list or numpy array inside an array as a sub-array"
        )
    fail(f"{kind} values must be a sequence of numbers, not {describe(values)}{hint}")


def _class_name(kind: str) -> str:
    return {"vector": "Vector", "halfvec": "HalfVector", "sparsevec": "SparseVector"}.get(
        kind, "Bit"
    )


def check_dim(dim: int, kind: str, max_dim: int) -> None:
    if dim < 1:
        fail(f"{kind} must have at least 1 dimension")
    if dim > max_dim:
        fail(f"{kind} cannot have more than {max_dim} dimensions, got {dim}")


def element_as_float(index: int, value: object, kind: str, where: str = "element") -> float:
    """One element as a Python float, or a ValidationError naming its position.

    bool is refused: True/False in an embedding is almost certainly a mix-up (bit strings have
    their own type, Bit), and silently storing 1.0/0.0 would hide it.
    """
    cls = type(value)
    if cls is float:
        return value  # type: ignore[return-value]
    if is_bool(value):
        fail(f"{kind} {where} {index} is a bool; {kind} elements must be numbers")
    if isinstance(value, Real) or (cls.__name__ == "Decimal" and cls.__module__ == "decimal"):
        try:
            return float(value)  # type: ignore[arg-type]
        except (OverflowError, ValueError):
            fail(f"{kind} {where} {index} ({short_repr(value)}) is out of range for float32")
    fail(f"{kind} {where} {index} is {describe(value)}, not a number")


def check_float32(index: int, value: float, kind: str, where: str = "element") -> float:
    """``value`` rounded to float32, or a ValidationError for NaN, infinity or overflow."""
    if value != value:
        fail(f"{kind} {where} {index} is NaN; NaN is not allowed in {kind}")
    if value in (math.inf, -math.inf):
        fail(f"{kind} {where} {index} is {value}; infinite values are not allowed in {kind}")
    try:
        rounded: float = _F32.unpack(_F32.pack(value))[0]
    except OverflowError:
        fail(
            f"{kind} {where} {index} ({short_repr(value)}) is out of range for {kind} "
            f"(float32 holds at most ±{FLOAT32_MAX:.8g})"
        )
    return rounded


def first_bad_element(values: Sequence[Any], kind: str, where: str = "element") -> NoReturn:
    """Raise the ValidationError for the first element that is not a finite float32."""
    for index, value in enumerate(values):
        check_float32(index, element_as_float(index, value, kind, where), kind, where)
    raise AssertionError(f"{kind}: no bad element found")  # pragma: no cover


def coerce_elements(values: Sequence[Any], kind: str) -> list[float]:
    """Every element as a float (numpy scalars, Decimal, Fraction...), refusing non-numbers."""
    return [element_as_float(index, value, kind) for index, value in enumerate(values)]


def pack_f32_elements(values: Sequence[Any], kind: str) -> bytes:
    """Validate a plain sequence and pack it as big-endian float32 (no header)."""
    if not set(map(type, values)) <= PLAIN_NUMBER_TYPES:
        values = coerce_elements(values, kind)
    try:
        payload = be_struct(f"{len(values)}f").pack(*values)
    except (OverflowError, struct.error):
        first_bad_element(values, kind)
    # Every element fits a float32 now, so this float64 sum cannot overflow: it is non-finite
    # exactly when an element is NaN or infinite.
    if not math.isfinite(sum(values)):
        first_bad_element(values, kind)
    return payload
