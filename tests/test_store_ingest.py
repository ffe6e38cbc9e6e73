"""The stores' ingest entry points (the ingest engine itself is tested in test_ingest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np

from pgvs import AsyncPGVectorStore, PGVectorStore


def test_sync_ingest_is_an_idempotent_upsert(pg_dsn: str, table_name: str) -> None:
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(3000, 8)).astype(np.float32)
    ids = [f"row-{i}" for i in range(3000)]
    with PGVectorStore(
        connection_string=pg_dsn,
        dimensions=8,
        table_name=table_name,
        id_type="text",
        index_type="none",
    ) as store:
        first = store.ingest(
            vectors, ids=ids, metadata=[{"i": i} for i in range(3000)], batch_size=700
        )
        second = store.ingest(
            vectors, ids=ids, metadata=[{"i": i} for i in range(3000)], batch_size=700
        )
        assert store.count() == 3000
        assert first.rows_read == second.rows_read == 3000
        assert store.search(vectors[1234], k=1)[0].id == "row-1234"
        assert store.count({"i": {"$gte": 2990}}) == 10


async def test_async_ingest_from_an_async_iterable(pg_dsn: str, table_name: str) -> None:
    async def records() -> AsyncIterator[dict[str, object]]:
        for i in range(500):
            yield {"id": f"r{i}", "vector": [float(i), 1.0, 0.0], "content": f"c{i}"}

    async with AsyncPGVectorStore(
        connection_string=pg_dsn,
        dimensions=3,
        table_name=table_name,
        id_type="text",
        metric="euclidean",
        index_type="none",
    ) as store:
        result = await store.ingest(records(), batch_size=128)
        assert result.rows_read == 500
        assert await store.count() == 500
        assert (await store.search([42.0, 1.0, 0.0], k=1))[0].content == "c42"
