"""The main job: a store on PostgreSQL + pgvector (embedded when DATABASE_URL is unset), a few
thousand vectors written, nearest-neighbour queries checked against an exact numpy search."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from pgvs import AsyncPGVectorStore

ROWS, DIM, K = 5000, 128, 10


async def main() -> None:
    rng = np.random.default_rng(2024)
    centers = rng.normal(size=(50, DIM))
    vectors = (centers[rng.integers(0, 50, ROWS)] + 0.3 * rng.normal(size=(ROWS, DIM))).astype(
        np.float32
    )
    async with AsyncPGVectorStore(
        dimensions=DIM, metric="euclidean", table_name="pgvs_quickstart", index_type="none"
    ) as store:
        await store.clear()
        started = time.perf_counter()
        ids = await store.add_vectors(
            vectors, metadata=[{"cluster_hint": int(i % 7)} for i in range(ROWS)]
        )
        print(f"wrote {len(ids)} vectors in {time.perf_counter() - started:.2f} s")

        queries = vectors[rng.integers(0, ROWS, 20)] + 0.05
        exact = np.argsort(((vectors[None, :, :] - queries[:, None, :]) ** 2).sum(-1), axis=1)
        agree = 0
        started = time.perf_counter()
        for query, truth in zip(queries, exact, strict=True):
            hits = await store.search(query, k=K)
            agree += [hit.id for hit in hits] == [ids[i] for i in truth[:K]]
        elapsed_ms = (time.perf_counter() - started) / len(queries) * 1000
        print(
            f"{agree}/{len(queries)} queries match an exact numpy search ({elapsed_ms:.1f} ms each)"
        )
        top = (await store.search(queries[0], k=1, filter={"cluster_hint": 3}))[0]
        print(f"nearest with cluster_hint=3: {top.id} score={top.score:.4f}")
        if agree != len(queries):
            raise SystemExit("nearest-neighbour results differ from the exact search")


if __name__ == "__main__":
    asyncio.run(main())
