"""Tenant partitions benchmark: tenant-scoped search on one shared table vs a partition per tenant.

``python -m bench partitions [--tenants 3] [--rows 10000] [--queries 100] [--dim 128]``

Data: **synthetic** (no set in shared/data has 3 x 10,000 rows): ``--dim``-d gaussian clusters
(200 centres shared by every tenant, noise ``--noise`` times their scale: tenants of one embedding model write similar content, the
hard case for a shared index, where two rows in three that a tenant's search meets belong to
someone else), ``--rows`` rows per tenant, ``--queries`` queries per tenant drawn the same way;
cosine; exact ground truth by numpy over the tenant's own rows.

Two layouts, each with pgvs's defaults (HNSW created on the empty table, rows indexed as they
arrive): ``shared`` (one table, one HNSW index; a tenant's search is filtered by
``domain_id``, with pgvector's iterative scan) and ``partitioned`` (``partition_by="domain"``:
each tenant a partition with its own HNSW index). For each: ``recall_at_10`` and ``p50_ms`` (one
``store.search`` call, sequential, the layouts interleaved per query) with pgvs's default
``ef_search`` and with pgvector's default 40, the ingest time, and what the planner chose
(``explain_search``).

Uses ``DATABASE_URL`` when set (its tables are dropped afterwards), else a throwaway embedded
server.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt

from pgvs import AsyncPGVectorStore

from ._util import database, emit, progress

K = 10


def _clustered(
    rng: np.random.Generator, centres: npt.NDArray[np.float32], n: int, noise_scale: float
) -> npt.NDArray[np.float32]:
    picks = rng.integers(0, len(centres), n)
    noise = rng.standard_normal((n, centres.shape[1])).astype(np.float32) * noise_scale
    rows: npt.NDArray[np.float32] = (centres[picks] + noise).astype(np.float32)
    return rows


def _unit(m: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    out: npt.NDArray[np.float32] = (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)
    return out


async def run(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(17)
    centres = rng.standard_normal((200, args.dim)).astype(np.float32)
    tenants = [f"tenant-{t}" for t in range(args.tenants)]
    data = {t: _clustered(rng, centres, args.rows, args.noise) for t in tenants}
    queries = {t: _clustered(rng, centres, args.queries, args.noise) for t in tenants}
    truth = {}
    for t in tenants:
        sims = _unit(queries[t]) @ _unit(data[t]).T
        truth[t] = [set(np.argsort(-row)[:K].tolist()) for row in sims]

    layouts = {"shared": "bench_tenants_shared", "partitioned": "bench_tenants_parts"}
    stores: dict[str, dict[str, AsyncPGVectorStore]] = {}
    ingest_s: dict[str, float] = {}
    plans: dict[str, dict[str, Any]] = {}
    try:
        for layout, table in layouts.items():
            options: dict[str, Any] = {
                "connection_string": dsn,
                "dimensions": args.dim,
                "table_name": table,
                "id_type": "text",
            }
            if layout == "partitioned":
                options["partition_by"] = "domain"
            stores[layout] = {}
            start = time.perf_counter()
            for t in tenants:
                store = AsyncPGVectorStore(options, domain_id=t)
                await store.initialize()
                stores[layout][t] = store
                await store.ingest(data[t], ids=[f"{t}:{i}" for i in range(args.rows)])
            ingest_s[layout] = time.perf_counter() - start
            progress(f"{layout}: {args.tenants} x {args.rows} rows in {ingest_s[layout]:.1f} s")
        conn = await asyncpg.connect(dsn)
        try:
            for table in layouts.values():
                await conn.execute(f"VACUUM ANALYZE {table}")
        finally:
            await conn.close()
        for layout in layouts:
            store = stores[layout][tenants[0]]
            explained = await store.explain_search(queries[tenants[0]][0], K)
            plans[layout] = {
                "uses_vector_index": explained.uses_vector_index,
                "index": explained.index_name,
            }
        cases = [(layout, ef) for ef in (None, 40) for layout in layouts]
        hits: dict[Any, list[float]] = {case: [] for case in cases}
        times: dict[Any, list[float]] = {case: [] for case in cases}
        for t in tenants:  # warm-up
            for layout in layouts:
                for q in queries[t][:5]:
                    await stores[layout][t].search(q, K, include_metadata=False)
        for t in tenants:
            for qi, q in enumerate(queries[t]):
                for case in cases:
                    layout, ef = case
                    store = stores[layout][t]
                    start = time.perf_counter()
                    found = await store.search(q, K, include_metadata=False, ef_search=ef)
                    times[case].append(time.perf_counter() - start)
                    got = {int(str(hit.id).rsplit(":", 1)[1]) for hit in found}
                    assert all(str(hit.id).startswith(f"{t}:") for hit in found), "tenant leak"
                    hits[case].append(len(got & truth[t][qi]) / K)
        progress("searched")
    finally:
        for per_tenant in stores.values():
            for store in per_tenant.values():
                await store.close()
        conn = await asyncpg.connect(dsn)
        try:
            for table in layouts.values():
                await conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        finally:
            await conn.close()
    return {
        "benchmark": "partitions",
        "data": f"synthetic: {args.tenants} tenants x {args.rows} rows, {args.dim}-d gaussian "
        f"clusters (noise {args.noise} x the centres' scale) shared by all tenants, cosine",
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPUs",
        "queries_per_tenant": args.queries,
        **{
            layout: {
                "ingest_s": round(ingest_s[layout], 2),
                **plans[layout],
                **{
                    f"{'default_ef' if ef is None else f'ef{ef}'}": {
                        "recall_at_10": round(statistics.fmean(hits[layout, ef]), 4),
                        "p50_ms": round(statistics.median(times[layout, ef]) * 1000, 3),
                    }
                    for ef in (None, 40)
                },
            }
            for layout in layouts
        },
        "p50_ratio_partitioned_vs_shared": round(
            statistics.median(times["partitioned", None])
            / statistics.median(times["shared", None]),
            3,
        ),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench partitions", description=__doc__)
    parser.add_argument("--tenants", type=int, default=3)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--noise", type=float, default=1.0, help="noise / centre scale")
    args = parser.parse_args(argv)
    with database() as dsn:
        emit(asyncio.run(run(dsn, args)))
    return 0
