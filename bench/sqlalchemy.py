"""SQLAlchemy benchmark: pgvs's column types against pgvector-python's, same engine kind.

``python -m bench sqlalchemy [--rows 20000] [--dim 768] [--repeat 3] [--queries 200] [--rounds 5]``

Every side is an ORM model ``(id, content, embedding, metadata jsonb)`` on a
``create_async_engine("postgresql+asyncpg://...")`` engine and ``AsyncSession``:

- ``pgvs``: ``pgvs.integrations.sqlalchemy.Vector(dim)`` on an engine passed to ``register()``
  (binary ``vector`` transfer; embeddings come back as float32 numpy arrays);
- ``pgvector``: pgvector-python's ``pgvector.sqlalchemy.VECTOR(dim)`` (its SQLAlchemy type binds
  pgvector's text form, and its asyncpg codec cannot be combined with it: the codec's encoder
  refuses the text the type binds); embeddings come back as lists of floats;
- ``pgvs_text`` (diagnostic): pgvs's type on an engine without ``register()``, pgvector's text
  form on the wire, to separate the binary transfer from the rest.

Insert: an ORM bulk insert, ``await session.execute(insert(Doc), rows)`` + commit, of ``--rows``
rows (each embedding a float32 numpy row, ~200 characters of content, a 3-key metadata dict) into
an empty table of the side's own (no vector index: the insert path, not the index build, is
measured). Each repetition runs every side once, in rotating order, each after ``TRUNCATE``;
``insert_rows_per_s`` are medians. ``ratio_insert`` = pgvs / pgvector rows per second (target
>= 1.5).

Search: an HNSW index (``vector_cosine_ops``, pgvector's defaults) on one table holding the rows,
read by every side's model (mapped to that same table): ``select(Doc).order_by(
Doc.embedding.cosine_distance(q)).limit(10)``, whole ORM objects (embeddings included), through
``session.scalars(...).all()``. ``--rounds`` rounds; in each, every side (rotating order) runs the
same ``--queries`` query vectors one after another; a side's p50 is the median over rounds of its
per-round median latency. ``ratio_search_p50`` = pgvs / pgvector (target <= 1.0). The run checks
that all sides return the same ids for the first 20 queries.

Uses ``DATABASE_URL`` when set (its tables are dropped afterwards), else a throwaway embedded
server. The defaults take about two minutes on a 2-core VM.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np
from pgvector.sqlalchemy import VECTOR
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql import func, insert, select, text
from sqlalchemy.types import Integer, Text

import pgvs
from pgvs._sql import quote_ident
from pgvs.integrations.sqlalchemy import Vector, register

from ._util import database, emit, progress

SIDES = ("pgvs", "pgvector", "pgvs_text")
K = 10
WORDS = ("vector", "search", "postgres", "index", "graph", "query", "row", "page", "chunk")


def model(table: str, column_type: Any) -> Any:
    class Base(DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = table
        id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
        content: Mapped[str] = mapped_column(Text)
        embedding: Mapped[Any] = mapped_column(column_type)
        metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB)

    return Doc


def column_types(dim: int) -> dict[str, Any]:
    return {"pgvs": Vector(dim), "pgvector": VECTOR(dim), "pgvs_text": Vector(dim)}


def make_rows(rng: np.random.Generator, rows: int, dim: int) -> list[dict[str, Any]]:
    matrix = rng.normal(size=(rows, dim)).astype(np.float32)
    words = np.array(WORDS)
    out = []
    for i in range(rows):
        content = " ".join(words[rng.integers(0, len(WORDS), 30)])
        out.append(
            {
                "id": i,
                "content": content,
                "embedding": matrix[i],
                "metadata_": {"source": "faq" if i % 3 else "blog", "year": 2020 + i % 5, "n": i},
            }
        )
    return out


async def timed_insert(engine: AsyncEngine, doc: Any, rows: list[dict[str, Any]]) -> float:
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {quote_ident(doc.__tablename__)}"))
    async with AsyncSession(engine) as session:
        start = time.perf_counter()
        await session.execute(insert(doc), rows)
        await session.commit()
        seconds = time.perf_counter() - start
    async with engine.connect() as conn:
        count = await conn.scalar(select(func.count()).select_from(doc))
    if count != len(rows):
        raise AssertionError(f"{doc.__tablename__} has {count} rows after inserting {len(rows)}")
    return seconds


async def search_round(
    engine: AsyncEngine, doc: Any, queries: list[Any]
) -> tuple[list[float], list[list[int]]]:
    latencies: list[float] = []
    ids: list[list[int]] = []
    async with AsyncSession(engine) as session:
        for q in queries:
            start = time.perf_counter()
            hits = (
                await session.scalars(
                    select(doc).order_by(doc.embedding.cosine_distance(q)).limit(K)
                )
            ).all()
            latencies.append(time.perf_counter() - start)
            ids.append([hit.id for hit in hits])
            session.expunge_all()  # every query builds its objects anew, as a request would
    return latencies, ids


def rotated(items: tuple[str, ...], shift: int) -> list[str]:
    return [items[(i + shift) % len(items)] for i in range(len(items))]


async def measure(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    url = make_url(dsn).set(drivername="postgresql+asyncpg")
    engines = {side: create_async_engine(url) for side in SIDES}
    register(engines["pgvs"])
    types = column_types(args.dim)
    suffix = f"{time.monotonic_ns() % 10**8}"
    insert_models = {side: model(f"bench_sa_{side}_{suffix}", types[side]) for side in SIDES}
    search_table = f"bench_sa_search_{suffix}"
    search_models = {side: model(search_table, column_types(args.dim)[side]) for side in SIDES}
    rng = np.random.default_rng(15)
    rows = make_rows(rng, args.rows, args.dim)
    try:
        async with engines["pgvs"].begin() as conn:
            for doc in (*insert_models.values(), search_models["pgvs"]):
                await conn.run_sync(doc.metadata.create_all)

        progress(f"insert: {args.rows} x {args.dim}, {args.repeat} repetitions, sides {SIDES}")
        for side in SIDES:  # warm-up: connections, prepared statements, first allocations
            await timed_insert(engines[side], insert_models[side], rows[:500])
        insert_times: dict[str, list[float]] = {side: [] for side in SIDES}
        for repetition in range(args.repeat):
            for side in rotated(SIDES, repetition):
                seconds = await timed_insert(engines[side], insert_models[side], rows)
                insert_times[side].append(seconds)
                progress(f"  {side}: {seconds:.2f} s")

        progress("search: filling one table and building its HNSW index")
        await timed_insert(engines["pgvs"], search_models["pgvs"], rows)
        async with engines["pgvs"].begin() as conn:
            await conn.execute(text("SET maintenance_work_mem = '512MB'"))
            await conn.execute(
                text(
                    f"CREATE INDEX ON {quote_ident(search_table)} "
                    "USING hnsw (embedding vector_cosine_ops)"
                )
            )
            await conn.execute(text(f"ANALYZE {quote_ident(search_table)}"))
        noise = rng.normal(scale=0.1, size=(args.queries, args.dim)).astype(np.float32)
        picks = rng.integers(0, args.rows, args.queries)
        queries = [rows[p]["embedding"] + noise[i] for i, p in enumerate(picks)]
        for side in SIDES:  # warm-up
            await search_round(engines[side], search_models[side], queries[:20])
        round_p50s: dict[str, list[float]] = {side: [] for side in SIDES}
        answers: dict[str, list[list[int]]] = {}
        for round_ in range(args.rounds):
            for side in rotated(SIDES, round_):
                latencies, ids = await search_round(engines[side], search_models[side], queries)
                round_p50s[side].append(statistics.median(latencies))
                answers[side] = ids
        same = all(answers[side][:20] == answers["pgvs"][:20] for side in SIDES)
        if not same:
            raise AssertionError("the sides returned different ids for the same queries")
    finally:
        async with engines["pgvs"].begin() as conn:
            for doc in insert_models.values():
                await conn.execute(text(f"DROP TABLE IF EXISTS {quote_ident(doc.__tablename__)}"))
            await conn.execute(text(f"DROP TABLE IF EXISTS {quote_ident(search_table)}"))
        for engine in engines.values():
            await engine.dispose()

    rate = {side: args.rows / statistics.median(insert_times[side]) for side in SIDES}
    p50_ms = {side: statistics.median(round_p50s[side]) * 1e3 for side in SIDES}
    return {
        "bench": "sqlalchemy",
        "rows": args.rows,
        "dim": args.dim,
        "repeat": args.repeat,
        "queries": args.queries,
        "rounds": args.rounds,
        "insert_rows_per_s": {side: round(value) for side, value in rate.items()},
        "insert_s": {side: [round(s, 3) for s in insert_times[side]] for side in SIDES},
        "ratio_insert": round(rate["pgvs"] / rate["pgvector"], 2),
        "ratio_insert_pgvs_text": round(rate["pgvs_text"] / rate["pgvector"], 2),
        "search_p50_ms": {side: round(value, 3) for side, value in p50_ms.items()},
        "ratio_search_p50": round(p50_ms["pgvs"] / p50_ms["pgvector"], 3),
        "ratio_search_p50_pgvs_text": round(p50_ms["pgvs_text"] / p50_ms["pgvector"], 3),
        "same_ids": same,
        "targets": {"ratio_insert": ">= 1.5", "ratio_search_p50": "<= 1.0"},
        "versions": {
            "pgvs": pgvs.__version__,
            "sqlalchemy": _version("sqlalchemy"),
            "pgvector_python": _version("pgvector"),
            "python": platform.python_version(),
            "speedups": pgvs.types.SPEEDUPS,
        },
    }


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench sqlalchemy", description=__doc__)
    parser.add_argument("--rows", type=int, default=20000, help="rows per insert (20000)")
    parser.add_argument("--dim", type=int, default=768, help="vector dimensions (768)")
    parser.add_argument("--repeat", type=int, default=3, help="insert repetitions (3)")
    parser.add_argument("--queries", type=int, default=200, help="queries per round (200)")
    parser.add_argument("--rounds", type=int, default=5, help="search rounds (5)")
    args = parser.parse_args(argv)
    with database() as dsn:
        result = asyncio.run(measure(dsn, args))
    emit(result)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
