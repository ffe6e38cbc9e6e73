"""The compiled ``vector`` encoder (``pgvs._speedups``) against the pure-Python reference.

The C path must return exactly the reference's bytes, or None whenever the reference would do
anything else (raise, or take a conversion it does not implement). Values are also checked
against the server's own parsing of the exact decimal value.
"""

from __future__ import annotations

import array
import decimal
import gc
import os
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgvs.codecs import register_vector
from pgvs.errors import ValidationError
from pgvs.types import (
    HALFVEC_MAX_DIM,
    SPEEDUPS,
    VECTOR_MAX_DIM,
    HalfVector,
    Vector,
    _halfvec,
    _native,
    _numpy,
    _vector,
)

NativeWire = Callable[[Any], "bytes | None"]

FLT_MAX = float(np.finfo(np.float32).max)
FLT_TRUE_MIN = float(np.finfo(np.float32).smallest_subnormal)


REQUIRED = _native.flag("PGVS_REQUIRE_EXTENSIONS")


def _loaded(function: NativeWire | None) -> NativeWire:
    """``function``, or skip the test without the extension (fail where it is required)."""
    if function is None:
        if REQUIRED:
            pytest.fail("PGVS_REQUIRE_EXTENSIONS is set but pgvs._speedups is not loaded")
        pytest.skip("pgvs._speedups is not built in this environment (pure-Python install)")
    return function


@pytest.fixture
def native() -> NativeWire:
    return _loaded(_native.dense_vector_wire)


def test_extension_loaded_where_required() -> None:
    # CI sets PGVS_REQUIRE_EXTENSIONS so a silently failed compile cannot pass as green.
    if REQUIRED:
        assert SPEEDUPS
        assert _numpy.encode_vector is not _numpy.encode_vector_python


@contextmanager
def pure_python() -> Iterator[None]:
    """Every entry point on its pure-Python path, as on a machine without the extension (the
    Python paths themselves call the C one for some inputs, so switching off only the top-level
    encoder would compare C with C)."""
    saved = (
        _numpy._dense_vector_wire,
        _vector._dense_vector_wire,
        _numpy._dense_halfvec_wire,
        _halfvec._dense_halfvec_wire,
    )
    _numpy._dense_vector_wire = _vector._dense_vector_wire = None
    _numpy._dense_halfvec_wire = _halfvec._dense_halfvec_wire = None
    try:
        yield
    finally:
        (
            _numpy._dense_vector_wire,
            _vector._dense_vector_wire,
            _numpy._dense_halfvec_wire,
            _halfvec._dense_halfvec_wire,
        ) = saved


def _outcome(encode: Callable[[Any], bytes], value: Any) -> bytes | str:
    try:
        return encode(value)
    except ValidationError as exc:
        return f"ValidationError: {exc}"


def _reference(value: Any) -> bytes | str:
    """What the pure-Python encoder does with ``value``: its bytes, or its error message."""
    with pure_python():
        return _outcome(_numpy.encode_vector_python, value)


def _holders(function: object) -> list[str]:
    """Who holds a reference to ``function``: module globals (by module name) and closures."""
    modules = {id(vars(module)): name for name, module in list(sys.modules.items()) if module}
    found = []
    for referrer in gc.get_referrers(function):
        if isinstance(referrer, dict) and id(referrer) in modules:
            found.append(modules[id(referrer)])
        elif type(referrer).__name__ == "cell":
            found.append("<closure>")
    return sorted(found)


def test_pure_python_switch_covers_every_holder(native: NativeWire) -> None:
    # pure_python() can only emulate a build without the extension if it blanks every place
    # the C functions are kept; a new holder must be added there (or this test updated).
    assert _native.dense_halfvec_wire is not None
    assert _holders(_native.dense_vector_wire) == sorted(
        [
            "pgvs._speedups",
            "pgvs.types._native",
            "pgvs.types._numpy",
            "pgvs.types._vector",
            "<closure>",  # _numpy.encode_vector, the installed encoder (never the reference)
        ]
    )
    assert _holders(_native.dense_halfvec_wire) == sorted(
        ["pgvs._speedups", "pgvs.types._native", "pgvs.types._numpy", "pgvs.types._halfvec"]
    )


