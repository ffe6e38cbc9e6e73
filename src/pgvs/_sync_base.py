"""The hand-written half of the sync facade: the loop thread, the hand-off, the twin factories.

:mod:`pgvs.sync` is generated from :class:`~pgvs.store.AsyncPGVectorStore` by
``scripts/generate_sync.py``: one sync twin and one ``a``-twin per public coroutine, made here by
:func:`blocking_twin` and :func:`coroutine_twin`, which keep the core's signature and docstring.

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
import functools
import os
import threading
import warnings
import weakref
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

from .config import StoreConfig
from .errors import PGVSError, StoreClosedError, translating
from .store import AsyncPGVectorStore
from .store._ingest_sources import ReadOnLoop
from .store._replicas import ReadRouting

__all__ = ["SyncStoreBase", "blocking_twin", "coroutine_twin"]

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")
Self = TypeVar("Self", bound="SyncStoreBase")

_open_stores: weakref.WeakSet[SyncStoreBase] = weakref.WeakSet()
_SIGNAL_CHECK = 0.1  # seconds between checks for a pending Ctrl-C while a call waits
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

        scheduled = False
        try:
            self.loop.call_soon_threadsafe(start)
            scheduled = True
            # Woken every _SIGNAL_CHECK seconds: a Ctrl-C whose C handler ran after the last
            # check for signals but before the thread blocked would otherwise only be seen
            # once the call had ended. The wake-up returns to bytecode, which runs the handler.
            while not done.acquire(timeout=_SIGNAL_CHECK):
                pass
        except RuntimeError:
            if scheduled:
                raise
            coroutine.close()  # the loop was closed under us
            raise StoreClosedError("the store's event loop has stopped") from None
        except BaseException:
            # A Ctrl-C (or any interruption) anywhere past scheduling, even before the wait
            # began: the task is cancelled (so is its statement on the server) and the
            # interruption always propagates. call_soon_threadsafe runs callbacks in order, so
            # the task exists by the time the cancel runs.
            def cancel() -> None:
                if started:
                    started[0].cancel()
                else:  # interrupted before start() was queued: it never will run
                    coroutine.close()

            self.loop.call_soon_threadsafe(cancel)
            if scheduled:
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


class SyncStoreBase:
    """Everything of :class:`pgvs.PGVectorStore` that is not a generated twin."""

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
    def read_routing(self) -> ReadRouting:
        """Where reads went (see ``AsyncPGVectorStore.read_routing``)."""
        return self._store.read_routing

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

    def _runner_for(self, coroutine: Coroutine[Any, Any, Any]) -> _LoopThread:
        """The live runner, or the error, with ``coroutine`` closed (never left un-awaited)."""
        try:
            return self._live_runner()
        except BaseException:
            coroutine.close()
            raise

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        runner = self._runner_for(coroutine)
        if threading.get_ident() == runner.thread.ident:
            coroutine.close()
            raise PGVSError(
                "a synchronous PGVectorStore method was called from the store's own event-loop "
                "thread, where waiting for it would deadlock",
                hint="Use the a-prefixed coroutine (e.g. `await store.asearch(...)`) there.",
            )
        return runner.run_blocking(coroutine)

    async def _acall(self, coroutine: Coroutine[Any, Any, T]) -> T:
        runner = self._runner_for(coroutine)
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

        async def call() -> T:
            with translating("run"):
                return await function(self._store)

        return self._call(call())

    async def arun(self, function: Callable[[AsyncPGVectorStore], Awaitable[T]]) -> T:
        """The coroutine twin of :meth:`run`."""

        async def call() -> T:
            with translating("run"):
                return await function(self._store)

        return await self._acall(call())

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self: Self) -> Self:
        self._call(self._store.initialize())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self: Self) -> Self:
        await self._acall(self._store.initialize())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def close(self) -> None:
        """Close the pool (the sync store also stops its event-loop thread). Safe to call twice.

        A background index build still running is cancelled: a concurrent build left half done
        is an INVALID index, which the next start-up (or create_index) repairs.
        """
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
        """Close the pool (the sync store also stops its event-loop thread). Safe to call twice.

        A background index build still running is cancelled: a concurrent build left half done
        is an INVALID index, which the next start-up (or create_index) repairs.
        """
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


# -- twins ---------------------------------------------------------------------------------------


def _as_twin(twin: Callable[..., Any], method: Callable[..., Any], name: str) -> None:
    # The core's signature (via __wrapped__) and docstring: help() and the parity test see the
    # same method on all three.
    functools.update_wrapper(twin, method)
    twin.__name__ = name
    twin.__qualname__ = f"PGVectorStore.{name}"
    twin.__module__ = "pgvs.sync"


def blocking_twin(
    method: Callable[Concatenate[AsyncPGVectorStore, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[SyncStoreBase, P], R]:
    """The sync twin of a public coroutine: runs it on the store's loop and waits."""
    name = method.__name__

    def twin(self: SyncStoreBase, /, *args: P.args, **kwargs: P.kwargs) -> R:
        work: Coroutine[Any, Any, R] = getattr(self._store, name)(*args, **kwargs)
        return self._call(work)

    _as_twin(twin, method, name)
    return twin


def coroutine_twin(
    method: Callable[Concatenate[AsyncPGVectorStore, P], Coroutine[Any, Any, R]],
    *,
    relay_async_iterables: bool = False,
) -> Callable[Concatenate[SyncStoreBase, P], Coroutine[Any, Any, R]]:
    """The ``a``-twin of a public coroutine: awaits it from the caller's loop.

    ``relay_async_iterables``: an async iterable argument is pulled on the caller's loop (its
    awaitables may be bound to that loop) while the work runs on the store's.
    """
    name = method.__name__

    async def twin(self: SyncStoreBase, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if relay_async_iterables:
            args, kwargs = _relayed(args, kwargs)  # type: ignore[assignment]
        work: Coroutine[Any, Any, R] = getattr(self._store, name)(*args, **kwargs)
        return await self._acall(work)

    _as_twin(twin, method, "a" + name)
    return twin


def _relayed(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    loop = asyncio.get_running_loop()

    def relay(value: Any) -> Any:
        return ReadOnLoop(value, loop) if isinstance(value, AsyncIterable) else value

    return tuple(relay(v) for v in args), {k: relay(v) for k, v in kwargs.items()}
