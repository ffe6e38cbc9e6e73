"""Load first, then build: how ``ingest`` into an empty table reaches a searchable index fastest.

A store's HNSW index exists from ``initialize()`` on, even on an empty table. Loading into it
builds the graph one row at a time while COPY waits (and in batches of 500 rows); pgvector
recommends loading first and building once. So when an ingest starts on an **empty** table whose
only vector index is the store's own full HNSW index, that index is dropped (it holds nothing),
the rows load into the bare heap, and the index is built once with ``maintenance_work_mem``
sized to hold its whole graph (:meth:`~pgvs.store._index_builds.BuildRunner.sized`). ``ingest``
returns once the index is valid. Measured (docs/indexes.md, ``python -m bench searchable``).

Crash safety: nothing here is unlogged. A process that dies between the drop and the build
leaves a table with rows and no index, which the next ``initialize()`` sees and builds in the
background, as for any populated table. A load that fails rebuilds the index over the rows
committed so far before its error is raised (a cancelled one leaves it to the background build).

That background build is why the path is taken only with ``auto_create_index``, unless the
caller passes ``build_after_load=True`` and so takes the restoring upon itself: ``pgvs ingest``
records the index in the table's comment before the drop, and the next ``pgvs`` command rebuilds
it (:mod:`pgvs.cli._due`). Whichever path runs, the result says why in ``index_note``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable

import asyncpg

from ..results import IngestResult
from ._index_builds import read_catalog
from ._index_manager import IndexManager
from ._session import logger

__all__ = ["load_then_build"]

# How long the drop of the empty index may wait for its table lock (a reader in a long
# transaction): past it, the ingest loads into the index as before rather than queue writers.
_DROP_LOCK_TIMEOUT = "2s"


async def _defer_index(
    indexes: IndexManager, build_after_load: bool | None
) -> tuple[dict[str, int] | None, str]:
    """Drop the store's HNSW index if the table is empty and it is the table's only vector
    index, under the build lock (no pgvs builder elsewhere races it). Returns the dropped
    index's own parameters (the build after the load rebuilds exactly it), or None and why the
    index is kept (the load then goes into it).

    Only with ``auto_create_index`` (or ``build_after_load=True``): should this process die
    before the build, the next store to open the table builds the index in the background; a
    store that never builds on its own keeps loading into the index unless its caller restores
    an index lost so (as ``pgvs ingest`` does)."""
    ctx = indexes.ctx
    config = ctx.config
    if build_after_load is False:
        return None, "build_after_load=False"
    if config.index_type != "hnsw":
        return None, f"the store's index type is {config.index_type}, not hnsw"
    if not config.auto_create_index and not build_after_load:
        return None, "auto_create_index is off (build_after_load=True allows it)"
    if config.pca:
        return None, "the index is over the PCA projection, learnt from rows"
    if config.partition_by is not None:
        # each tenant's partition has an index of its own: not this table-wide path
        return None, "each tenant partition has an index of its own"
    if config.row_level_security:
        # its policy hides other tenants' rows: "empty" could not be decided here
        return None, "row-level security hides whether the table is empty"
    name = ctx.sql.index_name("hnsw")
    connection = await indexes.session.connect_dedicated()
    try:
        if not await indexes.builds.lock(connection, wait=False):
            return None, "another index build holds the table's build lock"
        # One transaction under a short lock_timeout: a table locked by someone else (even
        # against the catalog's size reads) sends the ingest down the ordinary path at once,
        # where it waits like any write, instead of waiting here unseen.
        try:
            async with connection.transaction():
                await connection.execute(
                    "SELECT set_config('lock_timeout', $1, true)", _DROP_LOCK_TIMEOUT
                )
                if await connection.fetchval(ctx.sql.has_rows()):
                    return None, "the table already holds rows (its index serves searches)"
                catalog = await read_catalog(ctx, connection)
                if [status.name for status, _ in catalog] != [name] or not catalog[0][0].usable:
                    # missing, INVALID, or partial indexes beside it
                    return None, f"{name} is missing, INVALID or not the only vector index"
                status = catalog[0][0]
                params = {key: int(value) for key, value in status.params.items()}
                if status.opclass != indexes.index_spec("hnsw", params, rows=0).opclass:
                    return None, f"{name} is not the index this configuration would build"
                await connection.execute(ctx.sql.drop_index(name, concurrently=False))
        except asyncpg.LockNotAvailableError:
            return None, "another session holds a lock on the table"
        # From here on the index is due: any later write (or a new process) builds it.
        indexes.wanted = True
        logger.info("ingest into empty %s: index %s is built after the load", ctx.sql.table, name)
        return params, ""
    finally:
        await connection.close()


async def _rebuild(indexes: IndexManager, params: dict[str, int]) -> None:
    """After a failed load: the index back over the rows committed so far (the load's own error
    is the one the caller sees; a failed rebuild is logged, and the next write retries it)."""
    try:
        await indexes.create_index("hnsw", params)
    except Exception as exc:
        logger.warning(
            "ingest into %s failed, and so did rebuilding its index: %s", indexes.ctx.sql.table, exc
        )


async def load_then_build(
    indexes: IndexManager,
    load: Callable[[], Awaitable[IngestResult]],
    *,
    build_after_load: bool | None = None,
) -> IngestResult:
    """Run ``load`` (the ingest); into an empty table, build the store's index after it."""
    started = time.perf_counter()
    params, why = await _defer_index(indexes, build_after_load)
    try:
        result = await load()
    except Exception:
        if params is not None:
            await _rebuild(indexes, params)  # the committed rows get their index, then the error
        raise
    except BaseException:  # cancelled: no waiting here; the background build takes over
        # Only a store that builds automatically: with build_after_load=True on any other
        # store the caller (pgvs ingest's record) restores the index, and a background build
        # that close() would cancel at once could only leave an INVALID index behind.
        if params is not None and indexes.ctx.config.auto_create_index:
            indexes.kick()
        raise
    if params is None:
        return dataclasses.replace(result, index_note=why)
    build_started = time.perf_counter()
    # Not CONCURRENTLY: one pass over the table instead of two plus a wait for every older
    # snapshot (measured in docs/indexes.md); writers of this table wait for the build.
    await indexes.create_index("hnsw", params)
    details = {**result.details, "index_build": time.perf_counter() - build_started}
    return dataclasses.replace(
        result, details=details, elapsed_seconds=time.perf_counter() - started
    )
