"""The native list-of-lists reader of the write path (``pgvs._speedups.float32_rows``).

``_rows.vectors_to_matrix`` hands a list of float lists to the C reader first and falls back to
its checked path, which names the offending row. Both must agree exactly: the same float32 matrix,
or (when the C reader declines) the same ValidationError. The values stored through it are then
compared with the server's own parsing of the same decimal text.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgvs import AsyncPGVectorStore, _rows
from pgvs.errors import ValidationError
from pgvs.types import _native

REQUIRED = _native.flag("PGVS_REQUIRE_EXTENSIONS")
FLT_MAX = float(np.finfo(np.float32).max)


@pytest.fixture
def native() -> Any:
    if _native.float32_rows is None:
        if REQUIRED:
            pytest.fail("PGVS_REQUIRE_EXTENSIONS is set but pgvs._speedups is not loaded")
        pytest.skip("pgvs._speedups is not built in this environment")
    return _native.float32_rows


def _outcome(vectors: Any, dim: int, *, half: bool = False) -> tuple[str, Any]:
    try:
        matrix = _rows.vectors_to_matrix(vectors, dim, half=half)
    except ValidationError as exc:
        return "error", str(exc)
    assert matrix.dtype == np.float32
    assert matrix.flags.c_contiguous
    return "matrix", (matrix.shape, matrix.tobytes())


def _checked(vectors: Any, dim: int, *, half: bool = False) -> tuple[str, Any]:
    """The outcome with the native reader switched off (as on a pure-Python install)."""
    module: Any = _rows
    saved = module.float32_rows
    module.float32_rows = None
    try:
        return _outcome(vectors, dim, half=half)
    finally:
        module.float32_rows = saved


# (vectors, dim, whether the native reader takes them)
CASES: list[tuple[str, Any, int, bool]] = [
    ("floats", [[0.1, -2.5, 3.0], [1e-40, 7.0, -0.0]], 3, True),
    ("ints", [[1, 2, 3], [-(2**40), 0, 5]], 3, True),
    ("mixed", [[1, 2.5, -3]], 3, True),
    ("tuples", ((1.0, 2.0), (3.0, 4.0)), 2, True),
    ("tuple rows in a list", [(1.0, 2.0), [3.0, 4.0]], 2, True),
    ("empty", [], 4, True),
    ("float32 max", [[FLT_MAX, -FLT_MAX]], 2, True),
    ("rounds to float32", [[0.1 + 1e-12, 1 / 3]], 2, True),
    ("bool element", [[1.0, True]], 2, False),
    ("str element", [[1.0, "2"]], 2, False),
    ("None element", [[1.0, None]], 2, False),
    ("numpy scalar", [[np.float32(1.0), 2.0]], 2, False),
    ("nan", [[1.0, math.nan]], 2, False),
    ("inf", [[1.0], [-math.inf]], 1, False),
    ("overflows float32", [[1e39, 1.0]], 2, False),
    ("int beyond double", [[10**400, 1]], 2, False),
    ("ragged", [[1.0, 2.0], [1.0]], 2, False),
    ("wrong dimension", [[1.0, 2.0, 3.0]], 2, False),
    ("numpy rows", [np.array([1.0, 2.0])], 2, False),
    ("a string", "12", 2, False),
    ("float subclass", [[type("F", (float,), {})(1.0), 2.0]], 2, False),
]


@pytest.mark.parametrize(
    ("vectors", "dim", "native_takes_it"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_native_reader_agrees_with_the_checked_path(
    native: Any, vectors: Any, dim: int, native_takes_it: bool
) -> None:
    packed = native(vectors, dim) if isinstance(vectors, list | tuple) else None
    assert (packed is not None) == native_takes_it
    assert _outcome(vectors, dim) == _checked(vectors, dim)


def test_declined_rows_are_named(native: Any) -> None:
    with pytest.raises(ValidationError, match="row 2"):
        _rows.vectors_to_matrix([[1.0, 2.0], [3.0, 4.0], [5.0, math.nan]], 2)
    with pytest.raises(ValidationError, match="row 1"):
        _rows.vectors_to_matrix([[1.0, 2.0], [3.0]], 2)
    with pytest.raises(ValidationError, match=r"row 1: .*element 0 .* overflows"):
        _rows.vectors_to_matrix([[1.0, 2.0], [10**400, 1]], 2)


def test_halfvec_range_goes_to_the_checked_path(native: Any) -> None:
    assert native([[70000.0, 1.0]], 2) is not None  # finite in float32 ...
    kind, message = _outcome([[70000.0, 1.0]], 2, half=True)  # ... but not in float16
    assert kind == "error"
    assert "halfvec" in message
    assert _outcome([[70000.0, 1.0]], 2, half=True) == _checked([[70000.0, 1.0]], 2, half=True)
    assert _outcome([[65504.0, 1.0]], 2, half=True) == _checked([[65504.0, 1.0]], 2, half=True)


def test_the_result_is_writable(native: Any) -> None:
    matrix = _rows.vectors_to_matrix([[3.0, 4.0]], 2)
    matrix /= 5.0  # normalisation scales in place
    assert matrix.tolist() == [[0.6000000238418579, 0.800000011920929]]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=8).flatmap(
        lambda dim: st.lists(
            st.lists(
                st.one_of(
                    st.floats(allow_nan=True, allow_infinity=True, width=64),
                    st.integers(min_value=-(2**70), max_value=2**70),
                    st.booleans(),
                ),
                min_size=dim,
                max_size=dim,
            ),
            max_size=6,
        ).map(lambda rows: (rows, dim))
    )
)
def test_random_lists_agree(case: tuple[list[list[Any]], int]) -> None:
    if _native.float32_rows is None:
        pytest.skip("pgvs._speedups is not built in this environment")
    vectors, dim = case
    assert _outcome(vectors, dim) == _checked(vectors, dim)


async def test_stored_values_match_the_servers_parsing(
    pg_dsn: str, table_name: str, native: Any
) -> None:
    rng = np.random.default_rng(7)
    vectors = [[float(x) for x in row] for row in rng.normal(scale=1e3, size=(50, 16))]
    vectors[0][:4] = [1e-45, FLT_MAX, -0.0, 1 / 3]
    vectors[1] = [int(x) for x in rng.integers(-(2**30), 2**30, size=16)]
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, table_name=table_name, dimensions=16, id_type="bigint"
    ) as store:
        await store.ingest(vectors, ids=list(range(50)))
        await store.add_vectors(vectors[:5], ids=list(range(100, 105)))
        async with store.pool.acquire() as conn:
            for offset in (0, 100):
                for row in range(5 if offset else 50):
                    text = "[" + ",".join(repr(v) for v in vectors[row]) + "]"
                    same = await conn.fetchval(
                        f"SELECT embedding = $1::text::vector FROM {table_name} WHERE id = $2",
                        text,
                        row + offset,
                    )
                    assert same, f"row {row + offset} differs from the server's parsing"
