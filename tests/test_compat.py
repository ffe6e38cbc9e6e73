"""pgvs.compat: pgvector-python's and asyncpg_vector's call shapes on pgvs' types and codecs.

Written from those projects' documented behaviour (their READMEs and public methods), against a
real server: what a user of either library does keeps working after the import change, and
where pgvs is deliberately stricter it refuses with a ValidationError naming the problem.
"""

from __future__ import annotations

import base64
import functools
import math
import struct
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import numpy as np
import pytest
import scipy.sparse

import pgvs
from pgvs.codecs import register_vector as pgvs_register_vector
from pgvs.compat import asyncpg_vector as av
from pgvs.compat import pgvector as pv
from pgvs.compat.pgvector.asyncpg import register_vector as pv_register_vector
from pgvs.errors import ValidationError


def bitstring(digits: str) -> asyncpg.BitString:
    return asyncpg.BitString(digits)  # type: ignore[arg-type]  # (annotated as bytes, takes text)


# -- pgvector-python's types -----------------------------------------------------------------------


def test_pgvector_vector_and_halfvector() -> None:
    vector = pv.Vector([1.5, 2, 3])
    assert vector.dimensions() == 3
    assert vector.to_list() == [1.5, 2.0, 3.0]
    assert vector.to_numpy().dtype == np.float32
    assert vector == pv.Vector(np.array([1.5, 2, 3]))
    assert vector != pv.Vector([1.5, 2, 4])
    assert pv.Vector.from_text("[1.5,2,3]") == vector
    assert pv.Vector.from_binary(vector.to_binary()) == vector
    assert type(pv.Vector.from_text("[1]")) is pv.Vector
    assert vector.to_binary() == struct.pack(">HH3f", 3, 0, 1.5, 2, 3)
    # pgvector-python stores bools as 1.0 / 0.0 (pgvs' own types refuse them).
    assert pv.Vector([True, False, 2]).to_list() == [1.0, 0.0, 2.0]
    assert pv.Vector(np.array([True, False])).to_list() == [1.0, 0.0]
    assert pv.HalfVector([True, 0.5]).to_list() == [1.0, 0.5]
    with pytest.raises(ValidationError, match="is a bool"):
        pgvs.Vector([True, False])
    half = pv.HalfVector([1.5, 2, 65504])
    assert half.dimensions() == 3
    assert half.to_numpy().dtype == np.float16
    assert half.to_numpy().tolist() == [1.5, 2.0, 65504.0]
    assert pv.HalfVector.from_text(half.to_text()) == half
    # They are pgvs values.
    assert isinstance(vector, pgvs.Vector)
    assert isinstance(half, pgvs.HalfVector)


def test_pgvector_sparsevector() -> None:
    sparse = pv.SparseVector({2: 2.0, 0: 1.5, 4: 0.0}, 6)
    assert sparse.dimensions() == 6
    assert sparse.indices() == [0, 2]
    assert sparse.values() == [1.5, 2.0]
    assert sparse.to_list() == [1.5, 0, 2, 0, 0, 0]
    assert sparse.to_text() == "{1:1.5,3:2}/6"
    assert pv.SparseVector([1.5, 0, 2, 0, 0, 0]) == sparse
    assert pv.SparseVector(np.array([1.5, 0, 2, 0, 0, 0])) == sparse
    assert pv.SparseVector.from_text("{1:1.5,3:2}/6").indices() == [0, 2]
    assert pv.SparseVector.from_binary(sparse.to_binary()).values() == [1.5, 2.0]
    assert np.array_equal(sparse.to_numpy(), [1.5, 0, 2, 0, 0, 0])
    coo = scipy.sparse.coo_array(np.array([[1.5, 0, 2, 0, 0, 0]]))
    assert pv.SparseVector(coo) == sparse
    assert pv.SparseVector(scipy.sparse.csr_matrix(coo)) == sparse
    assert (sparse.to_coo().toarray() == coo.toarray()).all()
    # pgvs' own SparseVector keeps properties, and compares equal across the two.
    assert pgvs.SparseVector.from_text("{1:1.5,3:2}/6").indices == [0, 2]
    assert sparse == pgvs.SparseVector({0: 1.5, 2: 2.0}, dim=6)


