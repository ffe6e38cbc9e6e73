"""Tenant partitions (``partition_by="domain"``) on a real server, the Citus refusal, and the pure
rules of :mod:`pgvs.scale`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from typing import Any

import asyncpg
import numpy as np
import pytest

from pgvs import (
    AsyncPGVectorStore,
    ConfigurationError,
    SchemaMismatchError,
    StoreConfig,
    ValidationError,
)
from pgvs.scale import (
    CITUS_DISTRIBUTE,
    create_partition_sql,
    distribute_args,
    partition_name,
)

DIM = 4


def make(pg_dsn: str, table: str, domain: str | None, **options: Any) -> AsyncPGVectorStore:
    return AsyncPGVectorStore(
        connection_string=pg_dsn,
        dimensions=DIM,
        table_name=table,
        domain_id=domain,
        partition_by="domain",
        **options,
    )


def rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, DIM), dtype=np.float32) + 0.01


def relations(plan: Mapping[str, Any]) -> Iterator[str]:
    if "Relation Name" in plan:
        yield plan["Relation Name"]
    for child in plan.get("Plans", []):
        yield from relations(child)


async def partitions(conn: Any, table: str) -> set[str]:
    found = await conn.fetch(
        "SELECT relid::regclass::text AS name FROM pg_partition_tree($1::regclass) WHERE level = 1",
        table,
    )
    return {row["name"] for row in found}


async def test_each_tenant_gets_a_partition_with_its_own_hnsw_index_and_searches_stay_in_it(
    pg_dsn: str, table_name: str, raw_conn: Any
) -> None:
    async with make(pg_dsn, table_name, "a") as a, make(pg_dsn, table_name, "b") as b:
        assert await partitions(raw_conn, table_name) == set()  # none before a first write
        ids_a = await a.add_vectors(rows(20, 1))
        await b.add_vectors(rows(30, 2))
        part_a, part_b = partition_name(table_name, "a"), partition_name(table_name, "b")
        assert await partitions(raw_conn, table_name) == {part_a, part_b}
        for part in (part_a, part_b):
            methods = await raw_conn.fetch(
                "SELECT am.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_am am ON am.oid = c.relam WHERE i.indrelid = $1::regclass",
                part,
            )
            assert "hnsw" in {row["amname"] for row in methods}
        assert await a.count() == 20
        assert await b.count() == 30
        hits = await a.search(rows(20, 1)[3], 5)
        assert hits[0].id == ids_a[3]
        assert {h.id for h in hits} <= set(ids_a)
        status = await a.index_status()
        assert status.valid
        assert status.index_type == "hnsw"

        # The tenant's plan reads only its partition (pruned at planning time) ...
        for analyze in (False, True):
            explained = await a.explain_search(rows(1, 7)[0], 5, analyze=analyze)
            assert set(relations(explained.plan)) == {part_a}
            # No iterative scan, no SET LOCAL: within its partition a tenant's search is plain.
            assert explained.settings == ()
        # The partition's own HNSW index serves it (sorts and scans off, as on a big table).
        async with make(pg_dsn, table_name, "a", pool_min_size=1, pool_max_size=1) as forced:
            await forced.pool.execute(
                "SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off"
            )
            explained = await forced.explain_search(rows(1, 7)[0], 5)
            assert explained.uses_vector_index, explained.plan
            index_table = await raw_conn.fetchval(
                "SELECT indrelid::regclass::text FROM pg_index WHERE indexrelid = to_regclass($1)",
                explained.index_name,
            )
            assert index_table == part_a
        # ... and a generic plan of the same shape prunes the others when it starts.
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            await conn.execute(
                f"PREPARE q(text, vector) AS SELECT id FROM {table_name} WHERE domain_id = $1 "
                "ORDER BY embedding <=> $2 LIMIT 5"
            )
            document = await conn.fetchval(
                "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE q('a', '[1,2,3,4]')"
            )
            plan = json.loads(document)[0]["Plan"]
            assert set(relations(plan)) == {part_a}
            assert "Subplans Removed" in document
        finally:
            await conn.close()


async def test_drop_domain_drops_the_partition_and_a_later_write_brings_it_back(
    pg_dsn: str, table_name: str, raw_conn: Any
) -> None:
    async with make(pg_dsn, table_name, "keep") as keep, make(pg_dsn, table_name, "gone") as gone:
        await keep.add_vectors(rows(5, 1))
        await gone.add_vectors(rows(7, 2))
        assert await keep.drop_domain("gone") is True
        assert await partitions(raw_conn, table_name) == {partition_name(table_name, "keep")}
        assert await gone.count() == 0
        assert await keep.count() == 5
        assert await keep.drop_domain("never-written") is False
        # The other store still believes its partition exists: its write recreates it.
        await gone.add_vectors(rows(2, 3))
        assert await gone.count() == 2
        assert len(await partitions(raw_conn, table_name)) == 2
        # The same for an add_vectors large enough to take the COPY path, and for an ingest.
        assert await keep.drop_domain("gone") is True
        await gone.add_vectors(rows(600, 4))
        assert await gone.count() == 600
        assert await keep.drop_domain("gone") is True
        assert (await gone.ingest(rows(700, 5))).rows_written == 700
        assert await gone.count() == 700


async def test_racing_first_writes_make_one_partition_and_ingest_routes_rows(
    pg_dsn: str, table_name: str, raw_conn: Any
) -> None:
    stores = [make(pg_dsn, table_name, "racer") for _ in range(4)]
    try:
        await asyncio.gather(*(store.initialize() for store in stores))
        await asyncio.gather(
            *(store.add_vectors(rows(3, seed)) for seed, store in enumerate(stores))
        )
        assert await stores[0].count() == 12
        assert await partitions(raw_conn, table_name) == {partition_name(table_name, "racer")}
    finally:
        for store in stores:
            await store.close()
    async with make(pg_dsn, table_name, "bulk") as bulk:
        result = await bulk.ingest(rows(1200, 4), batch_size=500)
        assert result.rows_written == 1200
        assert await bulk.count() == 1200
        on_partition = await raw_conn.fetchval(
            f"SELECT count(*) FROM {partition_name(table_name, 'bulk')}"
        )
        assert on_partition == 1200


FIRST_WRITE_RACE = textwrap.dedent(
    """
    import asyncio, sys
    from pgvs import AsyncPGVectorStore

    async def main() -> None:
        store = AsyncPGVectorStore(connection_string=sys.argv[1], dimensions=4,
                                   table_name=sys.argv[2], domain_id=sys.argv[3],
                                   partition_by="domain", pool_min_size=1, pool_max_size=2)
        await store.initialize()
        await store.add_vectors([[float(sys.argv[4]) + 1.0] * 4])
        await store.close()

    asyncio.run(main())
    """
)


@pytest.mark.slow
async def test_processes_racing_to_create_a_new_table_and_its_tenants(
    pg_dsn: str, table_name: str, raw_conn: Any
) -> None:
    domains = ["red", "red", "red", "blue", "blue", "green"]
    processes = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, "-c", FIRST_WRITE_RACE, pg_dsn, table_name, domain, str(i)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i, domain in enumerate(domains)
    ]
    outcomes = [await p.communicate() for p in processes]
    failures = [
        err.decode() for p, (_, err) in zip(processes, outcomes, strict=True) if p.returncode
    ]
    assert failures == []
    expected = {partition_name(table_name, domain) for domain in domains}
    assert await partitions(raw_conn, table_name) == expected
    counts = await raw_conn.fetch(
        f"SELECT domain_id, count(*) AS n FROM {table_name} GROUP BY domain_id"
    )
    assert {row["domain_id"]: row["n"] for row in counts} == {"red": 3, "blue": 2, "green": 1}


async def test_index_operations_a_partitioned_table_cannot_take_are_refused(
    pg_dsn: str, table_name: str
) -> None:
    async with make(pg_dsn, table_name, "a") as store:
        for call in (
            store.create_index(concurrently=True),
            store.create_index(domain="a"),
            store.reindex(),
            store.drop_index(concurrently=True),
        ):
            with pytest.raises(ConfigurationError) as caught:
                await call
            assert caught.value.hint
            assert "docs/scale.md" in caught.value.hint


async def test_an_unpartitioned_table_is_not_taken_for_a_partitioned_one(
    pg_dsn: str, table_name: str
) -> None:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=DIM, table_name=table_name, domain_id="x"
    ) as plain:
        await plain.add_vectors(rows(4, 1))
        assert await plain.drop_domain("x") is True  # a DELETE of its rows here
        assert await plain.count() == 0
    with pytest.raises(SchemaMismatchError, match="not a partitioned table"):
        await make(pg_dsn, table_name, "x").initialize()


async def test_distributed_without_citus_is_a_configuration_error_before_any_ddl(
    pg_dsn: str, table_name: str, raw_conn: Any
) -> None:
    store = AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=DIM, table_name=table_name, distributed=True
    )
    with pytest.raises(ConfigurationError) as caught:
        await store.initialize()
    assert "citus" in str(caught.value)
    assert caught.value.hint
    assert "CREATE EXTENSION citus" in caught.value.hint
    assert await raw_conn.fetchval("SELECT to_regclass($1)", table_name) is None
    await store.close()


# -- pure rules ------------------------------------------------------------------------------


def test_scale_settings_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="partition_by"):
        StoreConfig.from_mapping(dimensions=3, partition_by="tenant")
    with pytest.raises(ConfigurationError, match="IVFFlat"):
        StoreConfig(dimensions=3, partition_by="domain", index_type="ivfflat")
    with pytest.raises(ConfigurationError, match="domain_id to None"):
        StoreConfig(
            dimensions=3,
            distributed=True,
            columns={"domain_id": None},
            auto_create_table=False,
        )
    with pytest.raises(ConfigurationError, match="not supported"):
        StoreConfig(dimensions=3, partition_by="domain", distributed=True)
    with pytest.raises(ConfigurationError, match="auto_create_table"):
        StoreConfig(dimensions=3, partition_by="domain", auto_create_table=False)
    with pytest.raises(ConfigurationError, match="distributed"):
        StoreConfig.from_mapping(dimensions=3, distributed="yes")


def test_partition_names_are_distinct_short_and_quoted() -> None:
    names = {partition_name("t", domain) for domain in ("a", "A", "a b", "a_b", "", "ü" * 80)}
    assert len(names) == 6
    long = partition_name("x" * 63, "tenant-" * 20)
    assert len(long.encode()) <= 63
    sql = create_partition_sql("public", '"public"."t"', "t_p_x", "it's", "fillfactor = 90")
    assert sql == (
        'CREATE TABLE IF NOT EXISTS "public"."t_p_x" PARTITION OF "public"."t" '
        "FOR VALUES IN ('it''s') WITH (fillfactor = 90)"
    )


def test_the_citus_statement() -> None:
    assert CITUS_DISTRIBUTE == "SELECT create_distributed_table($1, $2)"
    assert distribute_args('"public"."docs"', "domain_id") == ('"public"."docs"', "domain_id")


async def test_tune_measures_a_tenants_own_index(pg_dsn: str, table_name: str) -> None:
    async with make(pg_dsn, table_name, "a") as store:
        await store.ingest(rows(1500, 11))
        await make_busy_neighbour(pg_dsn, table_name)
        report = await store.tune(queries=rows(10, 12), target_recall=0.9)
        # tune() refuses a plan that bypasses the vector index: it found the partition's.
        assert report.points
        assert report.setting is not None
        # A tenant's partition holds its rows only: its searches are not filtered ones.
        assert not report.filtered


async def make_busy_neighbour(pg_dsn: str, table_name: str) -> None:
    async with make(pg_dsn, table_name, "b") as other:
        await other.add_vectors(rows(50, 13))


def test_the_sync_store_drops_domains_and_reports_routing(pg_dsn: str, table_name: str) -> None:
    from pgvs import PGVectorStore

    options = {"domain_id": "s", "partition_by": "domain"}
    with PGVectorStore(
        connection_string=pg_dsn, dimensions=DIM, table_name=table_name, **options
    ) as store:
        store.add_vectors(rows(2, 1))
        assert store.count() == 2
        assert store.drop_domain("s") is True
        assert store.count() == 0
        routing = store.read_routing
        assert routing.primary_reads == routing.replica_reads == 0  # no replicas: not routed


# -- stats() and tune(apply=True) on a partitioned table ----------------------------------------

ODD = "it's a\\b ü"  # a quote, a backslash and a non-ASCII letter, as PostgreSQL prints bounds


async def leaf_sizes(conn: Any, relation: str, *, total: bool = True) -> dict[str, int]:
    """Each leaf of ``relation``'s partition tree (a table's or an index's) and its size: all
    forks and indexes (``total``) or the main fork."""
    size = "pg_total_relation_size" if total else "pg_relation_size"
    found = await conn.fetch(
        f"SELECT t.relid::regclass::text AS name, {size}(t.relid) AS size "
        "FROM pg_partition_tree($1::regclass) t WHERE t.isleaf",
        relation,
    )
    return {row["name"]: row["size"] for row in found}


async def test_stats_of_a_partitioned_table_are_its_partitions_sums(
    pg_dsn: str, table_name: str, raw_conn: Any
) -> None:
    async with (
        make(pg_dsn, table_name, None) as admin,
        make(pg_dsn, table_name, "a") as a,
        make(pg_dsn, table_name, ODD) as odd,
    ):
        empty = await admin.stats(top_queries=0)
        assert (empty.partitioned, empty.partition_count, empty.partitions) == (True, 0, ())
        assert (empty.rows, empty.total_bytes) == (0, 0)
        await a.add_vectors(rows(2, 20))
        await odd.add_vectors(rows(2, 21))
        # Sizes compared with the catalog's must not move between the reads: no autovacuum.
        for name in await leaf_sizes(raw_conn, table_name):
            await raw_conn.execute(f"ALTER TABLE {name} SET (autovacuum_enabled = off)")
        await a.ingest(rows(1500, 22))
        await odd.add_vectors(rows(40, 23))
        await raw_conn.execute(f"ANALYZE {table_name}")  # exact reltuples on tables this small
        whole = await admin.stats(top_queries=0)
        own = await a.stats(top_queries=0)

    sizes = await leaf_sizes(raw_conn, table_name)
    part_a, part_odd = partition_name(table_name, "a"), partition_name(table_name, ODD)
    assert set(sizes) == {part_a, part_odd}
    heaps = await raw_conn.fetch(
        "SELECT pg_relation_size(relid) AS heap, pg_indexes_size(relid) AS indexes "
        "FROM pg_partition_tree($1::regclass) WHERE isleaf",
        table_name,
    )
    assert whole.partitioned
    assert whole.partition_count == 2
    assert (whole.rows, whole.rows_estimate, dict(whole.rows_by_domain)) == (
        1544,
        1544,
        {"a": 1502, ODD: 42},
    )
    assert whole.table_bytes == sum(row["heap"] for row in heaps) > 0
    assert whole.indexes_bytes == sum(row["indexes"] for row in heaps) > 0
    assert whole.total_bytes == sum(sizes.values())

    # The breakdown: every partition for a store without domain_id, the largest first.
    assert [p.name for p in whole.partitions] == [part_a, part_odd]
    assert [p.domain for p in whole.partitions] == ["a", ODD]
    assert [p.total_bytes for p in whole.partitions] == [sizes[part_a], sizes[part_odd]]
    assert [p.rows_estimate for p in whole.partitions] == [1502, 42]

    # The parent's HNSW index: the sum of the partitions' own ones.
    hnsw = next(index for index in whole.indexes if index.method == "hnsw")
    assert hnsw.valid
    assert hnsw.partitions == 2
    assert hnsw.size_bytes == sum((await leaf_sizes(raw_conn, hnsw.name, total=False)).values())
    assert hnsw.size_bytes > 0

    # A tenant: its own rows and partition; the table-level figures are the whole table's.
    assert (own.rows, dict(own.rows_by_domain), own.domains) == (1502, {"a": 1502}, 1)
    assert [(p.name, p.domain) for p in own.partitions] == [(part_a, "a")]
    assert own.partitions[0].total_bytes == sizes[part_a]
    assert (own.total_bytes, own.rows_estimate, own.partition_count) == (
        whole.total_bytes,
        1544,
        2,
    )


async def test_index_scans_of_a_partitioned_index_are_its_partitions(
    pg_dsn: str, table_name: str, raw_conn: Any
) -> None:
    async with make(pg_dsn, table_name, "a", pool_min_size=1, pool_max_size=1) as store:
        await store.add_vectors(rows(30, 1))
        await store.pool.execute("SET enable_seqscan = off; SET enable_sort = off")
        assert (await store.explain_search(rows(1, 2)[0], 3)).uses_vector_index
        await store.search(rows(1, 2)[0], 3)
        # The store's backend reports its counters when idle; wait for them to land.
        await store.pool.execute("SELECT pg_stat_force_next_flush()")
        partition_index = await raw_conn.fetchval(
            "SELECT t.relid::regclass::text FROM pg_partition_tree($1::regclass) t WHERE t.isleaf",
            f"{table_name}_embedding_hnsw",
        )
        for _ in range(600):  # 30 s at most
            scans = await raw_conn.fetchval(
                "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelid = $1::regclass",
                partition_index,
            )
            if scans:
                break
            await asyncio.sleep(0.05)
        assert scans
        hnsw = next(i for i in (await store.stats(top_queries=0)).indexes if i.method == "hnsw")
        assert hnsw.scans is not None
        assert hnsw.scans >= scans


EF_SEARCH_OF_TENANTS = textwrap.dedent(
    """
    import asyncio, json, sys
    from pgvs import AsyncPGVectorStore

    async def main() -> None:
        shown = {}
        for domain in sys.argv[3:]:
            async with AsyncPGVectorStore(connection_string=sys.argv[1], dimensions=4,
                                          table_name=sys.argv[2], domain_id=domain,
                                          partition_by="domain") as store:
                shown[domain] = await store.pool.fetchval("SHOW hnsw.ef_search")
        print(json.dumps(shown))

    asyncio.run(main())
    """
)


async def ef_search_in_another_process(pg_dsn: str, table: str, *domains: str) -> dict[str, str]:
    """``hnsw.ef_search`` of the pool of a new store of each tenant, opened in a new process."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", EF_SEARCH_OF_TENANTS, pg_dsn, table, *domains),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    shown: dict[str, str] = json.loads(out)
    return shown