def test_python_paths_never_call_the_extension() -> None:
    # The *_python functions are the reference even outside pure_python().
    calls: list[object] = []

    def spy(value: object) -> None:
        calls.append(value)

    holders = [
        (_numpy, "_dense_vector_wire"),
        (_vector, "_dense_vector_wire"),
        (_numpy, "_dense_halfvec_wire"),
        (_halfvec, "_dense_halfvec_wire"),
    ]
    saved = [getattr(module, name) for module, name in holders]
    for module, name in holders:
        setattr(module, name, spy)
    try:
        for item in (np.ones(3), np.ones(3, np.float32), [1.0, 2.0], array.array("d", [1.0])):
            value: Any = item
            _numpy.encode_vector_python(value)
            Vector._wire_from_python(value)
            HalfVector._wire_from_python(value)
        for row in (np.ones(3), np.ones(3, np.float32)):
            _numpy.vector_wire_python(row)
            _numpy.halfvec_wire_python(row)
        assert calls == []
        with pure_python():  # and the switch reaches the dispatching entry points too
            for entry in (np.ones(3), [1.0, 2.0], (1.0,), array.array("f", [1.0])):
                value = entry
                Vector(value)
                HalfVector(value)
                _vector.encode_vector(value)
                _halfvec.encode_halfvec(value)
        assert calls == []
    finally:
        for (module, name), original in zip(holders, saved, strict=True):
            setattr(module, name, original)


def _f32(*values: float) -> np.ndarray[Any, Any]:
    return np.array(values, dtype=np.float32)


def _f64(*values: float) -> np.ndarray[Any, Any]:
    return np.array(values, dtype=np.float64)


rng = np.random.default_rng(7)
_wide = rng.standard_normal((2, 768))

# (id, value, whether the C path takes it)
CASES: list[tuple[str, Any, bool]] = [
    ("f32-768", _wide[0].astype(np.float32), True),
    ("f64-768", _wide[1], True),
    ("f32-one", _f32(1.5), True),
    ("f32-max-dim", rng.standard_normal(VECTOR_MAX_DIM, dtype=np.float32), True),
    ("f32-extremes", _f32(FLT_MAX, -FLT_MAX, FLT_TRUE_MIN, -FLT_TRUE_MIN, 0.0, -0.0), True),
    ("f64-rounds-to-max", _f64(3.4028235e38, -3.4028235e38), True),
    ("f64-rounds-to-zero", _f64(1e-50, -1e-50), True),
    ("f64-half-way-ties", _f64(1 + 2**-24, 1 + 3 * 2**-24, 2**-149 * 1.5), True),
    ("f64-subnormal-f32", _f64(1e-40, -2.5e-42), True),
    ("f32-nan-first", _f32(float("nan"), 1.0), False),
    ("f32-inf-last", _f32(1.0, 2.0, float("inf")), False),
    ("f32-both-infs", _f32(float("-inf"), float("inf")), False),
    ("f32-nan-payload", np.frombuffer(struct.pack("<I", 0x7FC00123), np.float32), False),
    ("f64-overflows-f32", _f64(1.0, 3.5e38), False),
    ("f64-max", _f64(1.7976931348623157e308), False),
    ("f64-nan", _f64(0.0, float("nan")), False),
    ("empty", np.array([], np.float32), False),
    ("too-long", np.zeros(VECTOR_MAX_DIM + 1, np.float32), False),
    ("two-d", np.ones((2, 3), np.float32), False),
    ("one-by-n", np.ones((1, 3), np.float32), False),
    ("zero-d", np.array(1.0, np.float32), False),
    ("strided", np.arange(10, dtype=np.float32)[::2], False),
    ("reversed", np.arange(10, dtype=np.float32)[::-1], False),
    ("big-endian-f32", np.arange(4, dtype=">f4"), False),
    ("big-endian-f64", np.arange(4, dtype=">f8"), False),
    ("float16", np.arange(4, dtype=np.float16), False),
    ("int32", np.arange(4, dtype=np.int32), False),
    ("uint8", np.arange(4, dtype=np.uint8), False),
    ("bool", np.array([True, False]), False),
    ("object", np.array([1.0, 2.0], dtype=object), False),
    ("complex64", np.ones(3, np.complex64), False),
    ("structured", np.zeros(3, dtype=[("a", "<f4")]), False),
    ("longdouble", np.ones(3, np.longdouble), False),
    ("masked", np.ma.array([1.0, 2.0], mask=[False, True], dtype=np.float32), False),
    ("list-floats", _wide[0].tolist(), True),
    ("tuple-floats", tuple(_wide[1][:5].tolist()), True),
    ("list-ints", [0, 1, -7, 2**24 + 1, 2**100], True),
    ("list-mixed", [1, 2.5, -0.0, 1e-45, 3.4028235e38], True),
    ("list-nan", [1.0, float("nan")], False),
    ("list-overflow", [1.0, 1e39], False),
    ("list-int-overflow", [1.0, 10**400], False),
    ("list-bool", [1.0, True], False),
    ("list-numpy-scalar", [1.0, np.float32(2.0)], False),
    ("list-str", [1.0, "2"], False),
    ("list-nested", [[1.0, 2.0]], False),
    ("list-empty", [], False),
    ("list-too-long", [0.0] * (VECTOR_MAX_DIM + 1), False),
    ("list-none", [None], False),
]


