"""``pgvs ingest`` (the command, in a subprocess) against ``store.ingest`` (in process).

``python -m bench cli [--rows 20000] [--dim 768] [--repeat 5] [--jsonl]``

The same ``.npy`` file (float32 rows from a fixed seed, no sidecar) goes into identical fresh
tables (``pgvs init --index none``: uuid ids, the metadata GIN index, no vector index), in
rotating order round after round; medians are reported.

- ``store_rows_per_s``: ``await store.ingest(np.load(path, mmap_mode="r"), ids=...)`` with the
  ids the command derives (uuid5 of the row number), in this process: ``IngestResult``'s rows/s.
- ``cli_rows_per_s``: the rows/s ``pgvs ingest PATH --json`` reports for its ingest (the same
  ``IngestResult`` figure); ``ratio`` = cli / store, the target being >= 0.9.
- ``store_cold_rows_per_s``: the same ``store.ingest`` call in a new interpreter per run, as the
  command's ingest runs (first calls, fresh caches); ``ratio_cold`` = cli / that.
- ``cli_wall_rows_per_s``: rows over the command's whole wall-clock time, process start,
  imports, reading the table's configuration and connecting included; ``wall_ratio`` = that /
  store. ``startup_s`` is the median of ``pgvs --version`` (interpreter and imports alone).
- ``--jsonl`` adds ``cli_jsonl_rows_per_s``: the same rows as JSON Lines (parsing every float).

``python -m bench cli --searchable [--rows 20000] [--repeat 3] [--incremental]``: time to
searchable instead. Each fresh table has the store's HNSW index (a default store's
``initialize()`` builds it on the empty table, as ``pgvs init`` does), and each case ends with that
index valid (checked in the catalog):

- ``store_s``: ``AsyncPGVectorStore(config)`` (``auto_create_index=True``) opened, ``ingest`` of
  the array, closed, in this process (``ingest`` loads, then builds the index once).
- ``cli_s``: the whole ``pgvs ingest PATH --json`` subprocess, interpreter start-up included
  (it loads, then builds: its report must say ``built_after_load``). ``ratio`` = cli / store.
- ``--incremental`` adds ``incremental_s``: ``store.ingest(build_after_load=False)``, the rows
  going into the index as they load (what ``pgvs ingest`` did before); ``speedup`` = that / cli.

Uses ``DATABASE_URL`` when set, else a throwaway embedded server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from pgvs import AsyncPGVectorStore
from pgvs.cli._readers import PositionIds, _position_id

from ._util import database, emit, progress

PGVS = Path(sys.executable).parent / "pgvs"


async def _fresh(dsn: str, dim: int, index_type: str = "none") -> str:
    table = f"bench_cli_{uuid.uuid4().hex[:10]}"
    config = {
        "dimensions": dim,
        "table_name": table,
        "index_type": index_type,
        "connection_string": dsn,
    }
    async with AsyncPGVectorStore(config):
        pass
    return table


async def _drop(dsn: str, table: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP TABLE IF EXISTS "{table}"')
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def store_case(dsn: str, table: str, path: Path, dim: int) -> float:
    array = np.load(path, mmap_mode="r")
    config = {
        "dimensions": dim,
        "table_name": table,
        "index_type": "none",
        "connection_string": dsn,
    }
    async with AsyncPGVectorStore(config) as store:
        ids = PositionIds(len(array), _position_id("uuid", 0))
        result = await store.ingest(array, ids=ids)
    return result.rows_per_second


def run_cli_ingest(dsn: str, table: str, path: Path) -> tuple[dict[str, Any], float]:
    """``pgvs ingest PATH --json`` as a subprocess: its report and the whole wall-clock
    seconds (process start-up included)."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(PGVS), "ingest", str(path), "--dsn", dsn, "--table", table, "--json", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    report: dict[str, Any] = json.loads(done.stdout)
    return report, wall


def cli_case(dsn: str, table: str, path: Path) -> tuple[float, float]:
    report, wall = run_cli_ingest(dsn, table, path)
    return float(report["rows_per_second"]), report["rows_read"] / wall


