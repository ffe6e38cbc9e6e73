"""Partial-index benchmark: a hot filter served by (a) the full HNSW index with an iterative scan,
(b) a partial HNSW index on that filter, (c) an exact scan.

``python -m bench partial [--rows 100000] [--queries 100] [--skip-torchdocs]``

Two data sets, each searched with a filter on one category, top-10, against exact ground truth
(numpy brute force over the category's rows):

- **torchdocs-text** (shared/data, 8,259 real 384-d MiniLM embeddings of PyTorch docstrings,
  cosine): the real category ``package = 'tokenizers'`` (227 rows, 2.7 %), the 400 real queries.
- **synthetic** ``--rows`` x 128 (default 100,000): 200 gaussian clusters (a vector's cluster is
  independent of its category, as a document's type is of its topic), categories of 1 % and 10 %
  of the rows, ``--queries`` queries drawn from the same clusters; cosine.

For each category: ``recall_at_10``, ``rows_mean`` and ``p50_ms`` (median latency of one
``store.search`` call) for (a) ``full_iterative`` (only the full index exists; pgvs's filtered
search: ``hnsw.iterative_scan = relaxed_order``), (b) ``partial`` (``create_index(where=filter)``;
the search routes to it, no iterative scan), (c) ``exact`` (``exact=True``: the filter's GIN index
and an exact sort). (a) and (b) run on a connection with sequential scans, bitmap scans and sorts
off, so the planner must use a vector index (what it does unforced is reported as
``planner_choice``: on a table this size it often prefers (c)). Build time and size: the full
index against each partial one (``build_s``, ``index_bytes``).

Uses ``DATABASE_URL`` when set (its tables are dropped afterwards), else a throwaway embedded
server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt

from pgvs import AsyncPGVectorStore

from ._util import database, emit, progress

ROOT = Path(__file__).resolve().parents[1]
K = 10
FORCE_INDEX = "SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off"
WARM = 5


def _unit(matrix: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    normed: npt.NDArray[np.float32] = (
        matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    ).astype(np.float32)
    return normed


class Case:
    """One filtered workload: base vectors, the category's rows, queries, exact truth."""

    def __init__(
        self,
        name: str,
        base: npt.NDArray[np.float32],
        metadata: list[dict[str, Any]],
        queries: npt.NDArray[np.float32],
        filters: dict[str, dict[str, Any]],
        members: dict[str, npt.NDArray[np.int64]],
    ) -> None:
        self.name = name
        self.base = base
        self.metadata = metadata
        self.queries = queries
        self.filters = filters
        self.truth: dict[str, list[set[int]]] = {}
        unit = _unit(base)
        for label, rows in members.items():
            scores = _unit(queries) @ unit[rows].T
            top = np.argsort(-scores, axis=1, kind="stable")[:, :K]
            self.truth[label] = [set(rows[order].tolist()) for order in top]


def torchdocs(data_dir: Path) -> Case:
    folder = data_dir / "torchdocs-text"
    base = np.load(folder / "embeddings.npy").astype(np.float32)
    with open(folder / "corpus.jsonl", encoding="utf-8") as lines:
        metadata = [json.loads(line)["metadata"] for line in lines]
    queries = np.load(folder / "query_embeddings.npy").astype(np.float32)
    rows = np.array([i for i, m in enumerate(metadata) if m["package"] == "tokenizers"])
    return Case(
        "torchdocs",
        base,
        metadata,
        queries,
        {"tokenizers_2.7pct": {"package": "tokenizers"}},
        {"tokenizers_2.7pct": rows},
    )


def synthetic(rows: int, queries: int, seed: int = 7) -> Case:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(200, 128)).astype(np.float32)
    base = centers[rng.integers(0, 200, rows)] + 0.6 * rng.normal(size=(rows, 128))
    draw = rng.random(rows)
    labels = np.where(draw < 0.01, "p1", np.where(draw < 0.11, "p10", "rest"))
    metadata = [{"cat": str(label)} for label in labels]
    asked = centers[rng.integers(0, 200, queries)] + 0.6 * rng.normal(size=(queries, 128))
    return Case(
        "synthetic",
        base.astype(np.float32),
        metadata,
        asked.astype(np.float32),
        {"cat_1pct": {"cat": "p1"}, "cat_10pct": {"cat": "p10"}},
        {
            "cat_1pct": np.flatnonzero(labels == "p1"),
            "cat_10pct": np.flatnonzero(labels == "p10"),
        },
    )


async def _search_all(
    store: AsyncPGVectorStore, case: Case, label: str, *, exact: bool = False
) -> dict[str, float]:
    filter_ = case.filters[label]
    for query in case.queries[:WARM]:
        await store.search(query, k=K, filter=filter_, include_metadata=False, exact=exact)
    recalls, sizes, latencies = [], [], []
    for query, truth in zip(case.queries, case.truth[label], strict=True):
        started = time.perf_counter()
        hits = await store.search(query, k=K, filter=filter_, include_metadata=False, exact=exact)
        latencies.append((time.perf_counter() - started) * 1000)
        recalls.append(len({hit.id for hit in hits} & truth) / K)
        sizes.append(len(hits))
    return {
        "recall_at_10": round(float(np.mean(recalls)), 4),
        "rows_mean": round(float(np.mean(sizes)), 3),
        "p50_ms": round(statistics.median(latencies), 3),
    }


