"""Storage benchmark: which ``STORAGE`` the embedding column should have, measured.

``python -m bench storage [--dims 768,1536] [--rows 4000] [--modes plain,main,...,main:8160]``

For each dimension, one table per mode: a storage (``ALTER TABLE ... ALTER COLUMN embedding SET
STORAGE <storage>``), optionally with the table's ``toast_tuple_target`` (``main:8160`` is MAIN
and ``WITH (toast_tuple_target = 8160)``). Every table has the store's default columns (domain
id, uuid id, document id, chunk index, ~300 characters of content, the embedding, a small jsonb
document, created/updated timestamps; primary key (domain_id, id); no secondary indexes) and gets
the same rows. Each measurement is repeated with the tables' order rotating from repetition to
repetition (so drift in machine speed hits all alike); medians are reported:

- ``copy_rows_per_s``: a binary ``COPY`` of all rows into the truncated table (``--repeat``);
- ``table_bytes`` (``pg_table_size``: heap + TOAST + maps), ``heap_bytes``, ``toast_bytes``
  (``pg_relation_size`` of the TOAST table), ``avg_embedding_bytes`` (``pg_column_size``) and
  ``compressed_rows`` (``pg_column_compression``), after ``VACUUM ANALYZE``;
- ``exact_p50_ms``: top-10 cosine by sequential scan (no parallel workers: the per-row cost),
  the store's SELECT list (``--rounds`` x ``--block`` queries);
- ``metadata_scan_p50_ms``: ``count(*) ... WHERE metadata @> $1`` by sequential scan, what
  ``count(filter)`` / ``delete(filter)`` read without a usable index;
- ``hnsw_build_s``: ``CREATE INDEX ... USING hnsw (embedding vector_cosine_ops)`` with pgvector's
  defaults, maintenance_work_mem 512MB, no parallel workers (``--build-repeat``);
- ``hnsw_p50_ms``: the same top-10 query served by that index (``--hnsw-block`` per round).

Why ``toast_tuple_target`` matters: a row over ~2 KB makes PostgreSQL's toaster shrink it
towards 2 KB. With the vector kept inline (PLAIN / MAIN) that is impossible, so it compresses
and moves *the other* columns (content, metadata) to the TOAST table instead; a target of 8160
lets a row that fits in a page stay whole. A mode that cannot store the rows (PLAIN once the
vector alone passes ~8 KB: above ~2000 dimensions) reports its error; above 2000 dimensions
there is no HNSW part (pgvector's limit for ``vector``).

Uses ``DATABASE_URL`` when set (its tables are dropped afterwards), else a throwaway embedded
server. The defaults take about 5 minutes on a 2-core VM, most of it HNSW builds
(``--build-repeat 1`` halves that part).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import numpy as np

from pgvs._sql import quote_ident
from pgvs.codecs import register_vector

from ._util import database, emit, progress, quantile

STORAGES = ("plain", "main", "extended", "external")
# A mode is a storage, optionally with the table's toast_tuple_target ("main:8160").
MODES = (*STORAGES, "main:8160")
HNSW_MAX_DIM = 2000  # pgvector: an HNSW index on a vector column takes at most 2000 dimensions
K = 10
WORDS = (
    *("vector", "search", "postgres", "index", "graph", "neighbour", "query", "row", "page"),
    *("cache", "latency", "planner", "embedding", "document", "chunk", "metadata", "tenant"),
    *("filter", "score", "distance", "recall"),
)
COLUMNS = ("domain_id", "id", "document_id", "chunk_index", "content", "embedding", "metadata")


def _table(dim: int, mode: str) -> str:
    return quote_ident(f"bench_storage_{dim}_{mode.replace(':', '_')}")


def _ddl(dim: int, mode: str) -> list[str]:
    table = _table(dim, mode)
    storage, _, target = mode.partition(":")
    options = f" WITH (toast_tuple_target = {int(target)})" if target else ""
    return [
        f"DROP TABLE IF EXISTS {table}",
        f"CREATE TABLE {table} ("
        "domain_id text NOT NULL DEFAULT '', id uuid NOT NULL, document_id text, "
        f"chunk_index integer, content text, embedding vector({dim}) NOT NULL, "
        "metadata jsonb NOT NULL DEFAULT '{}'::jsonb, "
        "created_at timestamptz NOT NULL DEFAULT now(), "
        "updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (domain_id, id))" + options,
        f"ALTER TABLE {table} ALTER COLUMN embedding SET STORAGE {storage.upper()}",
    ]


def _search_sql(table: str) -> str:
    return (
        "SELECT id::text AS id, embedding <=> $1::vector AS distance, metadata, "  # noqa: S608
        f"content, document_id, chunk_index FROM {table} ORDER BY distance LIMIT {K}"
    )


def _filter_sql(table: str) -> str:
    """A metadata-only scan (no GIN index): what count(filter) / delete(filter) read."""
    return f"SELECT count(*) FROM {table} WHERE metadata @> $1::jsonb"  # noqa: S608


def _records(vectors: np.ndarray[Any, Any]) -> list[tuple[Any, ...]]:
    rng = np.random.default_rng(11)
    ids = [uuid.UUID(bytes=bytes(rng.integers(0, 256, 16, dtype=np.uint8))) for _ in vectors]
    records = []
    for i, vector in enumerate(vectors):
        content = " ".join(WORDS[(i * 31 + j * 17) % len(WORDS)] for j in range(45))
        metadata = (
            f'{{"category": "{("news", "blog", "paper")[i % 3]}", "year": {2000 + i % 25}, '
            f'"tags": ["{WORDS[i % len(WORDS)]}"]}}'
        )
        records.append(("", ids[i], f"doc-{i // 8}", i % 8, content, vector, metadata))
    return records


def _rotated(items: Sequence[str], turn: int) -> list[str]:
    shift = turn % len(items)
    return [*items[shift:], *items[:shift]]


async def _copy(conn: asyncpg.Connection[Any], table: str, records: list[tuple[Any, ...]]) -> float:
    """Seconds for one binary COPY of ``records`` into the emptied table."""
    await conn.execute(f"TRUNCATE {table}")
    start = time.perf_counter()
    await conn.copy_records_to_table(table.strip('"'), records=records, columns=list(COLUMNS))
    return time.perf_counter() - start


async def _sizes(conn: asyncpg.Connection[Any], table: str) -> dict[str, Any]:
    row = await conn.fetchrow(
        "SELECT pg_table_size(c.oid) AS table_bytes, pg_relation_size(c.oid) AS heap_bytes, "
        "coalesce(pg_relation_size(nullif(c.reltoastrelid, 0)), 0) AS toast_bytes "
        "FROM pg_class c WHERE c.oid = to_regclass($1)",
        table,
    )
    assert row is not None
    column = await conn.fetchrow(
        "SELECT avg(pg_column_size(embedding))::float8 AS avg_embedding_bytes, "  # noqa: S608
        "count(*) FILTER (WHERE pg_column_compression(embedding) IS NOT NULL) "
        f"AS compressed_rows FROM {table}"
    )
    assert column is not None
    return {**dict(row), "avg_embedding_bytes": round(column[0], 1), "compressed_rows": column[1]}


async def _latencies(
    statement: asyncpg.prepared_stmt.PreparedStatement[Any], queries: Sequence[Any]
) -> list[float]:
    samples = []
    for query in queries:
        start = time.perf_counter()
        rows = await statement.fetch(query)
        samples.append(time.perf_counter() - start)
        assert rows
    return samples


async def _search_rounds(
    conn: asyncpg.Connection[Any],
    tables: dict[str, str],
    queries: Sequence[Any],
    rounds: int,
    block: int,
    sql: Callable[[str], str] = _search_sql,
) -> dict[str, float]:
    """Each table's p50 in ms: the median over rounds of the per-round median latency."""
    statements = {mode: await conn.prepare(sql(table)) for mode, table in tables.items()}
    for statement in statements.values():  # warm-up: pages cached, plans settled
        await _latencies(statement, queries[: max(6, block // 2)])
    per_round: dict[str, list[float]] = {mode: [] for mode in tables}
    for r in range(rounds):
        block_queries = [queries[(r * block + j) % len(queries)] for j in range(block)]
        for mode in _rotated(list(tables), r):
            per_round[mode].append(quantile(await _latencies(statements[mode], block_queries), 0.5))
    return {mode: statistics.median(values) * 1e3 for mode, values in per_round.items()}


async def _one_dimension(
    conn: asyncpg.Connection[Any], dim: int, args: argparse.Namespace
) -> dict[str, Any]:
    rng = np.random.default_rng(dim)
    vectors = rng.standard_normal((args.rows, dim), dtype=np.float32)
    queries = list(rng.standard_normal((args.queries, dim), dtype=np.float32))
    records = _records(vectors)
    results: dict[str, Any] = {}
    tables: dict[str, str] = {}
    for mode in args.modes:
        for statement in _ddl(dim, mode):
            await conn.execute(statement)
        try:
            await _copy(conn, _table(dim, mode), records[:50])
        except asyncpg.PostgresError as exc:
            progress(f"  {dim}-d {mode}: cannot store the rows: {exc}")
            results[mode] = {"error": f"{type(exc).__name__}: {exc}"}
            await conn.execute(f"DROP TABLE {_table(dim, mode)}")
            continue
        tables[mode] = _table(dim, mode)
    if not tables:
        return results

    progress(f"{dim}-d: COPY {args.rows} rows x {args.repeat} into {', '.join(tables)}")
    copy_s: dict[str, list[float]] = {mode: [] for mode in tables}
    for r in range(args.repeat):
        for mode in _rotated(list(tables), r):
            copy_s[mode].append(await _copy(conn, tables[mode], records))
    for mode, table in tables.items():
        await conn.execute(f"VACUUM ANALYZE {table}")
        results[mode] = {
            "copy_rows_per_s": round(args.rows / statistics.median(copy_s[mode])),
            **await _sizes(conn, table),
        }

    progress(f"{dim}-d: exact search and a metadata scan, {args.rounds} rounds")
    await conn.execute("SET max_parallel_workers_per_gather = 0")
    exact = await _search_rounds(conn, tables, queries, args.rounds, args.block)
    filters = ['{"category": "news"}', '{"category": "blog"}', '{"year": 2010}']
    scan = await _search_rounds(conn, tables, filters, args.rounds, args.block, _filter_sql)
    await conn.execute("RESET max_parallel_workers_per_gather")

    for mode in tables:
        results[mode]["exact_p50_ms"] = round(exact[mode], 3)
        results[mode]["metadata_scan_p50_ms"] = round(scan[mode], 3)
    if dim > HNSW_MAX_DIM:
        progress(f"{dim}-d: no HNSW (pgvector indexes vector columns of at most 2000 dimensions)")
    else:
        await _hnsw(conn, dim, tables, queries, args, results)
    for mode in tables:
        shown = results[mode]
        progress(
            f"  {dim}-d {mode:8s} copy {shown['copy_rows_per_s']:>7} rows/s  "
            f"table {shown['table_bytes'] / 2**20:6.1f} MiB (toast "
            f"{shown['toast_bytes'] / 2**20:5.1f})  exact {shown['exact_p50_ms']:7.2f} ms  "
            f"build {shown.get('hnsw_build_s', float('nan')):6.2f} s  "
            f"hnsw {shown.get('hnsw_p50_ms', float('nan')):.3f} ms"
        )
    if not args.keep:
        for table in tables.values():
            await conn.execute(f"DROP TABLE IF EXISTS {table}")
    return results


async def _hnsw(
    conn: asyncpg.Connection[Any],
    dim: int,
    tables: dict[str, str],
    queries: list[Any],
    args: argparse.Namespace,
    results: dict[str, Any],
) -> None:
    """HNSW build time and HNSW search p50 of every table, into ``results``."""
    progress(f"{dim}-d: HNSW builds x {args.build_repeat}")
    await conn.execute("SET maintenance_work_mem = '512MB'")
    await conn.execute("SET max_parallel_maintenance_workers = 0")
    build_s: dict[str, list[float]] = {mode: [] for mode in tables}
    for r in range(args.build_repeat):
        for mode in _rotated(list(tables), r):
            index = quote_ident(f"bench_storage_{dim}_{mode}_hnsw")
            await conn.execute(f"DROP INDEX IF EXISTS {index}")
            start = time.perf_counter()
            await conn.execute(
                f"CREATE INDEX {index} ON {tables[mode]} USING hnsw (embedding vector_cosine_ops)"
            )
            build_s[mode].append(time.perf_counter() - start)
    await conn.execute("RESET maintenance_work_mem")
    await conn.execute("RESET max_parallel_maintenance_workers")
    for table in tables.values():
        await conn.execute(f"ANALYZE {table}")

    progress(f"{dim}-d: HNSW search, {args.rounds} rounds x {args.hnsw_block} queries")
    # A small table may look cheaper to scan; what is measured here is the index path.
    await conn.execute("SET enable_seqscan = off")
    for mode, table in tables.items():
        plan = await conn.fetch("EXPLAIN (COSTS OFF) " + _search_sql(table), queries[0])
        if not any("hnsw" in str(row[0]) for row in plan):
            progress(f"WARNING: {dim}-d {mode}: the search does not use the HNSW index")
    hnsw = await _search_rounds(conn, tables, queries, args.rounds, args.hnsw_block)
    await conn.execute("RESET enable_seqscan")

    for mode in tables:
        results[mode]["hnsw_build_s"] = round(statistics.median(build_s[mode]), 3)
        results[mode]["hnsw_p50_ms"] = round(hnsw[mode], 4)


async def run(args: argparse.Namespace, dsn: str) -> dict[str, Any]:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(dsn, command_timeout=None)
    try:
        await register_vector(conn, numpy=True)
        from pgvs._statements import EMBEDDING_STORAGE

        result: dict[str, Any] = {
            "bench": "storage",
            "rows": args.rows,
            "store_default": EMBEDDING_STORAGE,
        }
        for dim in args.dims:
            result[f"d{dim}"] = await _one_dimension(conn, dim, args)
        result.update(
            {
                "repeat": args.repeat,
                "build_repeat": args.build_repeat,
                "rounds": args.rounds,
                "default_toast_compression": await conn.fetchval("SHOW default_toast_compression"),
                "server": await conn.fetchval("SHOW server_version"),
                "pgvector": await conn.fetchval(
                    "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
                ),
                "python": platform.python_version(),
            }
        )
        return result
    finally:
        await conn.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench storage", description=__doc__)
    parser.add_argument("--dims", default="768,1536", help="comma-separated (768,1536)")
    parser.add_argument("--rows", type=int, default=4000, help="rows per table (4000)")
    parser.add_argument("--modes", default=",".join(MODES), help="storage modes to compare")
    parser.add_argument("--repeat", type=int, default=5, help="COPY repetitions (5)")
    parser.add_argument("--build-repeat", type=int, default=2, help="HNSW builds per table (2)")
    parser.add_argument("--rounds", type=int, default=9, help="search rounds (9)")
    parser.add_argument("--block", type=int, default=6, help="exact queries per round (6)")
    parser.add_argument("--hnsw-block", type=int, default=40, help="HNSW queries per round (40)")
    parser.add_argument("--queries", type=int, default=100, help="distinct query vectors (100)")
    parser.add_argument("--keep", action="store_true", help="keep the tables afterwards")
    args = parser.parse_args(argv)
    args.dims = [int(part) for part in args.dims.split(",") if part.strip()]
    args.modes = [part.strip().lower() for part in args.modes.split(",") if part.strip()]
    for mode in args.modes:
        storage, _, target = mode.partition(":")
        if storage not in STORAGES or (
            target and not (target.isdigit() and 128 <= int(target) <= 8160)
        ):
            parser.error(
                f"bad mode {mode!r}: one of {', '.join(STORAGES)}, optionally followed by "
                ":<toast_tuple_target from 128 to 8160>"
            )
    progress(f"bench storage: {args.rows} rows, dims {args.dims}, modes {args.modes}")
    with database() as dsn:
        result = asyncio.run(run(args, dsn))
    emit(result)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
