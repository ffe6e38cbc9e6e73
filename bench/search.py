"""Search benchmark: pgvs's ``search`` against hand-written asyncpg on the same HNSW table.

``python -m bench search [--rows 10000] [--dim 384] [--rounds 25] [--block 40] [--breakdown]``

One table (made by ``AsyncPGVectorStore``, filled with ``add_vectors``: a vector, a small jsonb
document, ~300 characters of content, a document id and a chunk index per row) gets an HNSW index
(``vector_cosine_ops``, pgvector's default m=16, ef_construction=64; built with plain SQL unless
one is there already) and is searched for the top 10 by cosine distance three ways:

- ``pgvs``: ``await store.search(q, k=10)`` with default options, on the store's pool;
- ``raw``: one asyncpg connection per task running a prepared statement (``conn.prepare``) of the
  same query written by hand (``SELECT id::text AS id, embedding <=> $1::vector AS distance,
  metadata, content, document_id, chunk_index ... ORDER BY distance LIMIT 10``), every row
  fetched, with the same codecs as the store (``register_vector(conn, numpy=True)`` and the jsonb
  text codec decoding with ``json.loads``), so both sides decode the same values;
- ``sync``: ``PGVectorStore.search(q, k=10)``, the sync facade over the same table (its own pool
  on its background loop), called from the main thread;
- ``raw_store_sql`` (diagnostic; ``--no-store-sql`` drops it): the raw side's prepared statements,
  but of the exact SQL text the store sends (``store._ctx.sql``), with its parameters. It splits the
  pgvs/raw gap into what the store's SQL costs the server (``ratio_store_sql_vs_raw``) and what
  pgvs's client path costs (``ratio_pgvs_vs_store_sql``).

The stores are opened once the index exists (so they pick the query settings they would in an
application, e.g. pgvs's ``hnsw.ef_search`` for an index it manages), and the raw connections get
the same values (:data:`SEARCH_SETTINGS`, as startup parameters like the store's): every side
runs the same index scan, and the run checks that all return the same ids for 20 queries.

Latency: each round runs a block of ``--block`` sequential queries per side, the order of the
sides rotating from round to round; a side's ``p50`` is the median over rounds of its per-round
median latency (and ``p90`` likewise). Every side runs the same query vectors in the same order.
Throughput (``qps_8``): 8 asyncio tasks each running ``--per-task`` queries, pgvs sharing the
store's pool (default ``pool_max_size``, 10) and raw with 8 connections; ``sync_qps_8`` is 8
threads calling the sync facade. Rounds interleaved the same way; medians across rounds.

``ratio_p50`` = pgvs ÷ raw (target <= 1.05), ``ratio_qps_8`` = pgvs ÷ raw (target >= 0.95),
``ratio_sync_async`` = sync p50 ÷ pgvs p50 (target <= 1.10).

``--breakdown`` adds the costs of the pieces of pgvs's search path (query conversion, results,
pool checkout, ``command_timeout``, the sync hand-off) and how often each statement was planned
anew: see :func:`_breakdown`.

The defaults (10,000 rows x 384 dimensions) load and index in ~15 s and the whole run takes about
a minute and a half on a 2-core VM. Uses ``DATABASE_URL`` when set (the table is dropped afterwards), else a
throwaway embedded server.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import statistics
import sys
import threading
import time
import timeit
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import numpy as np

from pgvs import AsyncPGVectorStore, PGVectorStore, StoreConfig
from pgvs._sql import quote_ident
from pgvs.codecs import codec_functions, register_vector

from ._util import database, emit, progress, quantile

SIDES = ("pgvs", "raw", "sync")
CONCURRENCY = 8
K = 10
WORDS = (
    *("vector", "search", "postgres", "index", "graph", "neighbour", "query", "row", "page"),
    *("cache", "latency", "planner", "embedding", "document", "chunk", "metadata", "tenant"),
    *("filter", "score", "distance", "recall"),
)

Query = Any  # a float32 numpy row


def _metadata(i: int) -> dict[str, Any]:
    return {
        "category": ("news", "blog", "paper", "docs", "forum")[i % 5],
        "year": 2000 + i % 25,
        "tags": [WORDS[i % len(WORDS)], WORDS[(i * 7) % len(WORDS)]],
        "source": {"kind": "web", "rank": round((i % 100) / 100, 2)},
    }


def _content(i: int) -> str:
    words = [WORDS[(i * 31 + j * 17) % len(WORDS)] for j in range(45)]
    return " ".join(words)


def _encode_jsonb(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, allow_nan=False)


# Query settings the server's planner/executor reads for this search; the raw connections get the
# values the store's pool connections have, so that both sides run the same index scan.
SEARCH_SETTINGS = ("hnsw.ef_search", "hnsw.iterative_scan", "hnsw.max_scan_tuples", "jit")


async def _settings(connection: Any) -> dict[str, str]:
    """The values of :data:`SEARCH_SETTINGS` on a connection (or pool)."""
    return {
        name: str(await connection.fetchval("SELECT current_setting($1, true)", name))
        for name in SEARCH_SETTINGS
    }


async def _raw_connection(
    dsn: str, settings: dict[str, str] | None = None
) -> asyncpg.Connection[Any]:
    """A bare asyncpg connection decoding exactly as the store's pool connections do."""
    conn: asyncpg.Connection[Any] = await asyncpg.connect(dsn, server_settings=settings)
    await register_vector(conn, numpy=True)
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_encode_jsonb, decoder=json.loads, format="text"
    )
    return conn


