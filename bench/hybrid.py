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

``normalize``: a second store with ``normalize=True`` (cosine run as the inner product) on the
same rows: vector search p50 against plain cosine (interleaved) and how often the top 10 agree.

``two_stage``: stores with a reduced index and its default re-rank (``prefix`` at half the
dimensions, ``pca`` at a quarter), searched through that index (the planner forced onto it, as on
a large table): recall@10 against the set's exact ground truth; build time (PCA: with its fit)
and size against the full index.

The loads are followed by ``VACUUM ANALYZE`` (the steady state autovacuum reaches: statistics,
and the GIN pending list merged into the index).

``storage``: why the tsvector is a stored generated column rather than an expression index:
the same text queries run against an expression GIN index on the same table (``ts_rank_cd`` then
re-derives the tsvector of every matching row from the text): p50 per query kind, the sizes of
both indexes (freshly built) and of the column.

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
        await store.wait_for_index()  # the automatic build after the ingest, if it started
        await store.drop_index()
        started = time.perf_counter()
        full_index = await store.create_index()
        full_build_s = time.perf_counter() - started
        # The steady state autovacuum reaches: statistics, and the GIN pending list (where
        # fresh inserts wait) merged into the index.
        await store.pool.execute(f'VACUUM ANALYZE "{TABLE}"')
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
        normalized = await _normalized(dsn, store, embeddings, query_embeddings, rounds)
        two_stage = {
            reduction: await _two_stage(
                dsn,
                directory,
                embeddings,
                query_embeddings,
                full_index.size_bytes,
                full_build_s,
                reduction,
            )
            for reduction in ("prefix", "pca")
        }

    rrf, vector, text = quality["hybrid_rrf"], quality["vector"], quality["text"]
    targets = {
        "natural_hybrid_ge_best_leg_minus_0.01": rrf["natural"]["hit_at_10"]
        >= max(vector["natural"]["hit_at_10"], text["natural"]["hit_at_10"]) - 0.01,
        "keyword_hybrid_ge_0.90": rrf["keyword"]["hit_at_10"] >= 0.90,
        "keyword_hybrid_ge_vector_plus_0.15": rrf["keyword"]["hit_at_10"]
        >= vector["keyword"]["hit_at_10"] + 0.15,
        "keyword_text_ge_0.95": text["keyword"]["hit_at_10"] >= 0.95,
        "hybrid_p50_le_2x_vector": p50["hybrid_rrf"] <= 2 * p50["vector"],
        "prefix_half_recall_ge_0.95": two_stage["prefix"]["recall_at_10"] >= 0.95,
        "pca_quarter_recall_ge_0.95": two_stage["pca"]["recall_at_10"] >= 0.95,
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
        "normalize": normalized,
        "two_stage": two_stage,
        "targets": targets,
        "targets_met": all(targets.values()),
        "load_s": round(load_s, 2),
    }


async def _storage_comparison(
    store: AsyncPGVectorStore, queries: list[dict[str, Any]]
) -> dict[str, Any]:
    """The generated column against an expression index, on the same table: the same text
    queries ranked from the stored tsvector or from the text (the expression), both GIN
    indexes freshly built (REINDEX), plus what the column itself takes."""
    config = store.config
    pool = store.pool
    expression = "to_tsvector('english'::regconfig, translate(coalesce(content, ''), '._', '  '))"
    await pool.execute(f'CREATE INDEX "{TABLE}_expr_gin" ON "{TABLE}" USING gin (({expression}))')
    await pool.execute(f'REINDEX INDEX "{TABLE}_content_tsv_gin"')
    await pool.execute(f'ANALYZE "{TABLE}"')
    tsquery = query_sql(config, "$1")
    statements = {
        "column": (
            f'SELECT id, ts_rank_cd(content_tsv, q) AS s FROM "{TABLE}", {tsquery} AS q '
            "WHERE content_tsv @@ q ORDER BY s DESC LIMIT 10"
        ),
        "expr": (
            f'SELECT id, ts_rank_cd({expression}, q) AS s FROM "{TABLE}", {tsquery} AS q '
            f"WHERE {expression} @@ q ORDER BY s DESC LIMIT 10"
        ),
    }
    timings: dict[str, list[float]] = {
        f"{kind}_{name}": [] for kind in ("keyword", "natural") for name in statements
    }
    async with pool.acquire() as connection:
        for query in queries:
            for name, sql in statements.items():
                begin = time.perf_counter()
                await connection.fetch(sql, query["text"])
                timings[f"{query['kind']}_{name}"].append(time.perf_counter() - begin)
        sizes = await connection.fetchrow(
            "SELECT pg_relation_size($1::regclass) AS column_gin, "
            "pg_relation_size($2::regclass) AS expr_gin, "
            f'(SELECT sum(pg_column_size(content_tsv)) FROM "{TABLE}") AS column_bytes',
            f'"{TABLE}_content_tsv_gin"',
            f'"{TABLE}_expr_gin"',
        )
        assert sizes is not None
    await pool.execute(f'DROP INDEX "{TABLE}_expr_gin"')
    return {
        "text_search_p50_ms": {
            key: round(statistics.median(values) * 1e3, 3) for key, values in timings.items()
        },
        "gin_bytes": {"column": sizes["column_gin"], "expression_index": sizes["expr_gin"]},
        "tsvector_column_bytes": int(sizes["column_bytes"]),
    }


