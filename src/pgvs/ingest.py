"""Bulk ingest: stream rows into a store by binary COPY, in atomic, pipelined batches.

::

    from pgvs.ingest import ingest

    result = await ingest(store, vectors, ids=ids, metadata=metas, contents=texts)
    result = await ingest(store, records())          # an iterable or async iterable of records
    result = await ingest(store, rows, progress=True)  # a tqdm bar (pip install 'pgvs[progress]')

Ingest is an upsert by id (in the store's domain), like ``add_vectors``: running it twice leaves
the same rows. Each batch is validated with ``add_vectors``'s rules before anything of it is
sent, and written in a transaction of its own; batches commit in order, so after a failure the
committed batches are exactly ``0 .. k-1`` and re-running the same ingest finishes the job.

How a batch is written (one transaction):

1. The batch's ids are looked up (one indexed query; skipped while the store's domain was empty
   when the ingest started, until the first conflict).
2. Rows whose id is new are sent with ``COPY ... FROM STDIN (FORMAT binary)`` straight into the
   table: PostgreSQL's fastest write path (multi-row inserts). This is the same outcome as an
   upsert of rows that conflict with nothing, and the table's unique index makes it safe: if a
   concurrent writer (or an earlier batch of this ingest) stored one of those ids in the
   meantime, COPY fails with a unique violation (inside a savepoint) and the whole batch is
   written as in step 3 instead.
3. Rows whose id is stored already are COPied into a temporary table (dropped at commit) and
   written with ``INSERT ... SELECT ... ON CONFLICT (domain, id) DO UPDATE``, the statement
   add_vectors uses.

The client overlaps the stages: a worker thread reads and encodes the next batch while the
server writes the current one, and with ``connections=2`` (the default) two batches are in
flight on two pooled connections. They write at the same time when that cannot deadlock (the
table has no unique index but the key, no triggers, no foreign keys, and the two batches share
no id); otherwise the later one waits until the earlier one has written. Commits are always in
batch order: a batch waits for the previous batch's transaction by taking its advisory lock, a
wait the server can see, so any cycle of waits a concurrent writer could close through two of
our batches is broken by PostgreSQL's deadlock detector instead of hanging.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import inspect
import math
import random
import time
from collections.abc import AsyncIterable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import numpy as np

from . import _ingest_sql
from ._ingest_sql import BatchEncoder, EncodedBatch, IngestSQL, RawBatch
from .errors import (
    ConfigurationError,
    IngestError,
    SchemaMismatchError,
    ValidationError,
    translate_error,
)

if TYPE_CHECKING:
    from .store import AsyncPGVectorStore

__all__ = [
    "INGEST_THRESHOLD",
    "IngestProgress",
    "IngestResult",
    "ingest",
    "read_on_loop",
    "upsert_all",
]

T = TypeVar("T")

#: From this many rows on, ``add_vectors`` is faster through :func:`upsert_all` (measured with
#: 768-d and 128-d rows: the two cost the same at ~100-150 rows, the COPY path is 1.3-2x faster
#: from 500 on; with an HNSW index both are bound by the index and equal).
INGEST_THRESHOLD = 500

# Vector bytes per batch when batch_size is not given: ~2000 rows of 768-d float32. Measured with
# bench/ingest.py: smaller batches pay more per-batch round trips and commits, larger ones only
# delay the start of the pipeline and hold more memory.
_BATCH_BYTES = 6 * 2**20
_MIN_BATCH, _MAX_BATCH = 64, 10_000
_SPARSE_BATCH = 1000
_INDEXED_BATCH = 500  # with an HNSW or IVFFlat index (see default_batch_size)
_COPY_CHUNK = 1 << 20  # bytes per CopyData message


@dataclass(frozen=True)
class IngestProgress:
    """What a ``progress`` callback receives after every committed batch.

    With ``atomic=True`` nothing commits until the end, so the callback runs after every batch
    is *written* inside the still-open transaction, and the counts are of written batches; a
    later failure rolls all of them back (the :class:`IngestError` says so).
    """

    rows_done: int  # input rows of the committed (atomic: written) batches
    rows_total: int | None  # input rows in all, when known (an array, a list); else None
    rows_per_second: float  # rows_done / elapsed_seconds
    batches_done: int
    elapsed_seconds: float


@dataclass(frozen=True)
class IngestResult:
    """The outcome of a complete ingest."""

    rows_read: int  # input rows
    rows_written: int  # rows upserted: input rows minus earlier duplicates within a batch
    rows_copied: int  # of rows_written, new ids written by COPY straight into the table
    rows_upserted: int  # of rows_written, written by INSERT ... ON CONFLICT from the stage
    batches: int
    committed_batches: list[int]
    elapsed_seconds: float
    batch_size: int = 0
    details: Mapping[str, float] = field(default_factory=dict)  # seconds per stage (profiling)

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.elapsed_seconds if self.elapsed_seconds > 0 else math.inf


class _Aborted(Exception):
    """An earlier batch failed, so this one rolled back without writing."""


class _BatchFailed(Exception):
    """Internal: batch ``batch`` (rows ``row_range``) failed because of ``__cause__``."""

    def __init__(self, batch: int, row_range: tuple[int, int], stage: str) -> None:
        super().__init__(stage)
        self.batch = batch
        self.row_range = row_range
        self.stage = stage


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


# -- sources -------------------------------------------------------------------------------------


class _Source:
    """Where rows come from (read in the worker thread, or for async iterables on the loop)."""

    total: int | None = None


class _ArraySource(_Source):
    """A 2-D array (or sequence) of vectors with parallel columns, sliced batch by batch."""

    def __init__(
        self, vectors: Any, columns: dict[str, Sequence[Any] | None], dims: int, dense: bool
    ) -> None:
        if isinstance(vectors, np.ndarray):
            if vectors.ndim != 2:
                raise ValidationError(
                    f"vectors must be a 2-D array, got {vectors.ndim} dimension(s)"
                )
            if dense and vectors.dtype.kind not in "fiu":
                raise ValidationError(f"vectors must hold numbers, got dtype {vectors.dtype}")
            if vectors.shape[1] != dims:
                raise ValidationError(
                    f"vectors have {vectors.shape[1]} dimensions, the store expects {dims}"
                )
        elif isinstance(vectors, str | bytes) or not isinstance(vectors, Sequence):
            raise ValidationError("vectors must be a 2-D numpy array or a list of vectors")
        self.vectors = vectors
        self.total = len(vectors)
        for name, values in columns.items():
            _ingest_sql._parallel(name, values, self.total)
        self.columns = columns

    def next_batch(self, index: int, first_row: int, size: int) -> RawBatch | None:
        if first_row >= len(self.vectors):
            return None
        end = min(first_row + size, len(self.vectors))
        cut = slice(first_row, end)

        def part(values: Sequence[Any] | None) -> Sequence[Any] | None:
            return None if values is None else values[cut]

        c = self.columns
        return RawBatch(
            index=index,
            first_row=first_row,
            count=end - first_row,
            vectors=self.vectors[cut],
            ids=part(c["ids"]),
            metadata=part(c["metadata"]),
            contents=part(c["contents"]),
            document_ids=part(c["document_ids"]),
            chunk_indexes=part(c["chunk_indexes"]),
        )


class _SourceError(Exception):
    """Reading the input failed after ``read`` more rows of the batch."""

    def __init__(self, read: int) -> None:
        super().__init__(read)
        self.read = read


class _RecordSource(_Source):
    """An iterable of records, read in the worker thread (it may block: files, APIs)."""

    def __init__(self, records: Iterable[Any]) -> None:
        self.iterator: Iterator[Any] = iter(records)
        try:
            self.total = len(records)  # type: ignore[arg-type]
        except TypeError:
            self.total = None

    def next_records(self, size: int) -> list[Any]:
        chunk: list[Any] = []
        try:
            for record in self.iterator:
                chunk.append(record)
                if len(chunk) >= size:
                    break
        except Exception as exc:
            raise _SourceError(len(chunk)) from exc
        return chunk


class _AsyncRecordSource(_Source):
    """An async iterable of records, read on the event loop (parsed in the worker thread)."""

    def __init__(self, records: AsyncIterable[Any]) -> None:
        self.iterator = records.__aiter__()

    async def anext_records(self, size: int) -> list[Any]:
        chunk: list[Any] = []
        try:
            while len(chunk) < size:
                try:
                    chunk.append(await self.iterator.__anext__())
                except StopAsyncIteration:
                    break
        except Exception as exc:
            raise _SourceError(len(chunk)) from exc
        return chunk


def _records_batch(records: list[Any], index: int, first_row: int) -> RawBatch:
    return _ingest_sql.records_to_batch(records, index=index, first_row=first_row)


def _looks_like_records(data: Any) -> bool:
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        if not data:
            return False
        first = data[0]
        from .results import Record

        return isinstance(first, Mapping | tuple | Record)
    return True


def _source(data: Any, columns: dict[str, Sequence[Any] | None], dims: int, dense: bool) -> _Source:
    given = any(values is not None for values in columns.values())
    if isinstance(data, np.ndarray) or given or not _looks_like_records(data):
        return _ArraySource(data, columns, dims, dense)
    if isinstance(data, AsyncIterable):
        return _AsyncRecordSource(data)
    if isinstance(data, Iterable) and not isinstance(data, str | bytes | Mapping):
        return _RecordSource(data)
    raise ValidationError(
        "ingest() takes a 2-D numpy array of vectors (with ids=..., metadata=... keywords), "
        f"or an iterable or async iterable of records; got {type(data).__name__}"
    )


# -- progress ------------------------------------------------------------------------------------


def _progress_callback(
    progress: bool | Callable[[IngestProgress], Any] | None, total: int | None, label: str
) -> tuple[Callable[[IngestProgress], Any] | None, Callable[[], None]]:
    """(callback, close) for the ``progress`` argument."""
    if progress is None or progress is False:
        return None, lambda: None
    if progress is True:
        try:
            from tqdm.auto import tqdm
        except ImportError as exc:
            raise ConfigurationError(
                "progress=True shows a tqdm progress bar, but tqdm is not installed",
                hint="pip install 'pgvs[progress]' (or tqdm), or pass a callable as progress.",
            ) from exc
        bar = tqdm(total=total, unit="rows", unit_scale=True, desc=label, dynamic_ncols=True)
        shown = [0]

        def update(state: IngestProgress) -> None:
            bar.update(state.rows_done - shown[0])
            shown[0] = state.rows_done

        return update, bar.close
    if not callable(progress):
        raise ConfigurationError(
            f"progress must be None, True or a callable, got {type(progress).__name__}"
        )
    return progress, lambda: None


# -- the pipeline --------------------------------------------------------------------------------


class _Ingest:
    def __init__(
        self,
        store: AsyncPGVectorStore,
        source: _Source,
        *,
        batch_size: int | None,
        connections: int,
        atomic: bool,
        progress: Callable[[IngestProgress], Any] | None,
    ) -> None:
        self.store = store
        self.pool = store.pool
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
        self.atomic_conn: Any = None
        self.conn_lock = asyncio.Lock()
        self.optimistic = False  # skip the id lookups (see start())
        # First key of the batches' advisory locks: one per ingest (the 2-key lock space is
        # apart from the 1-key one pgvs uses elsewhere).
        self.lock_class = random.randrange(-(2**31), 2**31)
        self.retry_streak = 0  # retries since the last commit
        # With the default batch size, the first batch is a quarter of it: the server starts
        # writing a few ms after the call instead of after a whole batch has been encoded.
        self.ramp_up = False
        self.input_keys: list[Any] = []  # every row's id, when collected (upsert_all)

    # -- setup ---------------------------------------------------------------------------------

    async def start(self) -> None:
        store = self.store
        row = await self.pool.fetchrow(IngestSQL.TARGET_QUERY, store._sql.table_text)
        if row is None:
            raise SchemaMismatchError(
                f"table {store._sql.table} does not exist",
                hint="Initialize the store (it creates the table) before ingesting.",
            )
        target = _ingest_sql.target_info(
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
                store.config.vector_type,
                store.config.dimensions,
                vector_index=row["has_vector_index"],
            )
        self.plan = IngestSQL(store._sql, target, store._domain)
        # The same vector checks as add_vectors (the store may add its own, e.g. a sparsevec
        # non-zero limit for HNSW).
        coerce = getattr(store, "_coerce_checked", store._coerce_vector)
        self.encoder = BatchEncoder(store._config, self.plan, coerce)
        if target.direct_copy:
            # An empty domain has nothing to look up: batches go straight to COPY (the unique
            # index still stops any id that shows up meanwhile) until the first conflict.
            self.optimistic = not await self.pool.fetchval(
                self.plan.domain_has_rows(), *self.plan.domain_args()
            )

    # -- stage 1: read and encode --------------------------------------------------------------

    def _thread(self, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        return self.loop.run_in_executor(self.executor, function, *args)

    def _encode(self, raw: RawBatch) -> EncodedBatch:
        started = time.perf_counter()
        encoded = self.encoder.encode(raw, _ingest_sql.generated_uuids)
        encoded.encode_seconds = time.perf_counter() - started
        return encoded

    async def _fill_bigint_ids(self, raw: RawBatch) -> None:
        """Draw missing bigint ids from the column's sequence, as add_vectors does."""
        if self.store._config.id_type != "bigint":
            return
        ids = raw.ids
        missing = (
            list(range(raw.count))
            if ids is None
            else [row for row, value in enumerate(ids) if value is None]
        )
        if not missing:
            return
        sql = self.store._sql
        args = (sql.next_ids(), sql.table_text, self.store._config.column("id"), len(missing))
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
        """Encoded batches in order (an async generator); failures raise _BatchFailed."""
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
                if isinstance(source, _ArraySource):
                    raw = await self._thread(source.next_batch, index, first_row, size)
                    if raw is None:
                        return
                else:
                    if isinstance(source, _AsyncRecordSource):
                        records = await source.anext_records(size)
                    else:
                        assert isinstance(source, _RecordSource)
                        records = await self._thread(source.next_records, size)
                    if not records:
                        return
                    span = (first_row, first_row + len(records))
                    raw = await self._thread(_records_batch, records, index, first_row)
                span = raw.row_range
                await self._fill_bigint_ids(raw)
                encoded = await self._thread(self._encode, raw)
            except _SourceError as exc:
                failure = _BatchFailed(index, (first_row, first_row + exc.read + 1), "reading")
                raise failure from exc.__cause__
            except Exception as exc:
                raise _BatchFailed(index, span, "preparing") from exc
            self.details["encode"] += encoded.encode_seconds
            yield encoded
            index += 1
            first_row += raw.count

    # -- stage 2: write ------------------------------------------------------------------------

    async def _probe(self, conn: Any, batch: EncodedBatch) -> list[int]:
        """Positions (in batch.keys) of the rows whose id is stored already."""
        if not self.plan.target.direct_copy:
            return list(range(batch.rows))
        if self.optimistic:
            return []
        started = time.perf_counter()
        rows = await conn.fetch(self.plan.probe(), *self.plan.probe_args(batch.keys))
        self.details["probe"] += time.perf_counter() - started
        if not rows:
            return []
        stored = {r[0] for r in rows}
        return [i for i, key in enumerate(batch.keys) if key in stored]

    async def _copy(self, conn: Any, table: str, schema: str | None, data: bytes) -> None:
        async def chunks() -> Any:
            view = memoryview(data)
            for start in range(0, len(data), _COPY_CHUNK):
                yield view[start : start + _COPY_CHUNK]

        # asyncpg quotes these names exactly as pgvs._sql.quote_ident does; they were checked by
        # quote_ident when the store's config was built (the stage's name is a constant).
        await conn.copy_to_table(
            table,
            source=chunks(),
            columns=self.plan.copy_columns,
            schema_name=schema,
            format="binary",
        )

    async def _copy_new(self, conn: Any, batch: EncodedBatch, new: Sequence[int]) -> None:
        started = time.perf_counter()
        data = batch.stream if len(new) == batch.rows else batch.subset(new)
        c = self.store._config
        await self._copy(conn, c.table_name, c.schema, data)
        self.details["copy"] += time.perf_counter() - started

    def _split(self, batch: EncodedBatch, stored: list[int]) -> tuple[list[int], list[int]]:
        if not stored:
            return list(range(batch.rows)), []
        stored_set = set(stored)
        new = [i for i in range(batch.rows) if i not in stored_set]
        return new, stored

    async def _write_batch(self, batch: EncodedBatch, turn: _Turn) -> None:
        """One batch in its own transaction, committed after the batch before it.

        Transactions begin in batch order, each holding an advisory lock named after its batch.
        Before committing, a batch takes the previous batch's lock, that is, it waits in the
        server for the previous transaction to end: were a concurrent writer ever to close a
        cycle of waits through two of our batches, PostgreSQL's deadlock detector sees the whole
        cycle and breaks it, where a wait kept in the client would hang.
        """
        if not await turn.previous_began:
            turn.mark_failed()
            raise _Aborted()
        async with self.pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            try:
                await conn.execute(_LOCK_SQL, self.lock_class, turn.lock)
                turn.began.set_result(True)
                stored = await self._probe(conn, batch)
                new, old = self._split(batch, stored)
                staged = False
                if old:  # the stage is this transaction's own: fill it before our turn
                    await self._stage(conn, batch, old, create=True)
                    staged = True
                waited = time.perf_counter()
                for written in turn.write_after:
                    if not await written:
                        raise _Aborted()
                self.details["wait_turn"] += time.perf_counter() - waited
                if new:
                    try:
                        async with conn.transaction():  # a savepoint
                            await self._copy_new(conn, batch, new)
                    except asyncpg.UniqueViolationError:
                        # One of these ids was stored since the lookup (by a concurrent writer
                        # or an earlier batch): upsert the whole batch instead.
                        new, old = [], list(range(batch.rows))
                        await self._stage(conn, batch, old, create=not staged)
                        self.details["fallbacks"] += 1
                        self.optimistic = False
                if old:
                    started = time.perf_counter()
                    await conn.execute(self.plan.upsert_from_stage())
                    self.details["upsert"] += time.perf_counter() - started
                turn.written.set_result(True)
                waited = time.perf_counter()
                if turn.previous_lock is not None:
                    await conn.execute(_LOCK_SQL, self.lock_class, turn.previous_lock)
                if not await turn.commit_after:
                    raise _Aborted()
                self.details["wait_commit"] += time.perf_counter() - waited
                started = time.perf_counter()
                await transaction.commit()
                self.details["commit"] += time.perf_counter() - started
            except BaseException:
                turn.mark_failed()
                await _rollback_quietly(conn, transaction)
                raise
        await self._committed(batch, len(new), len(old))

    async def _stage(
        self, conn: Any, batch: EncodedBatch, positions: Sequence[int], *, create: bool
    ) -> None:
        """COPY rows into this transaction's staging table (created, or emptied first)."""
        started = time.perf_counter()
        await conn.execute(self.plan.stage_ddl() if create else self.plan.truncate_stage())
        data = batch.stream if len(positions) == batch.rows else batch.subset(positions)
        await self._copy(conn, self.plan.stage_name, "pg_temp", data)
        self.details["stage_copy"] += time.perf_counter() - started

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
            raise _BatchFailed(batch.index, batch.row_range, stage) from exc

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
        inflight: collections.deque[tuple[EncodedBatch, asyncio.Task[None], _Turn]] = (
            collections.deque()
        )
        previous = _Turn.first(self.loop)
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
                    previous = _Turn.first(self.loop)
                    self.optimistic = False
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
            if error is None or isinstance(error, _Aborted):
                continue
            wrapped = _wrap(batch, error)
            if failure is None or (
                isinstance(failure, _BatchFailed)
                and isinstance(wrapped, _BatchFailed)
                and wrapped.batch < failure.batch
            ):
                failure = wrapped
        if failure is not None:
            raise failure

    async def _redo_after(
        self,
        failed: EncodedBatch,
        error: BaseException,
        inflight: collections.deque[tuple[EncodedBatch, asyncio.Task[None], _Turn]],
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
                and not isinstance(other, _Aborted)
                and later_error is None
                and getattr(other, "sqlstate", None) not in _RETRYABLE
            ):
                later_error = _wrap(batch, other)
        retryable = getattr(error, "sqlstate", None) in _RETRYABLE
        if not retryable or self.retry_streak >= _MAX_RETRIES:
            raise _wrap(failed, error)
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
                async for batch in self.encoded_batches():
                    self.batches += 1
                    self.rows_read += batch.count
                    try:
                        async with self.conn_lock:
                            stored = await self._probe(conn, batch)
                            new, old = self._split(batch, stored)
                            if new:
                                try:
                                    async with conn.transaction():  # a savepoint
                                        await self._copy_new(conn, batch, new)
                                except asyncpg.UniqueViolationError:
                                    new, old = [], list(range(batch.rows))
                                    self.details["fallbacks"] += 1
                                    self.optimistic = False
                            if old:
                                await self._stage(conn, batch, old, create=not staged)
                                staged = True
                                started = time.perf_counter()
                                await conn.execute(self.plan.upsert_from_stage())
                                self.details["upsert"] += time.perf_counter() - started
                    except Exception as exc:
                        raise _wrap(batch, exc)  # noqa: B904 - _wrap sets the cause
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
                    raise _BatchFailed(
                        max(self.batches - 1, 0), (0, self.rows_read), "commit"
                    ) from exc
                self.details["commit"] += time.perf_counter() - started
                self.committed = list(range(self.batches))
            except BaseException:
                self.rows_written = self.rows_copied = self.rows_upserted = 0
                await _rollback_quietly(conn, transaction)
                raise
            finally:
                self.atomic_conn = None

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


