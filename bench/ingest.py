"""Bulk-ingest benchmark: pgvs's ``ingest`` against asyncpg's binary COPY and the server alone.

``python -m bench ingest [--rows 20000] [--dim 768] [--repeat 3] [--hnsw-rows 1000] [--extended]``

Every method loads the same rows (a uuid id, a 768-d float32 vector, ~440 characters of content,
a 4-key metadata document, a document id and a chunk index) into an identical empty table: the
pgvs table is created by the store (``index_type="none"``: primary key, the GIN index on
metadata, the document_id index, the embedding stored MAIN), the others are ``CREATE TABLE ...
(LIKE pgvs_table INCLUDING ALL)``. Each repetition runs every case once, in rotating order, each
after ``TRUNCATE`` and ``CHECKPOINT``; medians are reported.

- ``server_copy_rows_per_s``: ``COPY table FROM '<file>' (FORMAT binary)`` of a server-side
  file holding the same rows (written by the server's own ``COPY ... TO``): no client at all.
- ``raw_copy_rows_per_s``: asyncpg's ``copy_records_to_table`` (binary) with pgvs's numpy vector
  codec, records built from the same Python inputs (``json.dumps`` of each metadata dict).
- ``raw_copy_analyzed_rows_per_s``: the same COPY followed by ``ANALYZE``, the state pgvs's
  ``ingest`` leaves a table it loaded 1,000+ rows into (``ratio_raw_analyzed``).
- ``pgvs_rows_per_s``: ``pgvs.ingest.ingest(store, vectors, ids=..., metadata=..., ...)``, an
  upsert, from the same inputs (validation included); ``ratio_server`` = pgvs / server copy.
- ``--extended`` adds ``pgvs_1conn_rows_per_s`` (``connections=1``: one batch in flight, no
  overlap with the next), ``pgvs_reingest_rows_per_s`` (the same ingest again onto the
  filled table: every row takes the staging-table upsert path) and
  ``add_vectors_rows_per_s`` (``add_vectors`` in calls of 2000 rows).
- HNSW: ``--hnsw-rows`` rows into a table that already has the store's HNSW index (pgvector
  defaults m=16, ef_construction=64), pgvs (its default batch of 500 rows there) against raw
  COPY; 0 skips it.
- ``peak_rss_mb``: peak RSS of a separate process that streams ``--rows`` generated records
  (dicts, never all in memory) through ``ingest`` into a fresh table; compare two ``--rows``.

``profile`` is the pgvs run's time per stage, in seconds summed over batches (from
``IngestResult.details``): ``encode`` (validation + binary encoding, in the worker thread,
overlapped with the server), ``probe`` (id lookups; none into an empty domain), ``copy``
(COPY into the table; two batches may copy at once), ``wait_turn`` (waiting for an earlier
batch with shared ids to write), ``wait_commit`` (for the previous batch to commit),
``commit``.

Uses ``DATABASE_URL`` when set (a superuser: server-side COPY files), else a throwaway embedded
server. The defaults take about 70 s on a 2-core VM; the bigger run is ``--rows 100000 --repeat
3`` (about 2.5 minutes). ``--connections`` sets ingest's (default 2).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import numpy as np

from pgvs._sql import quote_ident
from pgvs.codecs import register_vector
from pgvs.ingest import IngestResult, ingest
from pgvs.store import AsyncPGVectorStore

from ._util import database, emit, progress

WORDS = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
]
CHUNK = 1000  # rows generated per seed, so any slice of the data can be regenerated alone
PGVS_TABLE = "bench_ingest_pgvs"
RAW_TABLE = "bench_ingest_raw"
SERVER_TABLE = "bench_ingest_server"
HNSW_PGVS_TABLE = "bench_ingest_hnsw_pgvs"
HNSW_RAW_TABLE = "bench_ingest_hnsw_raw"
MEMORY_TABLE = "bench_ingest_memory"
COLUMNS = ["domain_id", "id", "embedding", "content", "metadata", "document_id", "chunk_index"]


class Rows:
    """The benchmark's rows, as the Python inputs a user would hold."""

    def __init__(self, rows: int, dim: int, seed: int = 7) -> None:
        self.vectors = np.empty((rows, dim), dtype=np.float32)
        self.ids: list[str] = []
        self.metadata: list[dict[str, Any]] = []
        self.contents: list[str] = []
        self.document_ids: list[str] = []
        self.chunk_indexes: list[int] = []
        for start in range(0, rows, CHUNK):
            part = chunk(start, min(CHUNK, rows - start), dim, seed)
            self.vectors[start : start + len(part["ids"])] = part["vectors"]
            self.ids += part["ids"]
            self.metadata += part["metadata"]
            self.contents += part["contents"]
            self.document_ids += part["document_ids"]
            self.chunk_indexes += part["chunk_indexes"]

    def __len__(self) -> int:
        return len(self.ids)

    def records(self) -> Iterator[tuple[Any, ...]]:
        """asyncpg COPY records, built from the inputs as a user of raw COPY would."""
        dumps = json.dumps
        for i, vector in enumerate(self.vectors):
            yield (
                "",
                self.ids[i],
                vector,
                self.contents[i],
                dumps(self.metadata[i]),
                self.document_ids[i],
                self.chunk_indexes[i],
            )


