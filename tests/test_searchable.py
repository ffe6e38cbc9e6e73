"""Time to searchable: ``ingest`` into an empty table loads first and builds the index once, with
``maintenance_work_mem`` sized to the graph (issue 23; docs/indexes.md "Time to searchable").

* the sizing rules (pure): the graph estimate pgvector's own notice calibrates, the safe share
  of the server's memory, never below the server's value, the advice when capped;
* the fast path on a real server: the index is dropped while the table is empty, built after the
  load (``IngestResult.details["index_build"]``) with the parameters it had; a non-empty table
  (or one with partial indexes) keeps its index; a failed load rebuilds it before raising;
* recall: the fast path keeps recall@10 >= 0.95 against the exact ground truth of
  ``shared/data/torchdocs-text`` (held-apart queries) at the store's own query setting.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import numpy as np
import pytest

from pgvs import AsyncPGVectorStore
from pgvs import indexes as ix
from pgvs.errors import IngestError

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("PGVS_DATA_DIR") or ROOT.parent / "shared" / "data")
MIB = 1 << 20
DIM = 16


# -- sizing (pure) -------------------------------------------------------------------------------


def test_graph_estimate_matches_what_pgvector_reported() -> None:
    # pgvector 0.8.6 said a 64MB graph of 768-d vectors (m=16) was full after 17,698 tuples.
    per_element = ix.graph_bytes(1, 768, "vector")
    assert abs(17_698 * per_element - 64 * MIB) < 0.01 * 64 * MIB
    assert ix.graph_bytes(1000, 768, "halfvec") < ix.graph_bytes(1000, 768, "vector")
    assert ix.graph_bytes(1000, 768, "bit") < ix.graph_bytes(1000, 768, "halfvec")
    assert ix.graph_bytes(1000, 768, "vector", m=32) > ix.graph_bytes(1000, 768, "vector")
    assert ix.graph_bytes(-1, 768, "vector") == 0


def test_build_memory_is_bounded_by_a_safe_share_of_the_server() -> None:
    graph = ix.graph_bytes(100_000, 768, "vector")  # ~362MB
    gib = 1 << 30
    roomy = ix.build_memory(graph, current=64 * MIB, total=24 * gib, available=20 * gib)
    assert roomy.setting is not None
    assert not roomy.capped
    assert int(roomy.setting.removesuffix("MB")) * MIB >= graph
    # A quarter of the total, half of what is available: the smaller wins.
    small = ix.build_memory(graph, current=64 * MIB, total=1 * gib, available=gib)
    assert small.capped
    assert small.setting == "256MB"
    busy = ix.build_memory(graph, current=64 * MIB, total=24 * gib, available=400 * MIB)
    assert busy.capped
    assert busy.setting == "200MB"
    assert "maintenance_work_mem=" in busy.advice()
    assert "spills to disk" in busy.advice()
    # Never below the server's own value; unknown memory caps at 1GB.
    assert ix.build_memory(graph, current=4 * gib, total=None, available=None).setting is None
    unknown = ix.build_memory(10 * graph, current=64 * MIB, total=None, available=None)
    assert unknown.capped
    assert unknown.setting == "1024MB"


def test_meminfo_is_parsed() -> None:
    text = "MemTotal:       24684104 kB\nMemFree:  1 kB\nMemAvailable:   23933012 kB\n"
    assert ix.parse_meminfo(text) == (24684104 * 1024, 23933012 * 1024)
    assert ix.parse_meminfo("nothing here") == (None, None)


# -- the fast path on a real server ---------------------------------------------------------------

SMALL_ROLE = "pgvs_small_build_memory"
SPILLED = "no longer fits into maintenance_work_mem"  # pgvector's notice, in the pgvs log


@pytest.fixture
async def small_memory_dsn(pg_dsn: str, raw_conn: asyncpg.Connection) -> str:
    """The server as a role whose sessions start with maintenance_work_mem = 1MB: a graph of a
    few thousand rows outgrows it, so sizing (or its absence) shows in pgvector's notice."""
    await raw_conn.execute(
        f"DO $$ BEGIN CREATE ROLE {SMALL_ROLE} LOGIN SUPERUSER; "
        "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    await raw_conn.execute(f"ALTER ROLE {SMALL_ROLE} SET maintenance_work_mem = '1MB'")
    parts = urlsplit(pg_dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{SMALL_ROLE}@{host}"))


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


async def test_ingest_into_an_empty_table_builds_the_index_after_the_load(
    small_memory_dsn: str, table_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(3)
    async with AsyncPGVectorStore(
        connection_string=small_memory_dsn,
        dimensions=DIM,
        table_name=table_name,
        id_type="bigint",
    ) as store:
        assert (await store.index_status()).usable  # initialize() built it on the empty table
        with caplog.at_level(logging.INFO, logger="pgvs"):
            result = await store.ingest(rng.standard_normal((3000, DIM)), ids=list(range(3000)))
        assert result.details["index_build"] > 0
        assert result.batch_size > 500  # loaded without the index (500 rows with one)
        status = await store.index_status()
        assert status.usable
        assert status.params == {}
        # Sized to the graph of 3,000 16-d rows (2.3MB, with margin 19MB), not the role's 1MB:
        # the whole graph stayed in memory.
        assert any("maintenance_work_mem 19MB" in m for m in _messages(caplog)), caplog.text
        assert not any(SPILLED in m for m in _messages(caplog)), caplog.text
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="pgvs"):
            await store.reindex()  # a rebuild is sized the same way
        assert any("maintenance_work_mem 19MB" in m for m in _messages(caplog)), caplog.text
        assert not any(SPILLED in m for m in _messages(caplog)), caplog.text
        # A table with rows keeps its index: later ingests maintain it as they load.
        again = await store.ingest(rng.standard_normal((600, DIM)), ids=list(range(3000, 3600)))
        assert "index_build" not in again.details
        assert again.batch_size == 500
        assert (await store.index_status()).usable
        assert await store.count() == 3600


async def test_explicit_index_params_and_memory_are_respected(
    pg_dsn: str, table_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn,
        dimensions=DIM,
        table_name=table_name,
        index_params={"m": 8, "ef_construction": 40},
        maintenance_work_mem="1MB",
    ) as store:
        with caplog.at_level(logging.INFO, logger="pgvs"):
            result = await store.ingest(np.random.default_rng(4).standard_normal((5000, DIM)))
        assert "index_build" in result.details
        status = await store.index_status()
        assert status.usable
        assert status.params == {"m": 8, "ef_construction": 40}
        # The config's maintenance_work_mem is the build's: pgvs sized nothing, and the graph
        # of 5,000 rows (2.4MB at m=8) outgrew the 1MB asked for.
        assert not any(m.startswith("index ") for m in _messages(caplog)), caplog.text
        assert any(SPILLED in m for m in _messages(caplog)), caplog.text


async def test_a_failed_load_rebuilds_the_index_before_raising(
    pg_dsn: str, table_name: str
) -> None:
    vectors = np.random.default_rng(5).standard_normal((400, DIM))
    vectors[350, 0] = np.nan  # batch 3 (rows 300..399) is rejected before it is sent
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=DIM, table_name=table_name, id_type="bigint"
    ) as store:
        with pytest.raises(IngestError) as caught:
            await store.ingest(vectors, ids=list(range(400)), batch_size=100, connections=1)
        assert caught.value.rows_written == 300
        status = await store.index_status()  # rebuilt over the 300 rows before the error
        assert status.usable
        assert await store.count() == 300


async def test_an_index_created_with_other_params_is_rebuilt_as_it_was(
    pg_dsn: str, table_name: str
) -> None:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=DIM, table_name=table_name
    ) as store:
        await store.drop_index()
        await store.create_index("hnsw", {"m": 24, "ef_construction": 80})
        result = await store.ingest(np.random.default_rng(7).standard_normal((1200, DIM)))
        assert "index_build" in result.details
        status = await store.index_status()
        assert status.usable
        assert status.params == {"m": 24, "ef_construction": 80}


