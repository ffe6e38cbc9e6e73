"""Query log (``query_log=N``): the searches' query vectors, buffered and written in the
background to the store's side table, for ``tune(queries="recent")``. The statements and the
reasons are in :mod:`pgvs.query_log`.

Invariants:
- Recording never fails a search, and costs it a copy of its vector: the search path only
  appends to a bounded in-memory buffer, once the search is answered; a write runs as a
  background task, one at a time, only when a pooled connection is free (else the entries wait
  for the next try), and a write that fails is logged and its entries dropped (the log is a
  sample, not a ledger).
- Memory is bounded: the buffer keeps at most ``query_log`` entries, the newest.
- The table keeps each domain's newest ``query_log`` entries across every process writing it.
- ``close()`` writes what is buffered; ``tune(queries="recent")`` does first, so a store tunes
  on the queries it served itself a moment ago.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import Any

import asyncpg
import numpy as np

from .. import query_log as ql
from .._sql import qualified
from ..errors import SchemaMismatchError, ValidationError
from ._context import StoreContext
from ._rls import ensure_policy
from ._session import Session, logger, scope, transaction

__all__ = ["QueryLog", "prepare_query_log"]


async def prepare_query_log(connection: asyncpg.Connection, ctx: StoreContext) -> None:
    """Create (auto_create_table) or verify the side table, in the set-up transaction under
    the store table's DDL lock."""
    config = ctx.config
    if not config.query_log:
        return
    name = ql.log_table_name(config.table_name)
    table = qualified(config.schema, name)
    found = await connection.fetchval(ql.column_type_sql(), table)
    if found is None:
        if not config.auto_create_table:
            raise SchemaMismatchError(
                f"query_log={config.query_log} but the query log table {table} does not exist",
                hint="A store opened with query_log=N and auto_create_table=True (as the "
                "application serving the searches would be) creates it; or set query_log=0.",
            )
        vector_type = ctx.sql.vector_sql_type
        for statement in ql.create_statements(config.schema, config.table_name, vector_type):
            await connection.execute(statement)
        logger.info("created query log %s", table)
    elif found != ctx.sql.vector_sql_type:
        raise SchemaMismatchError(
            f"the query log {table} holds {found} vectors, this store searches with "
            f"{ctx.sql.vector_sql_type}",
            hint=f"Its entries cannot serve this store: DROP TABLE {table} (it is recreated "
            "empty), or set query_log=0.",
        )
    await ensure_policy(connection, ctx, table=table, table_text=table)


class QueryLog:
    def __init__(self, ctx: StoreContext, session: Session) -> None:
        self.ctx = ctx
        self.session = session
        self.capacity = ctx.config.query_log
        self.enabled = self.capacity > 0
        self._buffer: collections.deque[Any] = collections.deque(maxlen=max(self.capacity, 1))
        self._flush_rows = min(ql.FLUSH_ROWS, max(self.capacity, 1))  # a full buffer is due
        self._oldest: float | None = None  # when the oldest buffered entry arrived
        self._writing: asyncio.Task[None] | None = None
        config = ctx.config
        self.table = qualified(config.schema, ql.log_table_name(config.table_name))
        self._insert = ql.insert_sql(self.table, ctx.sql.query_cast)
        self._trim = ql.trim_sql(self.table)
        self._recent = ql.recent_sql(self.table)

    def record(self, value: Any) -> None:
        """Keep one search's query (its wire value, as the search bound it)."""
        # The caller may reuse its array once the search returns; bytes are immutable.
        self._buffer.append(value.copy() if isinstance(value, np.ndarray) else value)
        now = time.monotonic()
        if self._oldest is None:
            self._oldest = now
        due = len(self._buffer) >= self._flush_rows or now - self._oldest >= ql.FLUSH_SECONDS
        if due and self._writing is None:
            self._writing = asyncio.get_running_loop().create_task(self._write_in_background())

    def record_many(self, values: Any) -> None:
        for value in values:
            self.record(value)

    async def _write_in_background(self) -> None:
        try:
            # Never make a search wait for a connection: with none free, the entries stay
            # buffered (the newest ``query_log``) for the next try, close() or tune().
            if self.session.pool.free():
                await self._write_buffered()
        except Exception as exc:  # a sample lost, never a search failed
            logger.warning("query log: could not write to %s: %s", self.table, exc)
        finally:
            self._writing = None

    async def _write_buffered(self) -> None:
        entries = list(self._buffer)
        self._buffer.clear()
        self._oldest = None
        if not entries:
            return
        domain = self.ctx.domain
        async with self.session.pool.acquire() as connection, transaction(connection):
            await scope(connection, self.session.pool.domain)
            await connection.executemany(self._insert, [(domain, entry) for entry in entries])
            await connection.execute(self._trim, domain, self.capacity)

    async def flush(self) -> None:
        """Write everything recorded so far (after a background write under way)."""
        if not self.enabled:
            return
        running = self._writing
        if running is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(running)
        await self._write_buffered()

    async def close(self) -> None:
        """Write what is buffered; a failure is logged, never raised (closing must succeed)."""
        if not self.enabled or not self.session.is_open:
            return
        pending = len(self._buffer)
        try:
            await self.flush()
        except Exception as exc:
            logger.warning("query log: %d entries not written at close: %s", pending, exc)

    async def forget(self, domain: str) -> None:
        """Delete ``domain``'s entries (``drop_domain``), whether or not this store logs: the
        table may be another process's. Query vectors can be as telling as the rows."""
        if domain == self.ctx.domain:
            self._buffer.clear()
            self._oldest = None
        running = self._writing  # (its entries must not land after the delete)
        if running is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(running)
        if not await self.session.pool.fetchval("SELECT to_regclass($1) IS NOT NULL", self.table):
            return
        await self.session.pool.execute(ql.forget_sql(self.table), domain)

    async def recent(self) -> list[Any]:
        """This domain's newest ``query_log`` queries, newest first (this store's own buffered
        ones written first)."""
        if not self.enabled:
            raise ValidationError(
                'queries="recent" needs the query log, which this store does not keep',
                hint="Open the store with query_log=N (e.g. 500): its searches then record "
                "their query vectors for tune().",
            )
        await self.flush()
        rows = await self.session.pool.fetch(self._recent, self.ctx.domain, self.capacity)
        if not rows:
            raise ValidationError(
                f'queries="recent": the query log {self.table} holds no queries of this '
                "store's domain yet",
                hint="Serve some searches first (any process with query_log set records "
                "them), or pass queries= or leave it unset to sample stored rows.",
            )
        return [row["embedding"] for row in rows]
