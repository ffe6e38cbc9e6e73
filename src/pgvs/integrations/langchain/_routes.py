"""How one LangChain store reaches pgvs from sync and async callers without a pool on a wrong loop.

An asyncpg pool belongs to the event loop it was opened on. Sync calls go through the facade
(:class:`pgvs.PGVectorStore`), whose pool lives on the facade's own loop thread; async calls
await an :class:`pgvs.AsyncPGVectorStore` opened on the caller's loop, one per loop, so an
async caller never hops threads. Each is created on the first call of its kind. A core whose
loop has been closed (``asyncio.run`` returned) cannot be closed politely any more: it is dropped
(its sockets aborted) and the next loop gets a new one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ...config import StoreConfig
from ...errors import StoreClosedError
from ...store import AsyncPGVectorStore
from ...sync import PGVectorStore

__all__ = ["Routes"]

T = TypeVar("T")
_CLOSE_TIMEOUT = 10.0


@dataclass
class _LoopCore:
    """The async core of one caller loop; the lock makes concurrent first calls open one pool."""

    store: AsyncPGVectorStore
    ready: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Routes:
    """The facade and the per-loop cores of one store configuration."""

    def __init__(self, config: StoreConfig, owner: str) -> None:
        self.config = config
        self._owner = owner
        self._facade: PGVectorStore | None = None
        self._cores: dict[asyncio.AbstractEventLoop, _LoopCore] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _refuse_when_closed(self) -> None:
        if self._closed:
            raise StoreClosedError(
                f"the {self._owner} is closed", hint=f"Create a new {self._owner}."
            )

    def sync_store(self) -> PGVectorStore:
        facade = self._facade
        if facade is not None:
            return facade
        with self._lock:
            self._refuse_when_closed()
            if self._facade is None:
                facade = PGVectorStore(self.config)
                try:
                    facade.initialize()
                except BaseException:
                    facade.close()
                    raise
                self._facade = facade
            return self._facade

    async def async_store(self) -> AsyncPGVectorStore:
        loop = asyncio.get_running_loop()
        slot = self._cores.get(loop)
        if slot is not None and slot.ready:
            return slot.store
        if slot is None:
            with self._lock:
                self._refuse_when_closed()
                for dead in [other for other in self._cores if other.is_closed()]:
                    _abandon(self._cores.pop(dead).store)
                slot = self._cores.setdefault(loop, _LoopCore(AsyncPGVectorStore(self.config)))
        async with slot.lock:
            if not slot.ready:
                await slot.store.initialize()
                slot.ready = True
        return slot.store

    def run(self, work: Callable[[AsyncPGVectorStore], Awaitable[T]]) -> T:
        """``await work(core)`` on the facade's loop, from sync code."""
        return self.sync_store().run(work)

    async def arun(self, work: Callable[[AsyncPGVectorStore], Awaitable[T]]) -> T:
        """``await work(core)`` on the caller's loop."""
        return await work(await self.async_store())

    def _detach(self) -> tuple[PGVectorStore | None, dict[asyncio.AbstractEventLoop, _LoopCore]]:
        with self._lock:
            self._closed = True
            facade, self._facade = self._facade, None
            cores, self._cores = self._cores, {}
        return facade, cores

    def close(self) -> None:
        facade, cores = self._detach()
        if facade is not None:
            facade.close()
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop, slot in cores.items():
            if loop.is_closed():
                _abandon(slot.store)
            elif loop is current:  # sync close() inside async code: the close runs as a task
                task = loop.create_task(slot.store.close())
                _background.add(task)
                task.add_done_callback(_background.discard)
            elif loop.is_running():
                done = asyncio.run_coroutine_threadsafe(slot.store.close(), loop)
                done.result(_CLOSE_TIMEOUT)
            elif current is None:
                loop.run_until_complete(slot.store.close())
            else:
                _abandon(slot.store)

    async def aclose(self) -> None:
        facade, cores = self._detach()
        current = asyncio.get_running_loop()
        for loop, slot in cores.items():
            if loop is current:
                await slot.store.close()
            elif loop.is_running():
                done = asyncio.run_coroutine_threadsafe(slot.store.close(), loop)
                await asyncio.wrap_future(done)
            else:
                _abandon(slot.store)
        if facade is not None:
            await facade.aclose()


# Closes started by a sync close() on a running loop: held so they are not collected midway.
_background: set[asyncio.Task[None]] = set()


def _abandon(store: AsyncPGVectorStore) -> None:
    # The pool's loop is gone or busy elsewhere: its connections can only be aborted (the server
    # then ends their sessions), never closed with a goodbye.
    try:
        store.pool.terminate()
    except Exception:
        return