async def _rollback_quietly(conn: Any, transaction: Any) -> None:
    """Roll back after a failure, never masking it: a lost connection (asyncpg then detaches
    the pool proxy, whose every method raises) has nothing left to roll back."""
    with contextlib.suppress(Exception):
        if not conn.is_closed():
            await transaction.rollback()


_LOCK_SQL = "SELECT pg_advisory_xact_lock($1::integer, $2::integer)"
# deadlock_detected, serialization_failure: the batch lost to a concurrent writer; try again.
_RETRYABLE = frozenset({"40P01", "40001"})
_MAX_RETRIES = 8  # in a row, without a commit in between


@dataclass
class _Turn:
    """One batch's place in the pipeline: what it waits for, and what it tells the next.

    Each future resolves to True on success and False once that batch failed.
    """

    lock: int  # this batch's advisory lock (second key; the first is the ingest's)
    previous_lock: int | None
    previous_began: asyncio.Future[bool]
    write_after: list[asyncio.Future[bool]]
    commit_after: asyncio.Future[bool]
    began: asyncio.Future[bool]
    written: asyncio.Future[bool]
    committed: asyncio.Future[bool]

    @classmethod
    def first(cls, loop: asyncio.AbstractEventLoop) -> _Turn:
        """A finished turn before the first batch."""
        done: asyncio.Future[bool] = loop.create_future()
        done.set_result(True)
        return cls(-1, None, done, [], done, done, done, done)

    def next(self, index: int, write_after: list[asyncio.Future[bool]]) -> _Turn:
        loop = self.committed.get_loop()
        return _Turn(
            lock=index % 2**31,
            previous_lock=None if self.lock < 0 else self.lock,
            previous_began=self.began,
            write_after=write_after,
            commit_after=self.committed,
            began=loop.create_future(),
            written=loop.create_future(),
            committed=loop.create_future(),
        )

    def mark_failed(self) -> None:
        for future in (self.began, self.written):
            if not future.done():
                future.set_result(False)

    def settle(self, task: asyncio.Task[None]) -> None:
        """The batch's task ended: release whoever waits on it."""
        ok = not task.cancelled() and task.exception() is None
        self.mark_failed()
        if not self.committed.done():
            self.committed.set_result(ok)