@pytest.mark.parametrize(
    ("value", "native_takes_it"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_native_matches_reference(native: NativeWire, value: Any, native_takes_it: bool) -> None:
    expected = _reference(value)
    wire = native(value)
    if native_takes_it:
        assert isinstance(expected, bytes), expected
        assert wire == expected
    elif not isinstance(value, np.ma.MaskedArray):  # callers never hand it masked arrays
        assert wire is None
    # The installed encoders as a whole behave exactly like the reference, errors included:
    # the numpy-aware codec encoder, the numpy-free one, and building a Vector.
    assert _outcome(_numpy.encode_vector, value) == expected
    assert _outcome(_vector.encode_vector, value) == expected
    assert _outcome(lambda v: Vector(v).to_binary(), value) == expected
    with pure_python():
        assert _outcome(_vector.encode_vector, value) == expected
        assert _outcome(lambda v: Vector(v).to_binary(), value) == expected


def test_non_finite_errors_still_name_the_element() -> None:
    row = np.ones(768, np.float32)
    row[417] = np.nan
    with pytest.raises(ValidationError, match="element 417"):
        _numpy.encode_vector(row)
    wide = np.ones(5)
    wide[3] = 1e39
    with pytest.raises(ValidationError, match="element 3"):
        _numpy.encode_vector(wide)


@pytest.mark.parametrize("typecode", ["f", "d"])
def test_array_module_buffers(native: NativeWire, typecode: str) -> None:
    values = array.array(typecode, [0.1, -2.5, 3e-39, 1e30])
    expected = _reference(values)
    assert isinstance(expected, bytes)
    assert native(values) == expected
    assert Vector(values).to_binary() == expected
    values.append(float("nan"))
    assert native(values) is None
    with pytest.raises(ValidationError, match="element 4"):
        Vector(values)


def test_not_a_buffer_returns_none(native: NativeWire) -> None:
    for value in (None, 1.5, "1,2", object(), {1: 2.0}, range(3)):
        assert native(value) is None


def test_buffers_are_released_and_nothing_leaks(native: NativeWire) -> None:
    # An array.array refuses to grow while a buffer export is outstanding, so a missing
    # PyBuffer_Release on any path would make append() raise BufferError.
    for typecode, items in (("f", [1.0, 2.0]), ("f", [1.0, float("inf")]), ("b", [1, 2])):
        values = array.array(typecode, items)
        for _ in range(3):
            native(values)
        values.append(items[0])
    inputs = [
        np.ones(768, np.float32),
        np.array([np.nan], np.float32),
        np.ones(20, np.float32)[::2],
        [1.0] * 768,
        [1.0, float("inf")],
        [1.0, 10**400],
        (1, "x"),
        "not a buffer",
    ]
    half = _native.dense_halfvec_wire
    assert half is not None
    inputs += [np.full(8, 70000.0, np.float32), [1e5]]
    before = [sys.getrefcount(x) for x in inputs]

    def churn() -> None:
        for _ in range(2000):
            for value in inputs:
                native(value)
                half(value)

    churn()  # warm up: caches (numpy's buffer info, free lists) fill once
    blocks = sys.getallocatedblocks()
    churn()
    # Every result (bytes or None) must be freed: 16,000 leaked objects would show here.
    assert sys.getallocatedblocks() - blocks < 100
    assert [sys.getrefcount(x) for x in inputs] == before


def test_memoryviews_stay_wire_bytes() -> None:
    # The C function would read a float memoryview as numbers; the public encoders must keep
    # treating memoryviews as wire bytes, with or without the extension.
    wire = Vector([1.0, 2.0]).to_binary()
    floats = memoryview(array.array("f", [1.0, 2.0]))
    for value in (memoryview(wire), floats):
        expected = _reference(value)
        assert _outcome(_numpy.encode_vector, value) == expected
        assert _outcome(_vector.encode_vector, value) == expected
    assert _numpy.encode_vector(memoryview(wire)) == wire


@pytest.mark.parametrize("build", [Vector, HalfVector, Vector.from_matrix, HalfVector.from_matrix])
def test_masked_arrays_are_refused(build: Callable[[Any], object]) -> None:
    data: Any = (
        [[1.0, 2.0]] if build in (Vector.from_matrix, HalfVector.from_matrix) else [1.0, 2.0]
    )
    masked = np.ma.array(data, mask=np.zeros_like(data, dtype=bool), dtype=np.float32)
    with pytest.raises(ValidationError, match="masked array"):
        build(masked)


_f32_bits = st.integers(min_value=0, max_value=2**32 - 1)


def test_no_extensions_switch_turns_it_off() -> None:
    script = textwrap.dedent(
        """
        import numpy as np
        import pgvs.types
        from pgvs.types import _numpy
        from pgvs.types import _native
        assert not pgvs.types.SPEEDUPS
        assert _native.dense_vector_wire is None and _native.dense_halfvec_wire is None
        assert _numpy.encode_vector is _numpy.encode_vector_python
        assert pgvs.types.Vector(np.ones(3, np.float32)).dim == 3
        print("ok")
        """
    )
    env = {**os.environ, "PGVS_NO_EXTENSIONS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# -- halfvec ---------------------------------------------------------------------------------------


@pytest.fixture
def native_half() -> NativeWire:
    return _loaded(_native.dense_halfvec_wire)


def _half_reference(value: Any) -> bytes | str:
    with pure_python():
        return _outcome(_halfvec.encode_halfvec, value)


HALF_SUB = 2.0**-24  # the smallest subnormal half
HALF_CASES: list[tuple[str, Any, bool]] = [
    ("f32-768", _wide[0].astype(np.float32), True),
    ("f64-768", _wide[1], True),
    ("f32-max-dim", rng.standard_normal(HALFVEC_MAX_DIM, dtype=np.float32), True),
    ("largest", _f32(65504.0, -65504.0, 65519.996), True),
    ("rounds-to-inf", _f32(1.0, 65520.0), False),
    ("rounds-to-neg-inf", _f32(-65520.0), False),
    ("f64-just-below-65520", _f64(65519.99), True),
    ("f64-rounds-up-to-65520", _f64(65519.999999999), False),
    ("subnormals", _f32(HALF_SUB, 3 * HALF_SUB, 1023 * HALF_SUB, -HALF_SUB, 2.0**-14), True),
    (
        "ties-to-even",
        _f32(HALF_SUB / 2, 1.5 * HALF_SUB, 2.5 * HALF_SUB, 1 + 2**-11, 1 + 3 * 2**-11),
        True,
    ),
    ("below-half-ulp", _f32(HALF_SUB / 2 * 0.999, -(2.0**-26), FLT_TRUE_MIN), True),
    (
        "normal-boundary",
        _f32(2.0**-14 - 2.0**-25, 2.0**-14 - 2.0**-26, 2047.5, 2048.0 - 1 / 1024),
        True,
    ),
    ("signed-zero", _f32(-0.0, 0.0), True),
    ("nan", _f32(1.0, float("nan")), False),
    ("inf", _f32(float("inf")), False),
    ("f32-max", _f32(FLT_MAX), False),
    ("too-long", np.zeros(HALFVEC_MAX_DIM + 1, np.float32), False),
    ("strided", np.arange(10, dtype=np.float32)[::2], False),
    ("int16", np.arange(4, dtype=np.int16), False),
    ("float16", np.arange(4, dtype=np.float16), False),
    ("list-floats", [0.1, -2.5, 1e-7, 65504.0], True),
    ("list-ints", [0, 1, 65504, -2049], True),
    ("list-int-too-big", [65520], False),
    ("list-bool", [True], False),
    ("array-f", array.array("f", [0.1, 0.2]), True),
    ("array-d", array.array("d", [0.1, -3e4, 6e-8]), True),
    ("array-d-too-big", array.array("d", [0.1, 1e6]), False),
    ("tuple", (0.5, -1, 2e-6), True),
    ("list-huge-int", [1.0, 2**1100], False),
]


@pytest.mark.parametrize(
    ("value", "native_takes_it"), [c[1:] for c in HALF_CASES], ids=[c[0] for c in HALF_CASES]
)
def test_half_native_matches_reference(
    native_half: NativeWire, value: Any, native_takes_it: bool
) -> None:
    expected = _half_reference(value)
    wire = native_half(value)
    if native_takes_it:
        assert isinstance(expected, bytes), expected
        assert wire == expected
    else:
        assert wire is None
    assert _outcome(_halfvec.encode_halfvec, value) == expected
    assert _outcome(lambda v: HalfVector(v).to_binary(), value) == expected


def test_half_rounding_around_every_half_value(native_half: NativeWire) -> None:
    # Every finite half h, and the float32 values where rounding decides: h itself, the exact
    # midpoint to the next half, and one float32 step either side of that midpoint. (All 2^32
    # float32 patterns were compared once, offline, against numpy; this is the part that can
    # go wrong.)
    halves = np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float32)
    upper = np.append(halves[1:], np.float32(65536.0))
    midpoints = ((halves.astype(np.float64) + upper) / 2).astype(np.float32)
    candidates = np.concatenate(
        [
            halves,
            midpoints,
            np.nextafter(midpoints, np.float32(0)),
            np.nextafter(midpoints, np.float32(np.inf)),
        ]
    )
    candidates = np.concatenate([candidates, -candidates])
    finite = candidates[np.abs(candidates) < 65520]
    for start in range(0, finite.size, HALFVEC_MAX_DIM):
        chunk = finite[start : start + HALFVEC_MAX_DIM]
        assert native_half(chunk) == _half_reference(chunk)
    for value in candidates[np.abs(candidates) >= 65520]:
        assert native_half(np.array([value])) is None


# -- random input and the server: both encoders -------------------------------------------------

# (kind, the C function, the pure-Python reference, the numpy-free codec encoder)
ENCODERS: dict[
    str,
    tuple[Callable[[], NativeWire | None], Callable[[Any], bytes | str], Callable[[Any], bytes]],
] = {
    "vector": (lambda: _native.dense_vector_wire, _reference, _vector.encode_vector),
    "halfvec": (lambda: _native.dense_halfvec_wire, _half_reference, _halfvec.encode_halfvec),
}


def _assert_agrees(kind: str, value: Any) -> None:
    """The C function gives the reference's bytes, or None where the reference raises; the
    installed codec encoder behaves exactly like the reference."""
    load, reference, encode = ENCODERS[kind]
    native_wire = _loaded(load())
    expected = reference(value)
    wire = native_wire(value)
    if isinstance(expected, bytes):
        assert wire == expected
    else:
        assert wire is None
    assert _outcome(encode, value) == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(_f32_bits, min_size=1, max_size=40))
def test_random_f32_bit_patterns(bits: list[int]) -> None:
    # Every float32 there is: NaNs with payloads, infinities, subnormals, signed zeros.
    value = np.array(bits, dtype=np.uint32).view(np.float32)
    for kind in ENCODERS:
        _assert_agrees(kind, value)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(width=64, allow_nan=True, allow_infinity=True), min_size=1, max_size=40))
