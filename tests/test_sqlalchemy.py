"""pgvs.integrations.sqlalchemy against the embedded server: the seed-style ORM model end to end on
an async asyncpg engine, every type and comparator on Core through asyncpg (binary and text) and
psycopg, values refused before the statement is sent, vector indexes, reflection."""

from __future__ import annotations

import math
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt
import pytest
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import pgvs
from pgvs.errors import ConfigurationError, ExtensionMissingError, ValidationError
from pgvs.integrations.sqlalchemy import (
    Bit,
    HalfVector,
    SparseVector,
    Vector,
    VectorValidationError,
    avg,
    quantized,
    register,
    sum,
    vector_index,
)

DIM = 768
F32 = npt.NDArray[np.float32]


def url(dsn: str, driver: str) -> str:
    return make_url(dsn).set(drivername=f"postgresql+{driver}").render_as_string(False)


@pytest.fixture
async def binary_engine(pg_dsn: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(url(pg_dsn, "asyncpg"))
    register(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def text_engine(pg_dsn: str) -> AsyncIterator[AsyncEngine]:
    """asyncpg without register(): pgvector's text form on the wire."""
    engine = create_async_engine(url(pg_dsn, "asyncpg"))
    yield engine
    await engine.dispose()


@pytest.fixture
def psycopg_engine(pg_dsn: str) -> Iterator[Engine]:
    engine = create_engine(url(pg_dsn, "psycopg"))
    yield engine
    engine.dispose()


def sent_statements(engine: Engine) -> list[tuple[str, Any]]:
    """Every (statement, parameters) handed to the driver from now on."""
    sent: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
        sent.append((statement, params))

    return sent


def inserted(sent: list[tuple[str, Any]]) -> Any:
    [params] = [params for statement, params in sent if statement.startswith("INSERT")]
    return params


# -- the package root stays free of SQLAlchemy ------------------------------------------------------


def test_import_pgvs_does_not_load_sqlalchemy() -> None:
    code = (
        "import sys, pgvs, pgvs.store, pgvs.sync\n"
        "assert 'sqlalchemy' not in sys.modules, 'pgvs imported sqlalchemy'\n"
        "assert 'pgvs.integrations' not in sys.modules\n"
        "import pgvs.integrations.sqlalchemy\n"
        "assert 'sqlalchemy' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the seed-style model, end to end on AsyncSession ---------------------------------------------


def make_doc_model(table: str) -> Any:
    class Base(DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = table
        id: Mapped[int] = mapped_column(primary_key=True)
        content: Mapped[str]
        embedding: Mapped[Any] = mapped_column(Vector(DIM))
        metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB)
        __table_args__ = (vector_index(f"{table}_embedding_idx", "embedding", metric="cosine"),)

    return Doc


def cosine(matrix: F32, q: F32) -> npt.NDArray[np.float64]:
    m = matrix.astype(np.float64)
    return np.asarray(1 - m @ q / (np.linalg.norm(m, axis=1) * np.linalg.norm(q)))


async def test_orm_seed_model_end_to_end(binary_engine: AsyncEngine, table_name: str) -> None:
    doc = make_doc_model(table_name)
    rng = np.random.default_rng(15)
    embeddings = rng.normal(size=(300, DIM)).astype(np.float32)
    sources = ["faq" if i % 3 == 0 else "blog" for i in range(300)]
    # an index declared after the class, on the ORM attribute
    vector_index(f"{table_name}_l2_idx", doc.embedding, metric="l2", m=8)
    async with binary_engine.begin() as conn:
        await conn.run_sync(doc.metadata.create_all)
    async with AsyncSession(binary_engine) as session:
        session.add_all(
            doc(id=i, content=f"chunk {i}", embedding=embeddings[i], metadata_={"source": s})
            for i, s in enumerate(sources)
        )
        await session.commit()

    q = rng.normal(size=DIM).astype(np.float32)
    distances = cosine(embeddings, q)
    async with AsyncSession(binary_engine) as session, session.begin():
        # An exact scan, so the expected top 10 is numpy's and not an approximation.
        await session.execute(text("SET LOCAL enable_indexscan = off"))
        hits = (
            await session.scalars(select(doc).order_by(doc.embedding.cosine_distance(q)).limit(10))
        ).all()
        assert [hit.id for hit in hits] == list(np.argsort(distances)[:10])
        first = hits[0]
        assert isinstance(first.embedding, np.ndarray)
        assert first.embedding.dtype == np.float32
        assert np.array_equal(first.embedding, embeddings[first.id])

        faq = (
            await session.execute(
                select(doc.id, doc.embedding.cosine_distance(q).label("d"))
                .where(doc.metadata_["source"].astext == "faq")
                .order_by("d")
                .limit(10)
            )
        ).all()
        faq_ids = np.array([i for i, s in enumerate(sources) if s == "faq"])
        expected = faq_ids[np.argsort(distances[faq_ids])[:10]]
        assert [row.id for row in faq] == list(expected)
        assert [row.d for row in faq] == pytest.approx(distances[expected], abs=1e-6)

        centroid = await session.scalar(
            select(avg(doc.embedding)).where(doc.metadata_.contains({"source": "faq"}))
        )
        assert isinstance(centroid, np.ndarray)
        assert centroid.shape == (DIM,)
        assert np.allclose(centroid, embeddings[faq_ids].astype(np.float64).mean(axis=0), atol=1e-6)

    async with binary_engine.connect() as conn:
        result = await conn.execute(
            text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t"),
            {"t": table_name},
        )
        indexes: dict[str, str] = dict(result.all())
    assert indexes[f"{table_name}_embedding_idx"].endswith(
        "USING hnsw (embedding vector_cosine_ops)"
    )
    assert indexes[f"{table_name}_l2_idx"].endswith(
        "USING hnsw (embedding vector_l2_ops) WITH (m='8')"
    )


async def test_register_sends_pgvs_values_and_decodes_binary(
    binary_engine: AsyncEngine, text_engine: AsyncEngine, table_name: str
) -> None:
    table = Table(table_name, MetaData(), Column("id", Integer, primary_key=True))
    table.append_column(Column("v", Vector(3, returns="pgvs")))
    binary_sent = sent_statements(binary_engine.sync_engine)
    text_sent = sent_statements(text_engine.sync_engine)
    async with binary_engine.begin() as conn:
        await conn.run_sync(table.metadata.create_all)
        await conn.execute(insert(table), [{"id": 1, "v": [1.0, 2.0, 3.0]}])
        # register() put pgvs's codec on the connection: untyped SQL gets a pgvs.Vector too.
        assert await conn.scalar(text(f'SELECT v FROM "{table_name}"')) == pgvs.Vector([1, 2, 3])
    async with text_engine.begin() as conn:
        await conn.execute(insert(table), [{"id": 2, "v": np.array([4, 5, 6], np.float32)}])
        assert await conn.scalar(text(f'SELECT v FROM "{table_name}" WHERE id = 2')) == "[4,5,6]"
        both = (await conn.scalars(select(table.c.v).order_by(table.c.id))).all()
    assert both == [pgvs.Vector([1, 2, 3]), pgvs.Vector([4, 5, 6])]
    # What reached the driver: a pgvs value (the codec sends its wire bytes) vs pgvector's text.
    assert [v for v in inserted(binary_sent) if isinstance(v, pgvs.Vector)] == [
        pgvs.Vector([1, 2, 3])
    ]
    assert "[4,5,6]" in inserted(text_sent)


# -- every type and comparator, on each driver path ----------------------------------------------

A = [1.0, 2.0, 3.0]
B = [3.0, 0.5, -1.0]
BITS_A, BITS_B = "10110010", "11100000"


def expected_distances() -> dict[str, float]:
    a, b = np.array(A, np.float64), np.array(B, np.float64)
    x = np.array([c == "1" for c in BITS_A])
    y = np.array([c == "1" for c in BITS_B])
    return {
        "l2": float(np.linalg.norm(a - b)),
        "cosine": float(1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))),
        "ip": float(-(a @ b)),
        "l1": float(np.abs(a - b).sum()),
        "hamming": float((x != y).sum()),
        "jaccard": float(1 - (x & y).sum() / (x | y).sum()),
    }


def typed_table(name: str, returns: str) -> Table:
    r: Any = returns
    return Table(
        name,
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("v", Vector(3, returns=r)),
        Column("h", HalfVector(3, returns=r)),
        Column("s", SparseVector(3, returns=r)),
        Column("b", Bit(8, returns=r)),
    )


def check_types_and_comparators(conn: Any, table: Table, returns: str) -> None:
    """The body shared by the async (run_sync) and sync engines."""
    table.metadata.create_all(conn)
    conn.execute(
        insert(table),
        [
            {"id": 1, "v": A, "h": np.array(A), "s": A, "b": BITS_A},
            {"id": 2, "v": None, "h": None, "s": None, "b": None},
        ],
    )
    row = conn.execute(select(table).where(table.c.id == 1)).one()
    if returns == "numpy":
        for value in (row.v, row.h, row.s):
            assert isinstance(value, np.ndarray)
            assert value.dtype == np.float32
            assert value.tolist() == A
        assert row.b.tolist() == [c == "1" for c in BITS_A]
    else:
        assert (row.v, row.h) == (pgvs.Vector(A), pgvs.HalfVector(A))
        assert row.s == pgvs.SparseVector(A)
        assert row.b == pgvs.Bit(BITS_A)
    assert conn.execute(select(table.c.v, table.c.b).where(table.c.id == 2)).one() == (None, None)

    want = expected_distances()
    c = table.c
    got = conn.execute(
        select(
            c.v.l2_distance(B),
            c.v.cosine_distance(np.array(B)),
            c.v.max_inner_product(pgvs.Vector(B)),
            c.v.l1_distance(B),
            c.h.l2_distance(B),
            c.h.cosine_distance(B),
            c.h.max_inner_product(B),
            c.h.l1_distance(B),
            c.s.l2_distance(B),
            c.s.cosine_distance(pgvs.SparseVector(B)),
            c.s.max_inner_product(B),
            c.s.l1_distance(B),
            c.b.hamming_distance(BITS_B),
            c.b.jaccard_distance(pgvs.Bit(BITS_B)),
        ).where(c.id == 1)
    ).one()
    dense = [want["l2"], want["cosine"], want["ip"], want["l1"]]
    assert list(got) == pytest.approx([*dense * 3, want["hamming"], want["jaccard"]], rel=1e-6)
    # The raw operators give the same numbers as the comparators.
    raw = conn.execute(select(c.v.op("<->")(B), c.b.op("<~>")(BITS_B)).where(c.id == 1)).one()
    assert list(raw) == pytest.approx([want["l2"], want["hamming"]])

    conn.execute(insert(table), [{"id": 3, "v": [3.0, 4.0, 5.0], "h": B, "s": B, "b": BITS_B}])
    totals = conn.execute(
        select(sum(c.v), avg(c.v), avg(c.h), sum(c.h)).where(c.id.in_([1, 3]))
    ).one()
    as_list = [t.tolist() if isinstance(t, np.ndarray) else t.to_list() for t in totals]
    assert as_list == [[4.0, 6.0, 8.0], [2.0, 3.0, 4.0], [2.0, 1.25, 1.0], [4.0, 2.5, 2.0]]


@pytest.mark.parametrize("returns", ["numpy", "pgvs"])
async def test_types_and_comparators_asyncpg_binary(
    binary_engine: AsyncEngine, table_name: str, returns: str
) -> None:
    table = typed_table(table_name, returns)
    async with binary_engine.begin() as conn:
        await conn.run_sync(check_types_and_comparators, table, returns)


async def test_types_and_comparators_asyncpg_text(
    text_engine: AsyncEngine, table_name: str
) -> None:
    table = typed_table(table_name, "numpy")
    async with text_engine.begin() as conn:
        await conn.run_sync(check_types_and_comparators, table, "numpy")


@pytest.mark.parametrize("returns", ["numpy", "pgvs"])
def test_types_and_comparators_psycopg(
    psycopg_engine: Engine, table_name: str, returns: str
) -> None:
    register(psycopg_engine)  # nothing to do on psycopg: text form, still correct
    table = typed_table(table_name, returns)
    with psycopg_engine.begin() as conn:
        check_types_and_comparators(conn, table, returns)


async def test_async_psycopg_orm(pg_dsn: str, table_name: str) -> None:
    engine = create_async_engine(url(pg_dsn, "psycopg"))
    doc = make_doc_model(table_name)
    vectors = np.eye(4, DIM, dtype=np.float32) + 0.5
    try:
        async with engine.begin() as conn:
            await conn.run_sync(doc.metadata.create_all)
        async with AsyncSession(engine) as session:
            session.add_all(
                doc(id=i, content="c", embedding=vectors[i], metadata_={}) for i in range(4)
            )
            await session.commit()
            nearest = await session.scalars(
                select(doc.id).order_by(doc.embedding.l2_distance(vectors[2])).limit(2)
            )
            assert nearest.all()[0] == 2
            stored = await session.get(doc, 3)
            assert stored is not None
            assert np.array_equal(stored.embedding, vectors[3])
    finally:
        await engine.dispose()


# -- bad input: refused before anything is sent ----------------------------------------------------

BAD_VALUES = [
    ("v", [1.0, 2.0], r"Vector\(dim=3\) column: the value has 2 dimensions, the column 3"),
    ("v", [1.0, math.nan, 3.0], r"vector element 1 is NaN"),
    ("v", np.array([1, np.inf, 0], np.float32), r"vector element 1 is inf"),
    ("v", "[1,2,3]", r"not str; use Vector.from_text"),
    ("v", pgvs.SparseVector([1.0, 0.0, 2.0]), r"a SparseVector cannot be bound to a vector"),
    ("v", {"a": 1}, r"not dict"),
    ("h", [1e6, 0.0, 0.0], r"halfvec element 0"),
    ("s", [1.0, 2.0, 3.0, 4.0], r"SparseVector\(dim=3, .*\) column: the value has 4 dimensions"),
    ("s", pgvs.Bit("101"), r"a Bit cannot be bound to a sparsevec"),
    ("b", "1011", r"Bit\(length=8, .*\) column: the value has 4 bits, the column 8"),
    ("b", "1011001x", r"bit string position 7 is 'x'"),
    ("b", pgvs.Vector([1.0]), r"a Vector cannot be bound to a bit column"),
]


@pytest.mark.parametrize(("column", "value", "message"), BAD_VALUES)
async def test_bad_values_refused_before_sending(
    binary_engine: AsyncEngine, table_name: str, column: str, value: Any, message: str
) -> None:
    table = typed_table(table_name, "numpy")
    async with binary_engine.begin() as conn:
        await conn.run_sync(table.metadata.create_all)
    sent = sent_statements(binary_engine.sync_engine)
    async with binary_engine.connect() as conn:
        with pytest.raises(VectorValidationError, match=message) as caught:
            await conn.execute(insert(table), [{"id": 1, column: value}])
        assert isinstance(caught.value, ValidationError)
        await conn.rollback()
        # A query vector bound through a comparator is the column's type: checked the same way.
        comparator = getattr(
            table.c[column], "hamming_distance" if column == "b" else "l2_distance"
        )
        with pytest.raises(ValidationError, match=message):
            await conn.execute(select(table.c.id).order_by(comparator(value)))
        await conn.rollback()
        assert sent == []
        assert await conn.scalar(select(func.count()).select_from(table)) == 0


def test_bad_value_refused_on_psycopg(psycopg_engine: Engine, table_name: str) -> None:
    table = typed_table(table_name, "numpy")
    table.metadata.create_all(psycopg_engine)
    sent = sent_statements(psycopg_engine)
    with psycopg_engine.connect() as conn, pytest.raises(ValidationError, match="is NaN"):
        conn.execute(insert(table), [{"id": 1, "v": [0.0, 0.0, math.nan]}])
    assert sent == []


def test_type_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="dim must be a positive int"):
        Vector(0)
    with pytest.raises(ValueError, match="returns must be"):
        Vector(3, returns="list")  # type: ignore[arg-type]
    assert repr(SparseVector(30000, returns="numpy")) == "SparseVector(dim=30000, returns='numpy')"
    assert repr(Bit(64)) == "Bit(length=64)"


