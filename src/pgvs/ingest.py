"""Bulk ingest: stream rows into a store by binary COPY, in atomic, pipelined batches.

::

    result = await store.ingest(vectors, ids=ids, metadata=metas, contents=texts)
    result = await store.ingest(records())         # an iterable or async iterable of records
    result = await store.ingest(rows, progress=True)  # a tqdm bar (pip install 'pgvs[progress]')

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

The machinery lives in :mod:`pgvs.store` (``_ingest``, ``_ingest_pipeline``, ``_ingest_writer``,
``_ingest_sources``); this module keeps the public names and the function form
``await ingest(store, data, ...)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .results import IngestProgress, IngestResult
from .store._ingest import INGEST_THRESHOLD
from .store._ingest_pipeline import default_batch_size
from .store._ingest_sources import ReadOnLoop

if TYPE_CHECKING:
    from .store import AsyncPGVectorStore

__all__ = [
    "INGEST_THRESHOLD",
    "IngestProgress",
    "IngestResult",
    "ReadOnLoop",
    "default_batch_size",
    "ingest",
    "read_on_loop",
]

#: The former name of :class:`ReadOnLoop`.
read_on_loop = ReadOnLoop


async def ingest(store: AsyncPGVectorStore, data: Any, **options: Any) -> IngestResult:
    """``await store.ingest(data, **options)``: see :meth:`AsyncPGVectorStore.ingest`."""
    return await store.ingest(data, **options)