async def _normalized(
    dsn: str, plain: AsyncPGVectorStore, embeddings: Any, queries: Any, rounds: int
) -> dict[str, Any]:
    """``normalize=True`` (cosine run as inner product) against plain cosine: same rows, same
    queries, vector search p50 interleaved, and how often the top 10 agree."""
    async with AsyncPGVectorStore(
        connection_string=dsn,
        dimensions=embeddings.shape[1],
        table_name=f"{TABLE}_norm",
        id_type="bigint",
        normalize=True,
    ) as store:
        await store.pool.execute(f'TRUNCATE "{TABLE}_norm"')
        await store.ingest(embeddings, ids=list(range(len(embeddings))))
        await store.create_index()
        await store.pool.execute(f'VACUUM ANALYZE "{TABLE}_norm"')
        times: dict[str, list[float]] = {"cosine": [], "normalized_ip": []}
        same = 0
        sides = (("cosine", plain), ("normalized_ip", store))
        for round_number in range(rounds):
            for position, query in enumerate(queries):
                order = sides if (round_number + position) % 2 == 0 else sides[::-1]
                found = {}
                for name, side in order:
                    begin = time.perf_counter()
                    hits = await side.search(query, k=K)
                    times[name].append(time.perf_counter() - begin)
                    found[name] = [hit.id for hit in hits]
                same += found["cosine"] == found["normalized_ip"]
        await store.pool.execute(f'DROP TABLE "{TABLE}_norm"')
    p50 = {name: statistics.median(values) * 1e3 for name, values in times.items()}
    return {
        "p50_ms": {name: round(value, 3) for name, value in p50.items()},
        "ratio_p50": round(p50["normalized_ip"] / p50["cosine"], 3),
        "same_top10_share": round(same / (rounds * len(queries)), 3),
    }


async def _two_stage(
    dsn: str,
    directory: Path,
    embeddings: Any,
    queries: Any,
    full_size: int,
    full_build_s: float,
    reduction: str,
) -> dict[str, Any]:
    """A reduced index (prefix: half the dimensions; pca: a quarter) with the default re-rank,
    through the index (the planner forced onto it, as on a large table), against the set's
    exact ground truth. The PCA build includes fitting the projection."""
    truth = np.load(directory / "groundtruth.npy")[:, :K]
    dims = embeddings.shape[1] // (2 if reduction == "prefix" else 4)
    async with AsyncPGVectorStore(
        connection_string=dsn,
        dimensions=embeddings.shape[1],
        table_name=f"{TABLE}_{reduction}",
        id_type="bigint",
        index_dimensions=dims,
        reduction=reduction,
        auto_create_index=False,
        pool_min_size=1,
        pool_max_size=1,
    ) as store:
        await store.pool.execute(f'TRUNCATE "{TABLE}_{reduction}"')
        await store.ingest(embeddings, ids=list(range(len(embeddings))))
        started = time.perf_counter()
        index = await store.create_index()
        build_s = time.perf_counter() - started
        await store.pool.execute(f'VACUUM ANALYZE "{TABLE}_{reduction}"')
        await store.pool.execute(
            "SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off"
        )
        uses_index = (await store.explain_search(queries[0], k=K)).uses_vector_index
        found = 0
        for query, expected in zip(queries, truth, strict=True):
            hits = await store.search(query, k=K)
            found += len({hit.id for hit in hits} & set(expected.tolist()))
        await store.pool.execute(f'DROP TABLE "{TABLE}_{reduction}"')
    return {
        "reduction": reduction,
        "index_dimensions": dims,
        "candidates_per_result": store.config.candidates_per_result,
        "recall_at_10": round(found / truth.size, 4),
        "uses_index": uses_index,
        "index_bytes": index.size_bytes,
        "full_index_bytes": full_size,
        "size_ratio": round(index.size_bytes / full_size, 3),
        "build_s": round(build_s, 2),
        "full_build_s": round(full_build_s, 2),
        "build_ratio": round(build_s / full_build_s, 3),
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
