"""``pgvs doctor``: what is wrong with a store and how to fix it; ``pgvs tune``: its recall.

The checks are pure functions of the store's configuration and ``store.stats()``, so each
finding comes with the reason and the fix, and the same facts back ``pgvs stats``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import click

from ..config import StoreConfig
from ..indexes import graph_bytes, index_problem, resolve_quantization, version_tuple
from ..query_log import MAX_QUERY_LOG
from ..results import StoreStats
from ._common import EXIT_FAILURE, StoreArgs, json_option, run_async, store_options
from ._output import emit_json, human_bytes, print_table, to_jsonable
from ._target import open_store

__all__ = ["Check", "checks", "doctor", "hnsw_build_bytes", "tune"]

_DEAD_SHARE = 0.2  # dead tuples past this share of live ones: vacuum is behind
_MIN_ROWS_FOR_INDEX = 10_000


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    finding: str
    fix: str = ""


def hnsw_build_bytes(rows: int, dimensions: int, stored_as: str, m: int) -> int:
    """About how much memory pgvector's in-memory HNSW build of ``rows`` rows takes (the
    estimate pgvs sizes its own builds with: :func:`pgvs.indexes.graph_bytes`)."""
    return graph_bytes(rows, dimensions, stored_as, m)


def _round_up_mb(size: int) -> str:
    megabytes = max(64, math.ceil(size / 2**20 * 1.25))  # headroom over the estimate
    if megabytes >= 1024:
        return f"{math.ceil(megabytes / 1024)}GB"
    return f"{megabytes}MB"


def checks(config: StoreConfig, stats: StoreStats) -> list[Check]:
    """Every check, passed or not, in a fixed order."""
    found: list[Check] = []
    version = stats.pgvector_version
    old = version_tuple(version) < (0, 8, 0)
    found.append(
        Check(
            "pgvector version",
            not old,
            f"pgvector {version}"
            + (": before 0.8, filtered searches can return fewer than k rows" if old else ""),
            "Install pgvector 0.8 or later on the server, then ALTER EXTENSION vector UPDATE."
            if old
            else "",
        )
    )
    invalid = [index.name for index in stats.indexes if not index.valid]
    found.append(
        Check(
            "invalid indexes",
            not invalid,
            f"INVALID (never used by queries): {', '.join(invalid)}" if invalid else "none",
            "`pgvs index reindex` (or REINDEX INDEX CONCURRENTLY name; a vector index is also "
            "repaired by `pgvs index create`)"
            if invalid
            else "",
        )
    )
    metadata = config.column("metadata") or "metadata"
    gin = any(index.method == "gin" and metadata in index.definition for index in stats.indexes)
    found.append(
        Check(
            "metadata GIN index",
            gin,
            "present" if gin else "no GIN index on metadata: every equality filter scans",
            ""
            if gin
            else f"CREATE INDEX CONCURRENTLY ON {stats.table} USING gin ({metadata} "
            "jsonb_path_ops)",
        )
    )
    vector_indexes = [index for index in stats.indexes if index.is_vector]
    index_type = vector_indexes[0].method if vector_indexes else "hnsw"
    quantization = resolve_quantization(config.vector_type, config.dimensions, config.quantization)
    problem = index_problem(
        vector_type=config.vector_type,
        metric=config.metric,
        dimensions=config.dimensions,
        index_type=index_type,
        quantization=quantization,
    )
    found.append(
        Check(
            "index vs dimensions",
            problem is None,
            f"{index_type} can index this {stats.column_type} column"
            + (f" (as {quantization})" if quantization != "none" else "")
            if problem is None
            else Exception.__str__(problem),
            "" if problem is None else problem.hint or "",
        )
    )
    if not vector_indexes:
        many = stats.rows >= _MIN_ROWS_FOR_INDEX
        found.append(
            Check(
                "vector index",
                not many,
                f"none: every search scans all {stats.rows:,} rows"
                if many
                else f"none (fine for {stats.rows:,} rows: exact scans)",
                "`pgvs index create` (HNSW)" if many else "",
            )
        )
    hnsw = next((index for index in vector_indexes if index.method == "hnsw"), None)
    if hnsw is not None or not vector_indexes:
        m = int((hnsw.params if hnsw else config.index_params).get("m", 16))
        stored_as = "halfvec" if quantization == "halfvec" else config.vector_type
        if quantization == "binary":
            stored_as = "bit"
        # A partitioned table builds one graph per partition, each of its own rows.
        rows = max(stats.rows_by_domain.values(), default=0) if stats.partitioned else stats.rows
        what = (
            f"the largest partition this store sees ({rows:,} rows)"
            if stats.partitioned
            else f"{rows:,} rows"
        )
        needed = hnsw_build_bytes(rows, config.dimensions, stored_as, m)
        have = stats.memory_bytes.get("maintenance_work_mem", 0)
        short = needed > have
        found.append(
            Check(
                "maintenance_work_mem",
                not short,
                f"{human_bytes(have)}; the next HNSW build of {what} needs about "
                f"{human_bytes(needed)}"
                + (
                    ": pgvector would fall back to its much slower on-disk build (its notice: "
                    "'hnsw graph no longer fits into maintenance_work_mem')"
                    if short
                    else ""
                ),
                f"`pgvs index create --maintenance-work-mem {_round_up_mb(needed)}` (or reindex), "
                f"or ALTER SYSTEM SET maintenance_work_mem = '{_round_up_mb(needed)}'"
                if short
                else "",
            )
        )
    buffers = stats.memory_bytes.get("shared_buffers", 0)
    big = [
        index for index in vector_indexes if index.method == "hnsw" and index.size_bytes > buffers
    ]
    found.append(
        Check(
            "HNSW index vs shared_buffers",
            not big,
            ", ".join(f"{i.name} is {human_bytes(i.size_bytes)}" for i in big)
            + f", shared_buffers {human_bytes(buffers)}: searches read the graph from disk"
            if big
            else f"fits in shared_buffers ({human_bytes(buffers)})",
            "Raise shared_buffers above the index size (a restart), or shrink the index with "
            "quantization (halfvec, binary)"
            if big
            else "",
        )
    )
    jit = (stats.settings.get("jit") or "off") == "on"
    found.append(
        Check(
            "jit",
            not jit,
            "on: vector queries' high cost estimates make PostgreSQL JIT-compile them, which "
            "can cost more than the search"
            if jit
            else "off",
            "ALTER DATABASE <db> SET jit = off (or ALTER ROLE <role> SET jit = off)" if jit else "",
        )
    )
    activity = stats.activity
    behind = activity.dead_tuples > max(1000, _DEAD_SHARE * activity.live_tuples)
    found.append(
        Check(
            "dead tuples",
            not behind,
            f"{activity.dead_tuples:,} dead / {activity.live_tuples:,} live",
            f"VACUUM (ANALYZE) {stats.table}; check autovacuum settings" if behind else "",
        )
    )
    return found


@click.command()
@store_options
@json_option
def doctor(store: StoreArgs, as_json: bool) -> int:
    """Check the store and its server; each finding comes with its fix. Exit 1 on findings."""

    async def go() -> list[Check]:
        async with open_store(store) as opened:
            return checks(opened.config, await opened.stats(top_queries=0))

    results = run_async(go())
    failed = [check for check in results if not check.ok]
    if as_json:
        emit_json({"ok": not failed, "checks": [to_jsonable(check) for check in results]})
    else:
        print_table(
            None,
            ["check", "", "finding", "fix"],
            [(c.name, "ok" if c.ok else "FIX", c.finding, c.fix) for c in results],
        )
        click.echo(f"{len(failed)} finding(s)" if failed else "no findings")
    return EXIT_FAILURE if failed else 0


@click.command()
@store_options
@click.option(
    "--recall", type=click.FloatRange(0, 1, min_open=True), default=0.95, show_default=True
)
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="stored vectors drawn as queries",
)
@click.option(
    "--recent",
    type=click.IntRange(1, MAX_QUERY_LOG),
    default=None,
    metavar="N",
    help="tune on the newest N queries the store's searches logged (query_log) instead of a sample",
)
@click.option("--apply", "apply_", is_flag=True, help="make the setting every store's default")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="draw the recall-latency curve (.png/.svg/.pdf; pip install 'pgvs[plot]')",
)
@json_option
def tune(
    store: StoreArgs,
    recall: float,
    k: int,
    sample: int,
    recent: int | None,
    apply_: bool,
    plot_path: Path | None,
    as_json: bool,
) -> int:
    """Find the ef_search (or probes) that gives --recall on this store's data (store.tune).

    Exits 1 when no setting reaches the target (the report says what to rebuild).
    """

    async def go() -> Any:
        if recent is None:
            async with open_store(store) as opened:
                return await opened.tune(target_recall=recall, k=k, sample=sample, apply=apply_)
        async with open_store(store, options={"query_log": recent}) as opened:
            return await opened.tune(target_recall=recall, k=k, queries="recent", apply=apply_)

    report = run_async(go())
    if plot_path is not None:
        report.plot(plot_path)
    if as_json:
        emit_json(to_jsonable(report))
    else:
        click.echo(str(report))
        if plot_path is not None:
            click.echo(f"curve written to {plot_path}")
    return 0 if report.reachable else EXIT_FAILURE
