"""Test fixtures: a real PostgreSQL + pgvector, never a mock.

``PGVS_TEST_DSN`` points the suite at an existing server; otherwise one embedded server is started
in a temporary directory for the whole session and removed at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from pgvs.server import EmbeddedServer


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    configured = os.environ.get("PGVS_TEST_DSN")
    if configured:
        yield configured
        return
    server = EmbeddedServer()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def private_server() -> Iterator[EmbeddedServer]:
    """A server of the test's own, for tests that kill or restart it."""
    server = EmbeddedServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def raw_conn(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection with no pgvs codecs."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def table_name() -> str:
    """A fresh table name per test, so tests never see each other's rows."""
    return f"t_{uuid.uuid4().hex[:12]}"