def test_random_f64_values(values: list[float]) -> None:
    for value in (np.array(values, dtype=np.float64), values, tuple(values)):
        for kind in ENCODERS:
            _assert_agrees(kind, value)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-7e4, max_value=7e4), min_size=1, max_size=30))
def test_random_values_in_half_range(values: list[float]) -> None:
    for value in (values, np.array(values), np.array(values, np.float32)):
        for kind in ENCODERS:
            _assert_agrees(kind, value)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(min_value=-(2**1100), max_value=2**1100),
            st.integers(min_value=-70000, max_value=70000),
            st.floats(width=64),
            st.booleans(),
            st.none(),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_random_lists_of_mixed_elements(values: list[Any]) -> None:
    for kind in ENCODERS:
        _assert_agrees(kind, values)


SERVER_ROWS = [
    _f64(0.1, 1 / 3, 2 / 3, 1e-40, -2.5e-42, 3.4028235e38, 1e-50),
    _f64(1 + 2**-24, 1 + 3 * 2**-24, 2**-149 * 1.5, 16777217.0),
    _f32(FLT_MAX, -FLT_MAX, FLT_TRUE_MIN, -0.0, 0.0, 1.0),
    rng.standard_normal(768, dtype=np.float32),
    rng.standard_normal(300) * 1e30,
]
HALF_SERVER_ROWS = [
    _f64(0.1, 1 / 3, 65504.0, 65519.99, -65519.99, 1e-8, 3e-8, 2.0**-14, 6e-5),
    _f32(HALF_SUB, 1.5 * HALF_SUB, 2.5 * HALF_SUB, 1 + 2**-11, 1 + 3 * 2**-11, -0.0),
    rng.standard_normal(768, dtype=np.float32) * 1000,
]


