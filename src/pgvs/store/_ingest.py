"""Ingest entry points on a store's parts: the bulk upsert, and add_vectors' COPY path.

Validation of the arguments, progress, and the translation of a failed batch into an
:class:`~pgvs.errors.IngestError` that says what was committed; the machinery is
:mod:`pgvs.store._ingest_pipeline`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigurationError, IngestError, ValidationError, translate_error, translating
from ..progress import IngestProgressCallback, ingest_progress
from ..results import IngestResult
from ._context import StoreContext
from ._ingest_pipeline import Pipeline
from ._ingest_sources import source_for
from ._ingest_writer import BatchFailed
from ._session import Session

__all__ = [
    "ANALYZE_AFTER_ROWS",
    "INGEST_THRESHOLD",
    "ingest_columns",
    "run_ingest",
    "upsert_all",
]

#: From this many rows on, ``add_vectors`` is faster through :func:`upsert_all` (measured with
#: 768-d and 128-d rows: the two cost the same at ~100-150 rows, the COPY path is 1.3-2x faster
#: from 500 on; with an HNSW index both are bound by the index and equal).
INGEST_THRESHOLD = 500
#: An ingest that wrote at least this many rows leaves the table analyzed ...
ANALYZE_AFTER_ROWS = 1000
#: ... unless the table has statistics and at least this many times as many rows as the ingest
#: wrote: autovacuum's own rule (re-analyze after 10 % changes) says they still describe it,
#: and ANALYZE costs a sample of up to 30,000 rows however few were added.
STATS_STILL_FRESH = 10
# $1 = the table (regclass text), $2 = rows: it was analyzed and counted at least $2 rows then.
_STATS_FRESH_SQL = (
    "SELECT c.reltuples >= $2 AND EXISTS (SELECT 1 FROM pg_stats s "
    "WHERE s.schemaname = n.nspname AND s.tablename = c.relname) "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.oid = to_regclass($1)"
)


def ingest_columns(
    ids: Sequence[Any] | None,
    metadata: Sequence[Mapping[str, Any] | None] | None,
    contents: Sequence[str | None] | None,
    document_ids: Sequence[str | None] | None,
    chunk_indexes: Sequence[int | None] | None,
) -> dict[str, Sequence[Any] | None]:
    return {
        "ids": ids,
        "metadata": metadata,
        "contents": contents,
        "document_ids": document_ids,
        "chunk_indexes": chunk_indexes,
    }


async def run_ingest(
    ctx: StoreContext,
    session: Session,
    data: Any,
    columns: dict[str, Sequence[Any] | None],
    *,
    batch_size: int | None,
    progress: bool | IngestProgressCallback | None,
    atomic: bool,
    connections: int,
) -> IngestResult:
    """The store's ``ingest()`` (its docstring is the contract)."""
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ConfigurationError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(connections, bool) or not isinstance(connections, int) or connections < 1:
        raise ConfigurationError(f"connections must be a positive integer, got {connections!r}")
    config = ctx.config
    source = source_for(data, columns, config.dimensions, ctx.dense)
    session.pool  # noqa: B018 - raises StoreClosedError before any work when not initialized
    callback, close_progress = ingest_progress(
        progress, source.total, f"ingest {config.table_name}"
    )
    run = Pipeline(
        ctx,
        session,
        source,
        batch_size=batch_size,
        connections=max(1, min(connections, config.pool_max_size)),
        atomic=atomic,
        progress=callback,
    )
    try:
        try:
            with translating("ingest"):  # before the first batch: the table lookup
                await run.start()
                if atomic:
                    await run.run_atomic()
                else:
                    await run.run_pipelined()
        except BatchFailed as failure:
            error = _ingest_error(failure, run)
            raise error from error.__cause__
    finally:
        run.close()
        close_progress()
    if run.rows_written >= ANALYZE_AFTER_ROWS:
        # A freshly loaded table has no statistics until autovacuum gets to it, and without
        # them the planner misjudges the tenant condition and sorts instead of using the vector
        # index (measured: 21 ms against 1.8 ms on 20k rows). ANALYZE samples a bounded number
        # of rows (300 x default_statistics_target), so it costs the same on any table size:
        # about 0.1 s here, which a small addition to a large analyzed table is spared.
        started = time.perf_counter()
        with translating("ingest"):
            fresh = await session.pool.fetchval(
                _STATS_FRESH_SQL, ctx.sql.table, STATS_STILL_FRESH * run.rows_written
            )
            if not fresh:
                await session.pool.execute(f"ANALYZE {ctx.sql.table}")
                run.details["analyze"] = time.perf_counter() - started
    return IngestResult(
        rows_read=run.rows_read,
        rows_written=run.rows_written,
        rows_copied=run.rows_copied,
        rows_upserted=run.rows_upserted,
        batches=run.batches,
        committed_batches=run.committed,
        elapsed_seconds=time.perf_counter() - run.started,
        batch_size=run.batch_size or 0,
        details=dict(run.details),
    )


