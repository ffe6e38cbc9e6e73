"""The wire types on their own: construction, pgvector's exact layouts, validation, display."""

from __future__ import annotations

import base64
import copy
import math
import pickle
import struct
import warnings
from array import array
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgvs.errors import ValidationError
from pgvs.types import (
    HALFVEC_MAX_DIM,
    SPARSEVEC_MAX_DIM,
    SPARSEVEC_MAX_NNZ,
    VECTOR_MAX_DIM,
    Bit,
    HalfVector,
    SparseVector,
    Vector,
    decode_bit,
    decode_halfvec,
    decode_sparsevec,
    decode_vector,
    encode_bit,
    encode_halfvec,
    encode_sparsevec,
    encode_vector,
)
from pgvs.types._common import format_f32, parse_f32

NAN = math.nan
INF = math.inf


def f32(value: float) -> float:
    """``value`` rounded to float32, as a Python float."""
    rounded: float = struct.unpack("<f", struct.pack("<f", value))[0]
    return rounded


# -- construction from every input kind ------------------------------------------------------------

DENSE_INPUTS: list[tuple[str, Callable[[], Any]]] = [
    ("list of floats", lambda: [1.0, 2.5, -3.0]),
    ("list of ints", lambda: [1, 2.5, -3]),
    ("tuple", lambda: (1.0, 2.5, -3.0)),
    ("generator", lambda: (x for x in [1.0, 2.5, -3.0])),
    ("array f", lambda: array("f", [1.0, 2.5, -3.0])),
    ("array d", lambda: array("d", [1.0, 2.5, -3.0])),
    ("array i", lambda: array("i", [1, 2, -3])),
    ("numpy float32", lambda: np.array([1.0, 2.5, -3.0], dtype=np.float32)),
    ("numpy float64", lambda: np.array([1.0, 2.5, -3.0], dtype=np.float64)),
    ("numpy float16", lambda: np.array([1.0, 2.5, -3.0], dtype=np.float16)),
    ("numpy int64", lambda: np.array([1, 2, -3], dtype=np.int64)),
    ("numpy strided", lambda: np.array([1.0, 0, 2.5, 0, -3.0, 0], dtype=np.float32)[::2]),
    ("numpy object", lambda: np.array([1.0, 2.5, -3], dtype=object)),
    ("numpy scalars", lambda: [np.float32(1.0), np.float64(2.5), np.int32(-3)]),
    ("Decimal and Fraction", lambda: [Decimal("1"), Fraction(5, 2), -3]),
]


@pytest.mark.parametrize("cls", [Vector, HalfVector])
@pytest.mark.parametrize(("label", "make"), DENSE_INPUTS, ids=[name for name, _ in DENSE_INPUTS])
def test_dense_from_each_input_kind(cls: type[Vector], label: str, make: Callable[[], Any]) -> None:
    value = cls(make())
    expected = [1.0, 2.0, -3.0] if label in ("array i", "numpy int64") else [1.0, 2.5, -3.0]
    assert value.to_list() == expected
    assert value.dim == len(value) == 3
    assert list(value) == expected
    assert cls.from_binary(value.to_binary()) == value


@pytest.mark.parametrize("cls", [Vector, HalfVector])
def test_dense_from_other_dense_values(cls: type[Vector]) -> None:
    assert cls(Vector([1, 2])).to_list() == [1.0, 2.0]
    assert cls(HalfVector([1, 2])).to_list() == [1.0, 2.0]
    original = cls([0.5, 4])
    assert cls(original) == original


def test_vector_rounds_to_float32() -> None:
    assert Vector([0.1]).to_list() == [f32(0.1)]
    assert Vector(np.array([0.1])).to_list() == [f32(0.1)]
    assert Vector([1e-50]).to_list() == [0.0]  # underflow rounds to zero, as the server does


def test_halfvec_rounds_through_float32_to_float16() -> None:
    assert HalfVector([0.1]).to_list() == [0.0999755859375]
    assert HalfVector([65519]).to_list() == [65504.0]  # rounds down to the largest half
    assert HalfVector(np.array([-65519.0])).to_list() == [-65504.0]


SPARSE_INPUTS: list[tuple[str, Callable[[], SparseVector]]] = [
    ("mapping", lambda: SparseVector({2: 2.0, 0: 1.5}, dim=5)),
    ("mapping with zeros", lambda: SparseVector({0: 1.5, 1: 0.0, 2: 2, 4: -0.0}, dim=5)),
    ("numpy int keys", lambda: SparseVector({np.int64(0): 1.5, np.int32(2): 2.0}, dim=5)),
    ("dense list", lambda: SparseVector([1.5, 0, 2, 0, 0])),
    ("dense list with dim", lambda: SparseVector([1.5, 0, 2, 0, 0], dim=5)),
    ("dense numpy", lambda: SparseVector(np.array([1.5, 0, 2, 0, 0], dtype=np.float32))),
    ("dense numpy float64", lambda: SparseVector(np.array([1.5, 0, 2, 0, 0]))),
    ("Vector", lambda: SparseVector(Vector([1.5, 0, 2, 0, 0]))),
    ("from_indices", lambda: SparseVector.from_indices([2, 0], [2.0, 1.5], 5)),
    ("copy", lambda: SparseVector(SparseVector({0: 1.5, 2: 2.0}, dim=5))),
    ("text", lambda: SparseVector.from_text("{3:2,1:1.5}/5")),
]