_COLD_SCRIPT = """
import asyncio, json, sys
import numpy as np
from pgvs import AsyncPGVectorStore
from pgvs.cli._readers import PositionIds, _position_id

async def main(dsn, table, path, dim):
    array = np.load(path, mmap_mode="r")
    config = {"dimensions": int(dim), "table_name": table, "index_type": "none",
              "connection_string": dsn}
    async with AsyncPGVectorStore(config) as store:
        result = await store.ingest(array, ids=PositionIds(len(array), _position_id("uuid", 0)))
    print(json.dumps(result.rows_per_second))

asyncio.run(main(*sys.argv[1:]))
"""


def cold_case(dsn: str, table: str, path: Path, dim: int) -> float:
    """``store.ingest`` in a new interpreter: what the command's own ingest starts from."""
    done = subprocess.run(
        [sys.executable, "-c", _COLD_SCRIPT, dsn, table, str(path), str(dim)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return float(json.loads(done.stdout.strip().splitlines()[-1]))


def startup_seconds() -> float:
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([str(PGVS), "--version"], capture_output=True, check=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def measure(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.rows, args.dim)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="pgvs-bench-cli-") as folder:
        npy = Path(folder) / "vectors.npy"
        np.save(npy, vectors)
        jsonl = Path(folder) / "rows.jsonl"
        if args.jsonl:
            with jsonl.open("w") as out:
                for row in vectors:
                    out.write(json.dumps({"embedding": row.tolist()}) + "\n")
        cases = ["store", "cold", "cli"] + (["jsonl"] if args.jsonl else [])
        samples: dict[str, list[float]] = {name: [] for name in [*cases, "wall"]}
        for round_ in range(args.repeat):
            order = cases[round_ % len(cases) :] + cases[: round_ % len(cases)]
            for name in order:
                table = asyncio.run(_fresh(dsn, args.dim))
                try:
                    if name == "store":
                        samples["store"].append(asyncio.run(store_case(dsn, table, npy, args.dim)))
                    elif name == "cold":
                        samples["cold"].append(cold_case(dsn, table, npy, args.dim))
                    elif name == "cli":
                        rate, wall = cli_case(dsn, table, npy)
                        samples["cli"].append(rate)
                        samples["wall"].append(wall)
                    else:
                        samples["jsonl"].append(cli_case(dsn, table, jsonl)[0])
                finally:
                    asyncio.run(_drop(dsn, table))
            progress(
                f"round {round_ + 1}: "
                + ", ".join(
                    f"{name} {values[-1]:,.0f}" for name, values in samples.items() if values
                )
            )
    store = statistics.median(samples["store"])
    cold = statistics.median(samples["cold"])
    cli = statistics.median(samples["cli"])
    wall = statistics.median(samples["wall"])
    result: dict[str, Any] = {
        "benchmark": "cli",
        "rows": args.rows,
        "dim": args.dim,
        "repeat": args.repeat,
        "store_rows_per_s": round(store),
        "cli_rows_per_s": round(cli),
        "ratio": round(cli / store, 3),
        "store_cold_rows_per_s": round(cold),
        "ratio_cold": round(cli / cold, 3),
        "cli_wall_rows_per_s": round(wall),
        "wall_ratio": round(wall / store, 3),
        "startup_s": round(startup_seconds(), 3),
        "samples": {name: [round(v) for v in values] for name, values in samples.items()},
        "python": platform.python_version(),
    }
    if args.jsonl:
        result["cli_jsonl_rows_per_s"] = round(statistics.median(samples["jsonl"]))
    return result


async def _index_valid(dsn: str, table: str) -> bool:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return bool(
            await conn.fetchval(
                "SELECT bool_and(i.indisvalid) AND count(*) = 1 FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam "
                "WHERE i.indrelid = to_regclass($1) AND am.amname = 'hnsw'",
                table,
            )
        )
    finally:
        await conn.close()


async def searchable_store_case(
    dsn: str, table: str, path: Path, dim: int, build_after_load: bool | None
) -> float:
    """Seconds from opening the store to ``ingest`` returning (index valid) and closing."""
    array = np.load(path, mmap_mode="r")
    config = {"dimensions": dim, "table_name": table, "connection_string": dsn}
    started = time.perf_counter()
    async with AsyncPGVectorStore(config) as store:
        ids = PositionIds(len(array), _position_id("uuid", 0))
        result = await store.ingest(array, ids=ids, build_after_load=build_after_load)
    seconds = time.perf_counter() - started
    if build_after_load is None and "index_build" not in result.details:
        raise RuntimeError(f"store.ingest did not build after the load: {result.index_note}")
    return seconds


def searchable_cli_case(dsn: str, table: str, path: Path) -> tuple[float, float]:
    """The command's whole wall-clock seconds, and the build's seconds it reports."""
    report, wall = run_cli_ingest(dsn, table, path)
    index = report["index"]
    if not index["built_after_load"]:
        raise RuntimeError(f"pgvs ingest did not build after the load: {index['why_not']}")
    return wall, float(index["build_seconds"])


def measure_searchable(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.rows, args.dim)).astype(np.float32)
    cases = ["store", "cli"] + (["incremental"] if args.incremental else [])
    samples: dict[str, list[float]] = {name: [] for name in [*cases, "cli_build"]}
    with tempfile.TemporaryDirectory(prefix="pgvs-bench-cli-") as folder:
        npy = Path(folder) / "vectors.npy"
        np.save(npy, vectors)
        for round_ in range(args.repeat):
            order = cases[round_ % len(cases) :] + cases[: round_ % len(cases)]
            for name in order:
                table = asyncio.run(_fresh(dsn, args.dim, "hnsw"))
                try:
                    if name == "cli":
                        wall, build = searchable_cli_case(dsn, table, npy)
                        samples["cli"].append(wall)
                        samples["cli_build"].append(build)
                    else:
                        deferred = None if name == "store" else False
                        samples[name].append(
                            asyncio.run(searchable_store_case(dsn, table, npy, args.dim, deferred))
                        )
                    if not asyncio.run(_index_valid(dsn, table)):
                        raise RuntimeError(f"{name}: the HNSW index is not valid afterwards")
                finally:
                    asyncio.run(_drop(dsn, table))
            progress(
                f"round {round_ + 1}: "
                + ", ".join(f"{name} {values[-1]:.2f} s" for name, values in samples.items())
            )
    store = statistics.median(samples["store"])
    cli = statistics.median(samples["cli"])
    result: dict[str, Any] = {
        "benchmark": "cli",
        "mode": "searchable",
        "rows": args.rows,
        "dim": args.dim,
        "repeat": args.repeat,
        "store_s": round(store, 2),
        "cli_s": round(cli, 2),
        "ratio": round(cli / store, 3),
        "cli_build_s": round(statistics.median(samples["cli_build"]), 2),
        "startup_s": round(startup_seconds(), 3),
        "samples": {name: [round(v, 2) for v in values] for name, values in samples.items()},
        "python": platform.python_version(),
    }
    if args.incremental:
        incremental = statistics.median(samples["incremental"])
        result["incremental_s"] = round(incremental, 2)
        result["speedup"] = round(incremental / cli, 2)
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench cli", description=__doc__)
    parser.add_argument("--rows", type=int, default=20000, help="rows per ingest (20000)")
    parser.add_argument("--dim", type=int, default=768, help="vector dimensions (768)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (5)")
    parser.add_argument("--jsonl", action="store_true", help="also ingest the rows as JSON Lines")
    parser.add_argument(
        "--searchable", action="store_true", help="time to a valid HNSW index (rounds: 3)"
    )
    parser.add_argument(
        "--incremental", action="store_true", help="--searchable: also the index-maintained path"
    )
    args = parser.parse_args(argv)
    if args.searchable and "--repeat" not in argv:
        args.repeat = 3
    with database() as dsn:
        result = measure_searchable(dsn, args) if args.searchable else measure(dsn, args)
    emit(result)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
