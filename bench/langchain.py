"""LangChain benchmark: ``PGVSVectorStore`` against langchain-postgres' ``PGVectorStore`` (v2,
``PGEngine``) and against pgvs' own store, in one run.

``python -m bench langchain [--rows 20000] [--lp-rows 2000] [--dim 768] [--queries 300]``

- **Ingest** (``add_embeddings`` of precomputed vectors as ``list[list[float]]``, LangChain's
  type, with ~300 characters of text and a 3-key metadata dict per row; ids generated; no
  vector index on any table): ``PGVSVectorStore.add_embeddings`` of ``--rows`` rows (its COPY
  path, one transaction) into a fresh pgvs table; ``pgvs_langchain_batched``, the same call
  with ``atomic=False`` (batches committed one by one, two connections); pgvs' own
  ``store.ingest`` of the same rows (numpy input, default options) for reference; and
  langchain-postgres' ``add_embeddings`` into a fresh ``PGEngine.init_vectorstore_table``
  table. langchain-postgres writes one INSERT and one commit per row, so it gets ``--lp-rows``
  rows (default 2,000: 20,000 take minutes); rows/s are compared (``ingest_ratio``,
  ``ingest_ratio_batched``). Each case runs ``--repeat`` times, in rotating order, each after a
  ``CHECKPOINT``: medians, and every run; the ratios also per repetition
  (``*_per_repeat``: both sides measured under the same load) with their median.
- **Search** (top 10 by cosine on the ``--rows`` table after an HNSW build, ``ef_search=40`` on
  every side, pgvector's default, which langchain-postgres uses): per-call latency of
  ``similarity_search_by_vector(q, k=10)`` through ``PGVSVectorStore`` (sync and async) against
  pgvs' own ``PGVectorStore.search`` / ``AsyncPGVectorStore.search`` of the same query list, and
  langchain-postgres' ``similarity_search_by_vector`` on the same table (mapped through its
  ``id_column`` / ``metadata_json_column`` options). Cases are interleaved query by query;
  p50/p90 in ms. ``search_ratio_sync`` / ``search_ratio_async``: PGVSVectorStore p50 / pgvs p50.

Needs ``pip install -e '.[dev,bench-langchain]'`` (langchain-postgres, kept out of ``dev``). Uses
``DATABASE_URL`` when set, else a throwaway embedded server; langchain-postgres connects with
psycopg 3 (its documented driver).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import numpy as np
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_postgres import PGEngine
from langchain_postgres import PGVectorStore as LPVectorStore
from sqlalchemy.engine import make_url

from pgvs import AsyncPGVectorStore, PGVectorStore
from pgvs.integrations.langchain import PGVSVectorStore

from ._util import database, emit, progress, quantile

K = 10
WORDS = [
    "postgres",
    "vector",
    "index",
    "search",
    "query",
    "table",
    "row",
    "column",
    "embedding",
    "store",
]


def _texts(n: int) -> list[str]:
    return [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(40)) for i in range(n)]


def _metadatas(n: int) -> list[dict[str, Any]]:
    return [{"source": f"doc-{i // 8}", "chunk": i % 8, "year": 2000 + i % 25} for i in range(n)]


def _config(dsn: str, table: str, dim: int, index_type: str = "none") -> dict[str, Any]:
    # The ingests write to tables without a vector index, as langchain-postgres' does.
    return {
        "connection_string": dsn,
        "table_name": table,
        "dimensions": dim,
        "index_type": index_type,
        "ef_search": 40,
        "id_type": "text",  # what PGVSVectorStore gives a table by default
    }


def _sql(dsn: str, statement: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(statement)
        except asyncpg.InsufficientPrivilegeError:  # CHECKPOINT on a server of your own
            pass
        finally:
            await conn.close()

    asyncio.run(run())


def _lp_url(dsn: str) -> str:
    return make_url(dsn).set(drivername="postgresql+psycopg").render_as_string(False)


def _stats(samples: list[float]) -> dict[str, float]:
    return {"p50": quantile(samples, 0.5) * 1e3, "p90": quantile(samples, 0.9) * 1e3}


def measure(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(args.rows, args.dim)).astype(np.float32)
    vectors = matrix.tolist()
    texts, metadatas = _texts(args.rows), _metadatas(args.rows)
    fake = DeterministicFakeEmbedding(size=args.dim)  # never called: embeddings are given
    suffix = uuid.uuid4().hex[:8]
    result: dict[str, Any] = {"rows": args.rows, "lp_rows": args.lp_rows, "dim": args.dim}

    # -- ingest --------------------------------------------------------------------------------
    n = args.lp_rows
    engine = PGEngine.from_connection_string(_lp_url(dsn))
    table = ""

    def pgvs_langchain(name: str, atomic: bool = True) -> float:
        nonlocal table
        store = PGVSVectorStore(fake, _config(dsn, name, args.dim))
        store.sync_store()  # the table and the pool first: the timing is the write alone
        _sql(dsn, "CHECKPOINT")
        start = time.perf_counter()
        ids = store.add_embeddings(texts, vectors, metadatas, atomic=atomic)
        seconds = time.perf_counter() - start
        assert len(ids) == args.rows == store.sync_store().count()
        store.close()
        if atomic:
            if table:
                _sql(dsn, f"DROP TABLE {table}")
            table = name  # the last one is searched below
        else:
            _sql(dsn, f"DROP TABLE {name}")
        return float(args.rows / seconds)

    def pgvs_ingest(name: str) -> float:
        with PGVectorStore(_config(dsn, name, args.dim)) as store:
            _sql(dsn, "CHECKPOINT")
            start = time.perf_counter()
            store.ingest(matrix, metadata=metadatas, contents=texts)
            seconds = time.perf_counter() - start
        _sql(dsn, f"DROP TABLE {name}")
        return float(args.rows / seconds)

    def langchain_postgres(name: str) -> float:
        engine.init_vectorstore_table(name, args.dim)
        theirs = LPVectorStore.create_sync(engine, fake, name)
        _sql(dsn, "CHECKPOINT")
        start = time.perf_counter()
        theirs.add_embeddings(texts[:n], vectors[:n], metadatas[:n])
        seconds = time.perf_counter() - start
        _sql(dsn, f"DROP TABLE {name}")
        return float(n / seconds)

    cases: dict[str, Callable[[str], float]] = {
        "pgvs_langchain": pgvs_langchain,
        "pgvs_langchain_batched": lambda name: pgvs_langchain(name, atomic=False),
        "pgvs_ingest": pgvs_ingest,
        "langchain_postgres": langchain_postgres,
    }
    rates: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for rep in range(args.repeat):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            progress(f"ingest {rep + 1}/{args.repeat}: {name}")
            rates[name].append(cases[name](f"bench_lc_{name}_{suffix}_{rep}"))
    for name, values in rates.items():
        result[f"{name}_rows_per_s"] = round(statistics.median(values))
        result[f"{name}_rows_per_s_runs"] = [round(v) for v in values]
    for name in ("pgvs_langchain", "pgvs_langchain_batched"):
        key = f"ingest_ratio{name.removeprefix('pgvs_langchain')}"
        result[key] = round(
            result[f"{name}_rows_per_s"] / result["langchain_postgres_rows_per_s"], 1
        )
        # The same ratio within each repetition (cases a few seconds apart, so under the same
        # load on a shared machine), and its median: the steadier figure when the load drifts.
        paired = [
            ours / theirs
            for ours, theirs in zip(rates[name], rates["langchain_postgres"], strict=True)
        ]
        result[f"{key}_per_repeat"] = [round(r, 1) for r in paired]
        result[f"{key}_per_repeat_median"] = round(statistics.median(paired), 1)

    # -- search --------------------------------------------------------------------------------
    progress("building the HNSW index")
    ours = PGVSVectorStore(fake, _config(dsn, table, args.dim, "hnsw"))
    ours.sync_store().create_index("hnsw")
    # Statistics, as autovacuum would gather them soon after a load: without them the planner
    # guesses the tenant column's selectivity (0.5 %) and sorts instead of using the index.
    ours.sync_store().run(lambda s: s.pool.execute(f"ANALYZE {table}"))
    picks = rng.choice(args.rows, size=args.queries, replace=False)
    queries = (matrix[picks] + rng.normal(scale=0.01, size=(args.queries, args.dim))).tolist()
    on_table = LPVectorStore.create_sync(
        engine,
        fake,
        table,
        id_column="id",
        content_column="content",
        embedding_column="embedding",
        metadata_json_column="metadata",
        metadata_columns=[],
    )
    with PGVectorStore(_config(dsn, table, args.dim, "hnsw")) as plain:
        sync_cases: dict[str, Callable[[list[float]], object]] = {
            "pgvs_sync": lambda q: plain.search(q, k=K),
            "pgvs_langchain_sync": lambda q: ours.similarity_search_by_vector(q, k=K),
            "langchain_postgres_sync": lambda q: on_table.similarity_search_by_vector(q, k=K),
        }
        expected = [str(hit.id) for hit in plain.search(queries[0], k=K)]
        assert [d.id for d in ours.similarity_search_by_vector(queries[0], k=K)] == expected
        result["langchain_postgres_same_top10"] = [
            d.id for d in on_table.similarity_search_by_vector(queries[0], k=K)
        ] == expected
        result["pgvs_uses_hnsw"] = plain.explain_search(queries[0], k=K).uses_vector_index
        progress(f"sync search: {args.queries} queries per case, interleaved")
        latencies = _interleave(sync_cases, queries)

    async def async_run() -> dict[str, list[float]]:
        async with AsyncPGVectorStore(_config(dsn, table, args.dim, "hnsw")) as core:
            await ours.async_store()
            cases: dict[str, Callable[[list[float]], Awaitable[object]]] = {
                "pgvs_async": lambda q: core.search(q, k=K),
                "pgvs_langchain_async": lambda q: ours.asimilarity_search_by_vector(q, k=K),
                "langchain_postgres_async": lambda q: on_table.asimilarity_search_by_vector(q, k=K),
            }
            progress(f"async search: {args.queries} queries per case, interleaved")
            return await _ainterleave(cases, queries)

    latencies.update(asyncio.run(async_run()))
    for name, samples in latencies.items():
        result[f"{name}_ms"] = {key: round(v, 3) for key, v in _stats(samples).items()}
    for mode in ("sync", "async"):
        result[f"search_ratio_{mode}"] = round(
            result[f"pgvs_langchain_{mode}_ms"]["p50"] / result[f"pgvs_{mode}_ms"]["p50"], 3
        )
        result[f"search_ratio_langchain_postgres_{mode}"] = round(
            result[f"langchain_postgres_{mode}_ms"]["p50"] / result[f"pgvs_{mode}_ms"]["p50"], 3
        )
    ours.close()
    _sql(dsn, f"DROP TABLE {table}")
    asyncio.run(engine.close())
    result["python"] = platform.python_version()
    return result


def _interleave(
    cases: dict[str, Callable[[list[float]], object]], queries: list[list[float]]
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for q in queries[:20]:  # warm-up: prepared statements, caches
        for name in names:
            cases[name](q)
    for i, q in enumerate(queries):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            start = time.perf_counter()
            cases[name](q)
            samples[name].append(time.perf_counter() - start)
    return samples


async def _ainterleave(
    cases: dict[str, Callable[[list[float]], Awaitable[object]]], queries: list[list[float]]
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for q in queries[:20]:
        for name in names:
            await cases[name](q)
    for i, q in enumerate(queries):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            start = time.perf_counter()
            await cases[name](q)
            samples[name].append(time.perf_counter() - start)
    return samples


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench langchain", description=__doc__)
    parser.add_argument("--rows", type=int, default=20000, help="rows (20000)")
    parser.add_argument(
        "--lp-rows", type=int, default=2000, help="rows for langchain-postgres' ingest (2000)"
    )
    parser.add_argument("--dim", type=int, default=768, help="vector dimensions (768)")
    parser.add_argument("--queries", type=int, default=300, help="queries per case (300)")
    parser.add_argument("--repeat", type=int, default=5, help="ingest repetitions (5)")
    args = parser.parse_args(argv)
    with database() as dsn:
        result = measure(dsn, args)
    emit(result)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