# -- register() ------------------------------------------------------------------------------------


async def test_register_after_connecting_is_refused(pg_dsn: str) -> None:
    engine = create_async_engine(url(pg_dsn, "asyncpg"))
    try:
        async with engine.connect() as conn:
            await conn.scalar(text("SELECT 1"))
        with pytest.raises(InvalidRequestError, match="before the engine opens connections"):
            register(engine)
    finally:
        await engine.dispose()


async def test_register_without_extension_says_so(pg_dsn: str) -> None:
    database = f"noext_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_dsn)
    await admin.execute(f'CREATE DATABASE "{database}"')
    engine = create_async_engine(make_url(url(pg_dsn, "asyncpg")).set(database=database))
    register(engine)
    try:
        with pytest.raises(ExtensionMissingError, match="register\\(\\) needs its types"):
            async with engine.connect() as conn:
                await conn.scalar(text("SELECT 1"))
    finally:
        await engine.dispose()
        await admin.execute(f'DROP DATABASE "{database}"')
        await admin.close()


# -- vector_index ----------------------------------------------------------------------------------


def test_vector_indexes_on_the_server(psycopg_engine: Engine, table_name: str) -> None:
    metadata = MetaData()
    table = Table(
        table_name,
        metadata,
        Column("id", Integer, primary_key=True),
        Column("kind", String),
        Column("v", Vector(3)),
        Column("h", HalfVector(4000)),
        Column("s", SparseVector(100)),
        Column("b", Bit(64)),
        vector_index(f"{table_name}_v_hnsw", "v", metric="l2", m=8, ef_construction=40),
        vector_index(f"{table_name}_b_jac", "b", metric="jaccard"),
    )
    vector_index(f"{table_name}_v_ivf", table.c.v, metric="ip", method="ivfflat", lists=3)
    vector_index(f"{table_name}_h_part", table.c.h, metric="cosine", where=table.c.kind == "faq")
    vector_index(f"{table_name}_s_l1", table.c.s, metric="l1")
    metadata.create_all(psycopg_engine)
    with psycopg_engine.connect() as conn:
        definitions: dict[str, str] = dict(
            conn.execute(
                text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t"),
                {"t": table_name},
            ).all()
        )
    assert definitions[f"{table_name}_v_hnsw"].endswith(
        "USING hnsw (v vector_l2_ops) WITH (m='8', ef_construction='40')"
    )
    assert definitions[f"{table_name}_b_jac"].endswith("USING hnsw (b bit_jaccard_ops)")
    assert definitions[f"{table_name}_v_ivf"].endswith(
        "USING ivfflat (v vector_ip_ops) WITH (lists='3')"
    )
    assert definitions[f"{table_name}_h_part"].endswith(
        "USING hnsw (h halfvec_cosine_ops) WHERE ((kind)::text = 'faq'::text)"
    )
    assert definitions[f"{table_name}_s_l1"].endswith("USING hnsw (s sparsevec_l1_ops)")