@pytest.mark.parametrize(
    ("kind", "value_type", "rows"),
    [("vector", Vector, SERVER_ROWS), ("halfvec", HalfVector, HALF_SERVER_ROWS)],
)
async def test_server_rounds_exact_decimals_the_same_way(
    pg_dsn: str, kind: str, value_type: type[Vector] | type[HalfVector], rows: list[Any]
) -> None:
    # The server parses the exact decimal value of every element (strtof rounds it once, to
    # nearest; halfvec then rounds that float32 to half): what the C path must produce too.
    native_wire = _loaded(ENCODERS[kind][0]())
    conn: asyncpg.Connection[Any] = await asyncpg.connect(pg_dsn)
    try:
        await register_vector(conn)
        for row in rows:
            wire = native_wire(row)
            assert wire is not None
            exact = "[" + ",".join(str(decimal.Decimal(float(x))) for x in row) + "]"
            record = await conn.fetchrow(
                f"SELECT $1::{kind}::text, $2::text::{kind}::text",
                value_type.from_binary(wire),
                exact,
            )
            assert record is not None
            assert record[0] == record[1]
    finally:
        await conn.close()


# x86-64 glibc <fenv.h> values; other platforms skip the rounding-mode test.
_FE_MODES = {"downward": 0x400, "upward": 0x800, "toward-zero": 0xC00}


