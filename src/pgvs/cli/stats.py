"""``pgvs stats``: what ``store.stats()`` reports, as tables (or ``--json``)."""

from __future__ import annotations

import click

from ..results import StoreStats
from ._common import StoreArgs, json_option, run_async, store_options
from ._output import emit_json, human_bytes, print_pairs, print_table, short

__all__ = ["stats"]


def _when(value: object) -> str:
    return "never" if value is None else str(value).split(".")[0]


def show_stats(report: StoreStats) -> None:
    activity, pool = report.activity, report.pool
    print_pairs(
        f"{report.table.replace(chr(34), '')}: {report.column_type}",
        [
            ("rows", f"{report.rows:,} in {report.domains:,} domain(s)"),
            ("table (heap)", human_bytes(report.table_bytes)),
            ("TOAST", human_bytes(report.toast_bytes)),
            ("indexes", human_bytes(report.indexes_bytes)),
            ("total", human_bytes(report.total_bytes)),
            ("live / dead tuples", f"{activity.live_tuples:,} / {activity.dead_tuples:,}"),
            (
                "last vacuum / autovacuum",
                f"{_when(activity.last_vacuum)} / {_when(activity.last_autovacuum)}",
            ),
            (
                "last analyze / autoanalyze",
                f"{_when(activity.last_analyze)} / {_when(activity.last_autoanalyze)}",
            ),
            (
                "pool",
                f"{pool.size} open (min {pool.min_size}, max {pool.max_size}): "
                f"{pool.idle} idle, {pool.in_use} in use, "
                f"{'?' if pool.waiting is None else pool.waiting} waiting",
            ),
            ("pgvector / PostgreSQL", f"{report.pgvector_version} / {report.server_version}"),
        ],
    )
    if len(report.rows_by_domain) > 1 or report.domains > 1:
        print_table(
            "rows per domain",
            ["domain", "rows"],
            [
                (repr(name) if name == "" else name, f"{rows:,}")
                for name, rows in report.rows_by_domain.items()
            ],
            right=["rows"],
        )
    if report.partitioned:
        shown = len(report.partitions)
        print_table(
            f"partitions ({shown:,} of {report.partition_count:,} shown, largest first)"
            if shown < report.partition_count
            else "partitions",
            ["partition", "domain", "rows (est.)", "total", "indexes", "live / dead"],
            [
                (
                    part.name,
                    "(default)" if part.domain is None else repr(part.domain),
                    "?" if part.rows_estimate < 0 else f"{part.rows_estimate:,}",
                    human_bytes(part.total_bytes),
                    human_bytes(part.indexes_bytes),
                    f"{part.activity.live_tuples:,} / {part.activity.dead_tuples:,}",
                )
                for part in report.partitions
            ],
            right=["rows (est.)", "total", "indexes", "live / dead"],
        )
    print_table(
        "indexes",
        ["name", "method", "valid", "size", "parameters", "scans", "definition"],
        [
            (
                index.name,
                index.method,
                "yes" if index.valid else "INVALID",
                human_bytes(index.size_bytes),
                ", ".join(f"{k}={v}" for k, v in index.params.items()),
                index.scans,
                short(index.definition.split(" USING ", 1)[-1], 50),
            )
            for index in report.indexes
        ],
        right=["size", "scans"],
    )
    print_table(
        "settings in force",
        ["setting", "value"],
        [
            (name, "(not set)" if value is None else value)
            for name, value in report.settings.items()
        ],
    )
    if report.top_queries is None:
        click.echo(f"top queries: {report.top_queries_note}")
    else:
        print_table(
            "top queries (pg_stat_statements)",
            ["calls", "total ms", "mean ms", "rows", "query"],
            [
                (
                    f"{q.calls:,}",
                    f"{q.total_ms:,.1f}",
                    f"{q.mean_ms:,.3f}",
                    f"{q.rows:,}",
                    short(q.query, 70),
                )
                for q in report.top_queries
            ],
            right=["calls", "total ms", "mean ms", "rows"],
        )


@click.command()
@store_options
@click.option(
    "--top",
    "top",
    type=click.IntRange(0, 100),
    default=10,
    show_default=True,
    help="statements from pg_stat_statements (0: skip)",
)
@json_option
def stats(store: StoreArgs, top: int, as_json: bool) -> int:
    """Rows per domain, sizes, indexes, settings, vacuum, top queries and the pool."""
    from ._target import open_store

    async def go() -> StoreStats:
        async with open_store(store) as opened:
            return await opened.stats(top_queries=top)

    report = run_async(go())
    if as_json:
        emit_json({**vars(report), "vector_indexes": [i.name for i in report.vector_indexes]})
    else:
        show_stats(report)
    return 0