async def test_quantized_indexes_serve_quantized_queries(
    binary_engine: AsyncEngine, table_name: str
) -> None:
    dim = 3000  # over HNSW's 2,000 for vector: only a quantized index can serve it
    table = Table(
        table_name,
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("e", Vector(dim)),
    )
    vector_index(f"{table_name}_half", table.c.e, metric="cosine", quantization="halfvec")
    vector_index(f"{table_name}_bits", table.c.e, quantization="binary")
    assert repr(quantized(table.c.e, "binary").type) == f"Bit(length={dim})"
    rows = np.random.default_rng(3).normal(size=(50, dim)).astype(np.float32)
    q = rows[7]
    half = select(table.c.id).order_by(quantized(table.c.e, "halfvec").cosine_distance(q))
    bits = select(table.c.id).order_by(quantized(table.c.e, "binary").hamming_distance(q > 0))
    async with binary_engine.begin() as conn:
        await conn.run_sync(table.metadata.create_all)
        await conn.execute(insert(table), [{"id": i, "e": row} for i, row in enumerate(rows)])
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        for query, index in ((half, "half"), (bits, "bits")):
            assert (await conn.scalars(query.limit(1))).one() == 7
            # this transaction's scans of the index, counted by the server
            scans = await conn.scalar(
                text("SELECT pg_stat_get_xact_numscans(to_regclass(:name))"),
                {"name": f"{table_name}_{index}"},
            )
            assert scans == 1


