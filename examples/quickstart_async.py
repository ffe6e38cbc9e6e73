"""The README's async quick start, verbatim: runs on the embedded PostgreSQL when no
DATABASE_URL is set."""

import asyncio

import numpy as np

from pgvs import AsyncPGVectorStore


async def main() -> None:
    async with AsyncPGVectorStore(
        {"dimensions": 384, "metric": "cosine", "table_name": "quickstart_async"}
    ) as store:
        rng = np.random.default_rng(0)
        embeddings = rng.normal(size=(1000, 384)).astype(np.float32)
        ids = await store.add_vectors(
            embeddings,
            metadata=[
                {"source": "faq" if i % 2 else "blog", "year": 2020 + i % 5} for i in range(1000)
            ],
            contents=[f"chunk {i}" for i in range(1000)],
        )
        for id, score, metadata in await store.search(embeddings[42], k=3):
            print(id, round(score, 3), metadata)
        recent_faq = await store.search(
            embeddings[7], k=5, filter={"source": "faq", "year": {"$gte": 2023}}
        )
        print([hit.content for hit in recent_faq])
        for vector, metadata in await store.get_vectors(ids[:2]):
            if vector is not None:
                print(vector.shape, metadata)
        print(await store.count({"source": "blog"}), "blog chunks")
        await store.clear()


asyncio.run(main())