@pytest.mark.parametrize(("label", "make"), SPARSE_INPUTS, ids=[name for name, _ in SPARSE_INPUTS])
def test_sparse_from_each_input_kind(label: str, make: Callable[[], SparseVector]) -> None:
    value = make()
    assert value.dim == len(value) == 5
    assert value.nnz == 2
    assert value.indices == [0, 2]
    assert value.values == [1.5, 2.0]
    assert value.to_dict() == {0: 1.5, 2: 2.0}
    assert value.to_list() == [1.5, 0.0, 2.0, 0.0, 0.0]
    assert value == SparseVector({0: 1.5, 2: 2.0}, dim=5)


def test_sparse_drops_values_that_round_to_zero_and_allows_empty() -> None:
    assert SparseVector({0: 1e-50, 1: 1.0}, dim=2).to_dict() == {1: 1.0}
    empty = SparseVector({}, dim=3)
    assert (empty.nnz, empty.to_text(), empty.to_list()) == (0, "{}/3", [0.0, 0.0, 0.0])


BIT_INPUTS: list[tuple[str, Callable[[], Bit]]] = [
    ("string", lambda: Bit("10110")),
    ("bools", lambda: Bit([True, False, True, True, False])),
    ("ints", lambda: Bit([1, 0, 1, 1, 0])),
    ("numpy bool", lambda: Bit(np.array([1, 0, 1, 1, 0], dtype=bool))),
    ("numpy uint8", lambda: Bit(np.array([1, 0, 1, 1, 0], dtype=np.uint8))),
    ("numpy bool_ items", lambda: Bit(list(np.array([1, 0, 1, 1, 0], dtype=bool)))),
    ("from_bytes", lambda: Bit.from_bytes(b"\xb0", 5)),
    ("from_bytes with stray padding bits", lambda: Bit.from_bytes(b"\xb7", 5)),
    ("text", lambda: Bit.from_text(" 10110\n")),
    ("copy", lambda: Bit(Bit("10110"))),
]


@pytest.mark.parametrize(("label", "make"), BIT_INPUTS, ids=[name for name, _ in BIT_INPUTS])
def test_bit_from_each_input_kind(label: str, make: Callable[[], Bit]) -> None:
    value = make()
    assert value.length == len(value) == 5
    assert value.to_text() == "10110"
    assert value.to_list() == [True, False, True, True, False]
    assert value.to_bytes() == b"\xb0"
    assert value == Bit("10110")


def test_bit_empty_and_byte_aligned() -> None:
    assert Bit("").to_binary() == b"\x00\x00\x00\x00"
    assert Bit("").to_text() == ""
    assert Bit.from_bytes(b"\xff\x01").to_text() == "1111111100000001"


# -- exact wire layouts ----------------------------------------------------------------------------

BINARY_CASES: list[tuple[str, Any, bytes]] = [
    (
        "vector",
        Vector([1, 2.5, -3]),
        b"\x00\x03\x00\x00" + b"\x3f\x80\x00\x00" + b"\x40\x20\x00\x00" + b"\xc0\x40\x00\x00",
    ),
    ("vector -0.0", Vector([-0.0]), b"\x00\x01\x00\x00\x80\x00\x00\x00"),
    ("halfvec", HalfVector([1, 2, -0.5]), b"\x00\x03\x00\x00" + b"\x3c\x00\x40\x00\xb8\x00"),
    ("halfvec max", HalfVector([65504]), b"\x00\x01\x00\x00\x7b\xff"),
    (
        "sparsevec",
        SparseVector({0: 1.5, 2: 2}, dim=5),
        b"\x00\x00\x00\x05\x00\x00\x00\x02\x00\x00\x00\x00"
        + b"\x00\x00\x00\x00\x00\x00\x00\x02"
        + b"\x3f\xc0\x00\x00\x40\x00\x00\x00",
    ),
    ("sparsevec empty", SparseVector({}, dim=7), b"\x00\x00\x00\x07" + b"\x00" * 8),
    ("bit", Bit("1011"), b"\x00\x00\x00\x04\xb0"),
    ("bit 9", Bit("101100111"), b"\x00\x00\x00\x09\xb3\x80"),
    ("bit 8", Bit("00000001"), b"\x00\x00\x00\x08\x01"),
]


@pytest.mark.parametrize(
    ("label", "value", "wire"), BINARY_CASES, ids=[case[0] for case in BINARY_CASES]
)
def test_binary_layout(label: str, value: Any, wire: bytes) -> None:
    assert value.to_binary() == wire
    assert type(value).from_binary(wire) == value
    assert type(value).from_binary(bytearray(wire)).to_binary() == wire
    assert type(value).from_binary(memoryview(wire)).to_binary() == wire


TEXT_CASES: list[tuple[Any, str]] = [
    (Vector([1, 2, 3]), "[1,2,3]"),
    (Vector([1, 2.5, -3e-5]), "[1,2.5,-3e-05]"),
    (Vector([0.1, -0.0, 0.0]), "[0.1,-0,0]"),
    (Vector([100000, 1000000, 123456789, 1e8]), "[100000,1e+06,1.2345679e+08,1e+08]"),
    (Vector([0.0001, 0.00001, 1e-45, 3.4028234663852886e38]), "[0.0001,1e-05,1e-45,3.4028235e+38]"),
    (Vector([16777215, 0.3]), "[1.6777215e+07,0.3]"),
    (Vector([96813696, 107371744]), "[9.6813696e+07,1.07371744e+08]"),
    (HalfVector([0.1, 65504, 1e-7]), "[0.099975586,65504,1.1920929e-07]"),
    (SparseVector({0: 1.5, 2: 2}, dim=5), "{1:1.5,3:2}/5"),
    (SparseVector({}, dim=1), "{}/1"),
    (Bit("1011"), "1011"),
]


