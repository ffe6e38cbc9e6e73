"""Text, hybrid and vector search quality and latency on real text (torchdocs-text).

``python -m bench hybrid [--data-dir DIR] [--rounds 3]``

The shared set's 8,259 PyTorch docstring chunks (MiniLM embeddings, 384-d) go into one store with
``text_search="english"`` (identifier-aware, the default) and its HNSW index. Its 400 queries (200
natural-language questions, 200 keyword queries, each tied to the chunk it came from; see the
set's README) run through:

- ``vector``: ``search(query_embedding, k=10)``;
- ``text``: ``text_search(query_text, k=10)``;
- ``hybrid_rrf``: ``hybrid_search(query_embedding, query_text, k=10)`` (reciprocal rank fusion);
- ``hybrid_weighted``: the same with ``fusion="weighted"``.

Quality: ``hit_at_10`` (the source chunk is in the top 10) and ``mrr_at_10`` (its reciprocal rank,
0 when absent), per query kind. Latency: every query runs once per method per round, the methods
interleaved in a rotating order; ``p50_ms`` per method is the median over all calls, and
``ratio_p50_vs_vector`` divides by the vector search's.

``storage``: why the tsvector is a stored generated column rather than an expression index:
the same text query run against an expression GIN index on the same table (``ts_rank_cd`` then
re-derives the tsvector of every matching row from the text) — p50 and the sizes of both.

Uses ``DATABASE_URL`` when set (the table is dropped afterwards), else a throwaway embedded server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

from pgvs import AsyncPGVectorStore
from pgvs.search.text import query_sql

from ._util import database, emit, progress

ROOT = Path(__file__).resolve().parents[1]
K = 10
TABLE = "bench_hybrid_torchdocs"


def load(directory: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any, Any]:
    corpus = [json.loads(line) for line in (directory / "corpus.jsonl").open(encoding="utf-8")]
    queries = [json.loads(line) for line in (directory / "queries.jsonl").open(encoding="utf-8")]
    return (
        corpus,
        queries,
        np.load(directory / "embeddings.npy"),
        np.load(directory / "query_embeddings.npy"),
    )


async def run(dsn: str, directory: Path, rounds: int) -> dict[str, Any]:
    corpus, queries, embeddings, query_embeddings = load(directory)
    async with AsyncPGVectorStore(
        connection_string=dsn,
        dimensions=embeddings.shape[1],
        table_name=TABLE,
        id_type="bigint",
        text_search="english",
    ) as store:
        await store.pool.execute(f'TRUNCATE "{TABLE}"')
        started = time.perf_counter()
        await store.ingest(
            embeddings,
            ids=[chunk["id"] for chunk in corpus],
            contents=[chunk["text"] for chunk in corpus],
            metadata=[chunk["metadata"] for chunk in corpus],
        )
        load_s = time.perf_counter() - started
        await store.create_index()
        await store.pool.execute(f'ANALYZE "{TABLE}"')
        progress(f"loaded {len(corpus)} chunks in {load_s:.1f} s")

        methods: dict[str, Callable[[dict[str, Any]], Awaitable[list[Any]]]] = {
            "vector": lambda q: store.search(query_embeddings[q["id"]], k=K),
            "text": lambda q: store.text_search(q["text"], k=K),
            "hybrid_rrf": lambda q: store.hybrid_search(query_embeddings[q["id"]], q["text"], k=K),
            "hybrid_weighted": lambda q: store.hybrid_search(
                query_embeddings[q["id"]], q["text"], k=K, fusion="weighted"
            ),
        }
        names = list(methods)
        latencies: dict[str, list[float]] = {name: [] for name in names}
        ranks: dict[str, dict[int, int | None]] = {name: {} for name in names}
        for round_number in range(rounds):
            for position, query in enumerate(queries):
                shift = (round_number + position) % len(names)
                for name in names[shift:] + names[:shift]:
                    begin = time.perf_counter()
                    hits = await methods[name](query)
                    latencies[name].append(time.perf_counter() - begin)
                    ids = [hit.id for hit in hits]
                    source = query["source_chunk_id"]
                    ranks[name][query["id"]] = ids.index(source) + 1 if source in ids else None
            progress(f"round {round_number + 1}/{rounds} done")

        quality: dict[str, dict[str, dict[str, float]]] = {}
        for name in names:
            quality[name] = {}
            for kind in ("natural", "keyword"):
                found = [ranks[name][q["id"]] for q in queries if q["kind"] == kind]
                quality[name][kind] = {
                    "hit_at_10": round(sum(r is not None for r in found) / len(found), 3),
                    "mrr_at_10": round(sum(1 / r for r in found if r) / len(found), 3),
                }
        p50 = {name: statistics.median(latencies[name]) * 1e3 for name in names}
        storage = await _storage_comparison(store, queries)

    rrf, vector, text = quality["hybrid_rrf"], quality["vector"], quality["text"]
    targets = {
        "natural_hybrid_ge_best_leg_minus_0.01": rrf["natural"]["hit_at_10"]
        >= max(vector["natural"]["hit_at_10"], text["natural"]["hit_at_10"]) - 0.01,
        "keyword_hybrid_ge_0.90": rrf["keyword"]["hit_at_10"] >= 0.90,
        "keyword_hybrid_ge_vector_plus_0.15": rrf["keyword"]["hit_at_10"]
        >= vector["keyword"]["hit_at_10"] + 0.15,
        "keyword_text_ge_0.95": text["keyword"]["hit_at_10"] >= 0.95,
        "hybrid_p50_le_2x_vector": p50["hybrid_rrf"] <= 2 * p50["vector"],
    }
    return {
        "bench": "hybrid",
        "rows": len(corpus),
        "queries": len(queries),
        "rounds": rounds,
        "quality": quality,
        "p50_ms": {name: round(value, 3) for name, value in p50.items()},
        "ratio_p50_vs_vector": {name: round(p50[name] / p50["vector"], 3) for name in names},
        "storage": storage,
        "targets": targets,
        "targets_met": all(targets.values()),
        "load_s": round(load_s, 2),
    }


async def _storage_comparison(
    store: AsyncPGVectorStore, queries: list[dict[str, Any]]
) -> dict[str, Any]:
    """The generated column against an expression index, on a copy of the table."""
    config = store.config
    pool = store.pool
    copy = f"{TABLE}_expr"
    expression = "to_tsvector('english'::regconfig, translate(coalesce(content, ''), '._', '  '))"
    await pool.execute(f'DROP TABLE IF EXISTS "{copy}"')
    await pool.execute(f'CREATE TABLE "{copy}" AS SELECT id, content FROM "{TABLE}"')
    await pool.execute(f'CREATE INDEX "{copy}_gin" ON "{copy}" USING gin (({expression}))')
    await pool.execute(f'ANALYZE "{copy}"')
    tsquery = query_sql(config, "$1")
    # The table names are this benchmark's constants; the query text is bound as $1.
    column_sql = (
        f'SELECT id, ts_rank_cd(content_tsv, q) AS s FROM "{TABLE}", {tsquery} AS q '
        "WHERE content_tsv @@ q ORDER BY s DESC LIMIT 10"
    )
    expression_sql = (
        f'SELECT id, ts_rank_cd({expression}, q) AS s FROM "{copy}", {tsquery} AS q '
        f"WHERE {expression} @@ q ORDER BY s DESC LIMIT 10"
    )
    timings: dict[str, list[float]] = {"column": [], "expression_index": []}
    keyword = [q["text"] for q in queries if q["kind"] == "keyword"]
    async with pool.acquire() as connection:
        for text in keyword:
            for name, sql in (("column", column_sql), ("expression_index", expression_sql)):
                begin = time.perf_counter()
                await connection.fetch(sql, text)
                timings[name].append(time.perf_counter() - begin)
        sizes = await connection.fetchrow(
            "SELECT pg_total_relation_size($1::regclass) AS with_column, "
            "pg_total_relation_size($2::regclass) AS without_column, "
            "pg_relation_size($3::regclass) AS column_gin, pg_relation_size($4::regclass) AS expr_gin",
            f'"{TABLE}"',
            f'"{copy}"',
            f'"{TABLE}_content_tsv_gin"',
            f'"{copy}_gin"',
        )
        assert sizes is not None
    await pool.execute(f'DROP TABLE "{copy}"')
    return {
        "keyword_p50_ms": {k: round(statistics.median(v) * 1e3, 3) for k, v in timings.items()},
        "gin_bytes": {"column": sizes["column_gin"], "expression_index": sizes["expr_gin"]},
        "note": "table sizes differ in more than the tsvector (the copy has only id and content)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench hybrid", description=__doc__)
    parser.add_argument(
        "--data-dir", type=Path, default=ROOT.parent / "shared" / "data" / "torchdocs-text"
    )
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with database() as dsn:
        result = asyncio.run(run(dsn, args.data_dir, args.rounds))
    emit(result)
    return 0
