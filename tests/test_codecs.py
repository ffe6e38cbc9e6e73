"""The asyncpg codecs against a real PostgreSQL + pgvector: the server is the judge of every layout."""

from __future__ import annotations

import functools
import math
import struct
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import numpy as np
import pytest
import scipy.sparse

from pgvs.codecs import codec_functions, register_vector, vector_extension_schema
from pgvs.errors import ExtensionMissingError, ValidationError
from pgvs.types import Bit, HalfVector, SparseVector, Vector


def bitstring(digits: str) -> asyncpg.BitString:
    """asyncpg's own bit string type, from its "0101" text form."""
    return asyncpg.BitString(digits)  # type: ignore[arg-type]  # (annotated as bytes, takes text)


@pytest.fixture
async def conn(pg_dsn: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A connection with the pgvs codecs (objects out), pgvs' bit codec included."""
    connection = await asyncpg.connect(pg_dsn)
    await register_vector(connection, bit=True)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def np_conn(pg_dsn: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A connection with the pgvs codecs, numpy rows out, pgvs' bit codec included."""
    connection = await asyncpg.connect(pg_dsn)
    await register_vector(connection, numpy=True, bit=True)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def scratch_db(pg_dsn: str) -> AsyncIterator[str]:
    """A fresh database (from template0, so without the vector extension); dropped afterwards."""
    name = f"pgvs_codecs_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


# -- our encoding, read back by the server as text -------------------------------------------------

ENCODE_CASES: list[tuple[str, str, Any, str]] = [
    ("vector from Vector", "vector", Vector([1, 2, 3]), "[1,2,3]"),
    ("vector from list", "vector", [1, 2.5, -3e-05], "[1,2.5,-3e-05]"),
    ("vector from numpy", "vector", np.array([0.1, -0.0, 1e8], np.float32), "[0.1,-0,1e+08]"),
    ("vector from float64", "vector", np.array([0.1, 123456789.0]), "[0.1,1.2345679e+08]"),
    ("vector from HalfVector", "vector", HalfVector([0.1]), "[0.099975586]"),
    ("halfvec from HalfVector", "halfvec", HalfVector([1, 2.5]), "[1,2.5]"),
    ("halfvec from list", "halfvec", [0.1, 65519, 1e-8], "[0.099975586,65504,0]"),
    ("halfvec from numpy", "halfvec", np.array([1, -2], np.float16), "[1,-2]"),
    ("sparsevec", "sparsevec", SparseVector({0: 1.5, 2: 2}, dim=5), "{1:1.5,3:2}/5"),
    ("sparsevec dense", "sparsevec", [0, 0, 3.5], "{3:3.5}/3"),
    ("sparsevec empty", "sparsevec", SparseVector({}, dim=4), "{}/4"),
    (
        "sparsevec 1e9",
        "sparsevec",
        SparseVector({10**9 - 1: 1}, dim=10**9),
        "{1000000000:1}/1000000000",
    ),
    (
        "sparsevec from scipy csr_matrix",
        "sparsevec",
        scipy.sparse.csr_matrix(np.array([[0, 1.5, 0, 2]])),
        "{2:1.5,4:2}/4",
    ),
    (
        "sparsevec from 1-D scipy coo_array",
        "sparsevec",
        scipy.sparse.coo_array(np.array([0, 0, 3.25])),
        "{3:3.25}/3",
    ),
    ("sparsevec from scipy dok_array", "sparsevec", scipy.sparse.dok_array((1, 7)), "{}/7"),
    ("bit from Bit", "bit(4)", Bit("1011"), "1011"),
    ("bit from str", "bit(9)", "101100111", "101100111"),
    ("bit from bools", "bit(3)", [True, False, True], "101"),
    ("bit from numpy", "bit(3)", np.array([0, 1, 1], dtype=bool), "011"),
    ("varbit", "varbit", Bit("10110"), "10110"),
    ("varbit empty", "varbit", Bit(""), ""),
]


@pytest.mark.parametrize(
    ("label", "sql_type", "value", "text"), ENCODE_CASES, ids=[case[0] for case in ENCODE_CASES]
)
async def test_server_reads_our_binary(
    conn: asyncpg.Connection[Any], label: str, sql_type: str, value: Any, text: str
) -> None:
    assert await conn.fetchval(f"SELECT $1::{sql_type}::text", value) == text


DECODE_CASES: list[tuple[str, Any]] = [
    ("'[1,2,3]'::vector", Vector([1, 2, 3])),
    ("'[0.1, -0, 3e38]'::vector(3)", Vector([0.1, -0.0, 3e38])),
    ("'[1,2]'::halfvec", HalfVector([1, 2])),
    ("'[0.1,65504]'::halfvec", HalfVector([0.1, 65504])),
    ("'{1:1,3:2}/5'::sparsevec", SparseVector({0: 1, 2: 2}, dim=5)),
    ("'{}/3'::sparsevec", SparseVector({}, dim=3)),
    ("'[0,1.5,0]'::vector::sparsevec", SparseVector({1: 1.5}, dim=3)),
    ("B'1011'::bit(4)", Bit("1011")),
    ("B'101100111'::bit(9)", Bit("101100111")),
    ("B'10110'::varbit", Bit("10110")),
    ("''::varbit", Bit("")),
    ("'X1F'::bit varying(8)", Bit("00011111")),
    ("binary_quantize('[1,-2,3]'::vector)", Bit("101")),
]


@pytest.mark.parametrize(("sql", "expected"), DECODE_CASES, ids=[case[0] for case in DECODE_CASES])
async def test_we_decode_what_the_server_built(
    conn: asyncpg.Connection[Any], sql: str, expected: Any
) -> None:
    value = await conn.fetchval(f"SELECT {sql}")
    assert type(value) is type(expected)
    assert value == expected
    # ... and our text for it is the server's text.
    assert value.to_text() == await conn.fetchval(f"SELECT ({sql})::text")


def _random_float32(count: int, seed: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Finite float32 values from random bit patterns (every exponent, subnormals included) plus
    the awkward ones: powers of two and their neighbours, integers, the extremes."""
    bits = np.random.default_rng(seed).integers(0, 2**32, count, dtype=np.uint64)
    values = bits.astype(np.uint32).view(np.float32)
    values = values[np.isfinite(values)]
    powers = np.float32(2.0) ** np.arange(-149, 128, dtype=np.float32)
    extra = np.concatenate(
        [
            powers,
            np.nextafter(powers, np.float32(0)),
            np.arange(1, 3000, dtype=np.float32),
            np.array([3.4028235e38, -3.4028235e38, 1e-45, 16777215, 16777217, 0.3], np.float32),
        ]
    )
    return np.concatenate([values, extra, -extra]).astype(np.float32)


async def test_our_float_text_is_the_servers_text(conn: asyncpg.Connection[Any]) -> None:
    """``to_text`` prints every float32 exactly as pgvector's vector_out does, and the server
    reads it back to the same bits."""
    values = _random_float32(40000, seed=11)
    for start in range(0, len(values), 16000):
        vector = Vector(values[start : start + 16000])
        server_text = await conn.fetchval("SELECT $1::vector::text", vector)
        assert vector.to_text() == server_text
        assert await conn.fetchval("SELECT $1::text::vector", vector.to_text()) == vector


async def test_our_half_text_is_the_servers_text(conn: asyncpg.Connection[Any]) -> None:
    """Every finite float16, as halfvec_out prints it."""
    halves = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    halves = halves[np.isfinite(halves)]
    for start in range(0, len(halves), 16000):
        vector = HalfVector(halves[start : start + 16000])
        assert vector.to_text() == await conn.fetchval("SELECT $1::halfvec::text", vector)
        assert await conn.fetchval("SELECT $1::text::halfvec", vector.to_text()) == vector


async def test_text_parsing_matches_strtof(conn: asyncpg.Connection[Any]) -> None:
    """A decimal a hair above a float32 halfway point: strtof rounds up, and so must we."""
    text = "[1.000000059604644775390625000001,1.000000059604644775390625,0.1,1e-50]"
    server = await conn.fetchval("SELECT $1::text::vector", text)
    assert Vector.from_text(text) == server
    assert server.to_list()[:2] == [1.0000001192092896, 1.0]


async def test_sparse_text_matches_server(conn: asyncpg.Connection[Any]) -> None:
    rng = np.random.default_rng(5)
    dense = np.where(rng.random(3000) < 0.1, rng.standard_normal(3000), 0).astype(np.float32)
    sparse = SparseVector(dense)
    assert sparse.to_text() == await conn.fetchval("SELECT $1::sparsevec::text", sparse)
    assert SparseVector.from_text(sparse.to_text()) == sparse
    assert await conn.fetchval("SELECT $1::text::sparsevec", sparse.to_text()) == sparse
    assert await conn.fetchval("SELECT $1::vector::sparsevec", Vector(dense)) == sparse


async def test_server_distances_on_our_values(conn: asyncpg.Connection[Any]) -> None:
    a = np.array([1, 2, 3], np.float32)
    b = np.array([1, 2, 4], np.float32)
    assert await conn.fetchval("SELECT $1::vector <-> $2::vector", a, b) == 1.0
    assert await conn.fetchval("SELECT $1::halfvec <-> $2::halfvec", a, b) == 1.0
    sparse_a, sparse_b = SparseVector(a), SparseVector(b)
    assert await conn.fetchval("SELECT $1::sparsevec <-> $2::sparsevec", sparse_a, sparse_b) == 1.0
    assert await conn.fetchval("SELECT $1::bit(3) <~> $2::bit(3)", "101", "100") == 1.0


# -- numpy rows out --------------------------------------------------------------------------------


async def test_numpy_option(np_conn: asyncpg.Connection[Any]) -> None:
    vector = await np_conn.fetchval("SELECT '[1,2.5,-3]'::vector")
    assert isinstance(vector, np.ndarray)
    assert vector.dtype == np.float32
    assert vector.flags.writeable
    np.testing.assert_array_equal(vector, [1, 2.5, -3])
    half = await np_conn.fetchval("SELECT '[0.1,2]'::halfvec")
    assert half.dtype == np.float32
    np.testing.assert_array_equal(half, np.array([0.1, 2], np.float16).astype(np.float32))
    # sparse vectors and bit strings keep their types (see pgvs.codecs).
    assert await np_conn.fetchval("SELECT '{2:1}/3'::sparsevec") == SparseVector({1: 1}, dim=3)
    assert await np_conn.fetchval("SELECT B'10'::bit(2)") == Bit("10")
    # Encoding is the same either way.
    row = np.random.default_rng(1).standard_normal(768).astype(np.float32)
    np.testing.assert_array_equal(await np_conn.fetchval("SELECT $1::vector", row), row)


async def test_codec_functions_are_what_asyncpg_calls(conn: asyncpg.Connection[Any]) -> None:
    encode, decode = codec_functions(numpy=True)["vector"]
    row = np.array([1, 2, 3], np.float32)
    wire = encode(row)
    assert wire == Vector(row).to_binary()
    np.testing.assert_array_equal(decode(wire), row)
    # The bytes our encoder produces are exactly what the server itself sends.
    assert await conn.fetchval("SELECT vector_send('[1,2,3]'::vector)") == wire
    assert await conn.fetchval("SELECT halfvec_send('[1,2]')") == HalfVector([1, 2]).to_binary()
    assert (
        await conn.fetchval("SELECT sparsevec_send('{1:1.5,3:2}/5')")
        == SparseVector({0: 1.5, 2: 2}, dim=5).to_binary()
    )
    assert await conn.fetchval("SELECT bit_send(B'101100111')") == Bit("101100111").to_binary()


# -- registration ----------------------------------------------------------------------------------


async def test_pre_encoded_rows_pass_through(conn: asyncpg.Connection[Any]) -> None:
    """Batch writers may hand the codec wire bytes they built themselves (still checked)."""
    matrix = np.random.default_rng(2).standard_normal((3, 8)).astype(np.float32)
    wires = [vector.to_binary() for vector in Vector.from_matrix(matrix)]
    got = await conn.fetchval("SELECT array_agg(v::text) FROM unnest($1::vector[]) AS v", wires)
    assert got == [Vector(row).to_text() for row in matrix]
    bad = b"\x00\x01\x00\x00" + struct.pack(">f", math.inf)
    with pytest.raises(asyncpg.DataError) as caught:
        await conn.fetchval("SELECT $1::vector", bad)
    assert isinstance(caught.value.__cause__, ValidationError)


async def test_register_through_pool_init(pg_dsn: str) -> None:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2, init=register_vector)
    try:
        assert await pool.fetchval("SELECT '[1,2]'::vector") == Vector([1, 2])
    finally:
        await pool.close()
    numpy_init = functools.partial(register_vector, numpy=True)
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2, init=numpy_init)
    try:
        value = await pool.fetchval("SELECT '[1,2]'::vector")
        assert isinstance(value, np.ndarray)
    finally:
        await pool.close()


async def test_table_round_trip_insert_executemany_and_copy(
    conn: asyncpg.Connection[Any], table_name: str
) -> None:
    await conn.execute(
        f"CREATE TEMP TABLE {table_name} "
        "(id int, v vector(3), h halfvec(3), s sparsevec(5), b bit(4), vb varbit)"
    )
    rows = [
        (1, [1, 2, 3], [1, 2, 3], SparseVector({4: 1}, dim=5), "1011", Bit("1")),
        (2, np.array([4, 5, 6], np.float32), HalfVector([4, 5, 6]), [0, 1, 0, 0, 0], "0000", ""),
    ]
    await conn.executemany(f"INSERT INTO {table_name} VALUES ($1, $2, $3, $4, $5, $6)", rows)
    copied = [
        (
            3,
            Vector.from_matrix(np.eye(1, 3, dtype=np.float32))[0],
            Vector([0, 0, 1]),
            SparseVector({0: 2}, dim=5),
            Bit("1111"),
            Bit("01"),
        )
    ]
    await conn.copy_records_to_table(table_name, records=copied)
    fetched = await conn.fetch(f"SELECT v, h, s, b, vb FROM {table_name} ORDER BY id")
    assert [tuple(record) for record in fetched] == [
        (
            Vector([1, 2, 3]),
            HalfVector([1, 2, 3]),
            SparseVector({4: 1}, dim=5),
            Bit("1011"),
            Bit("1"),
        ),
        (
            Vector([4, 5, 6]),
            HalfVector([4, 5, 6]),
            SparseVector({1: 1}, dim=5),
            Bit("0000"),
            Bit(""),
        ),
        (
            Vector([1, 0, 0]),
            HalfVector([0, 0, 1]),
            SparseVector({0: 2}, dim=5),
            Bit("1111"),
            Bit("01"),
        ),
    ]
    # The server applies the column's type modifier to our binary input too.
    with pytest.raises(asyncpg.DataError, match="expected 3 dimensions, not 2"):
        await conn.execute(f"INSERT INTO {table_name} (v) VALUES ($1)", [1, 2])
    with pytest.raises(asyncpg.StringDataLengthMismatchError):
        await conn.execute(f"INSERT INTO {table_name} (b) VALUES ($1)", "101")


async def test_extension_in_another_schema_is_found(pg_dsn: str, scratch_db: str) -> None:
    connection = await asyncpg.connect(pg_dsn, database=scratch_db)
    try:
        await connection.execute("CREATE SCHEMA ext; CREATE EXTENSION vector SCHEMA ext")
        assert await vector_extension_schema(connection) == "ext"
        await register_vector(connection)
        assert await connection.fetchval("SELECT '[1,2]'::ext.vector") == Vector([1, 2])
        assert await connection.fetchval("SELECT $1::ext.halfvec::text", [1, 2]) == "[1,2]"
        with pytest.raises(ExtensionMissingError):
            await register_vector(connection, schema="public")
    finally:
        await connection.close()


async def test_missing_extension_raises_extension_missing(pg_dsn: str, scratch_db: str) -> None:
    connection = await asyncpg.connect(pg_dsn, database=scratch_db)
    try:
        assert await vector_extension_schema(connection) is None
        with pytest.raises(ExtensionMissingError) as caught:
            await register_vector(connection)
        assert "CREATE EXTENSION vector" in str(caught.value)
        assert caught.value.hint is not None
        with pytest.raises(ExtensionMissingError, match=r"public\.vector does not exist"):
            await register_vector(connection, schema="public")
    finally:
        await connection.close()


async def test_old_pgvector_without_halfvec_and_sparsevec(pg_dsn: str, scratch_db: str) -> None:
    """pgvector < 0.7 has neither type; vector and bit must still be registered."""
    connection = await asyncpg.connect(pg_dsn, database=scratch_db)
    try:
        await connection.execute(
            "CREATE EXTENSION vector; "
            "ALTER TYPE halfvec RENAME TO hidden_halfvec; "
            "ALTER TYPE sparsevec RENAME TO hidden_sparsevec"
        )
        await register_vector(connection, bit=True)
        assert await connection.fetchval("SELECT '[1,2]'::vector") == Vector([1, 2])
        assert await connection.fetchval("SELECT B'101'::bit(3)") == Bit("101")
        assert await connection.fetchval("SELECT $1::vector::text", [3, 4]) == "[3,4]"
    finally:
        await connection.close()


# -- bit and varbit are the user's: asyncpg's codec stays unless bit=True --------------------------


async def _varbit_round_trip(connection: asyncpg.Connection[Any], table: str) -> list[Any]:
    """Everything a user's unrelated bit/varbit table sees: parameters asyncpg's codec takes
    (BitString, bytes as packed bits), values out, text, arrays, NULLs, and its refusals."""
    await connection.execute(
        f"CREATE TEMP TABLE {table} (id int PRIMARY KEY, flags varbit, fixed bit(4), many varbit[])"
    )
    rows: list[tuple[Any, ...]] = [
        (1, bitstring("10110"), bitstring("1001"), None),
        (2, b"\xa5", asyncpg.BitString.frombytes(b"\xf0", 4), [bitstring("1"), None]),
        (3, bitstring(""), None, [bitstring("01"), bitstring("110")]),
    ]
    await connection.executemany(f"INSERT INTO {table} VALUES ($1, $2, $3, $4)", rows)
    await connection.copy_records_to_table(
        table, records=[(4, bitstring("0" * 9 + "1"), None, None)]
    )
    seen: list[Any] = [
        tuple(r) for r in await connection.fetch(f"SELECT * FROM {table} ORDER BY id")
    ]
    seen.append(await connection.fetch(f"SELECT flags::text, many::text FROM {table} ORDER BY id"))
    found = await connection.fetchval(f"SELECT flags FROM {table} WHERE id = 1")
    seen.append((type(found), found.as_string(), found.to_int(), len(found)))
    for bad in ("101", Bit("101"), [True, False]):
        try:
            await connection.fetchval("SELECT $1::varbit", bad)
        except Exception as exc:  # the very exception plain asyncpg raises, compared below
            seen.append((type(exc), str(exc)))
        else:
            seen.append(("accepted", bad))
    return seen


async def test_register_vector_leaves_a_users_varbit_table_alone(pg_dsn: str) -> None:
    plain = await asyncpg.connect(pg_dsn)
    registered = await asyncpg.connect(pg_dsn)
    registered_numpy = await asyncpg.connect(pg_dsn)
    try:
        await register_vector(registered)
        await register_vector(registered_numpy, numpy=True)
        expected = await _varbit_round_trip(plain, "user_flags")
        assert expected[0][1] == bitstring("10110")  # (the comparison is not vacuous)
        assert await _varbit_round_trip(registered, "user_flags") == expected
        assert await _varbit_round_trip(registered_numpy, "user_flags") == expected
        # ... while the vector types are pgvs' on the registered connection.
        assert await registered.fetchval("SELECT '[1,2]'::vector") == Vector([1, 2])
    finally:
        for connection in (plain, registered, registered_numpy):
            await connection.close()


async def test_bit_true_installs_pgvs_bit_and_takes_bitstring_too(pg_dsn: str) -> None:
    connection = await asyncpg.connect(pg_dsn)
    try:
        await register_vector(connection, bit=True)
        assert await connection.fetchval("SELECT B'10110'::varbit") == Bit("10110")
        for value in (bitstring("10110"), Bit("10110"), "10110", [1, 0, 1, 1, 0]):
            assert await connection.fetchval("SELECT $1::varbit::text", value) == "10110"
        padded = asyncpg.BitString.frombytes(b"\xff", 3)  # bits past the length are not sent
        assert await connection.fetchval("SELECT $1::varbit::text", padded) == "111"
    finally:
        await connection.close()


async def test_register_does_not_hide_other_errors(pg_dsn: str) -> None:
    connection = await asyncpg.connect(pg_dsn)
    await connection.close()
    with pytest.raises(asyncpg.InterfaceError):
        await register_vector(connection)


# -- bad values: the client refuses them, and so does the server when they get around us -----------


async def test_client_validation_stops_bad_values_before_the_server(
    conn: asyncpg.Connection[Any],
) -> None:
    # asyncpg wraps encoder errors in its DataError; the cause is ours, naming the element.
    with pytest.raises(asyncpg.DataError) as caught:
        await conn.fetchval("SELECT $1::vector", [1.0, math.nan])
    assert isinstance(caught.value.__cause__, ValidationError)
    assert "vector element 1 is NaN" in str(caught.value.__cause__)
    with pytest.raises(asyncpg.DataError) as caught:
        await conn.fetchval("SELECT $1::sparsevec", {0: 1.0})
    assert isinstance(caught.value.__cause__, ValidationError)
    with pytest.raises(asyncpg.DataError) as caught:
        await conn.fetchval("SELECT $1::halfvec", np.array([1.0, 1e5]))
    assert "halfvec element 1" in str(caught.value.__cause__)


BAD_WIRE: list[tuple[str, str, bytes, str]] = [
    (
        "vector NaN",
        "vector",
        b"\x00\x02\x00\x00" + struct.pack(">2f", 1, math.nan),
        "NaN not allowed in vector",
    ),
    (
        "vector inf",
        "vector",
        b"\x00\x01\x00\x00" + struct.pack(">f", -math.inf),
        "infinite value not allowed in vector",
    ),
    ("vector dim 0", "vector", b"\x00\x00\x00\x00", "vector must have at least 1 dimension"),
    (
        "vector unused",
        "vector",
        b"\x00\x01\x00\x07" + b"\x00" * 4,
        "expected unused to be 0, not 7",
    ),
    (
        "vector too many dims",
        "vector",
        b"\x3e\x81\x00\x00" + b"\x00" * 4 * 16001,
        "cannot have more than 16000 dimensions",
    ),
    (
        "halfvec inf",
        "halfvec",
        b"\x00\x01\x00\x00\x7c\x00",
        "infinite value not allowed in halfvec",
    ),
    ("halfvec NaN", "halfvec", b"\x00\x01\x00\x00\x7e\x00", "NaN not allowed in halfvec"),
    (
        "sparsevec zero value",
        "sparsevec",
        struct.pack(">4if", 3, 1, 0, 0, 0.0),
        "cannot contain zero values",
    ),
    (
        "sparsevec unsorted",
        "sparsevec",
        struct.pack(">5i2f", 3, 2, 0, 1, 0, 1.0, 2.0),
        "ascending order",
    ),
    (
        "sparsevec duplicate",
        "sparsevec",
        struct.pack(">5i2f", 3, 2, 0, 1, 1, 1.0, 2.0),
        "duplicates",
    ),
    ("sparsevec out of bounds", "sparsevec", struct.pack(">4if", 3, 1, 0, 3, 1.0), "out of bounds"),
    (
        "sparsevec too many nnz",
        "sparsevec",
        struct.pack(">3i", 20000, 16001, 0),
        "more than 16000 non-zero",
    ),
]


@pytest.mark.parametrize(
    ("label", "sql_type", "wire", "server_message"), BAD_WIRE, ids=[case[0] for case in BAD_WIRE]
)
async def test_bad_wire_bytes_are_refused_by_the_server_and_by_us(
    pg_dsn: str, label: str, sql_type: str, wire: bytes, server_message: str
) -> None:
    # A connection whose codec passes raw bytes through: nothing of ours checks them.
    connection = await asyncpg.connect(pg_dsn)
    try:
        await connection.set_type_codec(
            sql_type, schema="public", encoder=bytes, decoder=bytes, format="binary"
        )
        with pytest.raises(asyncpg.PostgresError, match=server_message):
            await connection.fetchval(f"SELECT $1::{sql_type}", wire)
    finally:
        await connection.close()
    parse: Any = {"vector": Vector, "halfvec": HalfVector, "sparsevec": SparseVector}[sql_type]
    with pytest.raises(ValidationError):
        parse.from_binary(wire)


async def test_bad_bytes_smuggled_past_validation_meet_the_server(
    conn: asyncpg.Connection[Any],
) -> None:
    """_from_wire trusts its input (it is for server data): the server is the second line."""
    smuggled = Vector._from_wire(b"\x00\x01\x00\x00" + struct.pack(">f", math.nan))
    with pytest.raises(asyncpg.DataError, match="NaN not allowed in vector"):
        await conn.fetchval("SELECT $1::vector", smuggled)


BAD_TEXT: list[tuple[str, str, type[Any]]] = [
    ("'[NaN]'::vector", "NaN not allowed in vector", Vector),
    ("'[1,Infinity]'::vector", "infinite value not allowed in vector", Vector),
    ("'[1e39]'::vector", "out of range for type vector", Vector),
    ("'[]'::vector", "at least 1 dimension", Vector),
    ("'[65520]'::halfvec", "out of range for type halfvec", HalfVector),
    ("'{1:1,1:2}/5'::sparsevec", "must not contain duplicates", SparseVector),
    ("'{6:1}/5'::sparsevec", "index out of bounds", SparseVector),
    ("'{1:NaN}/5'::sparsevec", "NaN not allowed in sparsevec", SparseVector),
    ("'10a'::varbit", "is not a valid binary digit", Bit),
]


@pytest.mark.parametrize(
    ("literal", "server_message", "cls"), BAD_TEXT, ids=[case[0] for case in BAD_TEXT]
)
async def test_bad_text_is_refused_by_the_server_and_by_us(
    raw_conn: asyncpg.Connection[Any], literal: str, server_message: str, cls: Any
) -> None:
    with pytest.raises(asyncpg.PostgresError, match=server_message):
        await raw_conn.fetchval(f"SELECT {literal}")
    text = literal.split("'")[1]
    with pytest.raises(ValidationError):
        cls.from_text(text)