@pytest.mark.parametrize(("value", "text"), TEXT_CASES, ids=[case[1] for case in TEXT_CASES])
def test_text_layout(value: Any, text: str) -> None:
    assert value.to_text() == text
    assert type(value).from_text(text) == value


@pytest.mark.parametrize(
    ("cls", "text", "expected"),
    [
        (Vector, " [ 1 , 2.5e0,-3 ] ", [1.0, 2.5, -3.0]),
        (Vector, "[+.5,5.,1E2]", [0.5, 5.0, 100.0]),
        (HalfVector, "[\t1,\n2]", [1.0, 2.0]),
        (SparseVector, " { 3 : 2 , 1:1.5 } / 5 ", [1.5, 0.0, 2.0, 0.0, 0.0]),
        (SparseVector, "{1:0,2:1}/2", [0.0, 1.0]),
    ],
)
def test_text_input_is_lenient_like_pgvector(cls: Any, text: str, expected: list[float]) -> None:
    assert cls.from_text(text).to_list() == expected


def test_parse_f32_rounds_the_decimal_not_the_double() -> None:
    # Just above the halfway point between 1 and the next float32: a double cannot tell, so the
    # naive float(text) -> float32 rounds to even (1.0); strtof and parse_f32 round up.
    text = "1.000000059604644775390625000001"
    assert parse_f32(text) == 1.0000001192092896
    assert parse_f32("1.000000059604644775390625") == 1.0  # exactly halfway: ties to even
    assert parse_f32("-1.000000059604644775390625000001") == -1.0000001192092896
    assert parse_f32("1e39") == INF
    assert math.isnan(parse_f32("NaN"))
    with pytest.raises(ValueError, match="1_0"):
        parse_f32("1_0")


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_format_f32_is_the_shortest_round_trip(bits: int) -> None:
    value = np.array([bits], dtype=np.uint32).view(np.float32)[0]
    if not np.isfinite(value):
        return
    text = format_f32(float(value))
    assert np.float32(text) == value
    assert parse_f32(text) == float(value)
    # numpy's float32 repr is also the shortest round trip, so the same number; except that
    # numpy accepts a decimal exactly halfway to a neighbour (it reads back by round-half-even)
    # and PostgreSQL's Ryu never does, taking more digits instead.
    reference = np.format_float_positional(value, unique=True, trim="-")
    if Decimal(text) != Decimal(reference):
        halfway = {
            (Fraction(float(value)) + Fraction(float(np.nextafter(value, toward)))) / 2
            for toward in (np.float32(-np.inf), np.float32(np.inf))
        }
        assert abs(Fraction(reference)) in {abs(point) for point in halfway}
        assert len(text.lstrip("-0.").split("e")[0].replace(".", "")) > len(
            reference.lstrip("-0.").rstrip("0.").replace(".", "")
        )


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=40)
)
def test_vector_text_and_binary_round_trip(values: list[float]) -> None:
    vector = Vector(values)
    assert vector.to_list() == values
    assert Vector.from_text(vector.to_text()) == vector
    assert Vector.from_binary(vector.to_binary()).to_list() == values
    assert HalfVector.from_text(HalfVector(np.clip(values, -6e4, 6e4)).to_text()) == HalfVector(
        np.clip(values, -6e4, 6e4)
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.floats(min_value=-7e4, max_value=7e4, allow_nan=False) | st.integers(-70000, 70000),
        min_size=1,
        max_size=20,
    )
)
def test_pure_python_and_numpy_paths_agree(values: list[float]) -> None:
    """Same bytes, or the same refusal, whether the input is a list or a numpy array."""
    assert Vector(values) == Vector(np.array(values, dtype=np.float64))
    if max(abs(f32(value)) for value in values) >= 65520:  # rounds beyond the largest half
        for source in (values, np.array(values, dtype=np.float64)):
            with pytest.raises(ValidationError, match=r"halfvec element \d+ .* out of range"):
                HalfVector(source)
    else:
        expected = HalfVector(values).to_binary()
        assert HalfVector(np.array(values, dtype=np.float64)).to_binary() == expected
    assert SparseVector(values) == SparseVector(np.array(values, dtype=np.float64))


# -- validation ------------------------------------------------------------------------------------

# The invalid inputs are invalid for the type checker too: these aliases let them through.
UntypedVector: Any = Vector
UntypedHalfVector: Any = HalfVector
UntypedSparseVector: Any = SparseVector
UntypedBit: Any = Bit

