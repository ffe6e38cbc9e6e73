"""Time to searchable: raw vectors to a built HNSW index, plain pgvector against pgvs's ``ingest``.

``python -m bench searchable [--sizes 20000] [--dim 768] [--levers] [--while-loading]
[--no-recall] [--data-dir DIR]``

**Time** (per size, random float32 vectors, standard normal (zero-centred, like text
embeddings), cosine, HNSW m=16, ef_construction=64; measured one after the other in the same run,
on the same server):

- ``plain``: ``CREATE TABLE (id bigint primary key, embedding vector(d))``, asyncpg's binary
  COPY of the rows, then ``CREATE INDEX ... USING hnsw (embedding vector_cosine_ops)`` with the
  server's defaults (``maintenance_work_mem`` 64MB, ``max_parallel_maintenance_workers`` 2):
  ``load_s``, ``build_s``, ``total_s``.
- ``pgvs``: a new store (``initialize()`` creates the table and its empty HNSW index), then
  ``store.ingest(vectors, ids=...)``, which returns once the index is valid: ``total_s`` (both
  calls), ``build_s`` (``IngestResult.details["index_build"]``).
- ``ratio`` = pgvs total / plain total (target <= 0.33 at 100k x 768).
- ``index_mb``; ``peak_server_mb``: the highest sum, sampled every 0.2 s during the path, of the
  server processes' private resident memory (RssAnon) plus the largest shared resident memory
  (RssShmem) of any one of them (a parallel build keeps its graph in shared memory); only when the
  server runs on this machine (the embedded one), else null. ``notices``: the server's notices
  (pgvector says when a graph outgrows ``maintenance_work_mem``).
- ``recall_at_10`` of both indexes at ef_search 200 (pgvs's default) for 50 random queries
  against numpy's exact answer: reported, not targeted (random 768-d data is HNSW's hardest
  case).
- ``--while-loading``: the previous default, ``ingest`` into a table that already has its index
  (one row added first, so the index is kept): the build happens row by row during the load.
- ``--levers`` (smallest size only): on the plain path's loaded table, one build per lever,
  each with ``maintenance_work_mem`` sized as pgvs sizes it: parallel workers 0 and 2, a
  ``halfvec`` expression index, binary quantization, ``ef_construction`` 32 and 40,
  ``CONCURRENTLY``, and unlogged staging (load into an UNLOGGED copy, build, ``SET LOGGED``).

**Recall** (``shared/data/torchdocs-text``, 8,259 x 384, 400 held-apart queries, exact top-100):
the same rows through the plain path and through ``ingest``, then ``hnsw.ef_search`` swept for
both with the index forced (``enable_seqscan``/``enable_bitmapscan``/``enable_sort`` off, as a
large table plans by itself), each query as the same prepared ``ORDER BY embedding <=> $1 LIMIT
10`` on a raw connection: ``setting`` is the smallest ef_search whose recall@10 reaches 0.95
(a grid of 10, 20, ..., then bisected to a step of 1 for each path), and
``p50_ms`` there the median of six interleaved rounds (order alternating) of the 400 queries; ``p50_ratio`` = fast /
plain (target <= 1.10). ``store_search_p50_ms``: the fast path through ``store.search`` at that
setting (the store's one-round-trip path). ``tune``: what ``store.tune(target_recall=0.95)``
picks from its own sample of stored rows, and the held-apart recall@10 at that pick.

``--sizes`` with no value runs the recall part alone. Uses ``DATABASE_URL`` when set, else a
throwaway embedded server. 20k takes about 3 minutes with
``--levers``; 100k about 20 (the plain build alone is ~13 minutes on a shared 2-core VM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import numpy.typing as npt

from pgvs import AsyncPGVectorStore
from pgvs import indexes as ix
from pgvs.codecs import register_vector

from ._util import database, emit, progress

ROOT = Path(__file__).resolve().parents[1]
K = 10
FORCE_INDEX = "SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off"
SWEEP = (10, 20, 30, 40, 50, 60, 70, 80, 100, 120, 160, 200, 300, 400)
TARGET = 0.95
ROUNDS = 6  # interleaved latency rounds per comparison (sub-millisecond queries, shared CPU)


# -- server memory -------------------------------------------------------------------------------


def _children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(entry))
    return found


def _rss_kb(pid: int) -> tuple[int, int]:
    anon = shmem = 0
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    anon = int(line.split()[1])
                elif line.startswith("RssShmem:"):
                    shmem = int(line.split()[1])
    except OSError:
        pass
    return anon, shmem


class MemorySampler:
    """Peak server memory while a path runs (see the module docstring); None when remote."""

    def __init__(self, postmaster: int | None) -> None:
        self.postmaster = postmaster
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        assert self.postmaster is not None
        pids = [self.postmaster, *_children(self.postmaster)]
        sizes = [_rss_kb(pid) for pid in pids]
        total = sum(a for a, _ in sizes) + max((s for _, s in sizes), default=0)
        self.peak_kb = max(self.peak_kb, total)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def __enter__(self) -> MemorySampler:
        if self.postmaster is not None:
            self._sample()
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._sample()

    @property
    def peak_mb(self) -> float | None:
        return round(self.peak_kb / 1024, 1) if self.postmaster is not None else None


def postmaster_pid(pid: int, host: str) -> int | None:
    """The server's postmaster when it runs here (backend ``pid``'s parent), else None."""
    if host not in ("127.0.0.1", "::1", "localhost") or not os.path.exists(f"/proc/{pid}/stat"):
        return None
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


# -- the two paths -------------------------------------------------------------------------------


async def _connect(dsn: str, notices: list[str] | None = None) -> asyncpg.Connection:
    connection = await asyncpg.connect(dsn)
    await register_vector(connection)
    if notices is not None:
        connection.add_log_listener(lambda _c, message: notices.append(message.message))
    return connection


async def _fresh(
    connection: asyncpg.Connection, table: str, dim: int, unlogged: bool = False
) -> None:
    await connection.execute(f"DROP TABLE IF EXISTS {table}")
    kind = "UNLOGGED TABLE" if unlogged else "TABLE"
    await connection.execute(
        f"CREATE {kind} {table} (id bigint PRIMARY KEY, embedding vector({dim}))"
    )


async def _copy(
    connection: asyncpg.Connection, table: str, vectors: npt.NDArray[np.float32]
) -> None:
    await connection.copy_records_to_table(
        table, records=((i, vectors[i]) for i in range(len(vectors))), columns=["id", "embedding"]
    )


async def plain_path(
    dsn: str, table: str, vectors: npt.NDArray[np.float32], postmaster: int | None
) -> dict[str, Any]:
    notices: list[str] = []
    connection = await _connect(dsn, notices)
    try:
        await _fresh(connection, table, vectors.shape[1])
        await connection.execute("CHECKPOINT")
        notices.clear()
        with MemorySampler(postmaster) as memory:
            started = time.perf_counter()
            await _copy(connection, table, vectors)
            loaded = time.perf_counter()
            await connection.execute(
                f"CREATE INDEX {table}_hnsw ON {table} USING hnsw (embedding vector_cosine_ops)"
            )
            done = time.perf_counter()
        size = await connection.fetchval(f"SELECT pg_relation_size('{table}_hnsw')")
    finally:
        await connection.close()
    return {
        "load_s": round(loaded - started, 2),
        "build_s": round(done - loaded, 2),
        "total_s": round(done - started, 2),
        "index_mb": round(size / 2**20, 1),
        "peak_server_mb": memory.peak_mb,
        "notices": notices,
    }


async def pgvs_path(
    dsn: str,
    table: str,
    vectors: npt.NDArray[np.float32],
    postmaster: int | None,
    *,
    while_loading: bool = False,
) -> dict[str, Any]:
    cleanup = await _connect(dsn)
    await cleanup.execute(f"DROP TABLE IF EXISTS {table}")
    await cleanup.execute("CHECKPOINT")
    ids = list(range(len(vectors)))
    with MemorySampler(postmaster) as memory:
        started = time.perf_counter()
        store = AsyncPGVectorStore(
            connection_string=dsn, dimensions=vectors.shape[1], table_name=table, id_type="bigint"
        )
        await store.initialize()
        try:
            if while_loading:  # a non-empty table keeps its index: the build runs during the load
                await store.add_vectors(vectors[:1], ids=ids[:1])
            result = await store.ingest(vectors, ids=ids)
            done = time.perf_counter()
            status = await store.index_status()
        finally:
            await store.close()
    await cleanup.close()
    assert status.usable, status
    return {
        "total_s": round(done - started, 2),
        "build_s": round(result.details.get("index_build", 0.0), 2) or None,
        "index_mb": round(status.size_bytes / 2**20, 1),
        "peak_server_mb": memory.peak_mb,
        "params": dict(status.params),
    }


async def random_recall(
    dsn: str,
    table: str,
    vectors: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
) -> float:
    """recall@10 at ef_search 200 against the exact cosine top 10 (numpy)."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    connection = await _connect(dsn)
    try:
        await connection.execute(FORCE_INDEX + "; SET hnsw.ef_search = 200")
        statement = await connection.prepare(
            f"SELECT id FROM {table} ORDER BY embedding <=> $1 LIMIT {K}"  # noqa: S608 (fixed)
        )
        recalls = []
        for query in queries:
            truth = set(np.argsort(-(unit @ (query / np.linalg.norm(query))))[:K].tolist())
            found = {row["id"] for row in await statement.fetch(query)}
            recalls.append(len(found & truth) / K)
    finally:
        await connection.close()
    return round(float(np.mean(recalls)), 3)