def raw_sql(table: str) -> str:
    """The hand-written query: the store's SELECT list, the distance computed once."""
    return (
        "SELECT id::text AS id, embedding <=> $1::vector AS distance, "  # noqa: S608 (quoted)
        f"metadata, content, document_id, chunk_index FROM {table} "
        f"ORDER BY distance LIMIT {K}"
    )


async def _load(store: AsyncPGVectorStore, vectors: np.ndarray[Any, Any], batch: int) -> None:
    total = len(vectors)
    for start in range(0, total, batch):
        stop = min(start + batch, total)
        await store.add_vectors(
            vectors[start:stop],
            metadata=[_metadata(i) for i in range(start, stop)],
            contents=[_content(i) for i in range(start, stop)],
            document_ids=[f"doc-{i // 8}" for i in range(start, stop)],
            chunk_indexes=[i % 8 for i in range(start, stop)],
        )


async def _ensure_hnsw(pool: asyncpg.Pool[Any], schema: str, table: str) -> tuple[str, bool]:
    """The name of an HNSW index on the table, building one when the store has not."""
    existing = await pool.fetchval(
        "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 "
        "AND indexdef ILIKE '%USING hnsw%' LIMIT 1",
        schema,
        table,
    )
    if existing is not None:
        return str(existing), False
    name = f"{table}_embedding_hnsw"
    async with pool.acquire() as conn:
        await conn.execute("SET maintenance_work_mem = '512MB'")
        await conn.execute(
            f"CREATE INDEX {quote_ident(name)} ON {quote_ident(schema)}.{quote_ident(table)} "
            "USING hnsw (embedding vector_cosine_ops)"
        )
        await conn.execute("RESET maintenance_work_mem")
    return name, True


def _per_round_stats(rounds: list[list[float]]) -> dict[str, float]:
    """p50 / p90 in ms: the median over rounds of each round's own quantile."""
    return {
        "p50": statistics.median(quantile(r, 0.5) for r in rounds) * 1e3,
        "p90": statistics.median(quantile(r, 0.9) for r in rounds) * 1e3,
    }


def _blocks(queries: Sequence[Query], block: int, rounds: int) -> list[list[Query]]:
    """The queries of each round: consecutive slices of the query set, wrapping around."""
    count = len(queries)
    return [[queries[(r * block + j) % count] for j in range(block)] for r in range(rounds)]


def _sync_threads(run: Callable[[Sequence[Query]], None], work: list[list[Query]]) -> float:
    """Run ``run(part)`` for each part in its own thread, all started together; wall seconds."""
    barrier = threading.Barrier(len(work) + 1)

    def target(part: Sequence[Query]) -> None:
        barrier.wait()
        run(part)

    threads = [threading.Thread(target=target, args=(part,)) for part in work]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


