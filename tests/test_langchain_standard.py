"""LangChain's own standard VectorStore suite (langchain-tests), run unmodified against the
embedded server: every sync and async test on a fresh table per test.

The fixture is async so that the async tests' core and the fixture's teardown share the test's
event loop (``aclose()`` then closes that loop's pool gracefully); the sync tests use the
facade, whose pool lives on its own thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from langchain_tests.integration_tests import VectorStoreIntegrationTests

from pgvs._sql import quote_ident
from pgvs.integrations.langchain import PGVSVectorStore


class TestPGVSVectorStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    async def vectorstore(self, pg_dsn: str, table_name: str) -> AsyncIterator[PGVSVectorStore]:
        store = PGVSVectorStore(
            self.get_embeddings(),
            {
                "dimensions": 6,
                "connection_string": pg_dsn,
                "table_name": table_name,
                "pool_min_size": 1,
            },
        )
        try:
            yield store
        finally:
            await store.aclose()
            conn = await asyncpg.connect(pg_dsn)
            try:
                await conn.execute(f"DROP TABLE IF EXISTS {quote_ident(table_name)}")
            finally:
                await conn.close()
