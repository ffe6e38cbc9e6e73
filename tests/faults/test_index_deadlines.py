"""Index builds on a dead network: they run on dedicated connections without command_timeout (a
build may rightly take longer than any statement), so the caller's own deadline is what bounds
them, and it must hold as for every other call."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from pgvs import AsyncPGVectorStore

from .conftest import GRACE, Deadline
from .proxy import FaultProxy

Call = Callable[[AsyncPGVectorStore], Awaitable[Any]]

CALLS: list[tuple[str, Call]] = [
    ("create_index", lambda s: s.create_index("hnsw")),
    ("create_index(concurrently)", lambda s: s.create_index("hnsw", concurrently=True)),
    ("reindex", lambda s: s.reindex()),
    ("drop_index", lambda s: s.drop_index()),
    ("tune", lambda s: s.tune(target_recall=0.9, sample=2)),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "call"), CALLS, ids=[name for name, _ in CALLS])
async def test_blackhole_index_calls_honour_the_callers_deadline(
    proxy: FaultProxy,
    pg_dsn: str,
    table_name: str,
    raw_conn: asyncpg.Connection,
    deadline: Deadline,
    name: str,
    call: Call,
) -> None:
    if sys.version_info < (3, 11):
        pytest.skip("asyncio.timeout is Python 3.11+")
    limit = 0.3
    async with AsyncPGVectorStore(
        connection_string=proxy.dsn(pg_dsn),
        dimensions=3,
        table_name=table_name,
        id_type="text",
        auto_create_index=name != "create_index" and name != "create_index(concurrently)",
        command_timeout=30,
    ) as store:
        await store.add_vectors([[1, 0, 0], [0, 1, 0], [0, 0, 1]], ids=["a", "b", "c"])
        proxy.blackhole = True
        with (
            deadline(f"{name} under asyncio.timeout", limit + GRACE) as timed,
            pytest.raises(TimeoutError),
        ):
            async with asyncio.timeout(limit):
                await call(store)
        assert timed.seconds < timed.bound, f"{name} took {timed.seconds:.2f} s"
        proxy.blackhole = False
        assert await store.count() == 3
        assert await raw_conn.fetchval(f'SELECT count(*) FROM "{table_name}"') == 3
