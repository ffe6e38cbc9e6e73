"""Partial vector indexes against a real server: build, list, drop, repair, the searches that use
them (EXPLAIN: equality, IN-subset, range, tenant), and injection payloads made inert by the one
literal-quoting helper."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import numpy as np
import pytest

from filter_cases import INJECTION_PAYLOADS
from pgvs import AsyncPGVectorStore, ConfigurationError, FilterError, PGVectorStore
from pgvs._sql import quote_ident
from pgvs.config import StoreConfig
from pgvs.filters import compile_filter, parse_key
from pgvs.partial import compile_predicate
from pgvs.results import IndexProgress
from pgvs.store import _index_manager
from pgvs.store._context import StoreContext

DIM = 16
ROWS = 2000
CATS = ["a"] * 20 + ["b"] * 180 + ["c"] * 1800  # 1 %, 9 %, 90 % of the rows (i % 2000)


def _vectors(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, DIM)).astype(np.float32)


def _metadata(count: int) -> list[dict[str, Any]]:
    return [{"cat": CATS[i % len(CATS)], "year": 2000 + i % 30} for i in range(count)]


async def _prefer_vector_indexes(store: AsyncPGVectorStore) -> None:
    """No sequential or bitmap scans, no sorts, on the store's one pooled connection: the small
    table takes the plans of a large one (an ANN index serves the ORDER BY)."""
    assert store.config.pool_max_size == 1
    await store.pool.execute(
        "SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off"
    )


@pytest.fixture
async def loaded(pg_dsn: str, table_name: str) -> AsyncIterator[tuple[AsyncPGVectorStore, Any]]:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn,
        dimensions=DIM,
        table_name=table_name,
        pool_min_size=1,
        pool_max_size=1,
    ) as store:
        vectors = _vectors(ROWS)
        ids = await store.add_vectors(vectors, metadata=_metadata(ROWS))
        await store.pool.execute(f"ANALYZE {quote_ident(table_name)}")
        yield store, (vectors, ids)


async def test_create_list_keep_and_drop(
    loaded: tuple[AsyncPGVectorStore, Any], table_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    store, _ = loaded
    caplog.set_level(logging.INFO, logger="pgvs")
    eq = await store.create_index(where={"cat": "a"})
    assert eq.usable
    assert eq.partial
    assert eq.index_type == "hnsw"
    assert eq.where == {"cat": {"$eq": "a"}}
    assert eq.domain is None
    assert eq.name.startswith(f"{table_name}_embedding_hnsw_p")
    assert "WHERE" in (eq.definition or "")
    assert "cat" in (eq.predicate or "")
    # Asked again (any equivalent spelling): kept, not rebuilt; pgvector's defaults are defaults.
    caplog.clear()
    assert await store.create_index("hnsw", where={"cat": {"$in": ["a"]}}) == eq
    again = await store.create_index("hnsw", {"m": 16, "ef_construction": 64}, where={"cat": "a"})
    assert again == eq
    assert "building" not in caplog.text
    with pytest.raises(ConfigurationError, match="'m': 8"):
        await store.create_index("hnsw", {"m": 8}, where={"cat": "a"})
    samples: list[IndexProgress] = []
    ranged = await store.create_index(
        "hnsw",
        {"m": 8, "ef_construction": 32},
        where={"year": {"$gte": 2020}},
        name="recent",
        concurrently=True,
        maintenance_work_mem="64MB",
        progress=samples.append,
    )
    assert samples[-1].phase == "done"
    assert ranged.name == "recent"
    assert ranged.params == {"m": 8, "ef_construction": 32}
    with pytest.raises(ConfigurationError, match="exists as another index"):
        await store.create_index(where={"cat": "b"}, name="recent")
    with pytest.raises(ConfigurationError, match="exists as another index"):
        await store.create_index("ivfflat", where={"year": {"$gte": 2020}}, name="recent")
    ivf = await store.create_index("ivfflat", where={"cat": {"$in": ["a", "b"]}})
    assert ivf.params == {"lists": 1}  # rows / 1000 of the 200 matching rows (at least 1)
    ivf4 = await store.create_index("ivfflat", {"lists": 4}, where={"cat": "b"})
    plan = await store.explain_search(_vectors(1)[0], filter={"cat": "b"})
    assert plan.partial_index == ivf4.name
    assert ("ivfflat.probes", "2") in plan.settings  # sqrt of its own lists
    assert await store.drop_index(ivf4.name)

    listed = await store.list_indexes()
    assert next(s.name for s in listed) == f"{table_name}_embedding_hnsw"  # full ones first
    assert not listed[0].partial
    assert listed[0].where is None
    assert {s.name for s in listed[1:]} == {eq.name, "recent", ivf.name}
    assert all(s.usable and s.size_bytes > 0 for s in listed)
    assert (await store.index_status()).name == f"{table_name}_embedding_hnsw"

    # drop_index(name) drops that vector index only; never anything that is not one.
    assert await store.drop_index("recent") is True
    assert await store.drop_index("recent") is False
    assert await store.drop_index(f"{table_name}_pkey") is False
    assert await store.pool.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{table_name}_pkey")
    assert await store.drop_index() is True  # the full index; partial ones stay
    assert {s.name for s in await store.list_indexes()} == {eq.name, ivf.name}
    with pytest.raises(ValueError, match="name= applies to partial indexes"):
        await store.create_index(name="mine")


async def test_a_predicate_matching_no_row_is_a_warning(
    loaded: tuple[AsyncPGVectorStore, Any], caplog: pytest.LogCaptureFixture
) -> None:
    store, (vectors, _) = loaded
    caplog.set_level(logging.WARNING, logger="pgvs")
    status = await store.create_index(where={"cat": "nobody"})
    assert status.usable
    assert "no row matches" in caplog.text
    # Rows written later are indexed as they come (and the search finds them through it).
    ids = await store.add_vectors(vectors[:3], metadata=[{"cat": "nobody"}] * 3)
    await _prefer_vector_indexes(store)
    plan = await store.explain_search(vectors[0], k=3, filter={"cat": "nobody"})
    assert plan.index_name == status.name
    hits = await store.search(vectors[0], k=3, filter={"cat": "nobody"})
    assert sorted(hit.id for hit in hits) == sorted(ids)


async def test_bad_where_names_the_operator(loaded: tuple[AsyncPGVectorStore, Any]) -> None:
    store, _ = loaded
    with pytest.raises(FilterError, match=r"\$contains cannot define a partial index"):
        await store.create_index(where={"tags": {"$contains": "x"}})
    with pytest.raises(FilterError, match=r"\$or cannot define"):
        await store.create_index(where={"$or": [{"cat": "a"}, {"year": 2001}]})
    assert len(await store.list_indexes()) == 1


def _exact(vectors: np.ndarray, members: np.ndarray, query: np.ndarray, k: int) -> set[int]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    order = np.argsort(-(unit[members] @ (query / np.linalg.norm(query))), kind="stable")
    return set(members[order[:k]].tolist())


@pytest.mark.parametrize(
    ("where", "filter", "covered"),
    [
        ({"cat": "a"}, {"cat": "a"}, True),  # equality
        ({"cat": {"$in": ["a", "b"]}}, {"cat": "a"}, False),  # IN-subset
        ({"cat": {"$in": ["a", "b"]}}, {"$or": [{"cat": "b"}, {"cat": "a"}]}, True),
        ({"year": {"$gte": 2025}}, {"year": {"$gte": 2027, "$lt": 2029}}, False),  # range
        ({"year": {"$between": [2025, 2029]}}, {"year": {"$between": [2025, 2029]}}, True),
    ],
)
async def test_searches_use_the_partial_index_their_filter_implies(
    loaded: tuple[AsyncPGVectorStore, Any], where: Any, filter: Any, covered: bool
) -> None:
    store, (vectors, ids) = loaded
    status = await store.create_index(where=where)
    await _prefer_vector_indexes(store)
    query = vectors[3]
    plan = await store.explain_search(query, k=10, filter=filter)
    assert plan.partial_index == status.name
    assert plan.index_name == status.name, plan.plan  # the planner proved the predicate
    settings = dict(plan.settings)
    if covered:
        # Every row of the index matches: no filter parameters, no iterative scan, no settings.
        assert plan.settings == ()
        assert "$4" not in plan.sql
    else:
        assert settings["hnsw.iterative_scan"] == "relaxed_order"
    hits = await store.search(query, k=10, filter=filter)
    matching = np.array(
        [i for i in range(ROWS) if compile_matches(filter, _metadata(ROWS)[i])], dtype=np.int64
    )
    assert len(hits) == 10
    found = {ids.index(hit.id) for hit in hits}
    assert found <= set(matching.tolist())
    assert len(found & _exact(vectors, matching, query, 10)) >= 9
    batch = await store.search_batch(vectors[3:5], k=10, filter=filter)
    assert [hit.id for hit in batch[0]] == [hit.id for hit in hits]
    # A filter that does not imply the predicate: as before, the full index or an exact scan.
    other = await store.explain_search(query, k=10, filter={"cat": "c", "year": 2001})
    assert other.partial_index is None
    assert other.index_name != status.name


def compile_matches(filter: dict[str, Any], meta: dict[str, Any]) -> bool:
    """The few filters of these tests, evaluated in Python."""
    if "$or" in filter:
        return any(compile_matches(branch, meta) for branch in filter["$or"])
    for key, spec in filter.items():
        value = meta[key]
        ops = spec if isinstance(spec, dict) else {"$eq": spec}
        for op, operand in ops.items():
            if op == "$between":
                ok = operand[0] <= value <= operand[1]
            elif op == "$gte":
                ok = value >= operand
            elif op == "$lt":
                ok = value < operand
            else:
                ok = value == operand
            if not ok:
                return False
    return True


async def test_tenant_partial_index_serves_that_tenants_searches(
    pg_dsn: str, table_name: str
) -> None:
    vectors = _vectors(600, seed=3)
    base = {"connection_string": pg_dsn, "dimensions": DIM, "table_name": table_name}
    async with AsyncPGVectorStore(base, domain_id="small") as small:
        await small.add_vectors(vectors[:500])
    async with AsyncPGVectorStore(base, domain_id="big", pool_min_size=1, pool_max_size=1) as big:
        big_ids = await big.add_vectors(vectors[500:], metadata=[{"cat": "a"}] * 100)
        tenant = await big.create_index(domain="big")
        both = await big.create_index(where={"cat": "a"}, domain="big")
        assert tenant.domain == "big"
        assert tenant.where == {}
        await big.pool.execute(f"ANALYZE {quote_ident(table_name)}")
        await _prefer_vector_indexes(big)
        plan = await big.explain_search(vectors[510], k=5)
        assert (plan.partial_index, plan.index_name, plan.settings) == (
            tenant.name,
            tenant.name,
            (),
        )
        plan = await big.explain_search(vectors[510], k=5, filter={"cat": "a"})
        assert (plan.partial_index, plan.index_name) == (both.name, both.name)
        hits = await big.search(vectors[510], k=5)
        assert hits[0].id == big_ids[10]
        assert len(hits) == 5
    # Another tenant's searches never route to it.
    async with AsyncPGVectorStore(
        base, domain_id="small", pool_min_size=1, pool_max_size=1
    ) as small:
        assert (await small.explain_search(vectors[3], k=5)).partial_index is None
        assert len(await small.search(vectors[3], k=5)) == 5


async def test_invalid_partial_index_is_rebuilt_with_its_own_predicate(
    pg_dsn: str, table_name: str, raw_conn: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    config = {"connection_string": pg_dsn, "dimensions": DIM, "table_name": table_name}
    async with AsyncPGVectorStore(config) as store:
        await store.add_vectors(_vectors(300), metadata=_metadata(300))
        status = await store.create_index(where={"cat": "b"}, name="hot_b")
    await raw_conn.execute(
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'hot_b'::regclass"
    )
    caplog.set_level(logging.WARNING, logger="pgvs")
    async with AsyncPGVectorStore(config) as store:
        assert "partial vector index hot_b" in caplog.text
        assert "INVALID" in caplog.text
        await store.wait_for_index(timeout=60)
        (repaired,) = [s for s in await store.list_indexes() if s.name == "hot_b"]
        assert repaired.usable
        assert (repaired.predicate, repaired.where) == (status.predicate, status.where)
        # create_index repairs it too, and reindex keeps the predicate and the comment.
        await raw_conn.execute(
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'hot_b'::regclass"
        )
        assert (await store.create_index(where={"cat": "b"}, name="hot_b")).usable
        await store.reindex(concurrently=True)
        (kept,) = [s for s in await store.list_indexes() if s.name == "hot_b"]
        assert kept.usable
        assert kept.where == status.where
        assert (await store.explain_search(_vectors(1)[0], filter={"cat": "b"})).partial_index


async def test_another_store_on_the_table_routes_to_it(
    pg_dsn: str, table_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {"connection_string": pg_dsn, "dimensions": DIM, "table_name": table_name}
    query = _vectors(1)[0]
    async with AsyncPGVectorStore(config) as first:
        await first.add_vectors(_vectors(100), metadata=_metadata(100))
        async with AsyncPGVectorStore(config) as second, AsyncPGVectorStore(config) as third:
            made = await first.create_index(where={"cat": "a"})
            assert (await second.explain_search(query, filter={"cat": "a"})).partial_index is None
            await second.list_indexes()  # refreshes what it routes to
            plan = await second.explain_search(query, filter={"cat": "a"})
            assert plan.partial_index == made.name
            # Past the TTL a search re-reads the list in the background (never waits for it).
            monkeypatch.setattr(_index_manager, "_PARTIALS_TTL", 0.0)
            assert (await third.explain_search(query, filter={"cat": "a"})).partial_index is None
            refresh = third._indexes._refresh
            assert refresh is not None
            await refresh
            assert (await third.explain_search(query, filter={"cat": "a"})).partial_index
            # Dropped elsewhere: the next refresh forgets it.
            await first.drop_index(made.name)
            await third.search(query, filter={"cat": "a"})
            refresh = third._indexes._refresh
            assert refresh is not None
            await refresh
            assert third._indexes.partials == []
        # A store of another metric on the same table never uses it (another operator class).
        again = await first.create_index(where={"cat": "a"})
        async with AsyncPGVectorStore(config, metric="euclidean") as other:
            plan = await other.explain_search(query, filter={"cat": "a"})
            assert plan.partial_index is None
            assert again.name in {s.name for s in await other.list_indexes()}


def test_the_sync_facade(pg_dsn: str, table_name: str) -> None:
    with PGVectorStore(connection_string=pg_dsn, dimensions=DIM, table_name=table_name) as store:
        store.add_vectors(_vectors(50), metadata=_metadata(50))
        status = store.create_index(where={"cat": "a"})
        assert [s.name for s in store.list_indexes()][-1] == status.name
        assert store.drop_index(status.name) is True


# -- injection: the one literal helper against a real server ------------------------------------


@pytest.mark.parametrize("conforming", ["on", "off"])
async def test_injection_payloads_are_inert_in_predicates(
    raw_conn: asyncpg.Connection, table_name: str, conforming: str
) -> None:
    """Every payload as a metadata value, an $in item, a range bound and a domain: the literal
    predicate selects exactly the rows the parameterised filter selects, whatever
    standard_conforming_strings says; as a key it is refused before any SQL exists."""
    ctx = StoreContext(StoreConfig(dimensions=4, table_name=table_name))
    target, domain_sql = ctx.filter_target, ctx.sql.col("domain_id")
    payloads = [p for p in INJECTION_PAYLOADS if "\x00" not in p and "\ud800" not in p]
    t = quote_ident(table_name)
    await raw_conn.execute(
        f'CREATE TEMP TABLE {t} (id int, "domain_id" text, "metadata" jsonb, '
        '"document_id" text, "chunk_index" int, "content" text, "created_at" timestamptz, '
        '"updated_at" timestamptz)'
    )
    await raw_conn.executemany(
        f'INSERT INTO {t} (id, "domain_id", "metadata") VALUES ($1, $2, $3::jsonb)',
        [(i, p, json.dumps({"v": p})) for i, p in enumerate(payloads)],
    )
    await raw_conn.execute(f"SET standard_conforming_strings = {conforming}")
    try:
        for i, payload in enumerate(payloads):
            for where, domain in (
                ({"v": payload}, None),
                ({"v": {"$in": [payload, "x"]}}, None),
                ({"v": {"$gte": payload}}, None),
                (None, payload),
            ):
                predicate = compile_predicate(where, domain, target, domain_sql=domain_sql)
                literal = await raw_conn.fetch(f"SELECT id FROM {t} WHERE {predicate.sql}")
                if domain is not None:
                    expected = [i]
                else:
                    compiled = compile_filter(where, target)
                    rows = await raw_conn.fetch(
                        f"SELECT id FROM {t} WHERE {compiled.sql}", *compiled.params
                    )
                    expected = [r["id"] for r in rows]
                assert sorted(r["id"] for r in literal) == sorted(expected), (payload, where)
                assert await raw_conn.fetchval(f"SELECT count(*) FROM {t}") == len(payloads)
            try:
                parse_key(payload)
            except FilterError:  # the key alphabet refuses it before any SQL exists
                with pytest.raises(FilterError):
                    compile_predicate({payload: 1}, None, target, domain_sql=domain_sql)
    finally:
        await raw_conn.execute("RESET standard_conforming_strings")


async def test_why_searches_carry_the_predicate_literally(
    loaded: tuple[AsyncPGVectorStore, Any], table_name: str
) -> None:
    """The measurement behind the design: a generic plan of a parameterised filter cannot prove a
    partial index's predicate; the same statement with the literal predicate added can."""
    store, (vectors, _) = loaded
    made = await store.create_index(where={"cat": "a"})
    t = quote_ident(table_name)
    head = f"SELECT id FROM {t} WHERE metadata @> $2::jsonb"
    tail = "ORDER BY embedding <=> $1::vector LIMIT 10"
    query = "[" + ",".join(str(float(x)) for x in vectors[0]) + "]"
    async with store.pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; "
            "SET LOCAL enable_sort = off; SET LOCAL plan_cache_mode = force_generic_plan"
        )
        await connection.execute(f"PREPARE bound AS {head} {tail}")
        await connection.execute(f"PREPARE inlined AS {head} AND {made.predicate} {tail}")
        plans = {}
        for name in ("bound", "inlined"):
            rows = await connection.fetch(
                f"EXPLAIN EXECUTE {name}('{query}', '{{\"cat\": \"a\"}}')"
            )
            plans[name] = "\n".join(row[0] for row in rows)
        await connection.execute("DEALLOCATE bound; DEALLOCATE inlined")
    assert made.name not in plans["bound"], plans["bound"]
    assert f"{table_name}_embedding_hnsw" in plans["bound"]
    assert made.name in plans["inlined"], plans["inlined"]


async def test_racing_builders_make_one_partial_index(pg_dsn: str, table_name: str) -> None:
    config = {"connection_string": pg_dsn, "dimensions": DIM, "table_name": table_name}
    async with AsyncPGVectorStore(config) as first, AsyncPGVectorStore(config) as second:
        await first.add_vectors(_vectors(300), metadata=_metadata(300))
        results = await asyncio.gather(
            first.create_index(where={"cat": "b"}, concurrently=True),
            second.create_index(where={"cat": {"$in": ["b"]}}, concurrently=True),
            second.create_index(where={"cat": "b"}),
        )
        assert len({status.name for status in results}) == 1
        assert all(status.usable for status in results)
        assert len([s for s in await first.list_indexes() if s.partial]) == 1