@pytest.mark.parametrize("mode", list(_FE_MODES))
def test_half_rounding_ignores_the_fpu_rounding_mode(native_half: NativeWire, mode: str) -> None:
    # Some native libraries change the FPU rounding mode of the whole process; numpy's and
    # CPython's float16 conversions round to nearest regardless, and so must ours.
    import ctypes
    import ctypes.util
    import platform

    library = ctypes.util.find_library("m")
    if platform.machine() != "x86_64" or not sys.platform.startswith("linux") or not library:
        pytest.skip("the fenv constants used here are those of x86-64 glibc")
    libm = ctypes.CDLL(library)
    rows = [
        _f32(2.0**-30, 0.75 * HALF_SUB, 1.75 * HALF_SUB, 1.0, -2.5 * HALF_SUB, 1 + 3 * 2**-11),
        rng.standard_normal(768, dtype=np.float32) * np.float32(1e-5),
        [2.0**-30, 0.75 * HALF_SUB, 1.5 * HALF_SUB, 3.3, 1e-7],
    ]
    assert libm.fesetround(_FE_MODES[mode]) == 0
    try:
        assert libm.fegetround() == _FE_MODES[mode]
        for row in rows:
            assert native_half(row) == _half_reference(row)
    finally:
        libm.fesetround(0)