# -- levers --------------------------------------------------------------------------------------


async def levers(dsn: str, table: str, vectors: npt.NDArray[np.float32]) -> dict[str, Any]:
    """One build per lever on the plain path's loaded table (see the module docstring)."""
    n, dim = vectors.shape
    connection = await _connect(dsn)
    memory = ix.build_memory(
        ix.graph_bytes(n, dim, "vector"), current=0, total=None, available=None
    )
    sized = f"{-(-memory.needed // 2**20)}MB"
    cases: dict[str, tuple[str, str, dict[str, str]]] = {
        "sized_workers_2": ("(embedding vector_cosine_ops)", "", {}),
        "sized_workers_0": (
            "(embedding vector_cosine_ops)",
            "",
            {"max_parallel_maintenance_workers": "0"},
        ),
        "halfvec": (f"((embedding::halfvec({dim})) halfvec_cosine_ops)", "", {}),
        "binary": (f"((binary_quantize(embedding)::bit({dim})) bit_hamming_ops)", "", {}),
        "ef_construction_32": ("(embedding vector_cosine_ops)", " WITH (ef_construction = 32)", {}),
        "ef_construction_40": ("(embedding vector_cosine_ops)", " WITH (ef_construction = 40)", {}),
    }
    found: dict[str, Any] = {"maintenance_work_mem": sized}
    try:
        for name, (expression, with_, extra) in cases.items():
            await connection.execute(f"DROP INDEX IF EXISTS {table}_hnsw")
            progress(f"  lever {name}")
            async with connection.transaction():
                for key, value in {"maintenance_work_mem": sized, **extra}.items():
                    await connection.execute("SELECT set_config($1, $2, true)", key, value)
                started = time.perf_counter()
                await connection.execute(
                    f"CREATE INDEX {table}_hnsw ON {table} USING hnsw {expression}{with_}"
                )
                found[f"{name}_s"] = round(time.perf_counter() - started, 2)
        await connection.execute(f"DROP INDEX IF EXISTS {table}_hnsw")
        await connection.execute(f"SET maintenance_work_mem = '{sized}'")
        started = time.perf_counter()
        await connection.execute(
            f"CREATE INDEX CONCURRENTLY {table}_hnsw ON {table} USING hnsw (embedding vector_cosine_ops)"
        )
        found["concurrently_s"] = round(time.perf_counter() - started, 2)
        await connection.execute(f"DROP INDEX IF EXISTS {table}_hnsw")
        staging = f"{table}_unlogged"
        progress("  lever unlogged staging")
        await _fresh(connection, staging, dim, unlogged=True)
        await connection.execute("CHECKPOINT")
        started = time.perf_counter()
        await _copy(connection, staging, vectors)
        loaded = time.perf_counter()
        await connection.execute(
            f"CREATE INDEX ON {staging} USING hnsw (embedding vector_cosine_ops)"
        )
        built = time.perf_counter()
        await connection.execute(f"ALTER TABLE {staging} SET LOGGED")
        found["unlogged"] = {
            "load_s": round(loaded - started, 2),
            "build_s": round(built - loaded, 2),
            "set_logged_s": round(time.perf_counter() - built, 2),
        }
        await connection.execute(f"DROP TABLE {staging}")
    finally:
        await connection.close()
    base = found["sized_workers_2_s"]
    found["ratios_to_sized_build"] = {
        key.removesuffix("_s"): round(value / base, 2)
        for key, value in found.items()
        if key.endswith("_s") and isinstance(value, float)
    }
    return found


