"""Recall benchmark: pgvs's HNSW index on a real data set, against the data set's exact ground truth.

``python -m bench recall --dataset glove50-5k-angular [--reps 5] [--rerank-factor 40]``

The data sets live in ``shared/data`` beside the repository (``--data-dir`` to point elsewhere;
see each one's README). The base rows are loaded with ``add_vectors`` (ids = row numbers, metadata
``{"bucket": id % 100}``), then:

- **build**: ``store.create_index("hnsw")`` against the same plain ``CREATE INDEX ... USING hnsw
  (embedding <opclass>)`` run by hand on a raw connection, ``--reps`` times each, interleaved (the
  order alternating), the index dropped before every build; medians, and their ratio
  (``build_ratio``, target <= 1.05).
- **search**: the 100 queries, one at a time, ``store.search(q, k=10)`` with the store's defaults:
  ``recall_at_10`` and ``p50_ms`` (median latency of one call). ``curve``: the same for stores
  configured with ``ef_search`` 10, 20, 40, 80 and 160 (a store-level setting, so every point runs
  the one-round-trip path).
- **filtered**: query ``i`` filters on bucket ``i % 100`` (1 % of the rows); exact ground truth by
  numpy brute force over that bucket. ``filtered_recall_at_10``, ``filtered_rows_mean`` (rows
  returned, 10 when nothing is lost), ``filtered_p50_ms``.
- **binary**: a binary-quantized HNSW index (``binary_quantize(embedding)::bit(n)``), searched for
  ``k * rerank_factor`` candidates re-ranked by exact distance: ``binary.recall_at_10``.

At 5,000 rows PostgreSQL's planner rightly prefers an exact scan to the index (pgvector's cost
estimate grows with ef_search), which would make every recall 1.0 and say nothing about the
index. So the searches run on a store whose one pooled connection has ``enable_seqscan``,
``enable_bitmapscan`` and ``enable_sort`` off: the plan a large table gets by itself.
``planner_uses_index`` and ``filtered_planner`` report what the planner does unforced.

Uses ``DATABASE_URL`` when set (the table is dropped afterwards), else a throwaway embedded server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt

from pgvs import AsyncPGVectorStore
from pgvs.indexes import operator_class

from ._util import emit, progress

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {"glove50-5k-angular": "cosine", "sift5k-l2": "euclidean"}
K = 10
BUCKETS = 100
CURVE = (10, 20, 40, 80, 160)
FORCE_INDEX = "SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off"


def read_vecs(path: Path, dtype: type[np.generic]) -> npt.NDArray[Any]:
    raw = np.fromfile(path, dtype=np.int32)
    values: npt.NDArray[Any] = raw.reshape(-1, int(raw[0]) + 1)[:, 1:].copy().view(dtype)
    return values


class Data:
    def __init__(self, directory: Path, metric: str) -> None:
        self.metric = metric
        self.base = read_vecs(directory / "base.fvecs", np.float32)
        self.queries = read_vecs(directory / "query.fvecs", np.float32)
        self.truth = read_vecs(directory / "groundtruth.ivecs", np.int32)[:, :K]

    def filtered_truth(self, query: int, bucket: int) -> set[int]:
        members = np.arange(bucket, len(self.base), BUCKETS)
        vectors = self.base[members].astype(np.float64)
        q = self.queries[query].astype(np.float64)
        if self.metric == "cosine":
            distances = 1 - vectors @ q / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(q))
        else:
            distances = np.linalg.norm(vectors - q, axis=1)
        return set(members[np.argsort(distances, kind="stable")[:K]].tolist())


def _recall(ids: list[Any], truth: set[int]) -> float:
    return len(set(ids) & truth) / K


async def _timed(call: Callable[[], Awaitable[Any]]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = await call()
    return result, (time.perf_counter() - started) * 1000


async def _run_queries(
    store: AsyncPGVectorStore, data: Data, *, filtered: bool
) -> dict[str, float]:
    recalls, sizes, latencies = [], [], []
    for i, query in enumerate(data.queries):
        bucket = i % BUCKETS
        filter_ = {"bucket": bucket} if filtered else None

        async def call(q: Any = query, f: Any = filter_) -> Any:
            return await store.search(q, k=K, filter=f, include_metadata=False)

        hits, ms = await _timed(call)
        truth = data.filtered_truth(i, bucket) if filtered else set(data.truth[i].tolist())
        recalls.append(_recall([h.id for h in hits], truth))
        sizes.append(len(hits))
        latencies.append(ms)
    return {
        "recall_at_10": round(float(np.mean(recalls)), 4),
        "rows_mean": round(float(np.mean(sizes)), 3),
        "p50_ms": round(statistics.median(latencies), 3),
    }


async def _forced_store(options: dict[str, Any], **extra: Any) -> AsyncPGVectorStore:
    store = AsyncPGVectorStore(options, pool_min_size=1, pool_max_size=1, **extra)
    await store.initialize()
    await store.pool.execute(FORCE_INDEX)
    return store


async def _warm(store: AsyncPGVectorStore, data: Data) -> None:
    for query in data.queries[:20]:
        await store.search(query, k=K, include_metadata=False)


async def run(args: argparse.Namespace, dsn: str) -> dict[str, Any]:
    name: str = args.dataset
    metric = DATASETS[name]
    data = Data(Path(args.data_dir) / name, metric)
    table = "bench_recall_" + name.replace("-", "_")
    options: dict[str, Any] = {
        "connection_string": dsn,
        "table_name": table,
        "dimensions": int(data.base.shape[1]),
        "metric": metric,
        "id_type": "bigint",
        "auto_create_index": False,
    }
    raw = await asyncpg.connect(dsn)
    try:
        await raw.execute(f'DROP TABLE IF EXISTS "{table}"')
        result: dict[str, Any] = {"benchmark": "recall", "dataset": name, "metric": metric}
        result["rows"] = int(data.base.shape[0])
        result["dimensions"] = int(data.base.shape[1])
        result["queries"] = int(data.queries.shape[0])
        async with AsyncPGVectorStore(options) as store:
            progress(f"loading {len(data.base)} rows into {table}")
            ids = list(range(len(data.base)))
            await store.add_vectors(
                data.base, ids=ids, metadata=[{"bucket": i % BUCKETS} for i in ids]
            )
            await raw.execute(f'VACUUM ANALYZE "{table}"')
            result["build"] = await _builds(store, raw, table, metric, args.reps)
            await store.create_index("hnsw")
            await raw.execute(f'ANALYZE "{table}"')
            plan = await store.explain_search(data.queries[0], k=K)
            result["planner_uses_index"] = plan.uses_vector_index
            result["ef_search_default"] = int(await store.pool.fetchval("SHOW hnsw.ef_search"))
            planner = await _run_queries(store, data, filtered=True)
            filtered_plan = await store.explain_search(data.queries[0], k=K, filter={"bucket": 0})
            planner["uses_index"] = filtered_plan.uses_vector_index
            result["filtered_planner"] = planner

        progress("searching (index forced)")
        forced = await _forced_store(options)
        try:
            assert (await forced.explain_search(data.queries[0], k=K)).uses_vector_index
            await _warm(forced, data)
            plain = await _run_queries(forced, data, filtered=False)
            result["recall_at_10"] = plain["recall_at_10"]
            result["p50_ms"] = plain["p50_ms"]
            filtered = await _run_queries(forced, data, filtered=True)
            result["filtered_recall_at_10"] = filtered["recall_at_10"]
            result["filtered_rows_mean"] = filtered["rows_mean"]
            result["filtered_p50_ms"] = filtered["p50_ms"]
        finally:
            await forced.close()

        curve = []
        for ef in CURVE:
            point_store = await _forced_store(options, ef_search=ef)
            try:
                await _warm(point_store, data)
                point = await _run_queries(point_store, data, filtered=False)
            finally:
                await point_store.close()
            curve.append(
                {"ef_search": ef, "recall_at_10": point["recall_at_10"], "p50_ms": point["p50_ms"]}
            )
            progress(f"ef_search={ef}: {curve[-1]}")
        result["curve"] = curve

        progress(f"binary quantization, rerank_factor={args.rerank_factor}")
        binary = await _forced_store(
            options, quantization="binary", rerank_factor=args.rerank_factor
        )
        try:
            started = time.perf_counter()
            await binary.create_index("hnsw")
            binary_build = time.perf_counter() - started
            await binary.pool.execute(FORCE_INDEX)  # in case the build renewed the connection
            assert (await binary.explain_search(data.queries[0], k=K)).uses_vector_index
            await _warm(binary, data)
            quantized = await _run_queries(binary, data, filtered=False)
            size = (await binary.index_status()).size_bytes
        finally:
            await binary.close()
        plain_size = await raw.fetchval(
            "SELECT pg_relation_size(c.oid) FROM pg_class c WHERE c.relname = $1",
            f"{table}_embedding_hnsw",
        )
        result["binary"] = {
            "rerank_factor": args.rerank_factor,
            "recall_at_10": quantized["recall_at_10"],
            "p50_ms": quantized["p50_ms"],
            "index_bytes": int(size),
            "full_index_bytes": int(plain_size or 0),
            "build_s": round(binary_build, 3),
        }
        return result
    finally:
        await raw.execute(f'DROP TABLE IF EXISTS "{table}"')
        await raw.close()


async def _builds(
    store: AsyncPGVectorStore, raw: asyncpg.Connection, table: str, metric: str, reps: int
) -> dict[str, Any]:
    """``store.create_index("hnsw")`` against the same plain CREATE INDEX by hand, interleaved."""
    name = f"{table}_embedding_hnsw"
    by_hand = (
        f'CREATE INDEX "{name}" ON "public"."{table}" '
        f'USING hnsw ("embedding" {operator_class("vector", metric, "hnsw")})'
    )

    async def drop() -> None:
        await raw.execute(f'DROP INDEX IF EXISTS "{name}"')
        await raw.execute("CHECKPOINT")  # the same starting state for both sides

    async def pgvs_side() -> float:
        await drop()
        started = time.perf_counter()
        await store.create_index("hnsw")
        return time.perf_counter() - started

    async def hand_side() -> float:
        await drop()
        started = time.perf_counter()
        await raw.execute(by_hand)
        return time.perf_counter() - started

    samples: dict[str, list[float]] = {"pgvs": [], "by_hand": []}
    await hand_side()  # warm-up: the table in shared buffers
    for rep in range(reps):
        sides = [("pgvs", pgvs_side), ("by_hand", hand_side)]
        for label, side in sides if rep % 2 == 0 else reversed(sides):
            samples[label].append(await side())
        progress(
            f"build rep {rep + 1}/{reps}: pgvs {samples['pgvs'][-1]:.3f} s, "
            f"by hand {samples['by_hand'][-1]:.3f} s"
        )
    await drop()
    pgvs_s = statistics.median(samples["pgvs"])
    hand_s = statistics.median(samples["by_hand"])
    return {
        "statement": by_hand,
        "reps": reps,
        "pgvs_s": round(pgvs_s, 4),
        "by_hand_s": round(hand_s, 4),
        "build_ratio": round(pgvs_s / hand_s, 4),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench recall", description=__doc__)
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--reps", type=int, default=5, help="index builds per side")
    parser.add_argument("--rerank-factor", type=int, default=40)
    args = parser.parse_args(argv)
    if not (Path(args.data_dir) / args.dataset).is_dir():
        print(f"data set not found: {Path(args.data_dir) / args.dataset}", file=sys.stderr)
        return 2
    dsn = os.environ.get("DATABASE_URL")
    server = None
    if not dsn:
        from pgvs.server import EmbeddedServer

        server = EmbeddedServer()
        dsn = server.start()
        progress(f"started an embedded server: {dsn}")
    try:
        result = asyncio.run(run(args, dsn))
    finally:
        if server is not None:
            server.stop()
    result["python"] = platform.python_version()
    emit(result)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