@pytest.mark.parametrize(
    ("column_type", "kwargs", "message"),
    [
        (SparseVector(10), {"method": "ivfflat"}, "IVFFlat cannot index sparsevec"),
        (Vector(3), {"method": "ivfflat", "metric": "l1"}, "IVFFlat has no L1"),
        (Vector(2001), {}, "hnsw indexes vector of at most 2000 dimensions"),
        (Vector(3), {"metric": "hamming"}, "metric 'hamming' does not apply to vector"),
        (Bit(8), {"metric": "cosine"}, "metric 'cosine' does not apply to bit"),
        (Vector(3), {"metric": "dot product"}, "metric 'dot product' is not one of"),
        (Vector(3), {"m": 1}, r"index_params\['m'\] must be an integer from 2 to 100"),
        (Vector(3), {"lists": 10}, "'lists' do not apply to hnsw"),
        (Vector(), {}, "has no dimensions"),
    ],
)
def test_impossible_indexes_are_refused(
    column_type: Any, kwargs: dict[str, Any], message: str
) -> None:
    table = Table("t", MetaData(), Column("e", column_type))
    with pytest.raises(ConfigurationError, match=message):
        vector_index("i", table.c.e, **kwargs)
    with pytest.raises(ConfigurationError, match=message):
        Table("t", MetaData(), Column("e", column_type), vector_index("i", "e", **kwargs))