def _wrap(batch: EncodedBatch | None, error: BaseException | None) -> BaseException:
    if isinstance(error, _BatchFailed | _Aborted) or batch is None:
        assert error is not None
        return error
    failure = _BatchFailed(batch.index, batch.row_range, "writing")
    failure.__cause__ = error
    return failure


def _ingest_error(failure: _BatchFailed, run: _Ingest) -> IngestError:
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


async def ingest(
    store: AsyncPGVectorStore,
    data: Any,
    *,
    ids: Sequence[Any] | None = None,
    metadata: Sequence[Mapping[str, Any] | None] | None = None,
    contents: Sequence[str | None] | None = None,
    document_ids: Sequence[str | None] | None = None,
    chunk_indexes: Sequence[int | None] | None = None,
    batch_size: int | None = None,
    progress: bool | Callable[[IngestProgress], Any] | None = None,
    atomic: bool = False,
    connections: int = 2,
) -> IngestResult:
    """Upsert many rows into ``store`` by binary COPY, in batches; see the module docstring.

    ``data`` is either

    - a 2-D numpy array of vectors (or a list of vectors), with the other columns as parallel
      sequences in ``ids`` / ``metadata`` / ``contents`` / ``document_ids`` / ``chunk_indexes``
      (a ``numpy.memmap`` is read batch by batch); or
    - an iterable or async iterable of records, each a dict (keys ``id``, ``vector`` (or
      ``embedding``), ``metadata``, ``content``, ``document_id``, ``chunk_index``), a tuple in
      that order (``(id, vector)`` up to all six), or a :class:`pgvs.Record`. A sync iterable is
      read in a worker thread, so a generator may block (read files, call an embedding API)
      without stalling the writes; it must not rely on running in the caller's thread.

    Missing ids are generated as in ``add_vectors`` (uuid4, or the column's sequence for bigint);
    give ids to make a re-run idempotent. Within a batch a repeated id keeps its last row; across
    batches the later batch wins. At most a few batches are held in memory at once.

    ``batch_size``: rows per batch and transaction (default: ~6 MiB of vectors, 2042 rows at
    768-d; at most 500 when the table has an HNSW or IVFFlat index; the first default batch is
    a quarter, so the server starts sooner). ``progress``: a callable
    receiving an :class:`IngestProgress` after every committed batch (it may be a coroutine
    function), or True for a tqdm bar. ``atomic=True`` writes every batch in one transaction
    (all rows or none; one connection). ``connections``: batches in flight at once, each on its
    own pooled connection (1: no overlap); see the module docstring for when they write at the
    same time.

    Returns an :class:`IngestResult`. A failure once rows started flowing raises
    :class:`~pgvs.errors.IngestError` naming the batch and its rows, the committed batches and
    rows written, ``from`` the cause (a ValidationError for a bad row, found before its batch is
    sent; a ConnectionLostError, ...). Bad arguments raise ValidationError before anything runs.
    """
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ConfigurationError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(connections, bool) or not isinstance(connections, int) or connections < 1:
        raise ConfigurationError(f"connections must be a positive integer, got {connections!r}")
    columns: dict[str, Sequence[Any] | None] = {
        "ids": ids,
        "metadata": metadata,
        "contents": contents,
        "document_ids": document_ids,
        "chunk_indexes": chunk_indexes,
    }
    source = _source(
        data, columns, store.config.dimensions, store.config.vector_type in ("vector", "halfvec")
    )
    store.pool  # noqa: B018 - raises StoreClosedError before any work when not initialized
    callback, close_progress = _progress_callback(
        progress, source.total, f"ingest {store.config.table_name}"
    )
    run = _Ingest(
        store,
        source,
        batch_size=batch_size,
        connections=max(1, min(connections, store.config.pool_max_size)),
        atomic=atomic,
        progress=callback,
    )
    try:
        try:
            await run.start()
            if atomic:
                await run.run_atomic()
            else:
                await run.run_pipelined()
        except _BatchFailed as failure:
            error = _ingest_error(failure, run)
            raise error from error.__cause__
        except Exception as exc:  # before the first batch: the table lookup
            translated = translate_error(exc, operation="ingest")
            if translated is exc:
                raise
            raise translated from exc
    finally:
        run.close()
        close_progress()
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
    store: AsyncPGVectorStore,
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
    source = _source(
        vectors,
        {
            "ids": ids,
            "metadata": metadata,
            "contents": contents,
            "document_ids": document_ids,
            "chunk_indexes": chunk_indexes,
        },
        store.config.dimensions,
        store.config.vector_type in ("vector", "halfvec"),
    )
    store.pool  # noqa: B018 - raises StoreClosedError before any work when not initialized
    run = _Ingest(
        store,
        source,
        batch_size=None,
        connections=1,
        atomic=True,
        progress=None,
    )
    try:
        await run.start()
        run.encoder.collect_input_keys = True
        await run.run_atomic()
    except _BatchFailed as failure:
        cause = failure.__cause__
        assert cause is not None
        translated = translate_error(cause, operation="add_vectors")
        if translated is cause:
            raise cause from cause.__cause__
        raise translated from cause
    finally:
        run.close()
    return run.input_keys


class read_on_loop:
    """An async iterable that reads ``source`` on ``loop``, wherever it is iterated.

    For the sync store's ``aingest``: ingest runs on the store's background loop, but an async
    generator that awaits loop-bound objects (an HTTP session, a driver) must run on the loop
    that created them. Records are fetched ``chunk`` at a time, one cross-thread hop each.
    """

    def __init__(
        self, source: AsyncIterable[Any], loop: asyncio.AbstractEventLoop, chunk: int = 256
    ) -> None:
        self.source = source
        self.loop = loop
        self.chunk = chunk

    async def __aiter__(self) -> Any:
        iterator = self.source.__aiter__()

        async def take() -> list[Any]:
            items: list[Any] = []
            try:
                while len(items) < self.chunk:
                    items.append(await iterator.__anext__())
            except StopAsyncIteration:
                pass
            return items

        while True:
            future = asyncio.run_coroutine_threadsafe(take(), self.loop)
            try:
                items = await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                future.cancel()
                raise
            for item in items:
                yield item
            if len(items) < self.chunk:
                return
