"""How ingest writes one batch: its statements on a connection, and its own transaction's turn.

:class:`BatchWriter` holds the SQL of a batch (the probe for stored ids, binary COPY of new rows,
the staging table and the merge from it) for both of :class:`~._ingest_pipeline.Pipeline`'s flows,
and runs a pipelined batch in its own transaction. :class:`Turn` is that transaction's place in
the order of batches in flight: what it waits for (server-side advisory locks and futures of the
batches before it) and what it tells the next. Which batches run, retry or fail is the pipeline's.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from .._batches import EncodedBatch
from .._copy_sql import IngestSQL, copy_or_stage
from ..config import StoreConfig
from ._session import TimedPool, end_failed, scope
from ._session import transaction as guarded

__all__ = ["Aborted", "BatchFailed", "BatchWriter", "Turn", "wrap"]

_COPY_CHUNK = 1 << 20  # bytes per CopyData message
# Two-key advisory locks (the ingest's class, the batch's turn): apart from the 1-key lock space
# pgvs uses elsewhere; transaction-scoped, so a batch's lock ends with its transaction.
_LOCK_SQL = "SELECT pg_advisory_xact_lock($1::integer, $2::integer)"


class Aborted(Exception):
    """An earlier batch failed, so this one rolled back without writing."""


class BatchFailed(Exception):
    """Internal: batch ``batch`` (rows ``row_range``) failed because of ``__cause__``."""

    def __init__(self, batch: int, row_range: tuple[int, int], stage: str) -> None:
        super().__init__(stage)
        self.batch = batch
        self.row_range = row_range
        self.stage = stage


def wrap(batch: EncodedBatch | None, error: BaseException | None) -> BaseException:
    """``error`` of writing ``batch`` as the BatchFailed that names it (kept as it is when it
    already is one, or the batch was aborted for an earlier one)."""
    if isinstance(error, BatchFailed | Aborted) or batch is None:
        assert error is not None
        return error
    failure = BatchFailed(batch.index, batch.row_range, "writing")
    failure.__cause__ = error
    return failure


class BatchWriter:
    """The statements of one ingest's batches; ``details`` collects their timings."""

    def __init__(
        self,
        pool: TimedPool,
        plan: IngestSQL,
        config: StoreConfig,
        details: MutableMapping[str, float],
        *,
        optimistic: bool,
    ) -> None:
        self.pool = pool
        self.plan = plan
        self.table, self.schema = config.table_name, config.schema
        self.details = details
        # Skip the id lookups: set while the domain is known to hold no rows (the unique index
        # still stops any id that shows up meanwhile), cleared at the first conflict.
        self.optimistic = optimistic
        # First key of the batches' advisory locks: one per ingest.
        self.lock_class = random.randrange(-(2**31), 2**31)

    async def probe(self, conn: Any, batch: EncodedBatch) -> list[int]:
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

    def split(self, batch: EncodedBatch, stored: list[int]) -> tuple[list[int], list[int]]:
        """The rows to COPY straight in, and those to merge from the stage."""
        # With row-level security (a domain on the pool) PostgreSQL refuses COPY FROM.
        return copy_or_stage(batch.rows, stored, staged_only=self.pool.domain is not None)

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

    async def copy_new(self, conn: Any, batch: EncodedBatch, new: Sequence[int]) -> bool:
        """COPY the rows at ``new`` into the table, in a savepoint. False, with nothing written,
        when one of their ids was stored since the probe (by a concurrent writer or an earlier
        batch): the caller then upserts the whole batch, and later batches probe again."""
        try:
            async with guarded(conn):  # a savepoint
                started = time.perf_counter()
                data = batch.stream if len(new) == batch.rows else batch.subset(new)
                await self._copy(conn, self.table, self.schema, data)
                self.details["copy"] += time.perf_counter() - started
        except asyncpg.UniqueViolationError:
            self.details["fallbacks"] += 1
            self.optimistic = False
            return False
        return True

    async def stage(
        self, conn: Any, batch: EncodedBatch, positions: Sequence[int], *, create: bool
    ) -> None:
        """COPY rows into this transaction's staging table (created, or emptied first)."""
        started = time.perf_counter()
        await conn.execute(self.plan.stage_ddl() if create else self.plan.truncate_stage())
        data = batch.stream if len(positions) == batch.rows else batch.subset(positions)
        await self._copy(conn, self.plan.stage_name, "pg_temp", data)
        self.details["stage_copy"] += time.perf_counter() - started

    async def merge(self, conn: Any) -> None:
        """Upsert the staged rows into the table."""
        started = time.perf_counter()
        await conn.execute(self.plan.upsert_from_stage())
        self.details["upsert"] += time.perf_counter() - started

    async def write(self, batch: EncodedBatch, turn: Turn) -> tuple[int, int]:
        """:meth:`_write_on`; an asyncpg state error there while the server is gone (it died
        between two statements of the batch) is the lost connection it is."""
        try:
            return await self._write_on(batch, turn)
        except (asyncpg.InterfaceError, asyncpg.InternalClientError) as exc:
            try:
                await self.pool.fetchval("SELECT 1")
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError):
                raise asyncpg.ConnectionDoesNotExistError("the server went away") from exc
            raise

    async def _write_on(self, batch: EncodedBatch, turn: Turn) -> tuple[int, int]:
        """One batch in its own transaction, committed after the batch before it: the rows it
        COPied and upserted.

        Transactions begin in batch order, each holding an advisory lock named after its batch.
        Before committing, a batch takes the previous batch's lock, that is, it waits in the
        server for the previous transaction to end: were a concurrent writer ever to close a
        cycle of waits through two of our batches, PostgreSQL's deadlock detector sees the whole
        cycle and breaks it, where a wait kept in the client would hang.
        """
        if not await turn.previous_began:
            turn.mark_failed()
            raise Aborted()
        async with self.pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            try:
                await scope(conn, self.pool.domain)
                await conn.execute(_LOCK_SQL, self.lock_class, turn.lock)
                turn.began.set_result(True)
                stored = await self.probe(conn, batch)
                new, old = self.split(batch, stored)
                staged = False
                if old:  # the stage is this transaction's own: fill it before our turn
                    await self.stage(conn, batch, old, create=True)
                    staged = True
                waited = time.perf_counter()
                for written in turn.write_after:
                    if not await written:
                        raise Aborted()
                self.details["wait_turn"] += time.perf_counter() - waited
                if new and not await self.copy_new(conn, batch, new):
                    new, old = [], list(range(batch.rows))
                    await self.stage(conn, batch, old, create=not staged)
                if old:
                    await self.merge(conn)
                turn.written.set_result(True)
                waited = time.perf_counter()
                if turn.previous_lock is not None:
                    await conn.execute(_LOCK_SQL, self.lock_class, turn.previous_lock)
                if not await turn.commit_after:
                    raise Aborted()
                self.details["wait_commit"] += time.perf_counter() - waited
                started = time.perf_counter()
                await transaction.commit()
                self.details["commit"] += time.perf_counter() - started
            except BaseException as exc:
                turn.mark_failed()
                with contextlib.suppress(Exception):  # never masks exc; abandons an interrupted one
                    await end_failed(conn, transaction, exc)
                raise
        return len(new), len(old)


@dataclass
class Turn:
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
    def first(cls, loop: asyncio.AbstractEventLoop) -> Turn:
        """A finished turn before the first batch."""
        done: asyncio.Future[bool] = loop.create_future()
        done.set_result(True)
        return cls(-1, None, done, [], done, done, done, done)

    def next(self, index: int, write_after: list[asyncio.Future[bool]]) -> Turn:
        loop = self.committed.get_loop()
        return Turn(
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