INVALID: list[tuple[str, Callable[[], object], str]] = [
    ("NaN", lambda: UntypedVector([1, NAN, 3]), r"vector element 1 is NaN"),
    ("inf", lambda: UntypedVector([INF]), r"vector element 0 is inf"),
    ("-inf", lambda: UntypedVector([0, 0, -INF]), r"vector element 2 is -inf"),
    (
        "float64 overflow",
        lambda: UntypedVector([0, 1e39]),
        r"vector element 1 \(1e\+39\) is out of range",
    ),
    ("huge int", lambda: UntypedVector([1, 10**400]), r"vector element 1 .* out of range"),
    ("numpy NaN", lambda: UntypedVector(np.array([0, 0, NAN], np.float32)), r"element 2 is NaN"),
    ("numpy inf", lambda: UntypedVector(np.array([0, -INF], np.float32)), r"element 1 is -inf"),
    (
        "numpy overflow",
        lambda: UntypedVector(np.array([1.0, 1e39])),
        r"element 1 \(1e\+39\) is out",
    ),
    ("empty", lambda: UntypedVector([]), r"at least 1 dimension"),
    ("empty numpy", lambda: UntypedVector(np.zeros(0, np.float32)), r"at least 1 dimension"),
    (
        "too long",
        lambda: UntypedVector([0.0] * (VECTOR_MAX_DIM + 1)),
        r"more than 16000 dimensions",
    ),
    ("too long numpy", lambda: UntypedVector(np.zeros(16001, np.float32)), r"more than 16000"),
    ("string element", lambda: UntypedVector([1, "2"]), r"vector element 1 is str, not a number"),
    ("None element", lambda: UntypedVector([1, 2, None]), r"vector element 2 is None"),
    ("nested list", lambda: UntypedVector([[1.0, 2.0]]), r"vector element 0 is list"),
    ("complex", lambda: UntypedVector([1j]), r"vector element 0 is complex"),
    ("bool element", lambda: UntypedVector([1.0, True]), r"vector element 1 is a bool"),
    ("numpy bool element", lambda: UntypedVector([np.bool_(True)]), r"element 0 is a bool"),
    ("bool array", lambda: UntypedVector(np.array([True, False])), r"bool array"),
    ("string array", lambda: UntypedVector(np.array(["1"])), r"numeric array"),
    ("2-D array", lambda: UntypedVector(np.zeros((2, 3))), r"1-D array, got .* shape \(2, 3\)"),
    (
        "ragged object array",
        lambda: UntypedVector(np.array([[1], [1, 2]], dtype=object)),
        r"is list",
    ),
    ("string", lambda: UntypedVector("[1,2]"), r"not str; use Vector.from_text"),
    ("bytes", lambda: UntypedVector(b"\x00\x01"), r"not bytes; use Vector.from_binary"),
    ("mapping", lambda: UntypedVector({0: 1.0}), r"ordered sequence"),
    ("number", lambda: UntypedVector(3.0), r"sequence of numbers, not float"),
    (
        "halfvec overflow",
        lambda: UntypedHalfVector([1, 70000]),
        r"halfvec element 1 \(70000\) is out",
    ),
    (
        "halfvec 65520",
        lambda: UntypedHalfVector([65520.0]),
        r"element 0 \(65520.0\) is out of range",
    ),
    (
        "halfvec numpy overflow",
        lambda: UntypedHalfVector(np.array([0, -1e5])),
        r"element 1 .* range",
    ),
    ("halfvec NaN", lambda: UntypedHalfVector([NAN]), r"halfvec element 0 is NaN"),
    (
        "halfvec too long",
        lambda: UntypedHalfVector([1.0] * (HALFVEC_MAX_DIM + 1)),
        r"more than 16000",
    ),
    (
        "sparse index = dim",
        lambda: UntypedSparseVector({5: 1.0}, dim=5),
        r"index 5 is out of range",
    ),
    ("sparse negative", lambda: UntypedSparseVector({-1: 1.0}, dim=5), r"index -1 is out of range"),
    ("sparse NaN", lambda: UntypedSparseVector({3: NAN}, dim=5), r"value at index 3 is NaN"),
    ("sparse inf", lambda: UntypedSparseVector({3: -INF}, dim=5), r"value at index 3 is -inf"),
    ("sparse dense NaN", lambda: UntypedSparseVector([0, NAN]), r"sparsevec element 1 is NaN"),
    ("sparse numpy NaN", lambda: UntypedSparseVector(np.array([0, 0, NAN])), r"element 2 is NaN"),
    (
        "sparse duplicate",
        lambda: SparseVector.from_indices([4, 1, 4], [1, 2, 3], 5),
        r"index 4 appears more than once",
    ),
    (
        "sparse unpaired",
        lambda: SparseVector.from_indices([1, 2], [1.0], 5),
        r"2 indices but 1 values",
    ),
    (
        "sparse too many nnz",
        lambda: UntypedSparseVector(dict.fromkeys(range(SPARSEVEC_MAX_NNZ + 1), 1.0), dim=20000),
        r"more than 16000 non-zero elements, got 16001",
    ),
    (
        "sparse dense too many nnz",
        lambda: UntypedSparseVector(np.ones(SPARSEVEC_MAX_NNZ + 1)),
        r"more than 16000 non-zero",
    ),
    ("sparse dim 0", lambda: UntypedSparseVector({}, dim=0), r"at least 1 dimension"),
    (
        "sparse dim too big",
        lambda: UntypedSparseVector({}, dim=SPARSEVEC_MAX_DIM + 1),
        r"more than 1000000000 dimensions",
    ),
    ("sparse no dim", lambda: UntypedSparseVector({1: 1.0}), r"needs dim="),
    (
        "sparse bool key",
        lambda: UntypedSparseVector({True: 1.0}, dim=3),
        r"index must be an integer",
    ),
    ("sparse str key", lambda: UntypedSparseVector({"1": 1.0}, dim=3), r"not str"),
    ("sparse float dim", lambda: UntypedSparseVector({}, dim=2.5), r"dim must be an integer"),
    (
        "sparse dim mismatch",
        lambda: UntypedSparseVector([1, 2], dim=3),
        r"dim=3 does not match the 2",
    ),
    ("bit bad char", lambda: UntypedBit("10a1"), r"bit string position 2 is 'a'"),
    ("bit bad int", lambda: UntypedBit([1, 0, 2]), r"bit element 2 is 2; bits must be 0 or 1"),
    ("bit float", lambda: UntypedBit([1.0]), r"bit element 0 is float"),
    ("bit bytes", lambda: UntypedBit(b"\x01"), r"Bit.from_bytes"),
    ("bit numpy 2", lambda: UntypedBit(np.array([0, 1, 2])), r"bit element 2 is 2"),
    (
        "bit numpy float",
        lambda: UntypedBit(np.array([0.5])),
        r"bool array or an array of 0s and 1s",
    ),
    ("bit from_bytes length", lambda: Bit.from_bytes(b"\x01\x02", 3), r"2 bytes cannot hold"),
]