class Bench:
    """The sides over one table, and the timing loops."""

    def __init__(
        self,
        store: AsyncPGVectorStore,
        sync_store: PGVectorStore,
        connections: list[asyncpg.Connection[Any]],
        statements: list[asyncpg.prepared_stmt.PreparedStatement[Any]],
        store_sql: StoreSql | None,
    ) -> None:
        self.store = store
        self.sync_store = sync_store
        self.connections = connections
        self.statements = statements
        self.store_sql = store_sql

    @property
    def sides(self) -> tuple[str, ...]:
        return (*SIDES, "raw_store_sql") if self.store_sql is not None else SIDES

    def _fetcher(self, side: str, task: int) -> Callable[[Query], Awaitable[object]]:
        """One query on an async side (for task ``task`` of a concurrent run)."""
        if side == "pgvs":
            search = self.store.search
            return lambda query: search(query, k=K)
        if side == "raw":
            return self.statements[task].fetch
        assert self.store_sql is not None
        fetch = self.store_sql.statements[task].fetch
        args = self.store_sql.args
        return lambda query: fetch(*args(query))

    # sequential latency --------------------------------------------------------------------

    async def latencies(self, side: str, queries: Sequence[Query]) -> list[float]:
        samples: list[float] = []
        clock = time.perf_counter
        if side == "sync":
            # Blocks this (otherwise idle) loop: the caller is plain synchronous code.
            sync_search = self.sync_store.search
            for query in queries:
                start = clock()
                sync_search(query, k=K)
                samples.append(clock() - start)
            return samples
        fetch = self._fetcher(side, 0)
        for query in queries:
            start = clock()
            await fetch(query)
            samples.append(clock() - start)
        return samples

    # concurrent throughput -----------------------------------------------------------------

    async def throughput(self, side: str, work: list[list[Query]]) -> float:
        total = sum(len(part) for part in work)
        if side == "sync":
            sync_search = self.sync_store.search

            def run(part: Sequence[Query]) -> None:
                for query in part:
                    sync_search(query, k=K)

            return total / _sync_threads(run, work)

        async def worker(part: Sequence[Query], task: int) -> None:
            fetch = self._fetcher(side, task)
            for query in part:
                await fetch(query)

        start = time.perf_counter()
        await asyncio.gather(*(worker(part, task) for task, part in enumerate(work)))
        return total / (time.perf_counter() - start)


class StoreSql:
    """The store's own search statement, prepared on the raw connections (a diagnostic side:
    it separates what the SQL costs on the server from what pgvs costs in the client)."""

    def __init__(
        self,
        sql: str,
        statements: list[asyncpg.prepared_stmt.PreparedStatement[Any]],
        domain: str,
    ) -> None:
        self.sql = sql
        self.statements = statements
        kinds = [parameter.name for parameter in statements[0].get_parameters()]
        unknown = [kind for kind in kinds if kind not in ("vector", "int4", "int8", "text")]
        if unknown:
            raise TypeError(f"unexpected parameter types {unknown}")
        self.kinds = kinds
        self.domain = domain

    def args(self, query: Query) -> list[Any]:
        by_kind = {"vector": query, "int4": K, "int8": K, "text": self.domain}
        return [by_kind[kind] for kind in self.kinds]

    @classmethod
    async def prepare(
        cls, store: AsyncPGVectorStore, connections: Sequence[asyncpg.Connection[Any]]
    ) -> StoreSql | None:
        try:  # private API: skipped (with a note) if the store's internals have moved on
            sql = store._ctx.sql.search(
                condition=None, include_metadata=True, include_vectors=False
            )
            statements = [await conn.prepare(sql) for conn in connections]
            return cls(sql, statements, store._ctx.domain)
        except (AttributeError, TypeError, asyncpg.PostgresError) as exc:
            progress(f"note: the store's search SQL is not available ({exc}); side skipped")
            return None


async def _check_same_results(bench: Bench, queries: Sequence[Query]) -> int:
    """How many queries return different ids (in order) from pgvs, raw and sync."""
    differing = 0
    for query in queries:
        pgvs_ids = [hit.id for hit in await bench.store.search(query, k=K)]
        raw_ids = [row["id"] for row in await bench.statements[0].fetch(query)]
        sync_ids = [hit.id for hit in bench.sync_store.search(query, k=K)]
        if not pgvs_ids == raw_ids == sync_ids or len(raw_ids) != K:
            differing += 1
    return differing


async def _plan(conn: asyncpg.Connection[Any], sql: str, query: Query) -> str:
    """The plan's first two nodes, e.g. ``Limit / Index Scan using ..._hnsw on ...``."""
    rows = await conn.fetch("EXPLAIN (COSTS OFF) " + sql, query)
    return " / ".join(str(row[0]).strip().removeprefix("->  ") for row in rows[:2])