async def test_partial_indexes_keep_the_index_in_place(pg_dsn: str, table_name: str) -> None:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=DIM, table_name=table_name
    ) as store:
        await store.create_index(where={"lang": "de"})  # built on the empty table
        result = await store.ingest(np.random.default_rng(6).standard_normal((800, DIM)))
        assert "index_build" not in result.details
        assert result.batch_size == 500  # loaded into the indexes
        assert len([s for s in await store.list_indexes() if s.usable]) == 2


async def test_the_server_reads_its_memory_only_when_allowed(
    pg_dsn: str, raw_conn: asyncpg.Connection, table_name: str
) -> None:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=DIM, table_name=table_name
    ) as store:
        builds = store._indexes.builds
        total, available = await builds.server_memory(raw_conn)  # a superuser: allowed
        assert total is not None
        assert available is not None
        assert 0 < available <= total
        role = "pgvs_no_file_access"
        await raw_conn.execute(
            f"DO $$ BEGIN CREATE ROLE {role}; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )
        async with raw_conn.transaction():
            await raw_conn.execute(f"SET LOCAL ROLE {role}")
            assert await builds.server_memory(raw_conn) == (None, None)


# -- recall on real data --------------------------------------------------------------------------


@pytest.mark.slow
async def test_the_fast_path_keeps_recall_on_real_data(pg_dsn: str, table_name: str) -> None:
    directory = DATA_DIR / "torchdocs-text"
    if not directory.is_dir():
        pytest.skip(f"data set directory {directory} is missing (the recall tests need shared/)")
    base = np.load(directory / "embeddings.npy")
    queries = np.load(directory / "query_embeddings.npy")
    truth = np.load(directory / "groundtruth.npy")
    options = {
        "connection_string": pg_dsn,
        "dimensions": base.shape[1],
        "table_name": table_name,
        "id_type": "bigint",
    }
    async with AsyncPGVectorStore(options) as loader:
        result = await loader.ingest(base, ids=list(range(len(base))))
    assert "index_build" in result.details  # the fast path ran: load, then one build
    # The store's own query setting (pgvs's default ef_search), on one pooled connection where
    # the index is forced: 8k rows would otherwise be planned as an exact scan.
    async with AsyncPGVectorStore(options, pool_min_size=1, pool_max_size=1) as store:
        await store.pool.execute(
            "SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off"
        )
        assert (await store.explain_search(queries[0], k=10)).uses_vector_index
        recalls = []
        for i, query in enumerate(queries):
            hits = await store.search(query, k=10, include_metadata=False)
            recalls.append(len({hit.id for hit in hits} & set(truth[i, :10].tolist())) / 10)
    recall = float(np.mean(recalls))
    assert recall >= 0.95, f"recall@10 {recall:.3f} on torchdocs-text"
