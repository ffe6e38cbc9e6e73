"""Fixtures of the fault-injection suite: real servers, a proxy that breaks the network, and a
server the test may ``kill -9`` and restart.

Every scenario goes through the public API and checks what is stored before and after. With
``PGVS_FAULTS_REPORT=path`` set, tests append their measurements (deadline times against their
bounds, rows lost or duplicated by crash scenarios) to that file as JSON lines, for
``python -m bench faults``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest

from pgvs.server import EmbeddedServer

from .proxy import FaultProxy

# The grace a deadline may take beyond its bound: terminating a connection and raising, on a
# loaded 2-core box. Waiting on a dead connection (the bug this guards) takes a whole
# command_timeout more, which every bound below leaves no room for.
GRACE = 0.75


@pytest.fixture
async def proxy(pg_dsn: str) -> AsyncIterator[FaultProxy]:
    """A FaultProxy in front of the session's server (use ``proxy.dsn(pg_dsn)``)."""
    port = int(pg_dsn.rsplit(":", 1)[1].split("/", 1)[0])
    opened = await FaultProxy(port).start()
    try:
        yield opened
    finally:
        await opened.close()


class CrashServer:
    """A server of the module's own behind a proxy: its DSN (the proxy's) outlives restarts."""

    def __init__(self, server: EmbeddedServer) -> None:
        self.server = server
        self.direct_dsn = server.start()
        self.proxy: FaultProxy | None = None

    def kill(self) -> None:
        self.server.kill()

    def restart(self) -> None:
        if self.server.status().running:
            return
        self.direct_dsn = self.server.start()
        if self.proxy is not None:
            self.proxy.target_port = self.server.port

    @property
    def dsn(self) -> str:
        assert self.proxy is not None
        return self.proxy.dsn(self.direct_dsn)


@pytest.fixture(scope="module")
def crash_module_server() -> Iterator[CrashServer]:
    server = EmbeddedServer()
    try:
        yield CrashServer(server)
    finally:
        server.stop()


@pytest.fixture
async def crash_server(crash_module_server: CrashServer) -> AsyncIterator[CrashServer]:
    """The module's killable server, running, with a fresh proxy in front of it."""
    crash_module_server.restart()
    proxy = await FaultProxy(crash_module_server.server.port).start()
    crash_module_server.proxy = proxy
    try:
        yield crash_module_server
    finally:
        crash_module_server.proxy = None
        await proxy.close()


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``report(kind, **fields)``: one measurement for bench/faults.py (a no-op without
    PGVS_FAULTS_REPORT)."""
    path = os.environ.get("PGVS_FAULTS_REPORT")

    def write(kind: str, **fields: Any) -> None:
        if path:
            with open(path, "a", encoding="utf-8") as out:
                line = {"kind": kind, "test": request.node.nodeid, **fields}
                out.write(json.dumps(line) + "\n")

    return write


class Deadline:
    """Times one call against its bound (``with deadline("search", bound=2.0): ...``)."""

    def __init__(self, report: Callable[..., None]) -> None:
        self._report = report
        self.results: list[tuple[str, float, float]] = []

    def __call__(self, name: str, bound: float) -> _Timed:
        return _Timed(self, name, bound)


class _Timed:
    def __init__(self, owner: Deadline, name: str, bound: float) -> None:
        self.owner, self.name, self.bound = owner, name, bound
        self.seconds = 0.0

    def __enter__(self) -> _Timed:
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.monotonic() - self.started
        self.owner.results.append((self.name, self.seconds, self.bound))
        self.owner._report("deadline", name=self.name, seconds=self.seconds, bound=self.bound)


@pytest.fixture
def deadline(report: Callable[..., None]) -> Deadline:
    return Deadline(report)


async def until(check: Callable[[], Awaitable[object]], *, seconds: float = 60) -> Any:
    """Poll ``check`` until it returns something truthy (a server-side event: a backend waiting
    on a lock, a statement gone) and return that; fail after ``seconds``."""
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError(f"the awaited event did not happen within {seconds} s")


async def own_backend_state(dsn: str, pid: int) -> tuple[str | None, str | None]:
    """``(state, backend_xid)`` of one backend (None, None once it is gone)."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT state, backend_xid::text AS xid FROM pg_stat_activity WHERE pid = $1", pid
        )
    finally:
        await conn.close()
    return (None, None) if row is None else (row["state"], row["xid"])
