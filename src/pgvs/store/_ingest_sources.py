"""Where ingested rows come from: arrays with parallel columns, or (async) iterables of records.

Sources are read batch by batch: an array is sliced, a sync iterable is read in the ingest's
worker thread (it may block), an async iterable on the event loop. :class:`ReadOnLoop` relays an
async iterable to the loop that owns it (the sync facade's ``aingest``).
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any, TypeVar

import numpy as np

from .. import _batches
from .._batches import RawBatch
from ..errors import ValidationError
from ..results import Record

__all__ = [
    "ArraySource",
    "AsyncRecordSource",
    "ReadOnLoop",
    "RecordSource",
    "Source",
    "SourceError",
    "one_ahead",
    "records_batch",
    "source_for",
]


class Source:
    """Where rows come from (read in the worker thread, or for async iterables on the loop)."""

    total: int | None = None


class ArraySource(Source):
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
            _batches._parallel(name, values, self.total)
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


class SourceError(Exception):
    """Reading the input failed after ``read`` more rows of the batch."""

    def __init__(self, read: int) -> None:
        super().__init__(read)
        self.read = read


class RecordSource(Source):
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
            raise SourceError(len(chunk)) from exc
        return chunk


class AsyncRecordSource(Source):
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
            raise SourceError(len(chunk)) from exc
        return chunk


def records_batch(records: list[Any], index: int, first_row: int) -> RawBatch:
    return _batches.records_to_batch(records, index=index, first_row=first_row)


def _looks_like_records(data: Any) -> bool:
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        if not data:
            return False
        first = data[0]
        return isinstance(first, Mapping | tuple | Record)
    return True


def source_for(
    data: Any, columns: dict[str, Sequence[Any] | None], dims: int, dense: bool
) -> Source:
    given = any(values is not None for values in columns.values())
    if isinstance(data, np.ndarray) or given or not _looks_like_records(data):
        return ArraySource(data, columns, dims, dense)
    if isinstance(data, AsyncIterable):
        return AsyncRecordSource(data)
    if isinstance(data, Iterable) and not isinstance(data, str | bytes | Mapping):
        return RecordSource(data)
    raise ValidationError(
        "ingest() takes a 2-D numpy array of vectors (with ids=..., metadata=... keywords), "
        f"or an iterable or async iterable of records; got {type(data).__name__}"
    )


class ReadOnLoop:
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


T = TypeVar("T")


async def one_ahead(items: AsyncIterator[T]) -> AsyncGenerator[T, None]:
    """``items`` with the next one always being produced while the caller works on the current
    one: an atomic ingest writes batch n on its one connection while batch n + 1 is read and
    encoded (in the worker thread). Order and errors are the source's own, each raised where
    its item would have been; stopping early cancels the item being made and closes ``items``."""
    pending: asyncio.Future[T] = asyncio.ensure_future(anext(items))
    try:
        while True:
            try:
                item = await pending
            except StopAsyncIteration:
                return
            pending = asyncio.ensure_future(anext(items))
            yield item
    finally:
        if not pending.done():
            pending.cancel()
        # Waited for, not awaited: its outcome belongs to an item nobody asked for, while a
        # cancellation of this task itself still propagates.
        await asyncio.wait([pending])
        if not pending.cancelled():
            pending.exception()
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()
