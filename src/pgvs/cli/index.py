"""``pgvs index create|status|drop|reindex``: the store's vector index, with build progress."""

from __future__ import annotations

from typing import Any

import click

from ..results import IndexStatus
from ._common import (
    EXIT_FAILURE,
    StoreArgs,
    json_option,
    metric_choice,
    run_async,
    store_options,
)
from ._output import IndexDisplay, emit_json, human_bytes, print_pairs
from ._target import open_store

__all__ = ["index"]

_QUIET = click.option("--quiet", "-q", is_flag=True, help="no progress on stderr")
_CONCURRENTLY = click.option(
    "--concurrently", is_flag=True, help="do not block writes meanwhile (slower)"
)
_MEMORY = click.option(
    "--maintenance-work-mem", metavar="SIZE", default=None, help="for this build, e.g. 2GB"
)
_WORKERS = click.option(
    "--workers",
    type=click.IntRange(0, 1024),
    default=None,
    help="max_parallel_maintenance_workers for this build",
)


def _show(status: IndexStatus, as_json: bool) -> int:
    if as_json:
        emit_json({**vars(status), "usable": status.usable})
    elif not status.exists:
        click.echo("no vector index (searches are exact scans)")
    else:
        print_pairs(
            None,
            [
                ("name", status.name),
                ("type", status.index_type),
                ("valid", "yes" if status.valid else "NO (INVALID: never used by queries)"),
                ("building", "yes" if status.building else "no"),
                ("operator class", status.opclass),
                ("parameters", ", ".join(f"{k}={v}" for k, v in status.params.items()) or "-"),
                ("size", human_bytes(status.size_bytes)),
                ("definition", status.definition),
            ],
        )
    return EXIT_FAILURE if status.exists and not status.valid else 0


@click.group()
def index() -> None:
    """The store's vector index (HNSW or IVFFlat)."""


@index.command()
@store_options
@click.option(
    "--type",
    "index_type",
    type=click.Choice(["hnsw", "ivfflat"]),
    default=None,
    help="default: the table's index type, else hnsw",
)
@click.option("--m", type=click.IntRange(2, 100), default=None, help="HNSW m")
@click.option("--ef-construction", type=click.IntRange(4, 1000), default=None, help="HNSW")
@click.option("--lists", type=click.IntRange(1, 32768), default=None, help="IVFFlat lists")
@click.option("--metric", type=metric_choice(), default=None, help="default: the table's")
@_CONCURRENTLY
@_MEMORY
@_WORKERS
@_QUIET
@json_option
def create(
    store: StoreArgs,
    index_type: str | None,
    m: int | None,
    ef_construction: int | None,
    lists: int | None,
    metric: str | None,
    concurrently: bool,
    maintenance_work_mem: str | None,
    workers: int | None,
    quiet: bool,
    as_json: bool,
) -> int:
    """Build the vector index (a valid one is kept; an INVALID one is rebuilt)."""
    given: dict[str, Any] = {"m": m, "ef_construction": ef_construction, "lists": lists}
    params = {key: value for key, value in given.items() if value is not None} or None

    async def go() -> IndexStatus:
        async with open_store(store, metric=metric, needs_metric=True) as opened:
            chosen = index_type or (
                opened.config.index_type if opened.config.index_type != "none" else "hnsw"
            )
            display = IndexDisplay(f"{chosen} index", quiet=quiet)
            try:
                return await opened.create_index(
                    chosen,
                    params,
                    concurrently=concurrently,
                    maintenance_work_mem=maintenance_work_mem,
                    max_parallel_maintenance_workers=workers,
                    progress=display,
                )
            finally:
                display.close()

    return _show(run_async(go()), as_json)


@index.command()
@store_options
@json_option
def status(store: StoreArgs, as_json: bool) -> int:
    """The index as the catalog sees it. Exit 1 when it is INVALID."""

    async def go() -> IndexStatus:
        async with open_store(store) as opened:
            return await opened.index_status()

    return _show(run_async(go()), as_json)


@index.command()
@store_options
@_CONCURRENTLY
@json_option
def drop(store: StoreArgs, concurrently: bool, as_json: bool) -> int:
    """Drop the vector index (searches become exact scans)."""

    async def go() -> bool:
        async with open_store(store) as opened:
            return await opened.drop_index(concurrently=concurrently)

    dropped = run_async(go())
    if as_json:
        emit_json({"dropped": dropped})
    else:
        click.echo("dropped the vector index" if dropped else "there was no vector index")
    return 0


@index.command()
@store_options
@_CONCURRENTLY
@_MEMORY
@_WORKERS
@_QUIET
@json_option
def reindex(
    store: StoreArgs,
    concurrently: bool,
    maintenance_work_mem: str | None,
    workers: int | None,
    quiet: bool,
    as_json: bool,
) -> int:
    """Rebuild the index in place (repairs an INVALID one)."""

    async def go() -> IndexStatus:
        async with open_store(store) as opened:
            display = IndexDisplay("reindex", quiet=quiet)
            try:
                return await opened.reindex(
                    concurrently=concurrently,
                    maintenance_work_mem=maintenance_work_mem,
                    max_parallel_maintenance_workers=workers,
                    progress=display,
                )
            finally:
                display.close()

    return _show(run_async(go()), as_json)
