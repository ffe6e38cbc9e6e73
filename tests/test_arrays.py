"""Arrays of pgvs values as asyncpg parameters: ``vector[]``, ``halfvec[]``, ``sparsevec[]``,
``bit[]`` and ``varbit[]``, one- and two-dimensional, through execute, executemany and COPY.

asyncpg walks into every element of an array parameter that is Sized and Iterable; the values
must count as elements, not as sub-arrays. The checks read what was sent back as the server's
text and compare it with the server's own parsing of a text literal (or with the server's text of
arrays checked that way), so our encoder is never its own judge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgvs.codecs import register_vector
from pgvs.errors import ValidationError
from pgvs.types import Bit, HalfVector, SparseVector, Vector


@pytest.fixture(params=[False, True], ids=["objects", "numpy"])
async def conn(
    pg_dsn: str, request: pytest.FixtureRequest
) -> AsyncIterator[asyncpg.Connection[Any]]:
    connection = await asyncpg.connect(pg_dsn)
    await register_vector(connection, numpy=request.param, bit=True)
    try:
        yield connection
    finally:
        await connection.close()


# (SQL array type, values, the same array as a text literal the server parses itself)
ARRAYS: list[tuple[str, list[Any], str]] = [
    ("vector[]", [Vector([1, 2, 3]), Vector([4.5, -5, 6])], "{'[1,2,3]','[4.5,-5,6]'}"),
    ("halfvec[]", [HalfVector([1, 2.5]), HalfVector([0.1, 65504])], "{'[1,2.5]','[0.1,65504]'}"),
    (
        "sparsevec[]",
        [SparseVector({0: 1.5, 2: 2}, dim=5), SparseVector({}, dim=5)],
        "{'{1:1.5,3:2}/5','{}/5'}",
    ),
    ("bit(4)[]", [Bit("1011"), Bit("0000"), Bit("1111")], "{1011,0000,1111}"),
    ("varbit[]", [Bit("1"), Bit(""), Bit("10110011101")], "{1,'',10110011101}"),
]


def _literal(text: str) -> str:
    """The array literal with the elements' quotes as PostgreSQL array syntax wants them."""
    return text.replace("'", '"')


@pytest.mark.parametrize(
    ("sql_type", "values", "literal"), ARRAYS, ids=[case[0] for case in ARRAYS]
)
async def test_a_list_of_values_is_a_one_dimensional_array(
    conn: asyncpg.Connection[Any], sql_type: str, values: list[Any], literal: str
) -> None:
    expected = await conn.fetchval(f"SELECT $1::text::{sql_type}::text", _literal(literal))
    assert await conn.fetchval(f"SELECT $1::{sql_type}::text", values) == expected
    assert await conn.fetchval(f"SELECT array_ndims($1::{sql_type})", values) == 1
    # A tuple, NULL elements and a one-element list are arrays too.
    assert await conn.fetchval(f"SELECT $1::{sql_type}::text", tuple(values)) == expected
    with_null = await conn.fetchval(f"SELECT $1::{sql_type}::text", [values[0], None])
    first = await conn.fetchval(f"SELECT $1::{sql_type}::text", [values[0]])
    assert with_null == first[:-1] + ",NULL}"


@pytest.mark.parametrize(
    ("sql_type", "values", "literal"), ARRAYS, ids=[case[0] for case in ARRAYS]
)
async def test_nested_lists_are_two_dimensional_arrays(
    conn: asyncpg.Connection[Any], sql_type: str, values: list[Any], literal: str
) -> None:
    grid = [values[:2], values[1::-1]]
    text = await conn.fetchval(f"SELECT $1::{sql_type}::text", grid)
    assert await conn.fetchval(f"SELECT array_dims($1::{sql_type})", grid) == "[1:2][1:2]"
    row = await conn.fetchval(f"SELECT $1::{sql_type}::text", values[:2])
    reverse = await conn.fetchval(f"SELECT $1::{sql_type}::text", values[1::-1])
    assert text == "{" + row + "," + reverse + "}"


async def test_columns_of_every_array_type_via_execute_executemany_and_copy(
    conn: asyncpg.Connection[Any], table_name: str
) -> None:
    columns = ["v vector(3)[]", "h halfvec(2)[]", "s sparsevec(5)[]", "b bit(4)[]", "vb varbit[]"]
    await conn.execute(f"CREATE TEMP TABLE {table_name} (id int PRIMARY KEY, {', '.join(columns)})")
    row = [values for _, values, _ in ARRAYS]
    insert = f"INSERT INTO {table_name} VALUES ($1, $2, $3, $4, $5, $6)"
    await conn.execute(insert, 1, *row)
    await conn.executemany(insert, [(2, *row), (3, *[list(reversed(v)) for v in row])])
    await conn.copy_records_to_table(table_name, records=[(4, *row), (5, None, *row[1:])])
    await conn.copy_records_to_table(table_name, records=[(6, *[[v[0], None] for v in row])])

    literal_row = [
        await conn.fetchval(f"SELECT $1::text::{sql_type}::text", _literal(literal))
        for sql_type, _, literal in ARRAYS
    ]
    texts = await conn.fetch(
        f"SELECT v::text, h::text, s::text, b::text, vb::text FROM {table_name} ORDER BY id"
    )
    assert [list(r) for r in texts[:2]] == [literal_row, literal_row]
    assert [list(r) for r in texts[3:4]] == [literal_row]
    assert texts[4][0] is None
    assert list(texts[4])[1:] == literal_row[1:]
    assert all(text.endswith(",NULL}") for text in texts[5])

    # Decoding: a list of values (numpy rows for vector/halfvec on a numpy connection).
    decoded = await conn.fetchrow(f"SELECT v, h, s, b, vb FROM {table_name} WHERE id = 3")
    assert decoded is not None
    for got, values in zip(decoded, row, strict=True):
        expected = list(reversed(values))
        assert len(got) == len(expected)
        for item, value in zip(got, expected, strict=True):
            if isinstance(item, np.ndarray):
                assert np.array_equal(item, value.to_numpy())
            else:
                assert item == value


