"""Tuning benchmark: does ``store.tune()`` choose a setting that holds on the data set's own queries?

``python -m bench tune [--datasets NAME ...] [--sample 200] [--targets 0.9 0.95 0.99]``

For each data set (glove50-5k-angular and sift5k-l2 from their fvecs files, torchdocs-text from
its npy files; ``--data-dir`` to point elsewhere) the base rows go into a store with pgvs's
default HNSW index (m=16, ef_construction=64), and for each target recall:

- **tune**: ``store.tune(target_recall=t, k=10, sample=200)``: the setting it chooses from
  sampled stored vectors (moved off the index: ``pgvs.tuning.held_out_queries``), the bisection
  ``step`` it reports and its wall time (``tune_s``).
- **held-apart check**: recall@10 at ``chosen`` on the data set's own query file against its
  ground truth (``heldout_recall``; ``meets_target`` when >= t - 0.01), and the smallest
  ``hnsw.ef_search`` that reaches t on those queries, found by doubling then bisection down to 1
  (``smallest_heldout``); ``within_one_step`` when ``chosen <= smallest_heldout + max(step, 1)``
  (true as well when ``chosen`` is too low: ``chosen_minus_smallest`` is then negative).
- **half_queries**: the same, but tuned with ``queries=`` half of the query file (even rows) and
  checked on the other half: the path for queries that do not look like the stored rows.
- **logged**: the path for an application's own queries: a store opened with ``query_log``
  serves the even half of the query file through ``search()`` (as users would send them), and
  another store tunes with ``queries="recent"`` (the query log); the check is on the odd half.
  ``log_cost`` times the same searches (the whole query file, alternating rounds) with the log
  on and off: the p50 ratio is what recording costs a search.
- **left_out**: the reference for any tuning from the stored data alone: 200 base rows (seeded
  choice) are left out of a second table and its index, and ``tune(queries=those rows)`` on it
  chooses; the check is the same (the full table's index, the query file). These are real
  held-out queries *from the stored data's distribution*: where they miss the target, the query
  file is harder than the data itself, and no sample of stored rows can tell.

Searches of the held-apart check run with the vector index forced (``enable_seqscan``,
``enable_bitmapscan``, ``enable_sort`` off on the one pooled connection), as ``tune`` measures:
at 5,000 rows the planner would otherwise answer large settings with exact scans.

Uses ``DATABASE_URL`` when set (the tables are dropped afterwards), else a throwaway embedded
server. The last line of stdout is the JSON result.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt

from pgvs import AsyncPGVectorStore
from pgvs.query_log import log_table_name

from ._util import database, emit, progress
from .recall import FORCE_INDEX, read_vecs

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {
    "glove50-5k-angular": "cosine",
    "sift5k-l2": "euclidean",
    "torchdocs-text": "cosine",
}
K = 10
TARGETS = (0.90, 0.95, 0.99)
MAX_EF_SEARCH = 1000
LEFT_OUT_SEED = 18


@dataclass(frozen=True)
class Data:
    base: npt.NDArray[np.float32]
    queries: npt.NDArray[np.float32]
    truth: npt.NDArray[np.int32]  # top-K base ids per query, nearest first


def load(directory: Path) -> Data:
    if (directory / "embeddings.npy").exists():  # torchdocs-text
        return Data(
            np.load(directory / "embeddings.npy"),
            np.load(directory / "query_embeddings.npy"),
            np.load(directory / "groundtruth.npy")[:, :K],
        )
    return Data(
        read_vecs(directory / "base.fvecs", np.float32),
        read_vecs(directory / "query.fvecs", np.float32),
        read_vecs(directory / "groundtruth.ivecs", np.int32)[:, :K],
    )


class HeldApart:
    """Recall@K of a query set against its ground truth at a given ef_search (index forced)."""

    def __init__(
        self, store: AsyncPGVectorStore, queries: npt.NDArray[np.float32], truth: Any
    ) -> None:
        self.store = store
        self.queries = queries
        self.truth = [set(row.tolist()) for row in truth]
        self._cache: dict[int, float] = {}

    async def recall(self, ef_search: int) -> float:
        if ef_search not in self._cache:
            hits = await self.store.search_batch(
                self.queries, k=K, ef_search=ef_search, include_metadata=False
            )
            found = [
                len({h.id for h in row} & truth) / K
                for row, truth in zip(hits, self.truth, strict=True)
            ]
            self._cache[ef_search] = float(np.mean(found))
        return self._cache[ef_search]

    async def smallest(self, target: float) -> int | None:
        """The smallest ef_search reaching ``target``: doubling from K, then bisection to 1."""
        return await smallest_reaching(self.recall, target, K, MAX_EF_SEARCH)


async def smallest_reaching(
    recall: Callable[[int], Awaitable[float]], target: float, low: int, high: int
) -> int | None:
    failing, setting = low - 1, low
    while await recall(setting) < target:
        if setting >= high:
            return None
        failing, setting = setting, min(setting * 2, high)
    while setting - failing > 1:
        middle = (failing + setting) // 2
        if await recall(middle) >= target:
            setting = middle
        else:
            failing = middle
    return setting


async def _forced(options: dict[str, Any]) -> AsyncPGVectorStore:
    store = AsyncPGVectorStore(options, pool_min_size=1, pool_max_size=1)
    await store.initialize()
    await store.pool.execute(FORCE_INDEX)
    return store


async def _check(
    tune: Callable[[float], Awaitable[Any]], held: HeldApart, targets: list[float]
) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for target in targets:
        started = time.perf_counter()
        report = await tune(target)
        seconds = time.perf_counter() - started
        chosen = report.setting
        heldout = await held.recall(chosen)
        smallest = await held.smallest(target)
        rows[f"{target:.2f}"] = {
            "chosen": chosen,
            "step": report.step,
            "tune_recall": round(report.recall, 4),
            "heldout_recall": round(heldout, 4),
            "meets_target": heldout >= target - 0.01,
            "smallest_heldout": smallest,
            "within_one_step": smallest is not None and chosen <= smallest + max(report.step, 1),
            # negative: below the smallest setting that holds (then the recall check fails)
            "chosen_minus_smallest": None if smallest is None else chosen - smallest,
            "settings_measured": len(report.points),
            "tune_s": round(seconds, 3),
        }
        progress(f"  target {target}: {rows[f'{target:.2f}']}")
    return rows


async def run_dataset(
    dsn: str, name: str, data: Data, sample: int, targets: list[float]
) -> dict[str, Any]:
    metric = DATASETS[name]
    table = "bench_tune_" + name.replace("-", "_")
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
        result: dict[str, Any] = {
            "metric": metric,
            "rows": int(data.base.shape[0]),
            "dimensions": int(data.base.shape[1]),
            "queries": int(data.queries.shape[0]),
        }
        async with AsyncPGVectorStore(options) as store:
            progress(f"{name}: loading {len(data.base)} rows")
            await store.add_vectors(data.base, ids=list(range(len(data.base))))
            started = time.perf_counter()
            status = await store.create_index("hnsw")
            result["build_s"] = round(time.perf_counter() - started, 3)
            result["index_params"] = dict(status.params)
            await raw.execute(f'VACUUM ANALYZE "{table}"')
            forced = await _forced(options)
            try:
                held = HeldApart(forced, data.queries, data.truth)
                progress(f"{name}: tune from {sample} sampled stored vectors")
                result["sampled"] = await _check(
                    lambda t: store.tune(target_recall=t, k=K, sample=sample), held, targets
                )
                even, odd = data.queries[0::2], data.queries[1::2]
                other_half = HeldApart(forced, odd, data.truth[1::2])
                progress(f"{name}: tune on the even queries, check on the odd ones")
                result["half_queries"] = await _check(
                    lambda t: store.tune(target_recall=t, k=K, queries=even), other_half, targets
                )
                progress(f"{name}: serve the even queries with query_log, tune on the log")
                result["logged"] = await _logged(options, even, other_half, targets)
                result["log_cost"] = await _log_cost(options, data.queries)
                progress(f"  log cost: {result['log_cost']}")
                progress(f"{name}: tune on {sample} rows left out of a second index")
                result["left_out"] = await _left_out(options, data, sample, held, targets)
            finally:
                await forced.close()
        return result
    finally:
        await raw.execute(f'DROP TABLE IF EXISTS "{table}"')
        await raw.close()


async def _left_out(
    options: dict[str, Any], data: Data, sample: int, held: HeldApart, targets: list[float]
) -> dict[str, Any]:
    """Tune on ``sample`` base rows as queries against an index built without them."""
    rows = len(data.base)
    left = np.random.default_rng(LEFT_OUT_SEED).choice(rows, size=sample, replace=False)
    kept = np.setdiff1d(np.arange(rows), left)
    other = {**options, "table_name": options["table_name"] + "_left_out"}
    async with AsyncPGVectorStore(other) as store:
        try:
            await store.add_vectors(data.base[kept], ids=[int(i) for i in kept])
            await store.create_index("hnsw")
            await store.pool.execute(f'VACUUM ANALYZE "{other["table_name"]}"')
            queries = data.base[left]
            return await _check(
                lambda t: store.tune(target_recall=t, k=K, queries=queries), held, targets
            )
        finally:
            await store.pool.execute(f'DROP TABLE IF EXISTS "{other["table_name"]}"')


async def _logged(
    options: dict[str, Any], served: npt.NDArray[np.float32], held: HeldApart, targets: list[float]
) -> dict[str, Any]:
    """Serve ``served`` through a store keeping a query log; tune another on the log."""
    logging = {**options, "query_log": len(served)}
    async with AsyncPGVectorStore(logging) as serving:
        for query in served:
            await serving.search(query, k=K)
    async with AsyncPGVectorStore(logging) as store:
        try:
            return await _check(
                lambda t: store.tune(target_recall=t, k=K, queries="recent"), held, targets
            )
        finally:
            await store.pool.execute(
                f'DROP TABLE IF EXISTS "{log_table_name(options["table_name"])}"'
            )


async def _log_cost(
    options: dict[str, Any], queries: npt.NDArray[np.float32], rounds: int = 5
) -> dict[str, Any]:
    """p50 search latency with the query log on against off, in alternating rounds."""
    plain = AsyncPGVectorStore(options, pool_min_size=1, pool_max_size=1)
    logging = AsyncPGVectorStore(options, pool_min_size=1, pool_max_size=1, query_log=len(queries))
    timings: dict[str, list[float]] = {"off": [], "on": []}
    async with plain, logging:
        for query in queries[:10]:  # warm both pools and caches
            await plain.search(query, k=K)
            await logging.search(query, k=K)
        for _ in range(rounds):
            for label, store in (("off", plain), ("on", logging)):
                for query in queries:
                    begun = time.perf_counter()
                    await store.search(query, k=K)
                    timings[label].append((time.perf_counter() - begun) * 1000)
        await logging.pool.execute(
            f'DROP TABLE IF EXISTS "{log_table_name(options["table_name"])}"'
        )
    off, on = (float(np.median(timings[label])) for label in ("off", "on"))
    return {
        "searches": len(timings["on"]),
        "p50_ms_off": round(off, 4),
        "p50_ms_on": round(on, 4),
        "ratio": round(on / off, 3),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench tune", description=__doc__)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--sample", type=int, default=200)
    parser.add_argument("--targets", type=float, nargs="+", default=list(TARGETS))
    args = parser.parse_args(argv)
    missing = [n for n in args.datasets if not (Path(args.data_dir) / n).is_dir()]
    if missing:
        print(f"data sets not found under {args.data_dir}: {', '.join(missing)}", file=sys.stderr)
        return 2
    result: dict[str, Any] = {"benchmark": "tune", "k": K, "sample": args.sample}
    datasets: dict[str, Any] = {}
    with database() as dsn:
        for name in args.datasets:
            data = load(Path(args.data_dir) / name)
            datasets[name] = asyncio.run(run_dataset(dsn, name, data, args.sample, args.targets))
    result["datasets"] = datasets
    for block in ("sampled", "half_queries", "logged", "left_out"):
        cases = [case for d in datasets.values() for case in d[block].values()]
        result[f"{block}_all_meet_target"] = all(c["meets_target"] for c in cases)
        result[f"{block}_all_within_one_step"] = all(c["within_one_step"] for c in cases)
    result["python"] = platform.python_version()
    emit(result)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
