"""Row-level security mode: tenant isolation enforced by PostgreSQL policies.

The embedded server's user is a superuser, which bypasses RLS: the test creates an ordinary
role, and the stores connect as that role (the table's owner, subject to RLS through FORCE).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import numpy as np
import pytest

from pgvs import AsyncPGVectorStore, ConfigurationError, DatabaseError, ValidationError


@pytest.fixture
async def tenant_role(raw_conn: asyncpg.Connection, pg_dsn: str) -> AsyncIterator[str]:
    """An ordinary role (no superuser, no BYPASSRLS) allowed to create tables; its DSN."""
    role = f"r_{uuid.uuid4().hex[:10]}"
    await raw_conn.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS")
    await raw_conn.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {role}")
    _user, rest = pg_dsn.split("://", 1)[1].split("@", 1)
    try:
        yield f"postgresql://{role}@{rest}"
    finally:
        await raw_conn.execute(f"DROP OWNED BY {role} CASCADE")
        await raw_conn.execute(f"DROP ROLE {role}")


def _store(
    dsn: str, table_name: str, domain: str | None, dimensions: int = 3, **options: object
) -> AsyncPGVectorStore:
    return AsyncPGVectorStore(
        connection_string=dsn,
        dimensions=dimensions,
        table_name=table_name,
        id_type="text",
        domain_id=domain,
        row_level_security=True,
        **options,
    )


async def test_rls_isolates_tenants_even_for_raw_sql(tenant_role: str, table_name: str) -> None:
    async with (
        _store(tenant_role, table_name, "a") as a,
        _store(tenant_role, table_name, "b") as b,
    ):
        await a.add_vectors([[1, 0, 0], [0, 1, 0]], ids=["a1", "a2"], metadata=[{"k": 1}] * 2)
        await b.add_vectors([[1, 0, 0]], ids=["b1"], metadata=[{"k": 1}])
        # The COPY path (PostgreSQL refuses COPY FROM under RLS: rows go through the stage).
        big = np.random.default_rng(1).normal(size=(600, 3)).astype(np.float32)
        await b.add_vectors(big, ids=[f"b{n}" for n in range(2, 602)])
        result = await a.ingest(big[:50], ids=[f"i{n}" for n in range(50)], batch_size=20)
        assert result.rows_written == 50

        assert await a.count() == 52
        assert await b.count() == 601
        assert {hit.id for hit in await a.search([1, 0, 0], k=100)} <= {
            "a1",
            "a2",
            *(f"i{n}" for n in range(50)),
        }
        assert [hit.id for hit in await b.search([1, 0, 0], k=1, filter={"k": 1})] == ["b1"]
        assert [r.found for r in await a.get_vectors(["a1", "b1"])] == [True, False]
        assert await a.delete_vectors(["b1"]) == 0

        table = f'"{table_name}"'
        # Raw SQL on a pooled connection, outside the store's transactions: no tenant, no row.
        assert await a.pool.fetchval(f"SELECT count(*) FROM {table}") == 0
        assert await a.pool.fetchval(f"SELECT count(*) FROM {table} WHERE domain_id = 'b'") == 0
        async with a.pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT set_config('pgvs.domain', 'a', true)")
            assert await connection.fetchval(f"SELECT count(*) FROM {table}") == 52
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
                async with connection.transaction():
                    await connection.execute(
                        f"INSERT INTO {table} (id, domain_id, embedding) "
                        "VALUES ('x', 'b', '[1,2,3]')"
                    )
        assert await b.count() == 601  # the forged row never landed


async def test_a_role_that_bypasses_rls_is_warned(pg_dsn: str, table_name: str) -> None:
    with pytest.warns(RuntimeWarning, match="superuser or has BYPASSRLS"):
        async with _store(pg_dsn, table_name, "a") as store:
            assert await store.count() == 0


def test_rls_needs_a_domain() -> None:
    with pytest.raises(ConfigurationError, match="needs a domain_id"):
        _store("postgresql://x@localhost/db", "t", None)


async def test_rls_on_a_table_without_the_policy_and_no_auto_create(
    pg_dsn: str, tenant_role: str, table_name: str
) -> None:
    async with AsyncPGVectorStore(
        connection_string=tenant_role,
        dimensions=3,
        table_name=table_name,
        domain_id="a",
        id_type="text",
    ) as plain:
        await plain.add_vectors([[1, 0, 0]])
    store = _store(tenant_role, table_name, "a", auto_create_table=False)
    with pytest.raises(DatabaseError, match="no forced pgvs_domain policy"):
        await store.initialize()
    await store.close()


def test_rls_and_partitions_are_refused_together() -> None:
    with pytest.raises(ConfigurationError, match="not supported together"):
        _store("postgresql://x@localhost/db", "t", "a", partition_by="domain")


async def test_an_ingest_under_rls_never_drops_the_index_other_tenants_use(
    tenant_role: str, table_name: str
) -> None:
    # Under the policy the table looks empty to a connection with no tenant set: ingest's
    # load-then-build path (drop the empty table's index, load, build) must not take it.
    rng = np.random.default_rng(3)
    async with (
        _store(tenant_role, table_name, "a") as a,
        _store(tenant_role, table_name, "b") as b,
    ):
        await a.add_vectors(rng.normal(size=(5, 3)), ids=[f"a{n}" for n in range(5)])
        index = f"{table_name}_embedding_hnsw"
        oid_before = await a.pool.fetchval("SELECT to_regclass($1)::oid", index)
        assert oid_before is not None
        result = await b.ingest(rng.normal(size=(50, 3)), ids=[f"b{n}" for n in range(50)])
        assert "index_build" not in result.details
        assert await a.pool.fetchval("SELECT to_regclass($1)::oid", index) == oid_before
        assert (await a.count(), await b.count()) == (5, 50)


async def test_stats_under_rls_count_the_tenants_rows_and_say_the_rest_is_the_tables(
    tenant_role: str, table_name: str, raw_conn: asyncpg.Connection
) -> None:
    rng = np.random.default_rng(5)
    async with (
        _store(tenant_role, table_name, "a") as a,
        _store(tenant_role, table_name, "b") as b,
    ):
        await a.add_vectors(rng.normal(size=(30, 3)), ids=[f"a{n}" for n in range(30)])
        await b.add_vectors(rng.normal(size=(12, 3)), ids=[f"b{n}" for n in range(12)])
        await raw_conn.execute(f'ANALYZE "{table_name}"')
        own_a, own_b = await a.stats(top_queries=0), await b.stats(top_queries=0)
    # The exact counts: the tenant's own rows, as the policy admits them in its transaction.
    assert (own_a.rows, dict(own_a.rows_by_domain), own_a.domains) == (30, {"a": 30}, 1)
    assert (own_b.rows, dict(own_b.rows_by_domain), own_b.domains) == (12, {"b": 12}, 1)
    # The catalog figures: the whole table, every tenant's rows (documented as such).
    assert own_a.rows_estimate == own_b.rows_estimate == 42
    assert own_a.table_bytes == own_b.table_bytes > 0
    assert not own_a.partitioned
    assert own_a.partitions == ()


async def test_tune_under_rls_samples_and_measures_the_tenants_rows(
    tenant_role: str, table_name: str
) -> None:
    rng = np.random.default_rng(6)
    dim = 32  # enough dimensions that the smallest ef_search misses neighbours
    async with (
        _store(tenant_role, table_name, "a", dim) as a,
        _store(tenant_role, table_name, "b", dim) as b,
    ):
        await a.ingest(rng.normal(size=(2000, dim)), ids=[f"a{n}" for n in range(2000)])
        await b.ingest(rng.normal(size=(500, dim)), ids=[f"b{n}" for n in range(500)])
        # The sample is drawn from the rows the tenant sees: 2000, not 2500 (nor 0).
        with pytest.raises(ValidationError, match="only 2000 rows are stored"):
            await a.tune(sample=2001)
        with pytest.raises(ValidationError, match="only 500 rows are stored"):
            await b.tune(sample=501)
        sampled = await a.tune(sample=30, target_recall=0.99, k=10)
        assert (sampled.queries, sampled.sampled, sampled.filtered) == (30, True, True)
        # The exact answers are the tenant's rows: measured against them, the smallest
        # setting misses some (against no answer at all every recall would read 1.0).
        given = await a.tune(queries=rng.normal(size=(20, dim)), target_recall=1.0, k=10)
        assert given.points[0].recall < 1.0
        # ... and a larger one finds all of them: the answers are the ones this tenant's
        # searches can return (another tenant's row in them would keep every recall below 1).
        assert given.reachable
        assert given.points[-1].recall == 1.0
        # Applied, it is the shared index's default, read by every store opened later.
        applied = await a.tune(queries=rng.normal(size=(5, dim)), target_recall=0.5, apply=True)
        assert applied.applied
        async with _store(tenant_role, table_name, "b", dim) as later:
            assert await later.pool.fetchval("SHOW hnsw.ef_search") == str(applied.setting)
        # A tenant with no row: an error, not a recall of 1.0 at the smallest setting.
        async with _store(tenant_role, table_name, "c", dim) as c:
            with pytest.raises(ValidationError, match="no stored row is visible"):
                await c.tune(queries=rng.normal(size=(5, dim)))