async def partition_index_comments(conn: Any, index: str) -> dict[str, str | None]:
    """The comment of the partitioned index ``index`` (key ``index``) and of each partition's own
    index under it (key: the partition's domain), found through the partition tree."""
    found = await conn.fetch(
        "SELECT t.isleaf, t.relid::regclass::text AS name, "
        "obj_description(t.relid, 'pg_class') AS comment, "
        "(SELECT p.relname FROM pg_index i JOIN pg_class p ON p.oid = i.indrelid "
        " WHERE i.indexrelid = t.relid) AS partition "
        "FROM pg_partition_tree($1::regclass) t",
        index,
    )
    return {row["partition"] if row["isleaf"] else index: row["comment"] for row in found}


async def test_tune_apply_persists_each_tenants_setting_on_its_partition_index(
    pg_dsn: str, table_name: str, raw_conn: Any
) -> None:
    index = f"{table_name}_embedding_hnsw"
    queries = rows(20, 12)
    # Tenant ODD's name needs quoting, in SQL and in its partition's bound.
    async with make(pg_dsn, table_name, "a") as a, make(pg_dsn, table_name, ODD) as b:
        await a.add_vectors(rows(400, 1))
        await b.add_vectors(rows(400, 2))
        async with make(pg_dsn, table_name, "c") as c:
            await c.add_vectors(rows(50, 3))
        default = await a.pool.fetchval("SHOW hnsw.ef_search")
        # A low target: the lowest setting worth measuring is chosen, which is k (ef_search
        # below k finds fewer than k rows), so each tenant gets its own: 10 and 30.
        tuned_a = await a.tune(queries=queries, k=10, target_recall=0.5, apply=True)
        tuned_b = await b.tune(queries=queries, k=30, target_recall=0.5, apply=True)
        assert (tuned_a.setting, tuned_b.setting) == (10, 30)
        assert default not in ("10", "20", "30")
        assert tuned_a.applied
        assert tuned_b.applied
        # Each on its partition's own index; nothing on the parent's or an untuned tenant's.
        comments = await partition_index_comments(raw_conn, index)
        part = {domain: partition_name(table_name, domain) for domain in ("a", ODD, "c")}
        assert comments[index] is None
        assert comments[part["c"]] is None
        assert '"value": 10' in str(comments[part["a"]])
        assert '"value": 30' in str(comments[part[ODD]])
        # This store's pool right away; new stores of each tenant in another process.
        assert await a.pool.fetchval("SHOW hnsw.ef_search") == "10"
        assert await b.pool.fetchval("SHOW hnsw.ef_search") == "30"
        shown = await ef_search_in_another_process(pg_dsn, table_name, "a", ODD, "c")
        assert shown == {"a": "10", ODD: "30", "c": default}
        async with make(pg_dsn, table_name, "a") as second:
            # A search at the default sets nothing; a per call ef_search still wins ...
            assert (await second.explain_search(queries[0], k=10)).settings == ()
            plan = await second.explain_search(queries[0], k=10, ef_search=321)
            assert ("hnsw.ef_search", "321") in plan.settings
        async with make(pg_dsn, table_name, "a", ef_search=77) as configured:
            # ... and so does a configured one.
            assert await configured.pool.fetchval("SHOW hnsw.ef_search") == "77"

        # Re-tuning replaces the tenant's setting, and no other tenant's.
        again = await a.tune(queries=queries, k=20, target_recall=0.5, apply=True)
        assert again.setting == 20
        shown = await ef_search_in_another_process(pg_dsn, table_name, "a", ODD)
        assert shown == {"a": "20", ODD: "30"}

        # Dropping the domain drops its setting with its partition's index: for new stores,
        # and for the store that dropped it; its partition made again starts untuned.
        assert await a.drop_domain("a") is True
        assert await a.pool.fetchval("SHOW hnsw.ef_search") == default
        await a.add_vectors(rows(5, 4))
        assert (await partition_index_comments(raw_conn, index))[part["a"]] is None
        shown = await ef_search_in_another_process(pg_dsn, table_name, "a", ODD)
        assert shown == {"a": default, ODD: "30"}