@pytest.mark.parametrize(
    ("column_type", "quantization", "message"),
    [
        (HalfVector(8), "halfvec", "'halfvec' applies to vector columns"),
        (
            Vector(4001),
            "halfvec",
            "hnsw indexes halfvec of at most 4000 .* has 4001 \\(as halfvec\\)",
        ),
        (Vector(8), "int8", "quantization 'int8' is not one of"),
    ],
)
def test_impossible_quantized_indexes_are_refused(
    column_type: Any, quantization: Any, message: str
) -> None:
    table = Table("t", MetaData(), Column("e", column_type))
    with pytest.raises(ConfigurationError, match=message):
        vector_index("i", table.c.e, quantization=quantization)


def test_quantized_needs_the_column_and_a_dense_type() -> None:
    table = Table("t", MetaData(), Column("e", Vector(8)), Column("s", SparseVector(8)))
    with pytest.raises(ConfigurationError, match="needs the column itself"):
        Table(
            "u", MetaData(), Column("e", Vector(8)), vector_index("i", "e", quantization="binary")
        )
    with pytest.raises(ConfigurationError, match="needs a vector or halfvec column"):
        quantized(table.c.s, "binary")
    with pytest.raises(ConfigurationError, match="must be a pgvs Vector"):
        quantized(table.c.e + 1, "halfvec")