# -- recall on real data -------------------------------------------------------------------------


def _load_text(
    directory: Path,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    return (
        np.load(directory / "embeddings.npy"),
        np.load(directory / "query_embeddings.npy"),
        np.load(directory / "groundtruth.npy"),
    )


async def _sweep(
    statement: Any, connection: asyncpg.Connection, queries: Any, truth: Any
) -> dict[int, float]:
    curve: dict[int, float] = {}
    for ef in SWEEP:
        await connection.execute(f"SET hnsw.ef_search = {ef}")
        recalls = []
        for i, query in enumerate(queries):
            found = {row["id"] for row in await statement.fetch(query)}
            recalls.append(len(found & set(truth[i, :K].tolist())) / K)
        curve[ef] = round(float(np.mean(recalls)), 4)
        if curve[ef] >= TARGET + 0.02:
            break
    return curve


def _setting(curve: dict[int, float]) -> int | None:
    return next((ef for ef, recall in sorted(curve.items()) if recall >= TARGET), None)


async def _recall_at(
    statement: Any, connection: asyncpg.Connection, queries: Any, truth: Any, ef: int
) -> float:
    await connection.execute(f"SET hnsw.ef_search = {ef}")
    recalls = []
    for i, query in enumerate(queries):
        found = {row["id"] for row in await statement.fetch(query)}
        recalls.append(len(found & set(truth[i, :K].tolist())) / K)
    return round(float(np.mean(recalls)), 4)


async def _refine(
    statement: Any,
    connection: asyncpg.Connection,
    queries: Any,
    truth: Any,
    curve: dict[int, float],
) -> None:
    """Bisect (in place) between the grid's last setting below the target and its first one at
    it, down to a step of 1: each path is then timed at its own smallest sufficient setting, not
    at the grid point above it (a grid step of 10 is worth ~10 % of p50 at these settings)."""
    high = _setting(curve)
    if high is None:
        return
    below = [ef for ef, recall in curve.items() if recall < TARGET and ef < high]
    low = max(below) if below else K - 1
    while high - low > 1:
        middle = (low + high) // 2
        curve[middle] = await _recall_at(statement, connection, queries, truth, middle)
        if curve[middle] >= TARGET:
            high = middle
        else:
            low = middle


async def _latencies(statement: Any, queries: Any) -> list[float]:
    samples = []
    for query in queries:
        started = time.perf_counter()
        await statement.fetch(query)
        samples.append(time.perf_counter() - started)
    return samples


# Other index choices on the plain table, each swept and timed like the two paths (the levers
# that change the graph or what it holds; the build settings do not change the graph).
_VARIANTS: dict[str, tuple[str, str, str]] = {
    "ef_construction_32": ("(embedding vector_cosine_ops)", " WITH (ef_construction = 32)", ""),
    "ef_construction_40": ("(embedding vector_cosine_ops)", " WITH (ef_construction = 40)", ""),
    "halfvec": ("((embedding::halfvec({d})) halfvec_cosine_ops)", "", "halfvec"),
}


async def _variants(
    connection: asyncpg.Connection,
    table: str,
    dim: int,
    queries: Any,
    truth: Any,
    plain: dict[str, Any],
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    plain_statement = await connection.prepare(
        f"SELECT id FROM {table} ORDER BY embedding <=> $1 LIMIT {K}"  # noqa: S608 (fixed)
    )
    for name, (expression, with_, kind) in _VARIANTS.items():
        variant = f"{table}_{name}"
        await connection.execute(f"DROP TABLE IF EXISTS {variant}")
        await connection.execute(f"CREATE TABLE {variant} AS SELECT * FROM {table}")  # noqa: S608
        await connection.execute(f"ANALYZE {variant}")
        started = time.perf_counter()
        await connection.execute(
            f"CREATE INDEX ON {variant} USING hnsw {expression.format(d=dim)}{with_}"
        )
        built = time.perf_counter() - started
        order = (
            f"(embedding::halfvec({dim})) <=> $1::halfvec({dim})" if kind else "embedding <=> $1"
        )
        statement = await connection.prepare(
            # the halfvec index's candidates re-ranked by the exact distance, as pgvs searches
            f"SELECT id FROM (SELECT id, embedding <=> $1 AS d FROM {variant} "  # noqa: S608
            f"ORDER BY {order} LIMIT {K}) c ORDER BY d"
        )
        curve = await _sweep(statement, connection, queries, truth)
        setting = _setting(curve)
        samples: dict[str, list[float]] = {"plain": [], "variant": []}
        for round_ in range(ROUNDS):
            for side in ("plain", "variant") if round_ % 2 == 0 else ("variant", "plain"):
                ef = (plain["setting"] if side == "plain" else setting) or SWEEP[-1]
                await connection.execute(f"SET hnsw.ef_search = {ef}")
                samples[side] += await _latencies(
                    plain_statement if side == "plain" else statement, queries
                )
        p50 = statistics.median(samples["variant"])
        found[name] = {
            "build_s": round(built, 2),
            "curve": curve,
            "setting": setting,
            "p50_ms": round(p50 * 1000, 3),
            "p50_ratio_to_plain": round(p50 / statistics.median(samples["plain"]), 3),
        }
        await connection.execute(f"DROP TABLE {variant}")
    return found


async def recall_section(dsn: str, directory: Path) -> dict[str, Any]:
    base, queries, truth = _load_text(directory)
    n, dim = base.shape
    plain_table, fast_table = "searchable_text_plain", "searchable_text_pgvs"
    connection = await _connect(dsn)
    await _fresh(connection, plain_table, dim)
    await _copy(connection, plain_table, base)
    started = time.perf_counter()
    await connection.execute(
        f"CREATE INDEX ON {plain_table} USING hnsw (embedding vector_cosine_ops)"
    )
    plain_build = round(time.perf_counter() - started, 2)
    await connection.execute(f"DROP TABLE IF EXISTS {fast_table}")
    store = AsyncPGVectorStore(
        connection_string=dsn, dimensions=dim, table_name=fast_table, id_type="bigint"
    )
    await store.initialize()
    result = await store.ingest(base, ids=list(range(n)))
    await store.close()
    await connection.execute(FORCE_INDEX)
    out: dict[str, Any] = {
        "dataset": directory.name,
        "rows": n,
        "queries": len(queries),
        "ingest_built_index": "index_build" in result.details,
    }
    statements = {}
    for name, table in (("plain", plain_table), ("fast", fast_table)):
        await connection.execute(f"ANALYZE {table}")
        statements[name] = await connection.prepare(
            f"SELECT id FROM {table} ORDER BY embedding <=> $1 LIMIT {K}"  # noqa: S608 (fixed)
        )
        plan = await connection.fetchval(
            f"EXPLAIN (FORMAT JSON) SELECT id FROM {table} "  # noqa: S608 (fixed names)
            f"ORDER BY embedding <=> $1::vector LIMIT {K}",
            queries[0],
        )
        curve = await _sweep(statements[name], connection, queries, truth)
        await _refine(statements[name], connection, queries, truth, curve)
        curve = dict(sorted(curve.items()))
        out[name] = {
            "curve": curve,
            "setting": _setting(curve),
            "uses_index": "Index Scan" in json.dumps(plan),
        }
    out["plain"]["build_s"] = plain_build
    out["fast"]["build_s"] = round(result.details.get("index_build", float("nan")), 2)
    # p50 at each one's own setting: ROUNDS rounds of every query, the order alternating.
    samples: dict[str, list[float]] = {"plain": [], "fast": []}
    for round_ in range(ROUNDS):
        for name in ("plain", "fast") if round_ % 2 == 0 else ("fast", "plain"):
            setting = out[name]["setting"] or SWEEP[-1]
            await connection.execute(f"SET hnsw.ef_search = {setting}")
            samples[name] += await _latencies(statements[name], queries)
    for name in ("plain", "fast"):
        setting = out[name]["setting"]
        out[name]["recall_at_10"] = out[name]["curve"].get(setting) if setting else None
        out[name]["p50_ms"] = round(statistics.median(samples[name]) * 1000, 3)
    out["p50_ratio"] = round(out["fast"]["p50_ms"] / out["plain"]["p50_ms"], 3)
    out["variants"] = await _variants(connection, plain_table, dim, queries, truth, out["plain"])
    await connection.close()
    # The same setting through the store's one-round-trip search path, and what tune() picks.
    store = AsyncPGVectorStore(
        connection_string=dsn,
        dimensions=dim,
        table_name=fast_table,
        id_type="bigint",
        ef_search=out["fast"]["setting"] or SWEEP[-1],
        pool_min_size=1,
        pool_max_size=1,
    )
    await store.initialize()
    try:
        await store.pool.execute(FORCE_INDEX)
        latencies = []
        for query in queries:
            started = time.perf_counter()
            await store.search(query, k=K, include_metadata=False)
            latencies.append(time.perf_counter() - started)
        out["fast"]["store_search_p50_ms"] = round(statistics.median(latencies) * 1000, 3)
        report = await store.tune(target_recall=TARGET)
        tuned = report.setting
        recalls = []
        for i, query in enumerate(queries):
            hits = await store.search(query, k=K, ef_search=tuned, include_metadata=False)
            recalls.append(len({h.id for h in hits} & set(truth[i, :K].tolist())) / K)
        out["tune"] = {
            "setting": tuned,
            "sample_recall": next((p.recall for p in report.points if p.setting == tuned), None),
            "held_apart_recall_at_10": round(float(np.mean(recalls)), 4),
        }
    finally:
        await store.close()
    return out


# -- driver --------------------------------------------------------------------------------------


async def run(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    probe = await _connect(dsn)
    address = probe._addr  # type: ignore[attr-defined]
    host = address[0] if isinstance(address, tuple) else "local"
    postmaster = postmaster_pid(probe.get_server_pid(), host)
    settings = {
        name: await probe.fetchval(f"SELECT current_setting('{name}')")
        for name in ("maintenance_work_mem", "max_parallel_maintenance_workers", "shared_buffers")
    }
    pgvector = await probe.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    await probe.close()
    result: dict[str, Any] = {
        "benchmark": "searchable",
        "dim": args.dim,
        "python": platform.python_version(),
        "pgvector": pgvector,
        "server_defaults": settings,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "sizes": {},
    }
    rng = np.random.default_rng(7)
    for size in args.sizes:
        vectors = rng.standard_normal((size, args.dim), dtype=np.float32)
        queries = rng.standard_normal((50, args.dim), dtype=np.float32)
        progress(f"{size} x {args.dim}: plain path")
        plain = await plain_path(dsn, f"searchable_plain_{size}", vectors, postmaster)
        plain["recall_at_10"] = await random_recall(
            dsn, f"searchable_plain_{size}", vectors, queries
        )
        progress(f"  plain {plain['total_s']} s; pgvs path")
        fast = await pgvs_path(dsn, f"searchable_pgvs_{size}", vectors, postmaster)
        fast["recall_at_10"] = await random_recall(dsn, f"searchable_pgvs_{size}", vectors, queries)
        progress(f"  pgvs {fast['total_s']} s")
        entry: dict[str, Any] = {
            "plain": plain,
            "pgvs": fast,
            "ratio": round(fast["total_s"] / plain["total_s"], 3),
        }
        if args.while_loading:
            progress("  pgvs, index built while loading")
            during = await pgvs_path(
                dsn, f"searchable_during_{size}", vectors, postmaster, while_loading=True
            )
            entry["build_while_loading"] = during
            entry["build_while_loading_ratio"] = round(during["total_s"] / plain["total_s"], 3)
        if args.levers and size == min(args.sizes):
            entry["levers"] = await levers(dsn, f"searchable_plain_{size}", vectors)
        result["sizes"][str(size)] = entry
        cleanup = await _connect(dsn)
        for table in ("plain", "pgvs", "during"):
            await cleanup.execute(f"DROP TABLE IF EXISTS searchable_{table}_{size}")
        await cleanup.close()
    if args.recall:
        directory = Path(args.data_dir) / "torchdocs-text"
        if directory.is_dir():
            progress("recall on torchdocs-text")
            result["recall"] = await recall_section(dsn, directory)
        else:
            result["recall"] = {"skipped": f"{directory} is missing"}
    result["load_average_after"] = os.getloadavg()
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench searchable", description=__doc__)
    parser.add_argument(
        "--sizes", type=int, nargs="*", default=[20000], help="rows (20000; none: recall only)"
    )
    parser.add_argument("--dim", type=int, default=768, help="dimensions (768)")
    parser.add_argument("--levers", action="store_true", help="one build per lever")
    parser.add_argument("--while-loading", action="store_true", help="the build-during-load path")
    parser.add_argument("--no-recall", dest="recall", action="store_false", help="skip recall")
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("PGVS_DATA_DIR") or str(ROOT.parent / "shared" / "data"),
        help="the shared data sets (default: shared/data beside the repository)",
    )
    args = parser.parse_args(argv)
    with database() as dsn:
        result = asyncio.run(run(dsn, args))
    emit(result)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