async def _prepare_table(
    store: AsyncPGVectorStore, args: argparse.Namespace, vectors: np.ndarray[Any, Any]
) -> dict[str, Any]:
    """Fill the table (unless ``--reuse`` finds it full) and make sure it has an HNSW index."""
    pool = store.pool
    schema, table = store.config.schema, store.config.table_name
    qualified = f"{quote_ident(schema)}.{quote_ident(table)}"
    info: dict[str, Any] = {"load_s": None}
    count_sql = f"SELECT count(*) FROM {qualified}"  # noqa: S608 (quoted identifiers)
    if not (args.reuse and await pool.fetchval(count_sql) == args.rows):
        await pool.execute(f"TRUNCATE {qualified}")
        started = time.perf_counter()
        await _load(store, vectors, args.batch)
        info["load_s"] = round(time.perf_counter() - started, 2)
        progress(f"loaded {args.rows} rows x {args.dim} dims in {info['load_s']} s")
    started = time.perf_counter()
    name, built = await _ensure_hnsw(pool, schema, table)
    info["index_built"] = built
    info["index_build_s"] = round(time.perf_counter() - started, 2) if built else None
    progress(
        f"HNSW index {name} {'built in ' + str(info['index_build_s']) + ' s' if built else 'found'}"
    )
    await pool.execute(f"VACUUM ANALYZE {qualified}")
    return info


async def _measure(
    bench: Bench, queries: Sequence[Query], args: argparse.Namespace
) -> tuple[dict[str, list[list[float]]], dict[str, list[float]]]:
    """Per-round latency samples and per-round throughputs of every side, interleaved."""
    sides = bench.sides
    # Warm-up: every pool connection (pgvs and sync) and every raw statement is used, the plan
    # caches settle, the table and index are in shared buffers.
    warm = _blocks(queries, args.per_task, CONCURRENCY)
    for side in sides:
        await bench.throughput(side, warm)
        await bench.latencies(side, queries)
    progress(
        f"latency: {args.rounds} rounds x {args.block} queries per side; throughput: "
        f"{args.qps_rounds} rounds x {CONCURRENCY} tasks x {args.per_task} queries per side"
    )
    lat: dict[str, list[list[float]]] = {side: [] for side in sides}
    for r, block in enumerate(_blocks(queries, args.block, args.rounds)):
        for side in sides[r % len(sides) :] + sides[: r % len(sides)]:
            gc.collect()
            lat[side].append(await bench.latencies(side, block))
    qps: dict[str, list[float]] = {side: [] for side in sides}
    count = len(queries)
    for r in range(args.qps_rounds):
        work = [
            [queries[(r * 97 + t * args.per_task + j) % count] for j in range(args.per_task)]
            for t in range(CONCURRENCY)
        ]
        for side in sides[r % len(sides) :] + sides[: r % len(sides)]:
            gc.collect()
            qps[side].append(await bench.throughput(side, work))
    return lat, qps


def _summarise(lat: dict[str, list[list[float]]], qps: dict[str, list[float]]) -> dict[str, Any]:
    stats = {side: _per_round_stats(rounds) for side, rounds in lat.items()}
    qps_median = {side: statistics.median(values) for side, values in qps.items()}
    result: dict[str, Any] = {}
    for side in lat:
        result[f"{side}_p50_ms"] = round(stats[side]["p50"], 4)
    result["ratio_p50"] = round(stats["pgvs"]["p50"] / stats["raw"]["p50"], 3)
    result["ratio_p50_paired"] = round(
        statistics.median(
            quantile(p, 0.5) / quantile(r, 0.5)
            for p, r in zip(lat["pgvs"], lat["raw"], strict=True)
        ),
        3,
    )
    for side in qps:
        result[f"{side}_qps_8"] = round(qps_median[side], 1)
    result["ratio_qps_8"] = round(qps_median["pgvs"] / qps_median["raw"], 3)
    result["ratio_sync_async"] = round(stats["sync"]["p50"] / stats["pgvs"]["p50"], 3)
    result["targets_met"] = (
        result["ratio_p50"] <= 1.05
        and result["ratio_qps_8"] >= 0.95
        and result["ratio_sync_async"] <= 1.10
    )
    if "raw_store_sql" in stats:
        # Where the gap comes from: the SQL the store sends (server) vs the client path.
        result["ratio_store_sql_vs_raw"] = round(
            stats["raw_store_sql"]["p50"] / stats["raw"]["p50"], 3
        )
        result["ratio_pgvs_vs_store_sql"] = round(
            stats["pgvs"]["p50"] / stats["raw_store_sql"]["p50"], 3
        )
    for side in lat:
        result[f"{side}_p90_ms"] = round(stats[side]["p90"], 4)
    for side in lat:
        progress(
            f"  {side:13s} p50 {stats[side]['p50']:.3f} ms  p90 {stats[side]['p90']:.3f} ms  "
            f"qps_8 {qps_median[side]:.0f}"
        )
    return result


