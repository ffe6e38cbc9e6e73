"""The ingest pipeline: read and encode in a worker thread, write batches by binary COPY.

See :mod:`pgvs.ingest` for the contract and how a batch is written. This module is the flow of
batches: :class:`Pipeline` runs one ingest on a store's context and pool, pipelined over up to
``connections`` pooled connections (or atomically on one), committing batches in order, and
retrying the batches in flight after a deadlock. The statements of one batch, and the turn its
transaction takes among those in flight, are :mod:`._ingest_writer`'s.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import inspect
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .. import _batches
from .._batches import BatchEncoder, EncodedBatch, RawBatch
from .._copy_sql import IngestSQL, target_info
from ..errors import SchemaMismatchError
from ..results import IngestProgress
from ._context import StoreContext
from ._ingest_sources import (
    ArraySource,
    AsyncRecordSource,
    RecordSource,
    Source,
    SourceError,
    one_ahead,
    records_batch,
)
from ._ingest_writer import Aborted, BatchFailed, BatchWriter, Turn, wrap
from ._session import Session, end_failed, scope

__all__ = ["Pipeline", "default_batch_size"]

T = TypeVar("T")

# Vector bytes per batch when batch_size is not given: ~2000 rows of 768-d float32. Measured with
# bench/ingest.py: smaller batches pay more per-batch round trips and commits, larger ones only
# delay the start of the pipeline and hold more memory.
_BATCH_BYTES = 6 * 2**20
_MIN_BATCH, _MAX_BATCH = 64, 10_000
_SPARSE_BATCH = 1000
_INDEXED_BATCH = 500  # with an HNSW or IVFFlat index (see default_batch_size)
# deadlock_detected, serialization_failure: the batch lost to a concurrent writer; try again.
_RETRYABLE = frozenset({"40P01", "40001"})
_MAX_RETRIES = 8  # in a row, without a commit in between


def default_batch_size(vector_type: str, dimensions: int, *, vector_index: bool = False) -> int:
    """Rows per batch when none is given: about 6 MiB of dense vector data.

    With a vector index on the table every row costs the server ~100x more (the graph or list
    insert), so batches are capped at 500 rows: batches in flight then overlap well and commit
    (and report progress) every few seconds, and the extra commits cost nothing in comparison.
    """
    itemsize = {"vector": 4, "halfvec": 2}.get(vector_type)
    size = (
        _SPARSE_BATCH
        if itemsize is None
        else max(_MIN_BATCH, min(_MAX_BATCH, _BATCH_BYTES // (8 + itemsize * dimensions)))
    )
    return min(size, _INDEXED_BATCH) if vector_index else size


class Pipeline:
    def __init__(
        self,
        ctx: StoreContext,
        session: Session,
        source: Source,
        *,
        batch_size: int | None,
        connections: int,
        atomic: bool,
        progress: Callable[[IngestProgress], Any] | None,
    ) -> None:
        self.ctx = ctx
        self.pool = session.pool
        self.source = source
        self.batch_size = batch_size
        self.connections = connections
        self.atomic = atomic
        self.progress = progress
        self.loop = asyncio.get_running_loop()
        self.started = time.perf_counter()
        self.committed: list[int] = []
        self.rows_done = 0
        self.rows_read = 0
        self.rows_written = 0
        self.rows_copied = 0
        self.rows_upserted = 0
        self.batches = 0
        self.details: collections.defaultdict[str, float] = collections.defaultdict(float)
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pgvs-ingest")
        # Filled in by start():
        self.plan: IngestSQL
        self.encoder: BatchEncoder
        self.writer: BatchWriter
        self.atomic_conn: Any = None
        self.conn_lock = asyncio.Lock()
        self.retry_streak = 0  # retries since the last commit
        # With the default batch size, the first batch is a quarter of it: the server starts
        # writing a few ms after the call instead of after a whole batch has been encoded.
        self.ramp_up = False
        self.input_keys: list[Any] = []  # every row's id, when collected (upsert_all)

    # -- setup ---------------------------------------------------------------------------------

    async def start(self) -> None:
        ctx = self.ctx
        row = await self.pool.fetchrow(IngestSQL.TARGET_QUERY, ctx.sql.table_text)
        if row is None:
            raise SchemaMismatchError(
                f"table {ctx.sql.table} does not exist",
                hint="Initialize the store (it creates the table) before ingesting.",
            )
        target = target_info(
            row["relkind"],
            row["relrowsecurity"],
            row["relhasrules"],
            row["names"],
            row["types"],
            unique_indexes=row["unique_indexes"],
            has_triggers=row["has_triggers"],
            has_references=row["has_references"],
        )
        if self.batch_size is None:
            self.ramp_up = True
            self.batch_size = default_batch_size(
                ctx.config.vector_type,
                ctx.config.dimensions,
                vector_index=row["has_vector_index"],
            )
        self.plan = IngestSQL(ctx.sql, target, ctx.domain)
        # The same vector checks as add_vectors (e.g. a sparsevec non-zero limit for HNSW).
        self.encoder = BatchEncoder(ctx.config, self.plan, ctx.coerce_checked)
        # An empty domain has nothing to look up: batches go straight to COPY (the unique index
        # still stops any id that shows up meanwhile) until the first conflict.
        optimistic = target.direct_copy and not await self.pool.fetchval(
            self.plan.domain_has_rows(), *self.plan.domain_args()
        )
        self.writer = BatchWriter(
            self.pool, self.plan, ctx.config, self.details, optimistic=optimistic
        )

    # -- stage 1: read and encode --------------------------------------------------------------

    def _thread(self, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return self.loop.run_in_executor(self.executor, function, *args)

    def _encode(self, raw: RawBatch) -> EncodedBatch:
        started = time.perf_counter()
        encoded = self.encoder.encode(raw, _batches.generated_uuids)
        encoded.encode_seconds = time.perf_counter() - started
        return encoded

    async def _fill_bigint_ids(self, raw: RawBatch) -> None:
        """Draw missing bigint ids from the column's sequence, as add_vectors does."""
        if self.ctx.config.id_type != "bigint":
            return
        ids = raw.ids
        missing = (
            list(range(raw.count))
            if ids is None
            else [row for row, value in enumerate(ids) if value is None]
        )
        if not missing:
            return
        sql = self.ctx.sql
        args = (sql.next_ids(), sql.table_text, self.ctx.config.column("id"), len(missing))
        if self.atomic_conn is not None:
            async with self.conn_lock:
                rows = await self.atomic_conn.fetch(*args)
        else:
            rows = await self.pool.fetch(*args)
        fresh = [r[0] for r in rows]
        if ids is None:
            raw.ids = fresh
        else:
            filled = list(ids)
            for row, value in zip(missing, fresh, strict=True):
                filled[row] = value
            raw.ids = filled

    async def encoded_batches(self) -> Any:
        """Encoded batches in order (an async generator); failures raise BatchFailed."""
        index, first_row = 0, 0
        assert self.batch_size is not None  # resolved by start()
        source = self.source
        while True:
            size = self.batch_size
            if self.ramp_up and index == 0:
                size = max(_MIN_BATCH, size // 4)
            raw: RawBatch | None = None
            span = (first_row, first_row)
            try:
                if isinstance(source, ArraySource):
                    raw = await self._thread(source.next_batch, index, first_row, size)
                    if raw is None:
                        return
                else:
                    if isinstance(source, AsyncRecordSource):
                        records = await source.anext_records(size)
                    else:
                        assert isinstance(source, RecordSource)
                        records = await self._thread(source.next_records, size)
                    if not records:
                        return
                    span = (first_row, first_row + len(records))
                    raw = await self._thread(records_batch, records, index, first_row)
                span = raw.row_range
                await self._fill_bigint_ids(raw)
                encoded = await self._thread(self._encode, raw)
            except SourceError as exc:
                failure = BatchFailed(index, (first_row, first_row + exc.read + 1), "reading")
                raise failure from exc.__cause__
            except Exception as exc:
                raise BatchFailed(index, span, "preparing") from exc
            self.details["encode"] += encoded.encode_seconds
            yield encoded
            index += 1
            first_row += raw.count

    # -- stage 2: write ------------------------------------------------------------------------

    async def _write_batch(self, batch: EncodedBatch, turn: Turn) -> None:
        """One pipelined batch: written in its turn, then counted and reported."""
        copied, upserted = await self.writer.write(batch, turn)
        await self._committed(batch, copied, upserted)

    async def _committed(self, batch: EncodedBatch, copied: int, upserted: int) -> None:
        self.committed.append(batch.index)
        self.retry_streak = 0
        self.rows_done = batch.first_row + batch.count
        self.rows_written += batch.rows
        self.rows_copied += copied
        self.rows_upserted += upserted
        try:
            await self._report()
        except Exception as exc:
            stage = "reporting progress (the batch itself is committed)"
            raise BatchFailed(batch.index, batch.row_range, stage) from exc

    async def _report(self) -> None:
        if self.progress is None:
            return
        elapsed = time.perf_counter() - self.started
        state = IngestProgress(
            rows_done=self.rows_done,
            rows_total=self.source.total,
            rows_per_second=self.rows_done / elapsed if elapsed > 0 else 0.0,
            batches_done=self.batches if self.atomic else len(self.committed),
            elapsed_seconds=elapsed,
        )
        outcome = self.progress(state)
        if inspect.isawaitable(outcome):
            await outcome

    async def run_pipelined(self) -> None:
        """Batches in their own transactions, up to ``connections`` of them in flight.

        Commits happen in batch order. A batch writes alongside the batches in flight only when
        the table allows it (TargetInfo.parallel_writes) and their ids are disjoint; otherwise it
        waits until they have written. So a batch only ever waits for rows of an earlier batch,
        and a later duplicate of an id always wins.

        A batch chosen as the victim of a deadlock or serialization failure (a concurrent writer
        of the same ids) is retried: every batch in flight has rolled back by then (none after
        it can have committed), so the pipeline starts again from it, after a random pause.
        """
        parallel = self.plan.target.parallel_writes
        inflight: collections.deque[tuple[EncodedBatch, asyncio.Task[None], Turn]] = (
            collections.deque()
        )
        previous = Turn.first(self.loop)
        pending: collections.deque[EncodedBatch] = collections.deque()  # to (re)submit, in order
        exhausted = False
        failure: BaseException | None = None
        generator = self.encoded_batches()
        try:
            while True:
                if not pending and not exhausted:
                    # Read (and encode) the next batch while those in flight are written.
                    batch = await anext(generator, None)
                    if batch is None:
                        exhausted = True
                    else:
                        self.batches += 1
                        self.rows_read += batch.count
                        pending.append(batch)
                while inflight and (len(inflight) >= self.connections or not pending):
                    oldest, task, _ = inflight.popleft()
                    await asyncio.wait([task])
                    error = task.exception()
                    if error is None:
                        continue
                    redo = await self._redo_after(oldest, error, inflight)
                    inflight.clear()
                    pending.extendleft(reversed(redo))
                    previous = Turn.first(self.loop)
                    self.writer.optimistic = False
                    await asyncio.sleep(random.uniform(0.05, 0.25) * self.retry_streak)
                if not pending:
                    if exhausted:
                        return
                    continue
                batch = pending.popleft()
                if parallel:
                    write_after = [
                        turn.written
                        for earlier, _, turn in inflight
                        if not earlier.keyset.isdisjoint(batch.keyset)
                    ]
                else:
                    write_after = [inflight[-1][2].written] if inflight else []
                turn = previous.next(batch.index, write_after)
                task = asyncio.ensure_future(self._write_batch(batch, turn))
                task.add_done_callback(turn.settle)
                inflight.append((batch, task, turn))
                previous = turn
        except BaseException as exc:
            failure = exc
        finally:
            await generator.aclose()
        if failure is not None and not isinstance(failure, Exception):
            for _, task, _ in inflight:  # cancelled (or interrupted): roll back what is in flight
                task.cancel()
        # Let every batch in flight finish: earlier ones commit, later ones roll back.
        for batch, task, _ in inflight:
            await asyncio.wait([task])
            if task.cancelled():
                continue
            error = task.exception()
            if error is None or isinstance(error, Aborted):
                continue
            wrapped = wrap(batch, error)
            if failure is None or (
                isinstance(failure, BatchFailed)
                and isinstance(wrapped, BatchFailed)
                and wrapped.batch < failure.batch
            ):
                failure = wrapped
        if failure is not None:
            raise failure

    async def _redo_after(
        self,
        failed: EncodedBatch,
        error: BaseException,
        inflight: collections.deque[tuple[EncodedBatch, asyncio.Task[None], Turn]],
    ) -> list[EncodedBatch]:
        """The batches to write again after ``failed`` lost a deadlock (or raise its failure).

        Every batch still in flight is later than ``failed`` and waits for its commit, so each
        rolls back; wait for them all, then nothing of ours holds a lock.
        """
        redo = [failed]
        later_error: BaseException | None = None
        for batch, task, _ in inflight:
            await asyncio.wait([task])
            redo.append(batch)
            other = task.exception()
            if (
                other is not None
                and not isinstance(other, Aborted)
                and later_error is None
                and getattr(other, "sqlstate", None) not in _RETRYABLE
            ):
                later_error = wrap(batch, other)
        retryable = getattr(error, "sqlstate", None) in _RETRYABLE
        if not retryable or self.retry_streak >= _MAX_RETRIES:
            raise wrap(failed, error)
        if later_error is not None:
            raise later_error
        self.retry_streak += 1
        self.details["retries"] += 1
        return redo

    async def run_atomic(self) -> None:
        """Every batch in one transaction on one connection: all rows or none."""
        async with self.pool.acquire() as conn:
            self.atomic_conn = conn
            transaction = conn.transaction()
            await transaction.start()
            staged = False
            batch: EncodedBatch | None = None
            try:
                await scope(conn, self.pool.domain)
                async for batch in one_ahead(self.encoded_batches()):
                    self.batches += 1
                    self.rows_read += batch.count
                    try:
                        async with self.conn_lock:
                            writer = self.writer
                            new, old = writer.split(batch, await writer.probe(conn, batch))
                            if new and not await writer.copy_new(conn, batch, new):
                                new, old = [], list(range(batch.rows))
                            if old:
                                await writer.stage(conn, batch, old, create=not staged)
                                staged = True
                                await writer.merge(conn)
                    except Exception as exc:
                        raise wrap(batch, exc)  # noqa: B904 - wrap sets the cause
                    if batch.input_keys is not None:
                        self.input_keys.extend(batch.input_keys)
                    self.rows_done = batch.first_row + batch.count
                    self.rows_copied += len(new)
                    self.rows_upserted += len(old)
                    self.rows_written += batch.rows
                    await self._report()
                started = time.perf_counter()
                try:
                    await transaction.commit()
                except Exception as exc:
                    raise BatchFailed(
                        max(self.batches - 1, 0), (0, self.rows_read), "commit"
                    ) from exc
                self.details["commit"] += time.perf_counter() - started
                self.committed = list(range(self.batches))
            except BaseException as exc:
                self.rows_written = self.rows_copied = self.rows_upserted = 0
                with contextlib.suppress(Exception):  # never masks exc; abandons an interrupted one
                    await end_failed(conn, transaction, exc)
                raise
            finally:
                self.atomic_conn = None

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