def chunk(start: int, count: int, dim: int, seed: int) -> dict[str, Any]:
    """Rows ``start .. start + count - 1`` (``start`` a multiple of CHUNK), deterministically."""
    rng = np.random.default_rng([seed, start // CHUNK])
    vectors = rng.standard_normal((count, dim), dtype=np.float32)
    raw_ids = rng.bytes(16 * count)
    ids = [str(uuid.UUID(bytes=raw_ids[16 * i : 16 * i + 16], version=4)) for i in range(count)]
    contents, metadata, document_ids, chunk_indexes = [], [], [], []
    for offset in range(count):
        n = start + offset
        contents.append(f"chunk {n}: " + " ".join(WORDS[(n + k) % len(WORDS)] for k in range(70)))
        metadata.append(
            {"source": f"doc-{n // 10}", "page": n % 50, "lang": "en", "score": (n % 100) / 100}
        )
        document_ids.append(f"doc-{n // 10}")
        chunk_indexes.append(n % 10)
    return {
        "vectors": vectors,
        "ids": ids,
        "metadata": metadata,
        "contents": contents,
        "document_ids": document_ids,
        "chunk_indexes": chunk_indexes,
    }


def streamed_records(rows: int, dim: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """The same rows as dict records, generated CHUNK at a time (bounded memory)."""
    for start in range(0, rows, CHUNK):
        part = chunk(start, min(CHUNK, rows - start), dim, seed)
        for i, vector in enumerate(part["vectors"]):
            yield {
                "id": part["ids"][i],
                "vector": vector,
                "metadata": part["metadata"][i],
                "content": part["contents"][i],
                "document_id": part["document_ids"][i],
                "chunk_index": part["chunk_indexes"][i],
            }


def _rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it is not inherited across exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover


async def memory_probe(dsn: str, rows: int, dim: int, batch_size: int | None) -> dict[str, Any]:
    """Stream generated records through ingest; the process's peak RSS is the answer."""
    store = AsyncPGVectorStore(
        connection_string=dsn, dimensions=dim, table_name=MEMORY_TABLE, index_type="none"
    )
    async with store:
        await store.pool.execute(f"TRUNCATE {quote_ident(MEMORY_TABLE)}")
        before = _rss_mb()
        result = await ingest(store, streamed_records(rows, dim), batch_size=batch_size)
        await store.pool.execute(f"DROP TABLE {quote_ident(MEMORY_TABLE)}")
    return {
        "rows": result.rows_written,
        "rows_per_s": round(result.rows_per_second),
        "rss_before_ingest_mb": round(before, 1),
        "peak_rss_mb": round(_rss_mb(), 1),
    }


def run_memory_probe(dsn: str, rows: int, dim: int, batch_size: int | None) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench", "ingest", "--memory-probe", "--dsn", dsn]
    command += ["--rows", str(rows), "--dim", str(dim)]
    if batch_size:
        command += ["--batch-size", str(batch_size)]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"memory probe failed:\n{completed.stderr}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


class Bench:
    def __init__(self, dsn: str, data: Rows, args: argparse.Namespace) -> None:
        self.dsn = dsn
        self.data = data
        self.args = args
        self.conn: Any = None  # plain asyncpg connection with the vector codec (raw COPY, DDL)
        self.store: AsyncPGVectorStore | None = None
        self.hnsw_store: AsyncPGVectorStore | None = None
        self.server_file = ""
        self.results: dict[str, IngestResult] = {}

    async def setup(self) -> None:
        self.conn = await asyncpg.connect(self.dsn)
        await register_vector(self.conn, numpy=True)
        for table in (
            PGVS_TABLE,
            RAW_TABLE,
            SERVER_TABLE,
            HNSW_PGVS_TABLE,
            HNSW_RAW_TABLE,
        ):
            await self.conn.execute(f"DROP TABLE IF EXISTS {quote_ident(table)}")
        self.store = AsyncPGVectorStore(
            connection_string=self.dsn,
            dimensions=self.args.dim,
            table_name=PGVS_TABLE,
            index_type="none",
        )
        await self.store.initialize()
        for table in (RAW_TABLE, SERVER_TABLE):
            await self.clone_table(PGVS_TABLE, table)
        # The server-side file: the same rows, written by the server itself.
        data_dir = await self.conn.fetchval("SHOW data_directory")
        self.server_file = os.path.join(data_dir, f"pgvs_bench_ingest_{os.getpid()}.bin")
        await self.raw_copy(SERVER_TABLE)
        await self.conn.execute(
            f"COPY {quote_ident(SERVER_TABLE)} TO '{self.server_file}' (FORMAT binary)"
        )
        if self.args.hnsw_rows:
            self.hnsw_store = AsyncPGVectorStore(
                connection_string=self.dsn,
                dimensions=self.args.dim,
                table_name=HNSW_PGVS_TABLE,
                index_type="hnsw",
            )
            await self.hnsw_store.initialize()
            await self.clone_table(HNSW_PGVS_TABLE, HNSW_RAW_TABLE)
            indexes = await self.conn.fetchval(
                "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'hnsw' "
                "AND i.indrelid = ANY($1::regclass[])",
                [HNSW_PGVS_TABLE, HNSW_RAW_TABLE],
            )
            if indexes != 2:
                raise RuntimeError("the HNSW tables do not both have an HNSW index")

    async def clone_table(self, source: str, target: str) -> None:
        """``LIKE ... INCLUDING ALL`` plus the storage parameters, which LIKE does not copy
        (the store sets toast_tuple_target)."""
        await self.conn.execute(
            f"CREATE TABLE {quote_ident(target)} (LIKE {quote_ident(source)} INCLUDING ALL)"
        )
        options = await self.conn.fetchval(
            "SELECT reloptions FROM pg_class WHERE oid = $1::regclass", source
        )
        for option in options or []:
            name, _, value = option.partition("=")
            if not re.fullmatch(r"[A-Za-z0-9_.]+", value):
                raise RuntimeError(f"unexpected storage parameter {option!r}")
            await self.conn.execute(
                f"ALTER TABLE {quote_ident(target)} SET ({quote_ident(name)} = {value})"
            )
        same = await self.conn.fetchval(
            "SELECT a.reloptions IS NOT DISTINCT FROM b.reloptions FROM pg_class a, pg_class b "
            "WHERE a.oid = $1::regclass AND b.oid = $2::regclass",
            source,
            target,
        )
        if not same:
            raise RuntimeError(f"{target} does not have the storage parameters of {source}")

    async def teardown(self) -> None:
        for store in (self.store, self.hnsw_store):
            if store is not None:
                await store.close()
        if self.conn is not None:
            for table in (PGVS_TABLE, RAW_TABLE, SERVER_TABLE, HNSW_PGVS_TABLE, HNSW_RAW_TABLE):
                await self.conn.execute(f"DROP TABLE IF EXISTS {quote_ident(table)}")
            await self.conn.close()
        with contextlib.suppress(OSError):
            os.remove(self.server_file)

    async def reset(self, table: str) -> None:
        await self.conn.execute(f"TRUNCATE {quote_ident(table)}")
        await self.conn.execute("CHECKPOINT")

    # -- the cases -----------------------------------------------------------------------------

    async def raw_copy(self, table: str, rows: int | None = None) -> None:
        records = self.data.records()
        if rows is not None:
            records = (record for _, record in zip(range(rows), records, strict=False))
        await self.conn.copy_records_to_table(table, records=records, columns=COLUMNS)

    async def raw_copy_analyzed(self) -> None:
        """Raw COPY, then ANALYZE: the state pgvs's ingest leaves (statistics for the planner)."""
        await self.raw_copy(RAW_TABLE)
        await self.conn.execute(f"ANALYZE {quote_ident(RAW_TABLE)}")

    async def server_copy(self) -> None:
        await self.conn.execute(
            f"COPY {quote_ident(SERVER_TABLE)} FROM '{self.server_file}' (FORMAT binary)"
        )

    async def pgvs(
        self, store: AsyncPGVectorStore, key: str, *, rows: int | None = None, **options: Any
    ) -> None:
        d = self.data
        cut = slice(0, rows if rows is not None else len(d))
        options.setdefault("batch_size", self.args.batch_size)
        options.setdefault("connections", self.args.connections)
        result = await ingest(
            store,
            d.vectors[cut],
            ids=d.ids[cut],
            metadata=d.metadata[cut],
            contents=d.contents[cut],
            document_ids=d.document_ids[cut],
            chunk_indexes=d.chunk_indexes[cut],
            **options,
        )
        if result.rows_written != cut.stop:
            raise RuntimeError(f"ingest wrote {result.rows_written} rows, expected {cut.stop}")
        self.results.setdefault(key, result)
        self.results[key + ":last"] = result

    async def add_vectors(self) -> None:
        assert self.store is not None
        d = self.data
        for start in range(0, len(d), 2000):
            cut = slice(start, start + 2000)
            await self.store.add_vectors(
                d.vectors[cut],
                d.ids[cut],
                d.metadata[cut],
                d.contents[cut],
                d.document_ids[cut],
                d.chunk_indexes[cut],
            )

    async def timed(
        self,
        cases: dict[str, tuple[str, Callable[[], Awaitable[None]]]],
        repeat: int,
        *,
        warmup: bool = True,
    ) -> dict[str, list[float]]:
        """Each case ``repeat`` times (after one warm-up), rotating the order; seconds."""
        samples: dict[str, list[float]] = {name: [] for name in cases}
        names = list(cases)
        for round_ in range(0 if warmup else 1, repeat + 1):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                table, run = cases[name]
                if table:
                    await self.reset(table)
                started = time.perf_counter()
                await run()
                elapsed = time.perf_counter() - started
                if round_ > 0:
                    samples[name].append(elapsed)
                progress(
                    f"  {'warm-up' if round_ == 0 else f'round {round_}'} {name}: {elapsed:.2f} s"
                )
        return samples


async def measure(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    progress(f"generating {args.rows} rows of {args.dim} dimensions")
    data = Rows(args.rows, args.dim)
    bench = Bench(dsn, data, args)
    await bench.setup()
    assert bench.store is not None
    store = bench.store
    try:

        async def reingest() -> None:
            await bench.pgvs(store, "reingest")

        cases: dict[str, tuple[str, Callable[[], Awaitable[None]]]] = {
            "server_copy": (SERVER_TABLE, bench.server_copy),
            "raw_copy": (RAW_TABLE, lambda: bench.raw_copy(RAW_TABLE)),
            "raw_copy_analyzed": (RAW_TABLE, bench.raw_copy_analyzed),
            "pgvs": (PGVS_TABLE, lambda: bench.pgvs(store, "pgvs")),
        }
        if args.extended:
            cases["pgvs_1conn"] = (PGVS_TABLE, lambda: bench.pgvs(store, "1conn", connections=1))
            cases["add_vectors"] = (PGVS_TABLE, bench.add_vectors)
        progress(f"timing {args.repeat} rounds of {', '.join(cases)}")
        samples = await bench.timed(cases, args.repeat)
        if args.extended:
            # The table is full now (the last case left it so): re-ingest is all upserts.
            await bench.pgvs(store, "fill")
            progress("timing re-ingest onto the filled table")
            samples.update(await bench.timed({"pgvs_reingest": ("", reingest)}, args.repeat))

        rows = len(data)
        medians = {name: statistics.median(times) for name, times in samples.items()}
        result: dict[str, Any] = {
            "benchmark": "ingest",
            "python": platform.python_version(),
            "server": await bench.conn.fetchval("SHOW server_version"),
            "rows": rows,
            "dim": args.dim,
            "repeat": args.repeat,
            "batch_size": bench.results["pgvs"].batch_size,
            "connections": args.connections,
            "pgvs_rows_per_s": round(rows / medians["pgvs"]),
            "raw_copy_rows_per_s": round(rows / medians["raw_copy"]),
            "server_copy_rows_per_s": round(rows / medians["server_copy"]),
            "ratio_server": round(medians["server_copy"] / medians["pgvs"], 3),
            "ratio_raw": round(medians["raw_copy"] / medians["pgvs"], 3),
            "raw_copy_analyzed_rows_per_s": round(rows / medians["raw_copy_analyzed"]),
            "ratio_raw_analyzed": round(medians["raw_copy_analyzed"] / medians["pgvs"], 3),
        }
        for name in ("pgvs_1conn", "add_vectors", "pgvs_reingest"):
            if name in medians:
                result[f"{name}_rows_per_s"] = round(rows / medians[name])
        result["seconds"] = {name: [round(t, 3) for t in times] for name, times in samples.items()}
        last = bench.results["pgvs:last"]
        result["profile"] = {key: round(value, 3) for key, value in sorted(last.details.items())}
        result["profile"]["elapsed"] = round(last.elapsed_seconds, 3)

        if args.hnsw_rows:
            assert bench.hnsw_store is not None
            hnsw_store = bench.hnsw_store
            hnsw_rows = min(args.hnsw_rows, rows)
            progress(f"timing {args.hnsw_repeat} rounds into tables with an HNSW index")
            hnsw = await bench.timed(
                {
                    "hnsw_raw_copy": (
                        HNSW_RAW_TABLE,
                        lambda: bench.raw_copy(HNSW_RAW_TABLE, hnsw_rows),
                    ),
                    "hnsw_pgvs": (
                        HNSW_PGVS_TABLE,
                        lambda: bench.pgvs(
                            hnsw_store, "hnsw", rows=hnsw_rows, batch_size=args.hnsw_batch_size
                        ),
                    ),
                },
                args.hnsw_repeat,
                warmup=False,
            )
            hm = {name: statistics.median(times) for name, times in hnsw.items()}
            result["hnsw_rows"] = hnsw_rows
            result["hnsw_batch_size"] = bench.results["hnsw"].batch_size
            result["hnsw_pgvs_rows_per_s"] = round(hnsw_rows / hm["hnsw_pgvs"])
            result["hnsw_raw_copy_rows_per_s"] = round(hnsw_rows / hm["hnsw_raw_copy"])
            result["hnsw_ratio_raw"] = round(hm["hnsw_raw_copy"] / hm["hnsw_pgvs"], 3)
    finally:
        await bench.teardown()
    if args.memory:
        progress(f"peak RSS: streaming {args.rows} records through ingest in a fresh process")
        probe = run_memory_probe(dsn, args.rows, args.dim, args.batch_size)
        result["peak_rss_mb"] = probe["peak_rss_mb"]
        result["memory_probe"] = probe
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench ingest", description=__doc__)
    parser.add_argument("--rows", type=int, default=20000, help="rows per ingest (20000)")
    parser.add_argument("--dim", type=int, default=768, help="vector dimensions (768)")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds per case (3)")
    parser.add_argument("--batch-size", type=int, default=None, help="ingest batch_size")
    parser.add_argument("--connections", type=int, default=2, help="ingest connections (2)")
    parser.add_argument("--hnsw-rows", type=int, default=2000, help="rows for the HNSW case")
    parser.add_argument("--hnsw-repeat", type=int, default=3, help="rounds of the HNSW case")
    parser.add_argument(
        "--hnsw-batch-size",
        type=int,
        default=None,
        help="ingest batch_size in the HNSW case (default: ingest's, 500 with a vector index)",
    )
    parser.add_argument(
        "--extended", action="store_true", help="also 1 connection, re-ingest and add_vectors"
    )
    parser.add_argument(
        "--no-memory", dest="memory", action="store_false", help="skip the peak-RSS process"
    )
    parser.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe:
        emit(asyncio.run(memory_probe(args.dsn, args.rows, args.dim, args.batch_size)))
        return 0
    if args.dsn:
        emit(asyncio.run(measure(args.dsn, args)))
        return 0
    with database() as dsn:
        result = asyncio.run(measure(dsn, args))
    emit(result)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