async def run(args: argparse.Namespace, dsn: str) -> dict[str, Any]:
    dim: int = args.dim
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((args.rows, dim), dtype=np.float32)
    queries = list(rng.standard_normal((args.queries, dim), dtype=np.float32))

    config = StoreConfig(
        connection_string=dsn,
        dimensions=dim,
        table_name=f"bench_search_{args.rows}x{dim}",
        index_type="none",
    )
    setup = AsyncPGVectorStore(config)
    await setup.initialize()
    try:
        info = await _prepare_table(setup, args, vectors)
    finally:
        await setup.close()
    # Opened once the index exists, as an application would find the table: the store picks its
    # query settings (e.g. hnsw.ef_search) from the indexes it sees at initialize().
    store = AsyncPGVectorStore(config)
    await store.initialize()
    sync_store: PGVectorStore | None = None
    connections: list[asyncpg.Connection[Any]] = []
    qualified = f"{quote_ident(config.schema)}.{quote_ident(config.table_name)}"
    try:
        sync_store = PGVectorStore(config)
        sync_store.initialize()
        settings = await _settings(store.pool)
        sync_settings = sync_store.run(lambda s: _settings(s.pool))
        if sync_settings != settings:
            progress(f"WARNING: sync store settings {sync_settings} differ from {settings}")
        raw_settings = {name: value for name, value in settings.items() if value != "None"}
        connections = [await _raw_connection(dsn, raw_settings) for _ in range(CONCURRENCY)]
        sql = raw_sql(qualified)
        statements = [await conn.prepare(sql) for conn in connections]
        store_sql = await StoreSql.prepare(store, connections) if args.store_sql else None
        bench = Bench(store, sync_store, connections, statements, store_sql)
        plan = await _plan(connections[0], sql, queries[0])
        if "hnsw" not in plan.lower():
            progress(f"WARNING: the raw query does not use the HNSW index: {plan}")
        differing = await _check_same_results(bench, queries[:20])
        if differing:
            progress(f"WARNING: {differing} of 20 queries returned different ids across sides")

        lat, qps = await _measure(bench, queries, args)
        result: dict[str, Any] = {"bench": "search", "rows": args.rows, "dim": dim, "k": K}
        result.update(_summarise(lat, qps))
        if args.breakdown:
            progress("breakdown of the pgvs path")
            result["breakdown"] = await _breakdown(bench, queries, dsn)
        result.update(
            {
                "rounds": args.rounds,
                "block": args.block,
                "qps_rounds": args.qps_rounds,
                "per_task": args.per_task,
                "pool_max_size": store.config.pool_max_size,
                "settings": settings,
                **info,
                "plan": plan,
                "differing_results": differing,
                "server": str(await store.pool.fetchval("SHOW server_version")),
                "pgvector": str(
                    await store.pool.fetchval(
                        "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
                    )
                ),
                "python": platform.python_version(),
                "asyncpg": asyncpg.__version__,
            }
        )
        return result
    finally:
        for conn in connections:
            await conn.close()
        if sync_store is not None:
            sync_store.close()
        if not args.keep:
            await store.pool.execute(f"DROP TABLE IF EXISTS {qualified}")
        await store.close()


def _micro_us(run: Callable[[], object], number: int) -> float:
    """Best of 5 timings of ``number`` calls, µs per call (a pure-Python cost, no I/O)."""
    return min(timeit.repeat(run, number=number, repeat=5)) / number * 1e6


async def _async_medians_us(
    cases: dict[str, Callable[[], Awaitable[object]]], *, calls: int, rounds: int
) -> dict[str, float]:
    """Median µs per call of each coroutine-making case, cases interleaved round by round."""
    clock = time.perf_counter
    per_round: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(rounds + 1):
        for name, make in cases.items():
            samples = []
            for _ in range(calls):
                start = clock()
                await make()
                samples.append(clock() - start)
            if r:  # round 0 warms up
                per_round[name].append(statistics.median(samples))
    return {name: round(statistics.median(values) * 1e6, 1) for name, values in per_round.items()}