def test_pgvector_bit() -> None:
    assert pv.Bit([True, False, True]).to_list() == [True, False, True]
    assert pv.Bit("101").to_text() == "101"
    # bytes are packed bits, 8 per byte (pgvs' own Bit wants Bit.from_bytes for that).
    assert pv.Bit(b"\xff\x00\xf0").to_text() == "111111110000000011110000"
    assert pv.Bit(b"\xfe\x07\x00").to_text() == "111111100000011100000000"
    with pytest.raises(ValidationError, match="from_bytes"):
        pgvs.Bit(b"\xff")
    arr = np.array([True, False, True])
    assert np.array_equal(pv.Bit(arr).to_numpy(), arr)
    assert pv.Bit(np.unpackbits(np.array([254, 7], dtype=np.uint8))).to_text() == "1111111000000111"
    assert pv.Bit.from_text("101") == pv.Bit.from_binary(pv.Bit("101").to_binary())
    with pytest.raises(ValidationError, match="position 0"):
        pv.Bit("201")


# (label, what pgvector-python or asyncpg_vector accepts, the ValidationError pgvs gives)
STRICTER: list[tuple[str, Any, str]] = [
    ("NaN", lambda: pv.Vector([1.0, math.nan]), "vector element 1 is NaN"),
    ("infinity", lambda: pv.HalfVector([math.inf]), "halfvec element 0 is inf"),
    ("beyond float32", lambda: pv.Vector([1e39]), "out of range for vector"),
    ("beyond float16", lambda: pv.HalfVector(np.array([1e5])), "out of range for halfvec"),
    ("empty Vector", lambda: pv.Vector([]), "at least 1 dimension"),
    ("empty HalfVector", lambda: pv.HalfVector(np.array([])), "at least 1 dimension"),
    ("empty asyncpg_vector", av.Vector, "at least 1 dimension"),
    ("empty asyncpg_vector sparse", av.SparseVector, "sparsevec must have at least 1"),
    (
        "sparse index past dim",
        lambda: pv.SparseVector({5: 1.0}, 3),
        "index 5 is out of range for dim 3",
    ),
    ("negative sparse index", lambda: pv.SparseVector({-1: 1.0}, 3), "index -1 is out of range"),
    (
        "sparse NaN",
        lambda: pv.SparseVector({0: math.nan}, 3),
        "value at index 0 is NaN",
    ),
    (
        "unsorted raw sparse",
        lambda: av.SparseVector(3, struct.pack(">2i", 2, 1), struct.pack(">2f", 1, 1)),
        "strictly ascending",
    ),
    ("NaN from text", lambda: pv.Vector.from_text("[1,nan]"), "vector element 1 is NaN"),
    ("NaN float list", lambda: av.Vector.from_float_list([math.nan]), "element 0 is NaN"),
]