async def _forced(options: dict[str, Any]) -> AsyncPGVectorStore:
    store = AsyncPGVectorStore(options, pool_min_size=1, pool_max_size=1)
    await store.initialize()
    await store.pool.execute(FORCE_INDEX)
    return store


async def run_case(case: Case, dsn: str) -> dict[str, Any]:
    table = f"bench_partial_{case.name}"
    options: dict[str, Any] = {
        "connection_string": dsn,
        "table_name": table,
        "dimensions": int(case.base.shape[1]),
        "metric": "cosine",
        "id_type": "bigint",
        "auto_create_index": False,
        "maintenance_work_mem": "512MB",
    }
    raw = await asyncpg.connect(dsn)
    result: dict[str, Any] = {
        "rows": int(case.base.shape[0]),
        "dimensions": int(case.base.shape[1]),
        "queries": int(case.queries.shape[0]),
    }
    try:
        await raw.execute(f'DROP TABLE IF EXISTS "{table}"')
        async with AsyncPGVectorStore(options) as store:
            progress(f"{case.name}: loading {len(case.base)} rows")
            await store.ingest(case.base, ids=list(range(len(case.base))), metadata=case.metadata)
            await raw.execute(f'VACUUM ANALYZE "{table}"')
            progress(f"{case.name}: building the full HNSW index")
            started = time.perf_counter()
            full = await store.create_index("hnsw")
            result["full_index"] = {
                "build_s": round(time.perf_counter() - started, 3),
                "index_bytes": full.size_bytes,
            }
        forced = await _forced(options)
        unforced = AsyncPGVectorStore(options, pool_min_size=1, pool_max_size=1)
        await unforced.initialize()
        try:
            for label, filter_ in case.filters.items():
                progress(f"{case.name} {label}: (a) full index + iterative scan, (c) exact")
                plan = await forced.explain_search(case.queries[0], k=K, filter=filter_)
                assert plan.index_name == full.name, plan.plan
                entry: dict[str, Any] = {"filter": filter_, "rows": len(case.truth[label][0])}
                entry["rows"] = sum(1 for m in case.metadata if _matches(m, filter_))
                entry["full_iterative"] = await _search_all(forced, case, label)
                entry["exact"] = await _search_all(unforced, case, label, exact=True)
                progress(f"{case.name} {label}: (b) partial index")
                started = time.perf_counter()
                made = await forced.create_index("hnsw", where=filter_)
                await forced.pool.execute(FORCE_INDEX)  # the build may renew the connection
                entry["partial_index"] = {
                    "build_s": round(time.perf_counter() - started, 3),
                    "index_bytes": made.size_bytes,
                }
                plan = await forced.explain_search(case.queries[0], k=K, filter=filter_)
                assert plan.index_name == made.name, plan.plan
                assert plan.settings == (), plan.settings
                entry["partial"] = await _search_all(forced, case, label)
                await unforced.list_indexes()  # sees the new index
                chosen = await unforced.explain_search(case.queries[0], k=K, filter=filter_)
                entry["planner_choice"] = chosen.index_name or "exact (filter index + sort)"
                a, b = entry["full_iterative"], entry["partial"]
                entry["partial_vs_full_p50"] = round(b["p50_ms"] / a["p50_ms"], 3)
                result[label] = entry
                progress(f"{case.name} {label}: {entry}")
        finally:
            await forced.close()
            await unforced.close()
        return result
    finally:
        await raw.execute(f'DROP TABLE IF EXISTS "{table}"')
        await raw.close()


def _matches(metadata: dict[str, Any], filter_: dict[str, Any]) -> bool:
    return all(metadata.get(key) == value for key, value in filter_.items())


async def run(args: argparse.Namespace, dsn: str) -> dict[str, Any]:
    result: dict[str, Any] = {"benchmark": "partial", "k": K}
    cases: Sequence[Case] = []
    if not args.skip_torchdocs:
        cases = [torchdocs(Path(args.data_dir))]
    cases = [*cases, synthetic(args.rows, args.queries)]
    for case in cases:
        started = time.perf_counter()
        result[case.name] = await run_case(case, dsn)
        result[case.name]["seconds"] = round(time.perf_counter() - started, 1)
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench partial", description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000, help="synthetic rows")
    parser.add_argument("--queries", type=int, default=100, help="synthetic queries")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--skip-torchdocs", action="store_true")
    args = parser.parse_args(argv)
    with database() as dsn:
        result = asyncio.run(run(args, dsn))
    result["python"] = platform.python_version()
    emit(result)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
