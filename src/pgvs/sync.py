"""PGVectorStore: the whole store for synchronous code, plus ``a``-prefixed async twins.

The async core runs on an event loop in a background thread that this object owns: the asyncpg
pool and its codecs are created on that loop (pools are bound to their loop). A sync call hands
its coroutine to that loop and blocks until it finishes, so it works from plain scripts, from
threads, and from code that is itself inside a running loop (a Jupyter cell): the caller's loop is
blocked, never deadlocked. An ``a``-method awaits the same work from the caller's loop.

Invariants:
- Every method is a thin proxy: the work, the checks and the errors are the async core's.
- Waiting ends in one of two ways: the result, or cancellation of the task on the background
  loop (Ctrl-C, timeouts), which asyncpg turns into a cancel request to the server.
- A store crosses no ``fork()``: the child must not touch sockets it shares with the parent.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import os
import threading
import warnings
import weakref
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from .config import StoreConfig
from .errors import PGVSError, StoreClosedError
from .indexes import IndexStatus, SearchExplanation
from .results import Record, SearchResult
from .store import AsyncPGVectorStore, ProgressCallback, _translated

if TYPE_CHECKING:
    from .ingest import IngestProgress, IngestResult

__all__ = ["PGVectorStore"]

T = TypeVar("T")

_open_stores: weakref.WeakSet[PGVectorStore] = weakref.WeakSet()
_CLOSE_TIMEOUT = 10.0


class _LoopThread:
    """An event loop running forever in a daemon thread (daemon: exit never waits for it)."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), name=name, daemon=True)
        self.thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        self.loop.run_forever()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run_blocking(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop and block the calling thread until it is done.

        A plain lock released by the task's done-callback is the whole hand-off: about 30 µs
        cheaper per call than ``run_coroutine_threadsafe(...).result()`` (bench/search.py). The
        wait is interruptible (Ctrl-C); the task is then cancelled on the loop, which makes
        asyncpg cancel the query on the server, before the interruption propagates.
        """
        done = threading.Lock()
        done.acquire()
        started: list[asyncio.Task[T]] = []

        def start() -> None:
            task = self.loop.create_task(coroutine)
            started.append(task)
            task.add_done_callback(lambda _: done.release())

        try:
            self.loop.call_soon_threadsafe(start)
        except RuntimeError:  # the loop was closed under us
            coroutine.close()
            raise StoreClosedError("the store's event loop has stopped") from None
        try:
            done.acquire()
        except BaseException:
            # call_soon_threadsafe runs callbacks in order, so the task exists by then.
            self.loop.call_soon_threadsafe(lambda: started[0].cancel())
            done.acquire(timeout=_CLOSE_TIMEOUT)
            raise
        return started[0].result()

    def stop(self, *, join: bool = True) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if join and threading.get_ident() != self.thread.ident:
            self.thread.join(_CLOSE_TIMEOUT)
            if not self.thread.is_alive():
                self.loop.close()


class PGVectorStore:
    """The synchronous store: same configuration and methods as :class:`AsyncPGVectorStore`.

    ``with PGVectorStore({...}) as store: store.search(q)``; every method also has an
    ``a``-prefixed coroutine twin (``await store.asearch(q)``).
    """

    def __init__(
        self, config: StoreConfig | Mapping[str, Any] | None = None, /, **options: Any
    ) -> None:
        # Built (and validated) here, in the caller's thread: bad configs fail before a thread.
        self._store = AsyncPGVectorStore(config, **options)
        self._runner: _LoopThread | None = _LoopThread(f"pgvs-{self._store.config.table_name}")
        self._closed = False
        _open_stores.add(self)

    def __repr__(self) -> str:
        return repr(self._store).replace("AsyncPGVectorStore", "PGVectorStore", 1)

    @property
    def config(self) -> StoreConfig:
        return self._store.config

    @property
    def async_store(self) -> AsyncPGVectorStore:
        """The async core (bound to this store's background loop)."""
        return self._store

    # -- plumbing ------------------------------------------------------------------------------

    def _live_runner(self) -> _LoopThread:
        runner = self._runner
        if runner is None or self._closed:
            raise StoreClosedError("the store is closed", hint="Create a new PGVectorStore.")
        if runner.pid != os.getpid():
            raise StoreClosedError(
                f"this store was created in process {runner.pid} and cannot be used after fork()",
                hint="Create a new PGVectorStore in the child process.",
            )
        return runner

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        try:
            runner = self._live_runner()
        except BaseException:
            coroutine.close()
            raise
        if threading.get_ident() == runner.thread.ident:
            coroutine.close()
            raise PGVSError(
                "a synchronous PGVectorStore method was called from the store's own event-loop "
                "thread, where waiting for it would deadlock",
                hint="Use the a-prefixed coroutine (e.g. `await store.asearch(...)`) there.",
            )
        return runner.run_blocking(coroutine)

    async def _acall(self, coroutine: Coroutine[Any, Any, T]) -> T:
        try:
            runner = self._live_runner()
        except BaseException:
            coroutine.close()
            raise
        if threading.get_ident() == runner.thread.ident:
            return await coroutine
        future = runner.submit(coroutine)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()
            raise

    def run(self, function: Callable[[AsyncPGVectorStore], Awaitable[T]]) -> T:
        """Run ``await function(async_store)`` on the store's loop and return its result.

        For work of your own on the store's pool, e.g.
        ``store.run(lambda s: s.pool.fetchval("SELECT count(*) FROM my_table"))``.
        """

        @_translated("run")
        async def call() -> T:
            return await function(self._store)

        return self._call(call())

    async def arun(self, function: Callable[[AsyncPGVectorStore], Awaitable[T]]) -> T:
        """The coroutine twin of :meth:`run`."""

        @_translated("run")
        async def call() -> T:
            return await function(self._store)

        return await self._acall(call())

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> PGVectorStore:
        self.initialize()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> PGVectorStore:
        await self.ainitialize()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def initialize(self) -> None:
        self._call(self._store.initialize())

    async def ainitialize(self) -> None:
        await self._acall(self._store.initialize())

    def close(self) -> None:
        """Close the pool, stop the background loop and join its thread. Safe to call twice."""
        runner, self._runner = self._runner, None
        self._closed = True
        _open_stores.discard(self)
        if runner is None or runner.pid != os.getpid():
            return
        try:
            if threading.get_ident() != runner.thread.ident:
                runner.submit(self._store.close()).result(_CLOSE_TIMEOUT)
        finally:
            runner.stop()

    async def aclose(self) -> None:
        runner = self._runner
        if runner is not None and runner.pid == os.getpid() and not self._closed:
            await self._acall(self._store.close())
        await asyncio.to_thread(self.close)

    def __del__(self) -> None:
        runner = getattr(self, "_runner", None)
        if runner is None or runner.pid != os.getpid():
            return
        warnings.warn(
            f"{self!r} was never closed; call close() or use it as a context manager",
            ResourceWarning,
            stacklevel=2,
        )
        runner.stop(join=False)

    # -- writes --------------------------------------------------------------------------------

    def add_vectors(
        self,
        vectors: Any,
        ids: Sequence[Any] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        contents: Sequence[str | None] | None = None,
        document_ids: Sequence[str | None] | None = None,
        chunk_indexes: Sequence[int | None] | None = None,
    ) -> list[Any]:
        return self._call(
            self._store.add_vectors(vectors, ids, metadata, contents, document_ids, chunk_indexes)
        )

    async def aadd_vectors(
        self,
        vectors: Any,
        ids: Sequence[Any] | None = None,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        contents: Sequence[str | None] | None = None,
        document_ids: Sequence[str | None] | None = None,
        chunk_indexes: Sequence[int | None] | None = None,
    ) -> list[Any]:
        return await self._acall(
            self._store.add_vectors(vectors, ids, metadata, contents, document_ids, chunk_indexes)
        )

    def update_metadata(
        self, ids: Sequence[Any], metadatas: Sequence[Mapping[str, Any]], *, merge: bool = False
    ) -> int:
        return self._call(self._store.update_metadata(ids, metadatas, merge=merge))

    async def aupdate_metadata(
        self, ids: Sequence[Any], metadatas: Sequence[Mapping[str, Any]], *, merge: bool = False
    ) -> int:
        return await self._acall(self._store.update_metadata(ids, metadatas, merge=merge))

    def delete_vectors(self, ids: Sequence[Any]) -> int:
        return self._call(self._store.delete_vectors(ids))

    async def adelete_vectors(self, ids: Sequence[Any]) -> int:
        return await self._acall(self._store.delete_vectors(ids))

    def delete(self, filter: Mapping[str, Any]) -> int:
        return self._call(self._store.delete(filter))

    async def adelete(self, filter: Mapping[str, Any]) -> int:
        return await self._acall(self._store.delete(filter))

    def clear(self) -> int:
        return self._call(self._store.clear())

    async def aclear(self) -> int:
        return await self._acall(self._store.clear())

    def ingest(
        self,
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
        """Bulk upsert; a sync iterable of records is read in a worker thread, not this one."""
        return self._call(
            self._store.ingest(
                data,
                ids=ids,
                metadata=metadata,
                contents=contents,
                document_ids=document_ids,
                chunk_indexes=chunk_indexes,
                batch_size=batch_size,
                progress=progress,
                atomic=atomic,
                connections=connections,
            )
        )

    async def aingest(
        self,
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
        if isinstance(data, AsyncIterable):
            # Pulled on the caller's loop: its awaitables may be bound to that loop.
            from .ingest import read_on_loop

            data = read_on_loop(data, asyncio.get_running_loop())
        return await self._acall(
            self._store.ingest(
                data,
                ids=ids,
                metadata=metadata,
                contents=contents,
                document_ids=document_ids,
                chunk_indexes=chunk_indexes,
                batch_size=batch_size,
                progress=progress,
                atomic=atomic,
                connections=connections,
            )
        )

    # -- reads ---------------------------------------------------------------------------------

    def count(self, filter: Mapping[str, Any] | None = None) -> int:
        return self._call(self._store.count(filter))

    async def acount(self, filter: Mapping[str, Any] | None = None) -> int:
        return await self._acall(self._store.count(filter))

    def get_vectors(self, ids: Sequence[Any], include_metadata: bool = True) -> list[Record]:
        return self._call(self._store.get_vectors(ids, include_metadata))

    async def aget_vectors(self, ids: Sequence[Any], include_metadata: bool = True) -> list[Record]:
        return await self._acall(self._store.get_vectors(ids, include_metadata))

    def search(
        self,
        query: Any,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        include_metadata: bool = True,
        include_vectors: bool = False,
        min_score: float | None = None,
        ef_search: int | None = None,
        probes: int | None = None,
        exact: bool = False,
    ) -> list[SearchResult]:
        return self._call(
            self._store.search(
                query,
                k,
                filter=filter,
                include_metadata=include_metadata,
                include_vectors=include_vectors,
                min_score=min_score,
                ef_search=ef_search,
                probes=probes,
                exact=exact,
            )
        )

    async def asearch(
        self,
        query: Any,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        include_metadata: bool = True,
        include_vectors: bool = False,
        min_score: float | None = None,
        ef_search: int | None = None,
        probes: int | None = None,
        exact: bool = False,
    ) -> list[SearchResult]:
        return await self._acall(
            self._store.search(
                query,
                k,
                filter=filter,
                include_metadata=include_metadata,
                include_vectors=include_vectors,
                min_score=min_score,
                ef_search=ef_search,
                probes=probes,
                exact=exact,
            )
        )

    def search_batch(
        self,
        queries: Any,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        include_metadata: bool = True,
        include_vectors: bool = False,
        min_score: float | None = None,
        ef_search: int | None = None,
        probes: int | None = None,
        exact: bool = False,
    ) -> list[list[SearchResult]]:
        return self._call(
            self._store.search_batch(
                queries,
                k,
                filter=filter,
                include_metadata=include_metadata,
                include_vectors=include_vectors,
                min_score=min_score,
                ef_search=ef_search,
                probes=probes,
                exact=exact,
            )
        )

    async def asearch_batch(
        self,
        queries: Any,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        include_metadata: bool = True,
        include_vectors: bool = False,
        min_score: float | None = None,
        ef_search: int | None = None,
        probes: int | None = None,
        exact: bool = False,
    ) -> list[list[SearchResult]]:
        return await self._acall(
            self._store.search_batch(
                queries,
                k,
                filter=filter,
                include_metadata=include_metadata,
                include_vectors=include_vectors,
                min_score=min_score,
                ef_search=ef_search,
                probes=probes,
                exact=exact,
            )
        )

    def explain_search(
        self,
        query: Any,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        ef_search: int | None = None,
        probes: int | None = None,
        exact: bool = False,
        analyze: bool = False,
    ) -> SearchExplanation:
        return self._call(
            self._store.explain_search(
                query,
                k,
                filter=filter,
                ef_search=ef_search,
                probes=probes,
                exact=exact,
                analyze=analyze,
            )
        )

    async def aexplain_search(
        self,
        query: Any,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        ef_search: int | None = None,
        probes: int | None = None,
        exact: bool = False,
        analyze: bool = False,
    ) -> SearchExplanation:
        return await self._acall(
            self._store.explain_search(
                query,
                k,
                filter=filter,
                ef_search=ef_search,
                probes=probes,
                exact=exact,
                analyze=analyze,
            )
        )

    # -- vector indexes ------------------------------------------------------------------------

    def create_index(
        self,
        index_type: str | None = None,
        params: Mapping[str, int] | None = None,
        *,
        concurrently: bool = False,
        maintenance_work_mem: str | int | None = None,
        max_parallel_maintenance_workers: int | None = None,
        progress: ProgressCallback | bool | None = None,
    ) -> IndexStatus:
        return self._call(
            self._store.create_index(
                index_type,
                params,
                concurrently=concurrently,
                maintenance_work_mem=maintenance_work_mem,
                max_parallel_maintenance_workers=max_parallel_maintenance_workers,
                progress=progress,
            )
        )

    async def acreate_index(
        self,
        index_type: str | None = None,
        params: Mapping[str, int] | None = None,
        *,
        concurrently: bool = False,
        maintenance_work_mem: str | int | None = None,
        max_parallel_maintenance_workers: int | None = None,
        progress: ProgressCallback | bool | None = None,
    ) -> IndexStatus:
        return await self._acall(
            self._store.create_index(
                index_type,
                params,
                concurrently=concurrently,
                maintenance_work_mem=maintenance_work_mem,
                max_parallel_maintenance_workers=max_parallel_maintenance_workers,
                progress=progress,
            )
        )

    def drop_index(self, *, concurrently: bool = False) -> bool:
        return self._call(self._store.drop_index(concurrently=concurrently))

    async def adrop_index(self, *, concurrently: bool = False) -> bool:
        return await self._acall(self._store.drop_index(concurrently=concurrently))

    def reindex(
        self,
        *,
        concurrently: bool = False,
        maintenance_work_mem: str | int | None = None,
        max_parallel_maintenance_workers: int | None = None,
        progress: ProgressCallback | bool | None = None,
    ) -> IndexStatus:
        return self._call(
            self._store.reindex(
                concurrently=concurrently,
                maintenance_work_mem=maintenance_work_mem,
                max_parallel_maintenance_workers=max_parallel_maintenance_workers,
                progress=progress,
            )
        )

    async def areindex(
        self,
        *,
        concurrently: bool = False,
        maintenance_work_mem: str | int | None = None,
        max_parallel_maintenance_workers: int | None = None,
        progress: ProgressCallback | bool | None = None,
    ) -> IndexStatus:
        return await self._acall(
            self._store.reindex(
                concurrently=concurrently,
                maintenance_work_mem=maintenance_work_mem,
                max_parallel_maintenance_workers=max_parallel_maintenance_workers,
                progress=progress,
            )
        )

    def index_status(self) -> IndexStatus:
        return self._call(self._store.index_status())

    async def aindex_status(self) -> IndexStatus:
        return await self._acall(self._store.index_status())

    def wait_for_index(self, timeout: float | None = None) -> IndexStatus:
        return self._call(self._store.wait_for_index(timeout))

    async def await_for_index(self, timeout: float | None = None) -> IndexStatus:
        return await self._acall(self._store.wait_for_index(timeout))


def _after_fork_in_child() -> None:
    # The child inherits the objects but not the loop threads; sockets are shared with the
    # parent, so nothing in the child may close or use them. Forget them without touching them.
    _open_stores.clear()


def _close_open_stores_at_exit() -> None:
    for store in list(_open_stores):
        try:
            store.close()
        except Exception:
            continue


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_open_stores_at_exit)