@pytest.mark.parametrize(("label", "build", "message"), STRICTER, ids=[c[0] for c in STRICTER])
def test_where_pgvs_is_stricter_it_says_why(label: str, build: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        build()


# -- asyncpg_vector's types ------------------------------------------------------------------------


def test_asyncpg_vector_types() -> None:
    floats = [0.5, -1.25, 3.0]
    vector = av.Vector.from_float_list(floats)
    assert vector.size() == 3
    assert vector.to_float_list() == floats
    assert av.Vector(struct.pack(">3f", *floats)) == vector  # the raw big-endian elements
    assert av.Vector.from_database_binary(vector.to_database_binary()) == vector
    assert str(vector) == "Vector(size=3)"
    assert (av.Vector.type_name, av.Vector.cosine_similarity) == ("vector", "vector_cosine_ops")
    half = av.HalfVector.from_float_list([0.5, 2.0])
    assert half.to_float_list() == [0.5, 2.0]
    assert av.HalfVector(struct.pack(">2e", 0.5, 2.0)) == half
    assert av.HalfVector.cosine_similarity == "halfvec_cosine_ops"
    dense = [0.0, 1.5, 0.0, 0.0, -2.0]
    sparse = av.SparseVector.from_float_list(dense)
    assert (sparse.size(), sparse.nnz()) == (5, 2)
    assert sparse.to_float_list() == dense
    assert str(sparse) == "SparseVector(size=5, nnz=2)"
    raw = av.SparseVector(5, struct.pack(">2i", 1, 4), struct.pack(">2f", 1.5, -2.0))
    assert raw == sparse
    assert av.SparseVector.from_database_binary(sparse.to_database_binary()) == sparse
    with pytest.raises(ValidationError, match="must pair up"):
        av.SparseVector(5, struct.pack(">2i", 1, 4), struct.pack(">f", 1.5))
    # base64 of little-endian float32, as embedding APIs return it.
    encoded = base64.b64encode(np.array(dense, dtype="<f4").tobytes()).decode()
    assert av.SparseVector.from_float_base64(encoded) == sparse
    assert av.Vector.from_float_base64(encoded).to_float_list() == dense
    assert av.HalfVector.from_float_base64(encoded).to_float_list() == dense
    for value in (vector, half, sparse):
        assert isinstance(value, av.BasicVector)
    assert isinstance(vector, av.DenseVector)
    assert isinstance(vector, pgvs.Vector)
    assert isinstance(sparse, pgvs.SparseVector)


# -- through the server ----------------------------------------------------------------------------


@pytest.fixture
async def pv_conn(pg_dsn: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    connection = await asyncpg.connect(pg_dsn)
    await pv_register_vector(connection)
    try:
        yield connection
    finally:
        await connection.close()


async def test_pgvector_register_vector_round_trips(
    pv_conn: asyncpg.Connection[Any], table_name: str
) -> None:
    await pv_conn.execute(
        f"CREATE TEMP TABLE {table_name} (id serial PRIMARY KEY, v vector(3), h halfvec(3), "
        "s sparsevec(3), b bit(3))"
    )
    rows: list[tuple[Any, ...]] = [
        (pv.Vector([1.5, 2, 3]), pv.HalfVector([1.5, 2, 3]), pv.SparseVector([1.5, 0, 3])),
        ([4.5, 5, 6], [4.5, 5, 6], pv.SparseVector({1: 5.0}, 3)),
        (np.array([7.5, 8, 9]), np.array([7.5, 8, 9]), np.array([0, 0, 9.0])),
        ([True, False, True], [True, False, False], pgvs.SparseVector({2: 1}, dim=3)),
        (None, None, None),
    ]
    await pv_conn.executemany(f"INSERT INTO {table_name} (v, h, s) VALUES ($1, $2, $3)", rows)
    texts = await pv_conn.fetch(f"SELECT v::text, h::text, s::text FROM {table_name} ORDER BY id")
    assert [tuple(r) for r in texts] == [
        ("[1.5,2,3]", "[1.5,2,3]", "{1:1.5,3:3}/3"),
        ("[4.5,5,6]", "[4.5,5,6]", "{2:5}/3"),
        ("[7.5,8,9]", "[7.5,8,9]", "{3:9}/3"),
        ("[1,0,1]", "[1,0,0]", "{3:1}/3"),
        (None, None, None),
    ]
    first = await pv_conn.fetchrow(f"SELECT v, h, s FROM {table_name} ORDER BY id LIMIT 1")
    assert first is not None
    assert [type(value) for value in first] == [pv.Vector, pv.HalfVector, pv.SparseVector]
    assert tuple(first) == rows[0]
    assert first["s"].indices() == [0, 2]
    # bit stays asyncpg's: BitString in and out, as with pgvector-python.
    await pv_conn.execute(f"INSERT INTO {table_name} (b) VALUES ($1)", bitstring("101"))
    found = await pv_conn.fetchval(f"SELECT b FROM {table_name} WHERE b IS NOT NULL")
    assert (found.as_string(), found.to_int()) == ("101", 5)
    # Arrays of the compat values.
    embeddings = [pv.Vector([1.5, 2, 3]), pv.Vector([4.5, 5, 6])]
    assert await pv_conn.fetchval("SELECT $1::vector[]", embeddings) == embeddings
    sql = "SELECT $1::vector[]::text = ARRAY['[1.5,2,3]', '[4.5,5,6]']::vector[]::text"
    assert await pv_conn.fetchval(sql, embeddings)


async def test_pgvector_register_vector_in_a_pool(pg_dsn: str) -> None:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=1, init=pv_register_vector)
    try:
        assert await pool.fetchval("SELECT $1::vector", [1.5, 2]) == pv.Vector([1.5, 2])
    finally:
        await pool.close()


async def test_compat_values_through_pgvs_own_codecs(pg_dsn: str) -> None:
    connection = await asyncpg.connect(pg_dsn)
    try:
        await pgvs_register_vector(connection)
        values: list[tuple[str, Any, str]] = [
            ("vector", pv.Vector([1, 2]), "[1,2]"),
            ("halfvec", av.HalfVector.from_float_list([1, 2]), "[1,2]"),
            ("sparsevec", av.SparseVector.from_float_list([0, 2]), "{2:2}/2"),
            ("sparsevec", pv.SparseVector({1: 2}, 2), "{2:2}/2"),
        ]
        for sql_type, value, text in values:
            assert await connection.fetchval(f"SELECT $1::{sql_type}::text", value) == text
    finally:
        await connection.close()


async def test_asyncpg_vector_register_vector_round_trips(pg_dsn: str, table_name: str) -> None:
    rng = np.random.default_rng(7)
    connection = await asyncpg.connect(pg_dsn)
    try:
        await connection.execute(
            f"CREATE TEMP TABLE {table_name} (id bigint GENERATED ALWAYS AS IDENTITY, "
            "embedding vector(64) NOT NULL, half_embedding halfvec(64) NOT NULL, "
            "sparse_embedding sparsevec(64) NOT NULL)"
        )
        await av.register_vector(connection)
        dense = rng.standard_normal(64).astype(np.float32)
        sparse = np.where(rng.random(64) > 0.8, dense, 0).astype(np.float32)
        records = [
            (
                av.Vector.from_float_list(dense.tolist()),
                av.HalfVector.from_float_list(dense.astype(np.float16).tolist()),
                av.SparseVector.from_float_list(sparse.tolist()),
            ),
            (
                av.Vector.from_float_list(sparse.tolist()),
                av.HalfVector.from_float_list(sparse.astype(np.float16).tolist()),
                av.SparseVector.from_float_list(dense.tolist()),
            ),
        ]
        await connection.executemany(
            f"INSERT INTO {table_name} (embedding, half_embedding, sparse_embedding) "
            "VALUES ($1, $2, $3)",
            records,
        )
        rows = await connection.fetch(
            f"SELECT embedding, half_embedding, sparse_embedding FROM {table_name} ORDER BY id"
        )
        assert [tuple(row) for row in rows] == records
        assert [type(v) for v in rows[0]] == [av.Vector, av.HalfVector, av.SparseVector]
        text = await connection.fetchval(f"SELECT embedding::text FROM {table_name} ORDER BY id")
        assert text == pgvs.Vector(dense).to_text()
        # bit/varbit stay asyncpg's.
        assert isinstance(await connection.fetchval("SELECT B'1'::varbit"), asyncpg.BitString)
    finally:
        await connection.close()


async def test_asyncpg_vector_register_vector_in_a_pool(pg_dsn: str) -> None:
    init = functools.partial(av.register_vector, schema=None)
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=1, init=init)
    try:
        found = await pool.fetchval("SELECT '{2:1}/3'::sparsevec")
        assert (type(found), found.nnz(), found.size()) == (av.SparseVector, 1, 3)
    finally:
        await pool.close()
