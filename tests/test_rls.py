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

from pgvs import AsyncPGVectorStore, ConfigurationError, DatabaseError


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


def _store(dsn: str, table_name: str, domain: str | None, **options: object) -> AsyncPGVectorStore:
    return AsyncPGVectorStore(
        connection_string=dsn,
        dimensions=3,
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