@pytest.mark.parametrize(("label", "build", "message"), INVALID, ids=[case[0] for case in INVALID])
def test_invalid_input_is_refused_with_its_position(
    label: str, build: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        build()
    assert isinstance(caught.value, ValueError)


INVALID_WIRE: list[tuple[str, Callable[[bytes], object], bytes, str]] = [
    ("vector short", Vector.from_binary, b"\x00\x01", r"header alone takes 4"),
    ("vector dim 0", Vector.from_binary, b"\x00\x00\x00\x00", r"at least 1 dimension"),
    ("vector negative dim", Vector.from_binary, b"\xff\xff\x00\x00", r"at least 1 dimension"),
    ("vector too long", Vector.from_binary, b"\x3e\x81\x00\x00", r"more than 16000"),
    ("vector unused", Vector.from_binary, b"\x00\x01\x00\x01" + b"\x00" * 4, r"unused header"),
    (
        "vector length",
        Vector.from_binary,
        b"\x00\x02\x00\x00" + b"\x00" * 4,
        r"2 dimensions take 12",
    ),
    (
        "vector NaN",
        Vector.from_binary,
        b"\x00\x02\x00\x00" + struct.pack(">2f", 1, NAN),
        r"vector element 1 is NaN",
    ),
    (
        "halfvec inf",
        HalfVector.from_binary,
        b"\x00\x02\x00\x00\x3c\x00\x7c\x00",
        r"halfvec element 1 is inf",
    ),
    (
        "sparse zero value",
        SparseVector.from_binary,
        struct.pack(">4if", 3, 1, 0, 0, 0.0),
        r"must not contain zero values",
    ),
    (
        "sparse unsorted",
        SparseVector.from_binary,
        struct.pack(">5i2f", 3, 2, 0, 1, 0, 1.0, 2.0),
        r"strictly ascending",
    ),
    (
        "sparse duplicate",
        SparseVector.from_binary,
        struct.pack(">5i2f", 3, 2, 0, 1, 1, 1.0, 2.0),
        r"strictly ascending",
    ),
    (
        "sparse index out of range",
        SparseVector.from_binary,
        struct.pack(">4if", 3, 1, 0, 3, 1.0),
        r"index 3 is out of range",
    ),
    (
        "sparse nnz > dim",
        SparseVector.from_binary,
        struct.pack(">3i", 1, 2, 0),
        r"2 non-zero elements is impossible",
    ),
    ("sparse short", SparseVector.from_binary, b"\x00" * 8, r"header alone takes 12"),
    ("bit short", Bit.from_binary, b"\x00\x00", r"length alone takes 4"),
    ("bit negative", Bit.from_binary, b"\xff\xff\xff\xff", r"must not be negative"),
    ("bit length", Bit.from_binary, b"\x00\x00\x00\x09\xff", r"9 bits take 6"),
]


@pytest.mark.parametrize(
    ("label", "parse", "wire", "message"), INVALID_WIRE, ids=[case[0] for case in INVALID_WIRE]
)
def test_invalid_wire_bytes_are_refused(
    label: str, parse: Callable[[bytes], object], wire: bytes, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        parse(wire)


def test_bit_from_binary_clears_padding_like_the_server() -> None:
    assert Bit.from_binary(b"\x00\x00\x00\x04\xbf").to_binary() == b"\x00\x00\x00\x04\xb0"


INVALID_TEXT: list[tuple[str, Callable[[str], object], str, str]] = [
    ("vector no brackets", Vector.from_text, "1,2", r"must look like"),
    ("vector unclosed", Vector.from_text, "[1,2", r"must look like"),
    ("vector empty", Vector.from_text, "[ ]", r"at least 1 dimension"),
    ("vector word", Vector.from_text, "[1,x]", r"text element 1 is not a number"),
    ("vector empty element", Vector.from_text, "[1,,2]", r"text element 1 is not a number"),
    ("vector underscore", Vector.from_text, "[1_0]", r"not a number"),
    ("vector overflow", Vector.from_text, "[1e39]", r"element 0 \(1e39\) is out of range"),
    ("vector NaN", Vector.from_text, "[1,NaN]", r"element 1 is NaN"),
    ("vector inf", Vector.from_text, "[-Infinity]", r"element 0 is -inf"),
    ("halfvec overflow", HalfVector.from_text, "[65520]", r"out of range for halfvec"),
    ("sparse shape", SparseVector.from_text, "{1:2}", r"must look like"),
    ("sparse dim", SparseVector.from_text, "{1:2}/x", r"no valid dimension"),
    ("sparse index 0", SparseVector.from_text, "{0:2}/3", r"text index 0 is out of range"),
    ("sparse index > dim", SparseVector.from_text, "{4:2}/3", r"text index 4 is out of range"),
    ("sparse pair", SparseVector.from_text, "{1}/3", r"is not index:value"),
    ("sparse duplicate", SparseVector.from_text, "{2:1,2:3}/3", r"index 1 appears more"),
    ("sparse NaN", SparseVector.from_text, "{2:nan}/3", r"value at index 1 is NaN"),
    ("bit", Bit.from_text, "10x", r"position 2 is 'x'"),
]


@pytest.mark.parametrize(
    ("label", "parse", "text", "message"), INVALID_TEXT, ids=[case[0] for case in INVALID_TEXT]
)
def test_invalid_text_is_refused(
    label: str, parse: Callable[[str], object], text: str, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        parse(text)


def test_huge_finite_float32_values_encode_without_numpy_warnings() -> None:
    # Their sum of squares overflows float32, which the fast finiteness check must not mistake
    # for NaN, nor report as a RuntimeWarning.
    row = np.full(768, 3e38, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert encode_vector(row) == struct.pack(">HH", 768, 0) + row.astype(">f4").tobytes()
        assert Vector(np.array([1e30, -1e30])).to_list() == [f32(1e30), f32(-1e30)]


# -- equality, hashing, display -------------------------------------------------------------------


def test_equality_and_hashing() -> None:
    assert Vector([0.0, 1.0]) == Vector([-0.0, 1.0])
    assert hash(Vector([0.0, 1.0])) == hash(Vector([-0.0, 1.0]))
    assert Vector([1, 2]) == Vector(np.array([1, 2], dtype=np.float32))
    assert Vector([1, 2]) != Vector([1, 3])
    assert Vector([1, 2]) != HalfVector([1, 2])
    assert Vector([1, 2]) != [1.0, 2.0]
    assert len({Vector([1, 2]), Vector((1.0, 2.0)), HalfVector([1, 2])}) == 2
    assert len({SparseVector([1, 0]), SparseVector({0: 1}, dim=2), Bit("1"), Bit([True])}) == 2
    assert SparseVector({0: 1}, dim=2) != SparseVector({0: 1}, dim=3)
    assert Bit("10") != Bit("100")


@pytest.mark.parametrize(
    "value", [Vector([1, 2]), HalfVector([1]), SparseVector({1: 2}, dim=3), Bit("101")]
)
def test_values_pickle_and_copy(value: object) -> None:
    assert pickle.loads(pickle.dumps(value)) == value
    assert copy.deepcopy(value) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Vector([0.5, 2]), "Vector([0.5, 2], dim=2)"),
        (
            Vector(np.arange(768, dtype=np.float32) / 10),
            "Vector([0, 0.1, 0.2, ..., 76.6, 76.7], dim=768)",
        ),
        (HalfVector([1] * 1000), "HalfVector([1, 1, 1, ..., 1, 1], dim=1000)"),
        (SparseVector({1: 2.5}, dim=9), "SparseVector({1: 2.5}, dim=9, nnz=1)"),
        (
            SparseVector(dict.fromkeys(range(100), 1.0), dim=10**9),
            "SparseVector({0: 1, 1: 1, 2: 1, 3: 1, ..., 99: 1}, dim=1000000000, nnz=100)",
        ),
        (Bit("1011"), "Bit('1011')"),
        (Bit("10" * 500), "Bit('1010101010101010...10101010', length=1000)"),
    ],
)
def test_repr_is_short(value: object, expected: str) -> None:
    assert repr(value) == expected
    assert len(repr(value)) < 100


# -- base64 of little-endian float32 (embedding APIs) ---------------------------------------------


def test_from_float_base64_reads_little_endian() -> None:
    # base64 of the little-endian float32 bytes of [1.0, 2.0, 3.0], as OpenAI returns them.
    encoded = "AACAPwAAAEAAAEBA"
    assert base64.b64decode(encoded) == struct.pack("<3f", 1.0, 2.0, 3.0)
    assert Vector.from_float_base64(encoded).to_list() == [1.0, 2.0, 3.0]
    assert HalfVector.from_float_base64(encoded).to_list() == [1.0, 2.0, 3.0]
    assert Vector.from_float_base64(encoded.encode()).to_list() == [1.0, 2.0, 3.0]
    # Read big-endian, the same bytes would be tiny denormal garbage.
    assert struct.unpack(">3f", base64.b64decode(encoded))[0] != 1.0


def test_from_float_base64_1536_dims() -> None:
    row = np.random.default_rng(7).standard_normal(1536).astype(np.float32)
    encoded = base64.b64encode(row.astype("<f4").tobytes()).decode()
    vector = Vector.from_float_base64(encoded)
    assert vector.dim == 1536
    np.testing.assert_array_equal(vector.to_numpy(), row)
    assert vector == Vector(row)
    half = HalfVector.from_float_base64(encoded)
    np.testing.assert_array_equal(half.to_numpy(), row.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("AACAPwA=", r"decodes to 5 bytes, not a whole number of float32"),
        ("not base64!", r"invalid base64"),
        (base64.b64encode(struct.pack("<2f", 1.0, NAN)).decode(), r"vector element 1 is NaN"),
        ("", r"at least 1 dimension"),
    ],
)
def test_from_float_base64_errors(data: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Vector.from_float_base64(data)


# -- numpy conversions and batches -----------------------------------------------------------------


def test_to_numpy() -> None:
    vector = Vector([1, 2.5]).to_numpy()
    assert vector.dtype == np.float32
    assert vector.flags.writeable
    np.testing.assert_array_equal(vector, [1, 2.5])
    half = HalfVector([0.1]).to_numpy()
    assert half.dtype == np.float32
    assert half[0] == np.float32(np.float16(0.1))
    sparse = SparseVector({1: 2.0}, dim=3).to_numpy()
    assert sparse.dtype == np.float32
    np.testing.assert_array_equal(sparse, [0, 2, 0])
    bits = Bit("101").to_numpy()
    assert bits.dtype == np.bool_
    np.testing.assert_array_equal(bits, [True, False, True])


@pytest.mark.parametrize("cls", [Vector, HalfVector])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_from_matrix_matches_row_by_row(cls: type[Vector], dtype: Any) -> None:
    matrix = (np.random.default_rng(3).standard_normal((5, 7)) * 100).astype(dtype)
    batch = cls.from_matrix(matrix)
    assert batch == [cls(row) for row in matrix]
    assert cls.from_matrix(matrix.tolist()) == batch
    assert cls.from_matrix(np.zeros((0, 7))) == []


@pytest.mark.parametrize(
    ("cls", "matrix", "message"),
    [
        (Vector, np.array([[1.0, 2.0], [3.0, NAN]]), r"row 1: vector element 1 is NaN"),
        (Vector, np.array([[1.0, 1e39]]), r"row 0: vector element 1 \(1e\+39\) is out of range"),
        (Vector, [[1.0], [INF]], r"row 1: vector element 0 is inf"),
        (Vector, np.zeros(3), r"2-D array"),
        (Vector, np.zeros((2, 0)), r"at least 1 dimension"),
        (HalfVector, np.array([[1.0], [7e4]]), r"row 1: halfvec element 0 \(70000.0\)"),
    ],
)
def test_from_matrix_errors_name_the_row(cls: type[Vector], matrix: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        cls.from_matrix(matrix)


# -- the codec functions ---------------------------------------------------------------------------


def test_codec_functions_accept_the_documented_inputs() -> None:
    row = np.array([1.0, 2.0], dtype=np.float32)
    wire = Vector([1, 2]).to_binary()
    for value in (row, [1, 2], (1.0, 2.0), Vector([1, 2]), HalfVector([1, 2]), row.astype(float)):
        assert encode_vector(value) == wire
    assert decode_vector(wire) == Vector([1, 2])
    half = HalfVector([1, 2]).to_binary()
    for value in (row, [1, 2], HalfVector([1, 2]), Vector([1, 2])):
        assert encode_halfvec(value) == half
    assert decode_halfvec(half) == HalfVector([1, 2])
    sparse = SparseVector({1: 2.0}, dim=3)
    for sparse_input in (sparse, [0, 2, 0], np.array([0, 2, 0])):
        assert encode_sparsevec(sparse_input) == sparse.to_binary()
    assert decode_sparsevec(sparse.to_binary()) == sparse
    for bit_input in (Bit("101"), "101", [True, False, True], np.array([1, 0, 1], dtype=bool)):
        assert encode_bit(bit_input) == Bit("101").to_binary()
    assert decode_bit(Bit("101").to_binary()) == Bit("101")


@pytest.mark.parametrize(
    ("encode", "value"),
    [
        (encode_vector, Vector([1, 2.5])),
        (encode_vector, Vector(np.full(768, 3e38, dtype=np.float32))),  # vdot overflows
        (encode_halfvec, HalfVector([1, 65504])),
        (encode_sparsevec, SparseVector({3: 1.5}, dim=9)),
        (encode_bit, Bit("101100111")),
    ],
)
def test_encoders_take_wire_bytes(encode: Callable[[Any], bytes], value: Any) -> None:
    wire = value.to_binary()
    assert encode(wire) == encode(bytearray(wire)) == encode(memoryview(wire)) == wire


@pytest.mark.parametrize(
    ("encode", "wire", "message"),
    [
        (encode_vector, b"\x00\x01\x00\x00" + struct.pack(">f", NAN), r"vector element 0 is NaN"),
        (encode_vector, struct.pack("<3f", 1, 2, 3), r"12 bytes; 0 dimensions|at least 1"),
        (encode_halfvec, b"\x00\x01\x00\x00\xfc\x00", r"halfvec element 0 is -inf"),
        (encode_sparsevec, struct.pack(">4if", 3, 1, 0, 0, 0.0), r"must not contain zero"),
        (encode_bit, b"\x00\x00\x00\x09\x01", r"9 bits take 6"),
    ],
)
def test_encoders_check_wire_bytes(
    encode: Callable[[Any], bytes], wire: bytes, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        encode(wire)


def test_sparse_encoder_refuses_a_bare_mapping() -> None:
    with pytest.raises(ValidationError, match=r"SparseVector\(mapping, dim=...\)"):
        encode_sparsevec({0: 1.0})


@pytest.mark.parametrize("bad", [[NAN], np.array([INF], dtype=np.float32), "x", None])
def test_vector_encoder_validates(bad: object) -> None:
    with pytest.raises(ValidationError):
        encode_vector(bad)


# -- scipy.sparse input and output -----------------------------------------------------------------

SCIPY_FORMATS = ["coo", "csr", "csc", "bsr", "dia", "dok", "lil"]
# scipy builds 1-D sparse arrays only in these formats (the others refuse 1-D input themselves).
SCIPY_1D_FORMATS = ["coo", "csr", "dok"]


@pytest.mark.parametrize("flavour", ["array", "matrix"])
@pytest.mark.parametrize("fmt", SCIPY_FORMATS)
def test_sparse_from_every_scipy_format(fmt: str, flavour: str) -> None:
    import scipy.sparse

    row = np.array([[0.0, 1.5, 0.0, -2.0, 0.0]])
    value = getattr(scipy.sparse, f"{fmt}_{flavour}")(row)
    expected = SparseVector({1: 1.5, 3: -2.0}, dim=5)
    assert SparseVector(value) == expected
    assert SparseVector(value, dim=5) == expected
    assert encode_sparsevec(value) == expected.to_binary()
    with pytest.raises(ValidationError, match="dim=4 does not match the scipy input's 5 columns"):
        SparseVector(value, dim=4)
    # Two rows, or a column, are not one sparsevec.
    with pytest.raises(ValidationError, match=r"single row, shape \(1, n\) or \(n,\); got shape"):
        SparseVector(getattr(scipy.sparse, f"{fmt}_{flavour}")(np.vstack([row, row])))
    with pytest.raises(ValidationError, match=r"got shape \(5, 1\)"):
        SparseVector(getattr(scipy.sparse, f"{fmt}_{flavour}")(row.T))


@pytest.mark.parametrize("fmt", SCIPY_1D_FORMATS)
def test_sparse_from_1d_scipy_arrays(fmt: str) -> None:
    import scipy.sparse

    value = getattr(scipy.sparse, f"{fmt}_array")(np.array([0.0, 0.0, 3.5]))
    assert value.ndim == 1
    assert SparseVector(value) == SparseVector({2: 3.5}, dim=3)


def test_sparse_from_scipy_edge_cases() -> None:
    import scipy.sparse

    # Entries stored twice are summed, as scipy itself reads them; explicit zeros are dropped.
    data, rows, columns = np.array([1.0, 2.0, 0.0]), np.zeros(3, np.int32), np.array([3, 3, 1])
    twice = scipy.sparse.coo_matrix((data, (rows, columns)), shape=(1, 5))
    assert SparseVector(twice) == SparseVector({3: 3.0}, dim=5)
    assert twice.nnz == 3  # (the input is left as it was)
    assert SparseVector(scipy.sparse.csr_array((1, 10**9))) == SparseVector({}, dim=10**9)
    ints = scipy.sparse.csr_matrix(np.array([[0, 7, 0]], dtype=np.int64))
    assert SparseVector(ints) == SparseVector({1: 7.0}, dim=3)
    bad: list[tuple[Any, str]] = [
        (scipy.sparse.csr_array(np.array([[0, np.nan, 0]])), "value at index 1 is NaN"),
        (scipy.sparse.csr_array(np.array([[np.inf]])), "value at index 0 is inf"),
        (scipy.sparse.csr_array(np.array([[1e39]])), "index 0 .* out of range"),
        (scipy.sparse.csr_array(np.array([[True, False]])), "bool scipy sparse csr_array"),
        (scipy.sparse.csr_array(np.array([[1j]])), "real numbers, got a scipy sparse csr_array"),
        (scipy.sparse.csr_array((1, 0)), "at least 1 dimension"),
        (scipy.sparse.csr_array((1, 10**9 + 1)), "more than 1000000000 dimensions"),
        (scipy.sparse.random(1, 20000, density=1.0, format="csr"), "more than 16000 non-zero"),
    ]
    for value, message in bad:
        with pytest.raises(ValidationError, match=message):
            SparseVector(value)
    with pytest.raises(ValidationError, match="shape"):
        encode_sparsevec(scipy.sparse.dok_matrix((2, 2)))  # a dict, but not a plain mapping


def test_sparse_to_coo() -> None:
    import scipy.sparse

    value = SparseVector({1: 1.5, 999: -2.0}, dim=1000)
    coo = value.to_coo()
    assert isinstance(coo, scipy.sparse.coo_array)
    assert coo.shape == (1, 1000)
    assert coo.dtype == np.float32
    assert coo.toarray()[0].tolist() == value.to_list()
    assert SparseVector(coo) == value
    assert SparseVector({}, dim=3).to_coo().nnz == 0


def test_sparse_from_float_base64() -> None:
    data = base64.b64encode(np.array([0, 1.5, 0, -2], "<f4").tobytes())
    assert SparseVector.from_float_base64(data) == SparseVector({1: 1.5, 3: -2.0}, dim=4)
    assert SparseVector.from_float_base64(data.decode(), dim=4).nnz == 2
    with pytest.raises(ValidationError, match="invalid base64"):
        SparseVector.from_float_base64("not base64!")