async def test_a_tenant_store_opened_before_its_partition_existed_reads_its_setting(
    pg_dsn: str, table_name: str, raw_conn: Any
) -> None:
    async with make(pg_dsn, table_name, "a") as early:
        default = await early.pool.fetchval("SHOW hnsw.ef_search")
        async with make(pg_dsn, table_name, "a") as tuner:
            await tuner.add_vectors(rows(300, 1))
            report = await tuner.tune(queries=rows(10, 12), k=10, target_recall=0.5, apply=True)
        assert report.setting == 10
        # Opened when the tenant had no partition: it reads the setting when it first finds it.
        assert await early.pool.fetchval("SHOW hnsw.ef_search") == default
        await early.add_vectors(rows(1, 2))
        assert await early.pool.fetchval("SHOW hnsw.ef_search") == "10"


async def test_a_partition_dropped_while_tuning_gets_no_setting(
    pg_dsn: str, table_name: str
) -> None:
    async with make(pg_dsn, table_name, "a") as a, make(pg_dsn, table_name, None) as admin:
        await a.add_vectors(rows(300, 1))
        default = await a.pool.fetchval("SHOW hnsw.ef_search")

        async def drop_it(point: Any) -> None:  # after the first (and, at 0.5, last) setting
            assert await admin.drop_domain("a") is True

        with pytest.raises(ConfigurationError, match="was dropped while tune"):
            await a.tune(
                queries=rows(10, 12), k=10, target_recall=0.5, apply=True, progress=drop_it
            )
        await a.add_vectors(rows(5, 2))  # its partition made again: untuned
        assert await a.pool.fetchval("SHOW hnsw.ef_search") == default
    shown = await ef_search_in_another_process(pg_dsn, table_name, "a")
    assert shown == {"a": default}