async def test_numpy_rows_and_plain_values_inside_arrays(conn: asyncpg.Connection[Any]) -> None:
    # Wrapped rows are elements; a whole matrix goes in through Vector.from_matrix.
    matrix = np.arange(6, dtype=np.float32).reshape(2, 3)
    expected = await conn.fetchval('SELECT \'{"[0,1,2]","[3,4,5]"}\'::vector[]::text')
    assert await conn.fetchval("SELECT $1::vector[]::text", Vector.from_matrix(matrix)) == expected
    assert await conn.fetchval("SELECT $1::vector[]::text", [Vector(r) for r in matrix]) == expected
    # Strings are never sub-arrays: a bit[] of "0101" strings works as is.
    assert await conn.fetchval("SELECT $1::varbit[]::text", ["101", "0"]) == "{101,0}"


@pytest.mark.parametrize(
    ("sql_type", "value", "wrap"),
    [
        ("vector[]", [[1.0, 2.0], [3.0, 4.0]], "Vector(...)"),
        ("vector[]", list(np.ones((2, 3), np.float32)), "Vector(...)"),
        ("vector[]", np.ones((2, 3), np.float32), "Vector(...)"),
        ("halfvec[]", [[1.0, 2.0]], "HalfVector(...)"),
        ("sparsevec[]", [[0.0, 1.0]], "SparseVector(...)"),
        ("varbit[]", [[True, False]], "Bit(...)"),
    ],
)
async def test_lists_and_numpy_rows_inside_an_array_say_how_to_wrap_them(
    conn: asyncpg.Connection[Any], sql_type: str, value: Any, wrap: str
) -> None:
    # asyncpg reads these as two-dimensional arrays of numbers; the message says what to do.
    with pytest.raises(asyncpg.DataError) as caught:
        await conn.fetchval(f"SELECT $1::{sql_type}", value)
    assert isinstance(caught.value.__cause__, ValidationError)
    assert f"wrap each element as {wrap}" in str(caught.value.__cause__)


def test_values_are_sequences_without_iter() -> None:
    """Iteration, indexing and len() keep working through the sequence protocol."""
    from collections.abc import Iterable, Sized

    values: list[Any] = [
        Vector([1, 2, 3]),
        HalfVector([1, 2, 3]),
        SparseVector({0: 1, 2: 3}, dim=3),
        Bit("101"),
    ]
    for value in values:
        assert issubclass(type(value), Sized)
        assert not issubclass(type(value), Iterable)  # what keeps asyncpg from walking into it
        assert list(value) == value.to_list() == [value[i] for i in range(len(value))]
        assert list(value) == [*iter(value)]
        assert value[-1] == value.to_list()[-1]
        assert value[1:] == value.to_list()[1:]
        assert value[np.int64(0)] == value.to_list()[0]
        with pytest.raises(IndexError, match="out of range"):
            value[3]
        with pytest.raises(IndexError, match="out of range"):
            value[-4]
        with pytest.raises(TypeError):
            value["0"]
    assert list(SparseVector({5: 2.0}, dim=7)) == [0, 0, 0, 0, 0, 2, 0]
    assert np.array_equal(np.asarray(Vector([1.5, 2])), [1.5, 2])
    # Built from one another through the same protocol.
    sparse: Any = SparseVector({1: 2}, dim=3)
    assert Vector(sparse) == Vector([0, 2, 0])
    assert Bit(asyncpg.BitString.frombytes(b"\xd0", 4)) == Bit("1101")


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=40).flatmap(
        lambda dim: st.tuples(
            st.just(dim),
            st.dictionaries(
                st.integers(min_value=0, max_value=dim - 1),
                st.floats(min_value=-1e6, max_value=1e6, width=32).filter(bool),
            ),
        )
    )
)
def test_sparse_indexing_matches_the_dense_list(case: tuple[int, dict[int, float]]) -> None:
    dim, elements = case
    value = SparseVector(elements, dim=dim)
    dense = value.to_list()
    assert list(value) == dense
    assert [value[-1 - i] for i in range(dim)] == dense[::-1]
