"""Read-replica benchmark: search throughput on the primary alone vs routed to a streaming replica,
and what read-your-writes costs.

``python -m bench replicas [--seconds 4] [--runs 3] [--tasks 8] [--writes 200]``

Always on its own embedded servers (a primary and a ``pg_basebackup -R`` replica of it, both on
this machine: on a 2-core box they share the same two cores, so the replica adds no CPU; the
figure says what routing costs or gains here, not what a second machine would give).
Data: sift5k-l2 from shared/data (5,000 real 128-d SIFT vectors, L2, HNSW index), its 100
queries cycled.

- ``qps_primary`` / ``qps_replica``: searches per second with ``--tasks`` concurrent tasks for
  ``--seconds``, median of ``--runs`` runs, the cases interleaved. ``primary`` is a store
  without ``read_replicas``; ``replica`` is a store with the replica (its reads all go there);
  ``routed_to_primary`` lists the primary itself as its replica (``eventual``): its health probe
  finds no standby, so every read goes through the routing to the primary: the same server as
  ``primary`` with the routing added, i.e. the routing's own cost. Each store's replica is
  admitted by its health probe (in the background) before anything is timed.
- Read-your-writes: ``--writes`` times, ``add_vectors`` of one row then ``get_vectors`` of it.
  ``ryw_wait_p50_ms``: the median wait for the replica to replay the write (the store's own
  ``read_routing.wait_p50``); ``write_read_p50_ms``: the median of the write + read pair with
  read-your-writes vs without replicas; ``eventual_stale_fraction``: how often an ``eventual``
  store did NOT see its own row just written (why read-your-writes is the default).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pgvs import AsyncPGVectorStore
from pgvs.server import EmbeddedServer

from ._util import emit, progress

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sift5k-l2"


def _read_vecs(path: Path) -> npt.NDArray[np.float32]:
    raw = np.fromfile(path, dtype=np.int32)
    dim = int(raw[0])
    vectors: npt.NDArray[np.float32] = raw.reshape(-1, dim + 1)[:, 1:].copy().view(np.float32)
    return vectors


def _data_dir() -> Path:
    for candidate in (DATA, Path("/work/shared/data/sift5k-l2")):
        if (candidate / "base.fvecs").exists():
            return candidate
    raise SystemExit("sift5k-l2 not found under shared/data")


async def _qps(
    store: AsyncPGVectorStore, queries: npt.NDArray[Any], tasks: int, seconds: float
) -> float:
    stop = time.perf_counter() + seconds
    done = [0] * tasks

    async def worker(n: int) -> None:
        i = n
        while time.perf_counter() < stop:
            await store.search(queries[i % len(queries)], 10)
            i += tasks
            done[n] += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(tasks)))
    return sum(done) / (time.perf_counter() - start)


async def _write_read(store: AsyncPGVectorStore, dim: int, writes: int) -> tuple[list[float], int]:
    """Per pair: seconds for add_vectors(1 row) + get_vectors of it; and how many reads missed."""
    rng = np.random.default_rng(7)
    times, stale = [], 0
    for _ in range(writes):
        row = rng.random((1, dim), dtype=np.float32)
        start = time.perf_counter()
        ids = await store.add_vectors(row)
        found = (await store.get_vectors(ids, include_metadata=False))[0].found
        times.append(time.perf_counter() - start)
        stale += not found
    return times, stale


async def _probed(store: AsyncPGVectorStore) -> None:
    """Start the store's replica health probe (a read) and wait until it has ended."""
    await store.count()
    for _ in range(6000):
        if store.read_routing.probes:
            return
        await asyncio.sleep(0.01)
    raise RuntimeError("a replica health probe did not end within 60 s")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data = _data_dir()
    base, queries = _read_vecs(data / "base.fvecs"), _read_vecs(data / "query.fvecs")
    primary = EmbeddedServer()
    progress(f"starting the primary in {primary.data_dir}")
    primary.start()
    replica = None
    try:
        replica = primary.create_replica()
        replica.start()
        progress(f"replica of it running on port {replica.port}")
        common = {
            "connection_string": primary.dsn(),
            "dimensions": base.shape[1],
            "metric": "euclidean",
            "table_name": "bench_replicas",
            "pool_max_size": max(10, args.tasks),
        }
        with_replica = {**common, "read_replicas": [replica.dsn()], "replica_wait_timeout": 5.0}
        async with (
            AsyncPGVectorStore(common) as alone,
            AsyncPGVectorStore(with_replica) as routed,
            AsyncPGVectorStore({**with_replica, "consistency": "eventual"}) as eventual,
            # The routing's own cost: the same reads routed to the primary as its "replica".
            AsyncPGVectorStore(
                {**common, "read_replicas": [primary.dsn()], "consistency": "eventual"}
            ) as control,
        ):
            progress(f"loading {len(base)} rows (HNSW index, built as they arrive)")
            await alone.ingest(base)
            for store in (routed, eventual, control):
                await _probed(store)
            assert routed.read_routing.replicas_up
            assert eventual.read_routing.replicas_up
            assert control.read_routing.replicas_down  # the primary is no standby
            await routed.add_vectors(base[:1], ids=None)  # a write of its own: waits for replay
            assert await routed.count() == len(base) + 1
            assert routed.read_routing.replica_reads == 1
            cases = (("primary", alone), ("replica", routed), ("routed_to_primary", control))
            for _, case in cases:  # warm the pools and caches
                await _qps(case, queries, args.tasks, 0.5)
            qps: dict[str, list[float]] = {name: [] for name, _ in cases}
            for run_no in range(args.runs):
                for name, case in cases:
                    qps[name].append(await _qps(case, queries, args.tasks, args.seconds))
                progress(f"run {run_no + 1}: {[round(v[-1]) for v in qps.values()]} searches/s")
            routed_reads = routed.read_routing.replica_reads
            progress(f"{args.writes} write-then-read pairs, each way")
            plain_times, _ = await _write_read(alone, base.shape[1], args.writes)
            waits_before = routed.read_routing.waits
            ryw_times, ryw_stale = await _write_read(routed, base.shape[1], args.writes)
            routing = routed.read_routing
            _, eventual_stale = await _write_read(eventual, base.shape[1], args.writes)
    finally:
        if replica is not None:
            replica.stop()
        primary.stop()
    return {
        "benchmark": "replicas",
        "data": "sift5k-l2 (5,000 real 128-d SIFT vectors, L2, HNSW)",
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPUs (primary and "
        "replica share them)",
        "tasks": args.tasks,
        "seconds_per_run": args.seconds,
        "runs": args.runs,
        "qps_primary": round(statistics.median(qps["primary"]), 1),
        "qps_replica": round(statistics.median(qps["replica"]), 1),
        "qps_ratio_replica_vs_primary": round(
            statistics.median(qps["replica"]) / statistics.median(qps["primary"]), 3
        ),
        "qps_routed_to_primary": round(statistics.median(qps["routed_to_primary"]), 1),
        "qps_runs": {name: [round(v, 1) for v in values] for name, values in qps.items()},
        "replica_reads_during_qps": routed_reads,
        "writes": args.writes,
        "ryw_wait_p50_ms": round((routing.wait_p50 or 0.0) * 1000, 3),
        "ryw_waits": routing.waits - waits_before,
        "ryw_fell_back_to_primary": routing.lagging,
        "ryw_stale_reads": ryw_stale,
        "write_read_p50_ms_ryw_replica": round(statistics.median(ryw_times) * 1000, 3),
        "write_read_p50_ms_primary_only": round(statistics.median(plain_times) * 1000, 3),
        "eventual_stale_fraction": round(eventual_stale / args.writes, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench replicas", description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--writes", type=int, default=200)
    args = parser.parse_args(argv)
    emit(asyncio.run(run(args)))
    return 0