async def upsert_all(
    ctx: StoreContext,
    session: Session,
    vectors: Any,
    ids: Sequence[Any] | None = None,
    metadata: Sequence[Mapping[str, Any] | None] | None = None,
    contents: Sequence[str | None] | None = None,
    document_ids: Sequence[str | None] | None = None,
    chunk_indexes: Sequence[int | None] | None = None,
) -> list[Any]:
    """``add_vectors``'s contract on the COPY path, for large calls (see INGEST_THRESHOLD).

    One transaction: all rows or none. Returns every row's normalised id in input order (the
    generated ones too); a bad row raises its ValidationError and a server or connection
    failure its DatabaseError, as add_vectors does, not an IngestError.
    """
    columns = ingest_columns(ids, metadata, contents, document_ids, chunk_indexes)
    source = source_for(vectors, columns, ctx.config.dimensions, ctx.dense)
    run = Pipeline(ctx, session, source, batch_size=None, connections=1, atomic=True, progress=None)
    try:
        await run.start()
        run.encoder.collect_input_keys = True
        await run.run_atomic()
    except BatchFailed as failure:
        cause = failure.__cause__
        assert cause is not None
        translated = translate_error(cause, operation="add_vectors")
        if translated is cause:
            raise cause from cause.__cause__
        raise translated from cause
    finally:
        run.close()
    return run.input_keys


def _ingest_error(failure: BatchFailed, run: Pipeline) -> IngestError:
    cause = failure.__cause__
    assert cause is not None
    translated = translate_error(cause, operation="ingest")
    if translated is not cause and translated.__cause__ is None:
        translated.__cause__ = cause
    first, end = failure.row_range
    rows = f"rows {first}..{end - 1}" if end > first else f"row {first}"
    committed = run.committed
    if run.atomic:
        kept = "nothing was written (atomic=True rolls the whole ingest back)"
    elif committed:
        kept = (
            f"batches 0..{committed[-1]} ({run.rows_done} input rows) are committed"
            if committed == list(range(len(committed)))
            else f"batches {committed} are committed"
        )
    else:
        kept = "no batch was committed"
    reason = str(translated).split("\nHint: ")[0]
    if isinstance(translated, ValidationError):
        what = f"was rejected before it was sent: {reason}"
    else:
        what = f"failed while {failure.stage}: {reason}"
    error = IngestError(
        f"ingest: batch {failure.batch} ({rows}) {what}; {kept}",
        batch=failure.batch,
        row_range=failure.row_range,
        committed_batches=list(committed),
        rows_written=run.rows_written,
        hint=(
            "Fix the row and run the same ingest again: it is an upsert, so committed batches "
            "are rewritten unchanged."
            if isinstance(translated, ValidationError)
            else "Run the same ingest again once the cause is fixed: it is an upsert, so "
            "committed batches are rewritten unchanged and nothing is duplicated."
        ),
    )
    error.sqlstate = getattr(translated, "sqlstate", None)
    error.__cause__ = translated
    return error
