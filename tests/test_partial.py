"""Partial-index predicates, pure half: what a predicate may say, the SQL it becomes, the one
literal-quoting helper, and which searches a predicate serves (implication and cover).

The database half (builds, EXPLAIN, repair, injection on a real server) is tests/test_partial_db.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from pgvs._sql import quote_literal
from pgvs.config import StoreConfig
from pgvs.errors import ConfigurationError, FilterError, ValidationError
from pgvs.partial import Predicate, compile_predicate, parse_comment, route
from pgvs.store._context import StoreContext

CTX = StoreContext(StoreConfig(dimensions=4, table_name="t"))
TARGET = CTX.filter_target
DOMAIN_SQL = CTX.sql.col("domain_id")


def predicate(where: Any, domain: str | None = None) -> Predicate:
    return compile_predicate(where, domain, TARGET, domain_sql=DOMAIN_SQL)


# -- the one literal helper ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("abc", "'abc'"),
        ("O'Brien", "'O''Brien'"),
        ("a\\b", "E'a\\\\b'"),  # a backslash never escapes the quote, whatever the server says
        ("\\'", "E'\\\\'''"),
        ("", "''"),
        ("é😀", "'é😀'"),
    ],
)
def test_quote_literal(value: str, literal: str) -> None:
    assert quote_literal(value) == literal


@pytest.mark.parametrize("value", ["a\x00b", "\ud800"])
def test_quote_literal_refuses_what_no_string_can_hold(value: str) -> None:
    with pytest.raises(ConfigurationError):
        quote_literal(value)


# -- predicates ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "domain", "sql"),
    [
        ({"cat": "a"}, None, """("metadata" @> '{"cat":"a"}'::jsonb)"""),
        ({"n": 1.0}, None, """("metadata" @> '{"n":1}'::jsonb)"""),
        ({"cat": None}, None, """("metadata" @> '{"cat":null}'::jsonb)"""),
        (
            {"cat": {"$in": ["b", "a"]}},
            None,
            """("metadata" @> ANY(ARRAY['{"cat":"a"}'::jsonb, '{"cat":"b"}'::jsonb]::jsonb[]))""",
        ),
        (
            {"year": {"$gte": 2020, "$lt": 2024}},
            None,
            """(jsonb_typeof(("metadata" -> 'year')) = 'number' AND ("metadata" -> 'year') """
            """>= '2020'::jsonb AND ("metadata" -> 'year') < '2024'::jsonb)""",
        ),
        (
            {"title": {"$between": ["a", "m"]}},
            None,
            """(jsonb_typeof(("metadata" -> 'title')) = 'string' AND ("metadata" ->> 'title') """
            """COLLATE "C" >= 'a'::text AND ("metadata" ->> 'title') COLLATE "C" <= 'm'::text)""",
        ),
        ({"gone": {"$exists": False}}, None, """(("metadata" -> 'gone') IS NULL)"""),
        ({"@document_id": None}, None, """("document_id" IS NULL)"""),
        (
            {"@created_at": {"$gte": "2024-05-01T02:00:00+02:00"}},
            None,
            """("created_at" >= '2024-05-01T00:00:00+00:00'::timestamptz)""",
        ),
        (
            {"@chunk_index": {"$in": [2, 1]}},
            None,
            """("chunk_index" = ANY(ARRAY['1'::int8, '2'::int8]::int8[]))""",
        ),
        (None, "big", """"domain_id" = 'big'::text"""),
        (
            {"cat": "a"},
            "it's",
            """("domain_id" = 'it''s'::text AND ("metadata" @> '{"cat":"a"}'::jsonb))""",
        ),
    ],
)
def test_predicate_sql(where: Any, domain: str | None, sql: str) -> None:
    compiled = predicate(where, domain)
    assert compiled.sql == sql
    assert "$" not in compiled.sql.replace("$in", "")  # no placeholder is left


def test_equivalent_documents_are_one_predicate() -> None:
    # Key order, $and nesting, an $or of equalities and $in, 1 and 1.0: one index, one name.
    forms = [
        {"cat": {"$in": ["a", "b"]}, "n": 1},
        {"n": 1.0, "cat": {"$in": ["b", "a"]}},
        {"$and": [{"n": {"$eq": 1}}, {"$or": [{"cat": "a"}, {"cat": {"$eq": "b"}}]}]},
    ]
    compiled = [predicate(form) for form in forms]
    assert len({(p.sql, p.digest, str(p.where)) for p in compiled}) == 1
    assert predicate({"cat": "a"}).digest != predicate({"cat": "a"}, "big").digest


@pytest.mark.parametrize(
    ("where", "operator"),
    [
        ({"cat": {"$ne": "a"}}, "$ne"),
        ({"cat": {"$nin": ["a"]}}, "$nin"),
        ({"$not": {"cat": "a"}}, "$not"),
        ({"cat": {"$not": {"$eq": "a"}}}, "$not"),
        ({"title": {"$like": "a%"}}, "$like"),
        ({"title": {"$ilike": "a%"}}, "$ilike"),
        ({"tags": {"$contains": "ai"}}, "$contains"),
        ({"$or": [{"cat": "a"}, {"year": 2020}]}, "$or"),
        ({"$or": [{"cat": "a"}, {"cat": {"$gt": "x"}}]}, "$or"),
        ({"cat": {"$eq": ["a"]}}, "an object or list value"),
        ({"cat": {"$in": []}}, "$in"),
        ({"@content": {"$like": "a%"}}, "$like"),
    ],
)
def test_operators_the_planner_cannot_use_are_refused_by_name(where: Any, operator: str) -> None:
    with pytest.raises(FilterError, match=re.escape(f"{operator} cannot define")):
        predicate(where)


@pytest.mark.parametrize(
    ("where", "domain", "message"),
    [
        (None, None, "needs a predicate"),
        ({}, None, "needs a predicate"),
        ({"cat": {"$gt": True}}, None, "number or a string"),  # the filter language's own error
        ({"bad key'": 1}, None, "invalid metadata key"),
        (None, 7, "domain must be a string"),
        (None, "a\x00", "NUL"),
        ("cat", None, "filter document"),
    ],
)
def test_bad_predicates(where: Any, domain: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        predicate(where, domain)


def test_domain_needs_a_domain_column() -> None:
    with pytest.raises(ValidationError, match="needs a domain column"):
        compile_predicate(None, "big", TARGET, domain_sql=None)


def test_the_comment_records_the_predicate() -> None:
    compiled = predicate({"cat": "a"}, "big")
    recorded = parse_comment(compiled.comment("hnsw", "none"))
    assert recorded is not None
    assert (recorded["where"], recorded["domain"], recorded["index_type"]) == (
        {"cat": {"$eq": "a"}},
        "big",
        "hnsw",
    )
    assert parse_comment("a comment of someone else") is None
    assert parse_comment("pgvs:partial:{not json") is None


# -- implication and cover -----------------------------------------------------------------------

EQ = predicate({"cat": "a"})
IN = predicate({"cat": {"$in": ["a", "b"]}})
RANGE = predicate({"year": {"$gte": 2020, "$lt": 2030}})
TITLE = predicate({"title": {"$gt": "m"}})
TENANT = predicate(None, "big")
TENANT_EQ = predicate({"cat": "a"}, "big")
CANDIDATES = [
    ("eq", EQ, 10),
    ("in", IN, 20),
    ("range", RANGE, 30),
    ("title", TITLE, 30),
    ("tenant", TENANT, 40),
    ("tenant_eq", TENANT_EQ, 5),
]


@pytest.mark.parametrize(
    ("filter", "domain", "tenant", "expected"),
    [
        # equality: the smallest covering index
        ({"cat": "a"}, "", False, ("eq", True)),
        ({"cat": {"$eq": "a"}, "x": {"$ne": 1}}, "", False, ("eq", False)),
        ({"cat": "a", "year": 2021}, "", False, ("eq", False)),
        ({"cat": "a", "@document_id": {"$in": ["d1", "d2"]}}, "", False, ("eq", False)),
        # IN-subset: implied, covered only when the sets are equal
        ({"cat": "b"}, "", False, ("in", False)),
        ({"cat": {"$in": ["b", "a"]}}, "", False, ("in", True)),
        ({"$or": [{"cat": "a"}, {"cat": "b"}]}, "", False, ("in", True)),
        ({"cat": {"$in": ["a", "c"]}}, "", False, None),
        ({"cat": "c"}, "", False, None),
        # ranges: inside the predicate's range, same type, bounds respected
        ({"year": 2025}, "", False, ("range", False)),
        ({"year": {"$gte": 2020, "$lt": 2030}}, "", False, ("range", True)),
        ({"year": {"$gt": 2021, "$lte": 2029.5}}, "", False, ("range", False)),
        ({"year": {"$between": [2020, 2029]}}, "", False, ("range", False)),
        ({"year": {"$gte": 2019}}, "", False, None),
        ({"year": {"$lte": 2030}}, "", False, None),
        ({"year": 2030}, "", False, None),
        ({"year": "2025"}, "", False, None),  # a string is not in a number range
        ({"year": True}, "", False, None),
        ({"title": "n"}, "", False, ("title", False)),
        ({"title": "m"}, "", False, None),  # $gt: the bound itself is out
        # what cannot be read implies nothing (never a wrong route)
        ({"$or": [{"cat": "a"}, {"year": 2025}]}, "", False, None),
        ({"$not": {"cat": "b"}}, "", False, None),
        ({"cat": {"$nin": ["b"]}}, "", False, None),
        (None, "", False, None),
        # tenants: the store's domain is part of what every search says
        (None, "big", True, ("tenant", True)),
        ({"cat": "a"}, "big", True, ("tenant_eq", True)),
        ({"cat": "b"}, "big", True, ("in", False)),
        ({"cat": "a"}, "small", True, ("eq", False)),
        ({"cat": "a"}, "big", False, ("tenant_eq", True)),
    ],
)
def test_route(filter: Any, domain: str, tenant: bool, expected: tuple[str, bool] | None) -> None:
    chosen = route(CANDIDATES, filter, TARGET, domain=domain, tenant=tenant)
    assert (None if chosen is None else (chosen.name, chosen.covered)) == expected
    if chosen is not None:
        assert chosen.predicate_sql == {n: p.sql for n, p, _ in CANDIDATES}[chosen.name]


def test_route_never_raises_on_odd_filters() -> None:
    odd: list[Any] = [
        {"cat": {"$in": "a"}},
        {"$and": "x"},
        {"$or": []},
        {"@nope": 1},
        {"bad key'": 1},
        {"year": {"$between": [1]}},
        {"year": {"$gt": 1, "$lt": "z"}},
        {"cat": {}},
        {"$and": [{}]},
    ]
    for filter in odd:
        assert route(CANDIDATES, filter, TARGET, domain="", tenant=False) is None


def test_derived_names_are_63_byte_safe_and_distinct() -> None:
    long = StoreContext(StoreConfig(dimensions=4, table_name="t" * 63))
    names = {
        long.sql.partial_index_name(index_type, predicate(where).digest)
        for index_type in ("hnsw", "ivfflat")
        for where in ({"cat": "a"}, {"cat": "b"}, {"year": {"$gte": 2020}})
    }
    assert len(names) == 6
    assert all(len(name.encode()) <= 63 for name in names)
    assert CTX.sql.partial_index_name("hnsw", EQ.digest) == f"t_embedding_hnsw_p{EQ.digest}"