async def test_a_parent_index_comment_is_never_read(
    pg_dsn: str, table_name: str, raw_conn: Any
) -> None:
    # An older pgvs commented the parent's (partitioned) index, perhaps with a setting measured
    # on an empty partition: no tenant reads it, only its partition's own index.
    index = f"{table_name}_embedding_hnsw"
    async with make(pg_dsn, table_name, "a") as a:
        await a.add_vectors(rows(20, 1))
        default = await a.pool.fetchval("SHOW hnsw.ef_search")
    comment = 'pgvs:tuned {"parameter": "hnsw.ef_search", "value": 11}'
    await raw_conn.execute(f"COMMENT ON INDEX {index} IS '{comment}'")
    async with make(pg_dsn, table_name, "a") as a, make(pg_dsn, table_name, None) as plain:
        assert await a.pool.fetchval("SHOW hnsw.ef_search") == default
        assert await plain.pool.fetchval("SHOW hnsw.ef_search") == default


async def test_tune_apply_without_a_domain_on_a_partitioned_table_is_refused_before_measuring(
    pg_dsn: str, table_name: str, raw_conn: Any
) -> None:
    # A store without domain_id searches the '' domain's partition, but reports every tenant's
    # stats and drops any tenant: its apply=True would read as the whole table's setting.
    index = f"{table_name}_embedding_hnsw"
    async with make(pg_dsn, table_name, "a") as tenant, make(pg_dsn, table_name, None) as plain:
        await tenant.add_vectors(rows(300, 11))
        default = await plain.pool.fetchval("SHOW hnsw.ef_search")
        # Before measuring: the '' domain holds no row yet, which tune() itself would refuse.
        with pytest.raises(ConfigurationError, match="this store has no domain_id") as e:
            await plain.tune(queries=rows(5, 12), target_recall=0.5, apply=True)
        assert e.value.hint
        assert "domain_id" in e.value.hint
        assert "ef_search=report.setting" in e.value.hint
        with pytest.raises(ValidationError, match="no stored row is visible"):
            await plain.tune(queries=rows(5, 12))
        # With rows in its partition it measures them, without apply only.
        await plain.add_vectors(rows(300, 13))
        with pytest.raises(ConfigurationError, match="this store has no domain_id"):
            await plain.tune(queries=rows(5, 12), target_recall=0.5, apply=True)
        report = await plain.tune(queries=rows(5, 12), target_recall=0.5)
        assert report.setting is not None
        assert not report.applied
        comments = await partition_index_comments(raw_conn, index)
        assert set(comments) == {
            index,
            partition_name(table_name, "a"),
            partition_name(table_name, ""),
        }
        assert set(comments.values()) == {None}
        assert await plain.pool.fetchval("SHOW hnsw.ef_search") == default


async def test_index_status_of_a_partitioned_index_sums_its_partitions(
    pg_dsn: str, table_name: str, raw_conn: Any
) -> None:
    async with make(pg_dsn, table_name, "a") as a, make(pg_dsn, table_name, "b") as b:
        await a.add_vectors(rows(300, 1))
        await b.add_vectors(rows(20, 2))
        status = await a.index_status()
        listed = [index for index in await a.list_indexes() if index.name == status.name]
    expected = sum((await leaf_sizes(raw_conn, status.name, total=False)).values())
    assert status.size_bytes == expected > 0
    assert [index.size_bytes for index in listed] == [expected]
