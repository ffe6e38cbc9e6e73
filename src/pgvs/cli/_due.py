"""The index ``pgvs ingest`` drops to load first never silently vanishes: it is recorded as due.

Into an empty store, ``pgvs ingest`` takes the load-then-build path of ``store.ingest``
(:mod:`pgvs.store._load_build`): the store's HNSW index is dropped, the rows load into the bare
table, the index is built once. The CLI's stores never build on their own
(``auto_create_index=False``), and a command reads the store's configuration from the catalog,
so a process killed between the drop and the end of the build would leave the table without its
index for good, with nothing left to say there was one. Hence:

**Invariant.** While a ``pgvs ingest`` may have dropped the store's index and not rebuilt it,
(1) the table's comment holds an ``index_due`` record of that index (name, parameters, operator
class, definition), committed *before* the drop; and (2) that ingest holds the table's ingest
lock in shared mode: a session-level advisory lock on a connection of its own, which the server
releases when the process dies (``kill -9`` included). The record is removed only by a session
holding that lock exclusively (so no ingest is alive) that sees the index valid.

So after a crash the record outlives the process, and the next ``pgvs`` command that opens the
store (:func:`settle`, run by ``open_store``) finds it with no live ingest and no valid index: it
rebuilds the index with the recorded parameters, says so on stderr, removes the record, then does
its own work. ``pgvs ingest`` itself resumes instead (:class:`IngestGuard`): the index is gone
already, so it loads, then builds. A command run while an ingest is alive leaves both alone (that
ingest builds the index). A library store with ``auto_create_index=True`` rebuilds a missing
index in the background anyway (a populated table without one); the record it leaves is removed
by the next command. A comment that was there before (``pgvs init``'s metric, or any text of
the user's) is kept beside the record and is what remains when the record is removed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from .._sql import quote_ident
from ..errors import PGVSError
from ..results import IngestResult
from ..store.core import AsyncPGVectorStore
from ._output import IndexDisplay, warn

__all__ = [
    "COMMENT_PREFIX",
    "COMMENT_STATEMENT",
    "IngestGuard",
    "comment_data",
    "due_of",
    "settle",
    "with_due",
    "without_due",
]

COMMENT_PREFIX = "pgvs:"
# COMMENT takes no parameters: the server quotes the names and the text itself (NULL: none).
COMMENT_STATEMENT = "SELECT format('COMMENT ON TABLE %I.%I IS %L', $1::text, $2::text, $3::text)"
_COMMENT_QUERY = """
    SELECT obj_description(c.oid, 'pg_class')
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = $1 AND c.relname = $2
"""
_DUE = "index_due"
_KEPT = "comment"  # a comment that was not pgvs's own, kept here while a record is there
# Shared: every running `pgvs ingest` of the table. Exclusive: whoever removes a record.
_TRY_SHARED = "SELECT pg_try_advisory_lock_shared(hashtextextended($1, 0))"
_SHARED = "SELECT pg_advisory_lock_shared(hashtextextended($1, 0))"
_UNLOCK_SHARED = "SELECT pg_advisory_unlock_shared(hashtextextended($1, 0))"
_TRY_EXCLUSIVE = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended($1, 0))"


# -- the comment (pure) ----------------------------------------------------------------------


def comment_data(comment: str | None) -> dict[str, Any]:
    """What a table comment says to pgvs: its ``pgvs:`` JSON object; another comment is
    ``{"comment": text}``; none is ``{}``."""
    if comment is None:
        return {}
    if comment.startswith(COMMENT_PREFIX):
        try:
            value = json.loads(comment[len(COMMENT_PREFIX) :])
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
    return {_KEPT: comment}


def due_of(comment: str | None) -> dict[str, Any] | None:
    """The ``index_due`` record in a table comment, if it holds a well-formed one."""
    due = comment_data(comment).get(_DUE)
    if not isinstance(due, dict) or not isinstance(due.get("name"), str):
        return None
    if due.get("type") != "hnsw" or not isinstance(due.get("params", {}), dict):
        return None
    return due


def _render(data: dict[str, Any]) -> str | None:
    if not data:
        return None
    if set(data) == {_KEPT} and isinstance(data[_KEPT], str):
        return str(data[_KEPT])  # the user's own comment, as it was
    return COMMENT_PREFIX + json.dumps(data, sort_keys=True)


def with_due(comment: str | None, due: dict[str, Any]) -> str:
    """``comment`` with ``due`` recorded (what else it said kept)."""
    rendered = _render({**comment_data(comment), _DUE: due})
    assert rendered is not None
    return rendered


def without_due(comment: str | None) -> str | None:
    """``comment`` without its record: what it was before the record was written."""
    data = comment_data(comment)
    data.pop(_DUE, None)
    return _render(data)


# -- on the server ---------------------------------------------------------------------------


def _lock_key(schema: str, table: str) -> str:
    return f"pgvs:ingest:{schema}.{table}"


async def _read_comment(connection: asyncpg.Connection, schema: str, table: str) -> str | None:
    value = await connection.fetchval(_COMMENT_QUERY, schema, table)
    return None if value is None else str(value)


async def _change_comment(
    connection: asyncpg.Connection,
    schema: str,
    table: str,
    change: Callable[[str | None], str | None],
) -> None:
    """Read, change and write the table's comment as one step: the table lock COMMENT takes
    anyway (SHARE UPDATE EXCLUSIVE, which conflicts with itself), taken before the read."""
    async with connection.transaction():
        await connection.execute(
            f"LOCK TABLE {quote_ident(schema)}.{quote_ident(table)} IN SHARE UPDATE EXCLUSIVE MODE"
        )
        current = await _read_comment(connection, schema, table)
        wanted = change(current)
        if wanted != current:
            statement = await connection.fetchval(COMMENT_STATEMENT, schema, table, wanted)
            await connection.execute(statement)


async def _rebuild(store: AsyncPGVectorStore, due: dict[str, Any], quiet: bool) -> float:
    """Build the recorded index (a valid one is kept); its seconds."""
    display = IndexDisplay(f"rebuilding {due['name']}", quiet=quiet)
    started = time.perf_counter()
    try:
        params = {str(key): int(value) for key, value in dict(due.get("params") or {}).items()}
        await store.create_index("hnsw", params or None, progress=display)
    finally:
        display.close()
    return time.perf_counter() - started


async def settle(
    connection: asyncpg.Connection, store: AsyncPGVectorStore, schema: str, table: str
) -> None:
    """At a command's start: the index an interrupted ``pgvs ingest`` left due is rebuilt and
    its record removed, unless an ingest is alive (it builds the index itself)."""
    due = due_of(await _read_comment(connection, schema, table))
    if due is None:
        return
    key = _lock_key(schema, table)
    if not await connection.fetchval(_TRY_EXCLUSIVE, key):
        if not (await store.index_status()).usable:
            warn(
                f"{schema}.{table}: its index {due['name']} is built after a running "
                "`pgvs ingest` loads; until then searches scan the table"
            )
        return
    try:
        try:
            if not (await store.index_status()).usable:
                warn(
                    f"{schema}.{table}: rebuilding its index {due['name']}, which an "
                    "interrupted `pgvs ingest` dropped to load first"
                )
                seconds = await _rebuild(store, due, quiet=False)
                warn(f"rebuilt {due['name']} in {seconds:.1f} s")
        except (PGVSError, asyncpg.PostgresError) as exc:  # no right to build here, say: the
            # command itself still runs (on a table without its index: searches scan it)
            warn(
                f"{schema}.{table}: could not rebuild its index {due['name']}: {exc}\n"
                "Run `pgvs index create` as the table's owner."
            )
            return
        await _clear_record(connection, store, schema, table)
    finally:
        await connection.fetchval(_UNLOCK, key)


async def _clear_record(
    connection: asyncpg.Connection, store: AsyncPGVectorStore, schema: str, table: str
) -> bool:
    """Under the exclusive ingest lock (held by the caller): remove the record when the index
    is valid. Whether the index is valid. A failure to write the comment (COMMENT needs the
    table's owner) is said, not raised: the index is what matters, and it is valid; the record
    only costs the next command a look."""
    if not (await store.index_status()).usable:
        return False
    try:
        await _change_comment(connection, schema, table, without_due)
    except (PGVSError, asyncpg.PostgresError) as exc:
        warn(
            f"{schema}.{table}: its index is valid, but the record an interrupted `pgvs ingest` "
            f"left in the table's comment could not be removed ({exc}); any pgvs command run "
            "by the table's owner removes it"
        )
    return True


class IngestGuard:
    """What ``pgvs ingest`` holds around ``store.ingest`` (the module docstring's invariant).

    :meth:`start` takes the shared lock and decides: ``resume`` (an interrupted ingest left the
    index due: this load goes into the bare table and :meth:`after_load` builds it), or the
    record written and ``build_after_load`` True (the store may drop its index), or neither
    (``note`` says why). :meth:`finish` removes the record once the index is valid.
    """

    def __init__(
        self,
        connection: asyncpg.Connection,
        store: AsyncPGVectorStore,
        schema: str,
        table: str,
        quiet: bool,
    ) -> None:
        self.connection = connection
        self.store = store
        self.schema = schema
        self.table = table
        self.quiet = quiet
        self.key = _lock_key(schema, table)
        self.resume: dict[str, Any] | None = None
        self.marked = False
        self.recorded = False  # a record was there at the start (removed too once valid)
        self.build_after_load: bool | None = None
        self.note: str | None = None

    async def start(self) -> None:
        connection = self.connection
        if not await connection.fetchval(_TRY_SHARED, self.key):
            warn(f"{self.schema}.{self.table}: waiting for a pgvs command rebuilding its index")
            await connection.fetchval(_SHARED, self.key)
        due = due_of(await _read_comment(connection, self.schema, self.table))
        self.recorded = due is not None
        status = await self.store.index_status()
        if due is not None and not status.usable:
            self.resume = due
            return
        if self.store.config.index_type != "hnsw":
            return  # the store's note says why
        if not status.usable:
            what = "INVALID" if status.exists else "missing"
            self.note = f"its index {status.name} is {what} (`pgvs index create` builds it)"
            return
        qualified = f"{quote_ident(self.schema)}.{quote_ident(self.table)}"
        rows = f"SELECT EXISTS (SELECT 1 FROM {qualified})"  # noqa: S608 - quoted names
        if await connection.fetchval(rows):
            self.note = "the table already holds rows (its index serves searches)"
            return
        record = {
            "name": status.name,
            "type": "hnsw",
            "params": {key: int(value) for key, value in status.params.items()},
            "opclass": status.opclass,
            "definition": status.definition,
        }
        try:
            await _change_comment(
                connection, self.schema, self.table, lambda old: with_due(old, record)
            )
        except asyncpg.InsufficientPrivilegeError:
            self.note = "only the table's owner may drop and rebuild its index"
            return
        self.marked = self.build_after_load = True

    async def after_load(self, result: IngestResult | None) -> IngestResult | None:
        """After the load ran to its end (``result``) or failed on a row (None): an index left
        due by an interrupted ingest is built now, over every row."""
        if self.resume is None:
            if result is not None and self.note is not None and result.index_note is not None:
                result = _noted(result, self.note)
            return result
        seconds = await _rebuild(self.store, self.resume, self.quiet)
        if result is None:
            return None
        details = {**result.details, "index_build": seconds}
        return _noted(result, None, details=details, more_seconds=seconds)

    async def finish(self) -> None:
        """Release the shared lock; with no other ingest alive, remove the record if the index
        is valid (else it stays for the next command, which rebuilds the index)."""
        connection = self.connection
        await connection.fetchval(_UNLOCK_SHARED, self.key)
        if not (self.marked or self.recorded):
            return
        if not await connection.fetchval(_TRY_EXCLUSIVE, self.key):
            return  # another ingest is alive: the last one out removes the record
        try:
            if not await _clear_record(connection, self.store, self.schema, self.table):
                warn(
                    f"{self.schema}.{self.table} has no valid index: the next pgvs command "
                    "rebuilds it"
                )
        finally:
            await connection.fetchval(_UNLOCK, self.key)


def _noted(
    result: IngestResult,
    note: str | None,
    *,
    details: dict[str, float] | None = None,
    more_seconds: float = 0.0,
) -> IngestResult:
    return dataclasses.replace(
        result,
        index_note=note,
        details=result.details if details is None else details,
        elapsed_seconds=result.elapsed_seconds + more_seconds,
    )