async def _breakdown(bench: Bench, queries: Sequence[Query], dsn: str) -> dict[str, Any]:
    """What pgvs's search path costs on top of a prepared statement, piece by piece (µs).

    Pure-Python pieces are timed alone (best of 5); the pieces with I/O (``SELECT 1`` over a
    bare connection, one with the store's ``command_timeout``, and through the pool; an idle
    pool acquire/release; the sync facade's hand-off of a coroutine that does nothing) are
    medians of interleaved rounds. Uses store internals; a piece that moved is reported as None.
    """
    store = bench.store
    out: dict[str, Any] = {}
    query = queries[0]
    encode = codec_functions(numpy=True)["vector"][0]
    records = await bench.statements[0].fetch(query)
    wire: list[bytes] = []

    def query_value() -> None:
        wire[:] = [store._ctx.query_value(query)]

    micro: dict[str, Callable[[], object]] = {
        # the store's check + conversion of the query; then the codec checks those bytes again
        "query_value_us": query_value,
        "encode_query_bytes_us": lambda: encode(wire[0]),
        # what the raw side pays instead: the codec's fast path on the float32 row
        "encode_query_ndarray_us": lambda: encode(query),
        "results_10_rows_us": lambda: [store._ctx.row_to_result(r, True, False) for r in records],
        "read_10_records_us": lambda: [
            (r["id"], float(r["distance"]), r["metadata"], r["content"]) for r in records
        ],
    }
    for name, run in micro.items():
        try:
            out[name] = round(_micro_us(run, 2000), 2)
        except (AttributeError, TypeError, IndexError):
            out[name] = None

    timeout_conn = await asyncpg.connect(dsn, command_timeout=store.config.command_timeout)
    raw_conn: asyncpg.Connection[Any] = await asyncpg.connect(dsn)
    pool = store.pool

    async def acquire_release() -> None:
        async with pool.acquire():
            pass

    async def nothing(_store: AsyncPGVectorStore) -> None:
        return None

    async def sync_handoff() -> None:  # blocks this loop, as a sync caller's thread would be
        bench.sync_store.run(nothing)

    try:
        out.update(
            await _async_medians_us(
                {
                    "select1_bare_us": lambda: raw_conn.fetchval("SELECT 1"),
                    "select1_command_timeout_us": lambda: timeout_conn.fetchval("SELECT 1"),
                    "select1_pool_us": lambda: pool.fetchval("SELECT 1"),
                    "pool_acquire_release_us": acquire_release,
                    "sync_handoff_us": sync_handoff,
                },
                calls=100,
                rounds=10,
            )
        )
    finally:
        await timeout_conn.close()
        await raw_conn.close()
    out["plans"] = await _plan_counts(bench)
    return out


async def _plan_counts(bench: Bench) -> dict[str, Any]:
    """Generic vs custom plans so far of the raw statement and the store's, on connection 0.

    A statement whose generic plan looks costlier than its custom ones is planned anew on
    every execution (``LIMIT $n`` does that: the planner assumes 10% of the rows).
    """
    counts: dict[str, Any] = {}
    targets = {"raw": bench.statements[0].get_query()}
    if bench.store_sql is not None:
        targets["store_sql"] = bench.store_sql.sql
    for name, text in targets.items():
        row = await bench.connections[0].fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
            text,
        )
        counts[name] = dict(row) if row is not None else None
    return counts


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench search", description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000, help="rows in the table (10000)")
    parser.add_argument("--dim", type=int, default=384, help="vector dimensions (384)")
    parser.add_argument("--queries", type=int, default=200, help="distinct query vectors (200)")
    parser.add_argument("--rounds", type=int, default=25, help="latency rounds (25)")
    parser.add_argument("--block", type=int, default=40, help="queries per side per round (40)")
    parser.add_argument("--qps-rounds", type=int, default=10, help="throughput rounds (10)")
    parser.add_argument("--per-task", type=int, default=25, help="queries per task per round")
    parser.add_argument("--batch", type=int, default=1000, help="rows per add_vectors call")
    parser.add_argument("--breakdown", action="store_true", help="time the pgvs path's parts")
    parser.add_argument(
        "--no-store-sql",
        dest="store_sql",
        action="store_false",
        help="skip the diagnostic side running the store's own SQL as a prepared statement",
    )
    parser.add_argument("--keep", action="store_true", help="keep the table afterwards")
    parser.add_argument("--reuse", action="store_true", help="reuse a kept, full table")
    args = parser.parse_args(argv)
    progress(f"bench search: {args.rows} rows x {args.dim} dims, top-{K} cosine, HNSW")
    with database() as dsn:
        result = asyncio.run(run(args, dsn))
    emit(result)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
