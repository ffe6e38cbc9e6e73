"""The filter compiler against a real PostgreSQL: the table of cases, the injection corpus, EXPLAIN
plans showing the index-friendly forms, and a differential property test (random documents and
random filters: PostgreSQL's rows must equal the reference evaluator's answer).

``PGVS_FILTER_EXAMPLES`` sets the number of hypothesis examples of the differential test
(default 150).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filter_cases import (
    CASES,
    INJECTION_PAYLOADS,
    ROWS,
    TARGET,
    create_table_sql,
    filters,
    insert_sql,
    matching,
    row_args,
    rows,
)
from pgvs._sql import quote_ident, quote_literal
from pgvs.errors import FilterError
from pgvs.filters import CompiledFilter, FilterColumn, FilterTarget, compile_filter

EXAMPLES = int(os.environ.get("PGVS_FILTER_EXAMPLES", "150"))


async def _select_ids(
    conn: asyncpg.Connection, table: str, compiled: CompiledFilter, *, prefix: int = 0
) -> frozenset[str]:
    # ``prefix`` parameters of the caller's own come first, as in the store's queries.
    conditions = [f"${i}::int4 = {i}" for i in range(1, prefix + 1)]
    where = " AND ".join([*conditions, compiled.sql])
    records = await conn.fetch(
        f"SELECT id FROM {quote_ident(table)} WHERE {where}",
        *range(1, prefix + 1),
        *compiled.params,
    )
    return frozenset(record["id"] for record in records)


async def _load(conn: asyncpg.Connection, table: str, data: Sequence[dict[str, Any]]) -> None:
    await conn.execute(create_table_sql(table))
    await conn.executemany(insert_sql(table), [row_args(row) for row in data])


@pytest.fixture
async def cases_table(raw_conn: asyncpg.Connection, table_name: str) -> str:
    await _load(raw_conn, table_name, ROWS)
    table = quote_ident(table_name)
    await raw_conn.execute(f"CREATE INDEX ON {table} USING gin (metadata jsonb_path_ops)")
    await raw_conn.execute(f"ANALYZE {table}")
    return table_name


# ---------------------------------------------------------------------------------------------
# The table of cases: PostgreSQL gives the hand-written answer, by any plan.


@pytest.mark.parametrize(("name", "document", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_case_in_postgres(
    raw_conn: asyncpg.Connection,
    cases_table: str,
    name: str,
    document: dict[str, Any] | None,
    expected: frozenset[str],
) -> None:
    compiled = compile_filter(document, TARGET, first_param=3)
    assert await _select_ids(raw_conn, cases_table, compiled, prefix=2) == expected
    async with raw_conn.transaction():
        await raw_conn.execute("SET LOCAL enable_seqscan = off")
        assert await _select_ids(raw_conn, cases_table, compiled, prefix=2) == expected


# ---------------------------------------------------------------------------------------------
# Injection corpus: every payload, as a value and as a key, either raises FilterError or returns
# exactly what the reference evaluator says (and never a server error).


def _storable(text: str) -> bool:
    return "\x00" not in text and not any("\ud800" <= c <= "\udfff" for c in text)


def _payload_rows() -> list[dict[str, Any]]:
    extra = []
    for i, payload in enumerate(INJECTION_PAYLOADS):
        if not _storable(payload):
            continue
        extra.append(
            {
                "id": f"p{i:02d}",
                "document_id": payload,
                "chunk_index": i,
                "content": payload,
                "created_at": None,
                "metadata": {
                    "genre": payload,
                    "tags": [payload, "sf"],
                    "author": {payload: payload},
                    payload: 1,
                    "a": {payload: True},
                },
            }
        )
    return ROWS + extra


def _injection_filters(payload: str) -> list[dict[str, Any]]:
    return [
        # as values
        {"genre": payload},
        {"genre": {"$ne": payload}},
        {"genre": {"$in": [payload, "sf"]}},
        {"genre": {"$nin": [payload]}},
        {"genre": {"$gt": payload}},
        {"genre": {"$between": [payload, payload]}},
        {"genre": {"$like": payload}},
        {"genre": {"$ilike": payload}},
        {"tags": {"$contains": [payload]}},
        {"tags": {"$eq": [payload, "sf"]}},
        {"author": {"$eq": {payload: payload}}},
        {"@content": payload},
        {"@document_id": {"$in": [payload, None]}},
        {"@content": {"$like": payload}},
        {"@content": {"$ilike": payload}},
        {"@content": {"$lte": payload}},
        {"$or": [{"genre": payload}, {"@document_id": {"$nin": [payload]}}]},
        # as keys
        {payload: 1},
        {payload: {"$gt": 0}},
        {payload: {"$exists": True}},
        {"a." + payload: True},
        {payload + ".a": {"$like": "x"}},
        {"@" + payload: 1},
        {"$or": [{payload: 1}]},
        {"genre": {payload: 1}},
        {"$not": {payload: {"$in": [1]}}},
    ]


async def test_injection_corpus(raw_conn: asyncpg.Connection, table_name: str) -> None:
    data = _payload_rows()
    await _load(raw_conn, table_name, data)
    checked = rejected = 0
    for payload in INJECTION_PAYLOADS:
        for document in _injection_filters(payload):
            try:
                compiled = compile_filter(document, TARGET)
            except FilterError:
                rejected += 1
                continue
            got = await _select_ids(raw_conn, table_name, compiled)
            assert got == matching(document, data), (payload, document, compiled)
            checked += 1
    # The table still stands and holds every row: nothing was dropped or rewritten.
    count = await raw_conn.fetchval(f"SELECT count(*) FROM {quote_ident(table_name)}")
    assert count == len(data)
    assert checked > 500
    assert rejected > 100


# ---------------------------------------------------------------------------------------------
# EXPLAIN: equality / $in / $contains are served by GIN jsonb_path_ops; ranges by B-tree
# expression indexes; columns by plain B-tree indexes.


@pytest.fixture
async def indexed_table(raw_conn: asyncpg.Connection, table_name: str) -> str:
    await _load(raw_conn, table_name, ROWS)
    t = quote_ident(table_name)
    for name, definition in [
        ("gin", "USING gin (metadata jsonb_path_ops)"),
        ("year", "((metadata -> 'year'))"),
        ("date", "((metadata ->> 'date') COLLATE \"C\")"),
        ("born", "((metadata -> 'author' -> 'born'))"),
        ("doc", "(document_id)"),
        ("chunk", "(chunk_index)"),
        ("created", "(created_at)"),
    ]:
        await raw_conn.execute(
            f"CREATE INDEX {quote_ident(f'{table_name}_{name}')} ON {t} {definition}"
        )
    await raw_conn.execute(f"ANALYZE {t}")
    return table_name


EXPLAINED: list[tuple[str, dict[str, Any], str]] = [
    ("eq", {"genre": "sf"}, "gin"),
    ("eq-dotted", {"author.name": "Ada"}, "gin"),
    ("eq-two-keys", {"genre": "sf", "year": 2020}, "gin"),
    ("eq-array", {"tags": {"$eq": ["ai", "space"]}}, "gin"),
    ("in", {"genre": {"$in": ["sf", "fantasy"]}}, "gin"),
    ("contains", {"tags": {"$contains": ["ai", "space"]}}, "gin"),
    ("or-of-eq", {"$or": [{"genre": "sf"}, {"tags": {"$contains": "ai"}}]}, "gin"),
    ("range-number", {"year": {"$gte": 2000, "$lt": 2015}}, "year"),
    ("between-number", {"year": {"$between": [2000, 2015]}}, "year"),
    ("exists", {"year": {"$exists": True}}, "year"),
    ("range-dotted", {"author.born": {"$lt": 1900}}, "born"),
    ("range-string", {"date": {"$gte": "2024-01-01"}}, "date"),
    ("like-prefix", {"date": {"$like": "2024-01%"}}, "date"),
    ("col-in", {"@document_id": {"$in": ["doc-a", "doc-b"]}}, "doc"),
    ("col-int", {"@chunk_index": {"$gt": 1}}, "chunk"),
    ("col-ts", {"@created_at": {"$gte": "2024-03-01"}}, "created"),
]


@pytest.mark.parametrize(("name", "document", "index"), EXPLAINED, ids=[e[0] for e in EXPLAINED])
async def test_explain_uses_index(
    raw_conn: asyncpg.Connection,
    indexed_table: str,
    name: str,
    document: dict[str, Any],
    index: str,
) -> None:
    compiled = compile_filter(document, TARGET)
    sql = f"SELECT id FROM {quote_ident(indexed_table)} WHERE {compiled.sql}"
    async with raw_conn.transaction():
        # The table is tiny, so forbid sequential scans to show the index CAN serve the filter.
        await raw_conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in await raw_conn.fetch(f"EXPLAIN {sql}", *compiled.params))
    assert f"Index Scan on {indexed_table}_{index}" in plan or (
        f"Index Scan using {indexed_table}_{index}" in plan
    ), plan
    assert "Seq Scan" not in plan, plan
    # And the indexed plan returns the right rows.
    assert await _select_ids(raw_conn, indexed_table, compiled) == matching(document, ROWS)


async def test_generic_plan_still_uses_expression_index(
    raw_conn: asyncpg.Connection, indexed_table: str
) -> None:
    # Keys are literals, not parameters, so even the generic plan of a prepared statement (what a
    # driver's statement cache ends up using) matches the expression index.
    compiled = compile_filter({"year": {"$gt": 2000}}, TARGET)
    await raw_conn.execute(
        f"PREPARE filter_plan AS SELECT id FROM {quote_ident(indexed_table)} WHERE {compiled.sql}"
    )
    async with raw_conn.transaction():
        await raw_conn.execute("SET LOCAL enable_seqscan = off")
        await raw_conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        argument = quote_literal(str(compiled.params[0]))
        plan = "\n".join(
            r[0] for r in await raw_conn.fetch(f"EXPLAIN EXECUTE filter_plan({argument})")
        )
    assert f"{indexed_table}_year" in plan, plan
    assert "$1" in plan, plan  # it really is the generic plan


# ---------------------------------------------------------------------------------------------
# The other column kinds the store may expose.


async def test_other_column_kinds(raw_conn: asyncpg.Connection, table_name: str) -> None:
    t = quote_ident(table_name)
    await raw_conn.execute(
        f"CREATE TEMP TABLE {t} (id text PRIMARY KEY, u uuid, b boolean, f float8, n bigint, "
        "metadata jsonb)"
    )
    await raw_conn.executemany(
        f"INSERT INTO {t} VALUES ($1, $2::uuid, $3, $4, $5, '{{}}')",
        [
            ("x1", "12345678-1234-5678-1234-567812345678", True, 0.5, 1),
            ("x2", "00000000-0000-0000-0000-000000000001", False, 2.0, 2**62),
            ("x3", None, None, None, None),
        ],
    )
    target = FilterTarget(
        '"metadata"',
        {
            "u": FilterColumn('"u"', "uuid"),
            "b": FilterColumn('"b"', "boolean"),
            "f": FilterColumn('"f"', "float"),
            "n": FilterColumn('"n"', "integer"),
        },
    )
    expectations: list[tuple[dict[str, Any], set[str]]] = [
        ({"@u": "12345678123456781234567812345678"}, {"x1"}),
        ({"@u": {"$ne": "12345678-1234-5678-1234-567812345678"}}, {"x2", "x3"}),
        ({"@u": {"$in": ["00000000-0000-0000-0000-000000000001", None]}}, {"x2", "x3"}),
        ({"@b": True}, {"x1"}),
        ({"@b": {"$ne": True}}, {"x2", "x3"}),
        ({"@b": {"$in": [False]}}, {"x2"}),
        ({"@f": {"$gt": 0.5}}, {"x2"}),
        ({"@f": {"$between": [0, 2]}}, {"x1", "x2"}),
        ({"@f": 2}, {"x2"}),
        ({"@n": 2**62}, {"x2"}),
        ({"@n": {"$gt": 2**62 - 1}}, {"x2"}),
        ({"@n": {"$gte": float(2**62)}}, {"x2"}),
        ({"@n": {"$gt": 1.5}}, {"x2"}),
        ({"@n": {"$lt": -(10**40)}}, set()),
        ({"@n": {"$in": [1, 10**40]}}, {"x1"}),
    ]
    for document, expected in expectations:
        compiled = compile_filter(document, target)
        assert await _select_ids(raw_conn, table_name, compiled) == expected, document


# ---------------------------------------------------------------------------------------------
# Differential property test: random documents, random filters, PostgreSQL == reference.

_INDEXES = [
    "USING gin (metadata jsonb_path_ops)",
    "((metadata -> 'a'))",
    "((metadata ->> 'a') COLLATE \"C\")",
    "((metadata -> 'n' -> 'x'))",
    "((metadata -> 'n' ->> 'x') COLLATE \"C\")",
    "((metadata -> 's'))",
    "((metadata ->> 's') COLLATE \"C\")",
    '(document_id COLLATE "C")',
    '(content COLLATE "C")',
    "(chunk_index)",
    "(created_at)",
]


def _differential(pg_dsn: str, table: str, examples: int, stats: dict[str, int]) -> None:
    # Hypothesis drives a synchronous function, so this test runs its own event loop.
    loop = asyncio.new_event_loop()
    plain = loop.run_until_complete(asyncpg.connect(pg_dsn))
    # A second session that prefers indexes, so index paths (GIN recheck, expression B-trees) are
    # held to the same answers.
    indexed = loop.run_until_complete(
        asyncpg.connect(pg_dsn, server_settings={"enable_seqscan": "off"})
    )
    t = quote_ident(table)
    try:
        loop.run_until_complete(plain.execute(create_table_sql(table).replace(" TEMP ", " ")))
        for definition in _INDEXES:
            loop.run_until_complete(plain.execute(f"CREATE INDEX ON {t} {definition}"))

        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(
            data=rows(),
            documents=st.lists(filters, min_size=1, max_size=3),
            first=st.integers(1, 3),
        )
        def property_holds(
            data: list[dict[str, Any]], documents: list[dict[str, Any]], first: int
        ) -> None:
            stats["examples"] += 1
            loop.run_until_complete(_check(plain, indexed, table, data, documents, first, stats))

        property_holds()
    finally:
        loop.run_until_complete(plain.execute(f"DROP TABLE IF EXISTS {t}"))
        loop.run_until_complete(plain.close())
        loop.run_until_complete(indexed.close())
        loop.close()


async def _check(
    plain: asyncpg.Connection,
    indexed: asyncpg.Connection,
    table: str,
    data: list[dict[str, Any]],
    documents: list[dict[str, Any]],
    first: int,
    stats: dict[str, int],
) -> None:
    await plain.execute(f"TRUNCATE {quote_ident(table)}")
    if data:
        await plain.executemany(insert_sql(table), [row_args(row) for row in data])
    stats["rows"] += len(data)
    for document in documents:
        try:
            compiled = compile_filter(document, TARGET, first_param=first)
        except FilterError as exc:  # the generator can only exceed the nesting limit
            if "deeper than" not in str(exc):
                raise
            continue
        expected = matching(document, data)
        got_plain, got_indexed = await asyncio.gather(
            _select_ids(plain, table, compiled, prefix=first - 1),
            _select_ids(indexed, table, compiled, prefix=first - 1),
        )
        detail = (
            f"filter={document!r}\nsql={compiled.sql}\nparams={compiled.params!r}\nrows={data!r}"
        )
        assert got_plain == expected, detail
        assert got_indexed == expected, detail
        stats["filters"] += 1
        stats["matched"] += len(expected)


def test_differential_against_reference(pg_dsn: str, table_name: str) -> None:
    stats = {"examples": 0, "filters": 0, "rows": 0, "matched": 0}
    _differential(pg_dsn, table_name, EXAMPLES, stats)
    print(f"\ndifferential filter test: {stats}")
    assert stats["examples"] >= EXAMPLES
    assert stats["filters"] >= EXAMPLES
    assert stats["matched"] > 0