def test_vector_index_needs_a_vector_column() -> None:
    with pytest.raises(ConfigurationError, match="is not a pgvs vector column"):
        Table("t", MetaData(), Column("e", String), vector_index("i", "e"))
    table = Table("t", MetaData(), Column("e", String))
    with pytest.raises(ConfigurationError, match="must be a pgvs Vector"):
        vector_index("i", table.c.e)


# -- reflection ------------------------------------------------------------------------------------


def test_reflection_maps_pgvector_types(psycopg_engine: Engine, table_name: str) -> None:
    typed_table(table_name, "numpy").metadata.create_all(psycopg_engine)
    columns = {c["name"]: c["type"] for c in inspect(psycopg_engine).get_columns(table_name)}
    assert repr(columns["v"]) == "Vector(dim=3)"
    assert repr(columns["h"]) == "HalfVector(dim=3)"
    assert repr(columns["s"]) == "SparseVector(dim=3)"


# -- the text form is exact ------------------------------------------------------------------------


async def test_text_form_round_trips_every_float32_exactly(
    psycopg_engine: Engine, binary_engine: AsyncEngine, table_name: str
) -> None:
    rng = np.random.default_rng(7)
    extremes = [3.4028235e38, -3.4028235e38, 1.1754944e-38, 1e-45, -0.0, 0.1, 1 / 3, 65504.0]
    rows = np.concatenate(
        [
            np.array([extremes], np.float32),
            rng.normal(size=(20, 8)).astype(np.float32),
            (rng.normal(size=(20, 8)) * 10.0 ** rng.integers(-30, 30, size=(20, 8))).astype(
                np.float32
            ),
        ]
    )
    halves = np.clip(rows, -65504, 65504).astype(np.float16).astype(np.float32)
    table = Table(
        table_name,
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("v", Vector(8)),
        Column("h", HalfVector(8)),
        Column("s", SparseVector(8, returns="numpy")),
    )
    table.metadata.create_all(psycopg_engine)
    with psycopg_engine.begin() as conn:  # text in
        conn.execute(
            insert(table),
            [
                {"id": i, "v": r, "h": h, "s": r}
                for i, (r, h) in enumerate(zip(rows, halves, strict=True))
            ],
        )
        text_out = conn.execute(select(table.c.v, table.c.h, table.c.s).order_by(table.c.id)).all()
    async with binary_engine.connect() as conn:  # binary out: the stored values themselves
        binary_out = (
            await conn.execute(select(table.c.v, table.c.h, table.c.s).order_by(table.c.id))
        ).all()
    for i, ((v, h, s), (bv, bh, bs)) in enumerate(zip(text_out, binary_out, strict=True)):
        for got in (v, bv):
            assert got.view(np.uint32).tolist() == rows[i].view(np.uint32).tolist()
        for got in (s, bs):  # sparsevec keeps no zeros, -0.0 included
            assert got.view(np.uint32).tolist() == (rows[i] + 0.0).view(np.uint32).tolist()
        for got in (h, bh):
            assert got.view(np.uint32).tolist() == halves[i].view(np.uint32).tolist()
