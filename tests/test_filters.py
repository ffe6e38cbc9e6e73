"""The filter compiler without a database: the reference evaluator against the hand-written table,
compiled SQL shapes, errors and their paths, key validation, the injection corpus, limits, speed.
"""

from __future__ import annotations

import ast
import datetime as dt
import re
import timeit
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filter_cases import (
    CASES,
    ERROR_CASES,
    INJECTION_PAYLOADS,
    ROWS,
    TARGET,
    filters,
    matching,
)
from pgvs.errors import FilterError, ValidationError
from pgvs.filters import (
    MAX_IN_ITEMS,
    CompiledFilter,
    FilterColumn,
    FilterTarget,
    compile_filter,
    parse_key,
)

_PLACEHOLDER = re.compile(r"\$(\d+)::")


def _placeholders(sql: str) -> list[int]:
    return [int(n) for n in _PLACEHOLDER.findall(sql)]


# ---------------------------------------------------------------------------------------------
# The reference evaluator agrees with the hand-written answers.


@pytest.mark.parametrize(("name", "document", "expected"), CASES, ids=[c[0] for c in CASES])
def test_reference_evaluator_matches_table(
    name: str, document: dict[str, Any] | None, expected: frozenset[str]
) -> None:
    assert matching(document, ROWS) == expected


@pytest.mark.parametrize(("name", "document", "expected"), CASES, ids=[c[0] for c in CASES])
def test_every_case_compiles_with_consistent_placeholders(
    name: str, document: dict[str, Any] | None, expected: frozenset[str]
) -> None:
    compiled = compile_filter(document, TARGET, first_param=4)
    assert sorted(set(_placeholders(compiled.sql))) == list(range(4, compiled.next_param))
    assert len(compiled.params) == compiled.next_param - 4


# ---------------------------------------------------------------------------------------------
# SQL shapes (index-friendly forms; keys as validated literals; values always parameters).

M = '"metadata"'
SHAPES: list[tuple[str, dict[str, Any], str, tuple[object, ...]]] = [
    ("eq", {"genre": "sf"}, f"({M} @> $1::jsonb)", ('{"genre":"sf"}',)),
    ("eq-null", {"k": None}, f"({M} @> $1::jsonb)", ('{"k":null}',)),
    ("eq-bool", {"k": False}, f"({M} @> $1::jsonb)", ('{"k":false}',)),
    ("eq-float", {"k": 0.1}, f"({M} @> $1::jsonb)", ('{"k":0.1}',)),
    ("eq-unicode", {"größe": "é"}, f"({M} @> $1::jsonb)", ('{"gr\\u00f6\\u00dfe":"\\u00e9"}',)),
    (
        "eq-dotted",
        {"author.name": "Ada"},
        f"({M} @> $1::jsonb)",
        ('{"author":{"name":"Ada"}}',),
    ),
    (
        "eq-array",
        {"tags": {"$eq": ["a", 1]}},
        f"({M} @> $1::jsonb AND ({M} -> 'tags') = $2::jsonb)",
        ('{"tags":["a", 1]}', '["a", 1]'),
    ),
    (
        "ne",
        {"genre": {"$ne": "sf"}},
        f"(({M} @> $1::jsonb) IS NOT TRUE)",
        ('{"genre":"sf"}',),
    ),
    (
        "in",
        {"genre": {"$in": ["sf", 2, None]}},
        f"({M} @> ANY($1::jsonb[]))",
        (['{"genre":"sf"}', '{"genre":2}', '{"genre":null}'],),
    ),
    ("in-one", {"genre": {"$in": ["sf"]}}, f"({M} @> $1::jsonb)", ('{"genre":"sf"}',)),
    ("in-empty", {"genre": {"$in": []}}, "FALSE", ()),
    ("nin-empty", {"genre": {"$nin": []}}, "TRUE", ()),
    (
        "contains",
        {"tags": {"$contains": ["a", "b"]}},
        f"({M} @> $1::jsonb)",
        ('{"tags":["a","b"]}',),
    ),
    ("contains-scalar", {"tags": {"$contains": 3}}, f"({M} @> $1::jsonb)", ('{"tags":[3]}',)),
    (
        "range-number",
        {"year": {"$gte": 2000, "$lt": 2010}},
        f"(jsonb_typeof(({M} -> 'year')) = 'number' AND ({M} -> 'year') >= $1::jsonb"
        f" AND ({M} -> 'year') < $2::jsonb)",
        ("2000", "2010"),
    ),
    (
        "range-string",
        {"date": {"$gt": "2024"}},
        f"(jsonb_typeof(({M} -> 'date')) = 'string' AND ({M} ->> 'date') COLLATE \"C\" > $1::text)",
        ("2024",),
    ),
    (
        "between-dotted",
        {"a.b": {"$between": [1, 2.5]}},
        f"(jsonb_typeof(({M} -> 'a' -> 'b')) = 'number' AND ({M} -> 'a' -> 'b') >= $1::jsonb"
        f" AND ({M} -> 'a' -> 'b') <= $2::jsonb)",
        ("1", "2.5"),
    ),
    (
        "like",
        {"t": {"$ilike": "a%"}},
        f"(jsonb_typeof(({M} -> 't')) = 'string' AND ({M} ->> 't') COLLATE \"C\" ILIKE $1::text)",
        ("a%",),
    ),
    ("exists", {"a.b": {"$exists": True}}, f"(({M} -> 'a' -> 'b') IS NOT NULL)", ()),
    ("not-exists", {"a": {"$exists": False}}, f"(({M} -> 'a') IS NULL)", ()),
    (
        "or-not",
        {"$or": [{"a": 1}, {"$not": {"b": 2}}]},
        f"(({M} @> $1::jsonb) OR (({M} @> $2::jsonb) IS NOT TRUE))",
        ('{"a":1}', '{"b":2}'),
    ),
    (
        "and",
        {"$and": [{"a": 1}, {"b": 2}], "c": 3},
        f"((({M} @> $1::jsonb) AND ({M} @> $2::jsonb)) AND ({M} @> $3::jsonb))",
        ('{"a":1}', '{"b":2}', '{"c":3}'),
    ),
    ("col-eq", {"@document_id": "d1"}, '("document_id" = $1::text)', ("d1",)),
    ("col-null", {"@content": None}, '("content" IS NULL)', ()),
    ("col-not-null", {"@content": {"$ne": None}}, '("content" IS NOT NULL)', ()),
    (
        "col-ne",
        {"@document_id": {"$ne": "d1"}},
        '(("document_id" = $1::text) IS NOT TRUE)',
        ("d1",),
    ),
    (
        "col-in",
        {"@document_id": {"$in": ["d1", "d2"]}},
        '("document_id" = ANY($1::text[]))',
        (["d1", "d2"],),
    ),
    (
        "col-in-null",
        {"@document_id": {"$in": ["d1", None]}},
        '("document_id" = ANY($1::text[]) OR "document_id" IS NULL)',
        (["d1"],),
    ),
    ("col-int", {"@chunk_index": {"$gt": 2}}, '("chunk_index" > $1::int8)', (2,)),
    ("col-int-float", {"@chunk_index": 2.0}, '("chunk_index" = $1::int8)', (2,)),
    (
        "col-int-fraction",
        {"@chunk_index": {"$lt": 0.1}},
        '("chunk_index" < $1::numeric)',
        (Decimal("0.1"),),
    ),
    ("col-int-huge", {"@chunk_index": 10**20}, '("chunk_index" = $1::numeric)', (10**20,)),
    (
        "col-int-in-mixed",
        {"@chunk_index": {"$in": [1, 0.5]}},
        '("chunk_index" = ANY($1::numeric[]))',
        ([1, Decimal("0.5")],),
    ),
    (
        "col-text-range",
        {"@content": {"$gte": "m"}},
        '("content" COLLATE "C" >= $1::text)',
        ("m",),
    ),
    (
        "col-like",
        {"@content": {"$like": "a%"}},
        '("content" COLLATE "C" LIKE $1::text)',
        ("a%",),
    ),
    (
        "col-ts",
        {"@created_at": {"$between": ["2024-01-01", "2024-01-02T03:04:05.5+02:00"]}},
        '("created_at" >= $1::timestamptz AND "created_at" <= $2::timestamptz)',
        (
            dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
            dt.datetime(2024, 1, 2, 1, 4, 5, 500000, tzinfo=dt.timezone.utc),
        ),
    ),
    (
        "col-not",
        {"@chunk_index": {"$not": {"$gt": 1}}},
        '(("chunk_index" > $1::int8) IS NOT TRUE)',
        (1,),
    ),
]


@pytest.mark.parametrize(("name", "document", "sql", "params"), SHAPES, ids=[s[0] for s in SHAPES])
def test_compiled_shape(
    name: str, document: dict[str, Any], sql: str, params: tuple[object, ...]
) -> None:
    compiled = compile_filter(document, TARGET)
    assert compiled.sql == sql
    assert compiled.params == params
    assert compiled.next_param == 1 + len(params)


@pytest.mark.parametrize("document", [None, {}])
def test_empty_filter_is_true(document: dict[str, Any] | None) -> None:
    assert compile_filter(document, TARGET, first_param=7) == CompiledFilter("TRUE", (), 7)


def test_first_param_numbering() -> None:
    compiled = compile_filter(
        {"a": 1, "b": {"$in": [1, 2]}, "@content": "x"}, TARGET, first_param=3
    )
    assert _placeholders(compiled.sql) == [3, 4, 5]
    assert compiled.next_param == 6


@pytest.mark.parametrize("first_param", [0, -1, True, 1.0, "1"])
def test_first_param_must_be_positive_int(first_param: Any) -> None:
    with pytest.raises(ValueError, match="first_param"):
        compile_filter({"a": 1}, TARGET, first_param=first_param)


def test_tuples_and_subclasses_are_accepted() -> None:
    class Str(str):
        pass

    compiled = compile_filter({"a": {"$in": (Str("x"), True)}, "b": {"$between": (1, 2)}}, TARGET)
    assert compiled.params[0] == ['{"a":"x"}', '{"a":true}']
    assert type(compiled.params[0][0]) is str


# ---------------------------------------------------------------------------------------------
# Errors name the offending node.


@pytest.mark.parametrize(
    ("name", "document", "path", "fragment"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES]
)
def test_error_names_path(name: str, document: Any, path: str, fragment: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(document, TARGET)
    assert info.value.path == path
    assert fragment in str(info.value)
    if path:
        assert str(info.value).startswith(f"{path}: ")


def test_filter_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^\$or\[1\]\.year\.\$gt: ") as info:
        compile_filter({"$or": [{"a": 1}, {"year": {"$gt": {}}}]}, TARGET)
    assert isinstance(info.value, FilterError)
    assert isinstance(info.value, ValidationError)


def test_error_message_truncates_long_keys() -> None:
    with pytest.raises(FilterError) as info:
        compile_filter({"'" * 100_000: 1}, TARGET)
    assert len(str(info.value)) < 600


# ---------------------------------------------------------------------------------------------
# Keys.

VALID_KEYS = [
    ("a", ("a",)),
    ("A_b-9", ("A_b-9",)),
    ("author.name", ("author", "name")),
    ("0", ("0",)),
    ("-", ("-",)),
    ("größe", ("größe",)),
    ("作者.名前", ("作者", "名前")),
    ("naïve", ("naïve",)),
    ("cafe\u0301", ("cafe\u0301",)),  # a combining mark (category Mn)
    ("x" * 64, ("x" * 64,)),
    (".".join("abcdefgh"), tuple("abcdefgh")),
]
INVALID_KEYS = [
    "",
    ".",
    "a.",
    ".a",
    "a..b",
    "x" * 65,
    ".".join("abcdefghi"),
    "a b",
    "a'b",
    'a"b',
    "a\\b",
    "a;b",
    "a/b",
    "a\x00",
    "a\n",
    "@a",
    "$a",
    "a.$b",
    "😀",
    "a\u202e",
    "a\u200b",  # zero-width space (category Cf)
    "\uff41\u2019",  # fullwidth letter a, then a right single quotation mark (Pf)
]


@pytest.mark.parametrize(("key", "segments"), VALID_KEYS)
def test_valid_keys(key: str, segments: tuple[str, ...]) -> None:
    assert parse_key(key) == segments
    compile_filter({key: {"$gt": 1}}, TARGET)


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_invalid_keys(key: str) -> None:
    with pytest.raises(FilterError, match="invalid metadata key"):
        parse_key(key)


def test_valid_keys_appear_only_as_quoted_literals() -> None:
    compiled = compile_filter({"作者.名前": {"$gt": "x"}}, TARGET)
    assert "-> '作者' ->> '名前'" in compiled.sql


# ---------------------------------------------------------------------------------------------
# Injection corpus (pure half; tests/test_filters_db.py runs the same payloads on the server).


def _value_filters(payload: str) -> list[dict[str, Any]]:
    return [
        {"genre": payload},
        {"genre": {"$ne": payload}},
        {"genre": {"$in": [payload, "sf"]}},
        {"genre": {"$gt": payload}},
        {"genre": {"$between": [payload, payload]}},
        {"genre": {"$like": payload}},
        {"genre": {"$ilike": payload}},
        {"tags": {"$contains": [payload]}},
        {"author": {"$eq": {payload: payload}}},
        {"@content": payload},
        {"@content": {"$in": [payload]}},
        {"@content": {"$like": payload}},
        {"@content": {"$lte": payload}},
        {"$or": [{"genre": payload}, {"@document_id": {"$nin": [payload]}}]},
    ]


def _key_filters(payload: str) -> list[dict[str, Any]]:
    return [
        {payload: 1},
        {payload: {"$gt": 1}},
        {"a." + payload: {"$exists": True}},
        {payload + ".a": {"$like": "x"}},
        {"@" + payload: 1},
        {"$or": [{payload: 1}]},
        {"genre": {payload: 1}},
        {"$not": {payload: {"$in": [1]}}},
    ]


@pytest.mark.parametrize("payload", INJECTION_PAYLOADS, ids=range(len(INJECTION_PAYLOADS)))
def test_injection_values_never_shape_the_sql(payload: str) -> None:
    benign = _value_filters("benign-value")
    for i, document in enumerate(_value_filters(payload)):
        try:
            compiled = compile_filter(document, TARGET)
        except FilterError:
            continue
        # The SQL is a function of the filter's shape only: a benign value gives the same text,
        # so no value (nor any part of one) can be in it.
        assert compiled.sql == compile_filter(benign[i], TARGET).sql


@pytest.mark.parametrize("payload", INJECTION_PAYLOADS, ids=range(len(INJECTION_PAYLOADS)))
def test_injection_keys_are_rejected_or_harmless(payload: str) -> None:
    for document in _key_filters(payload):
        try:
            compiled = compile_filter(document, TARGET)
        except FilterError:
            continue
        # Only keys of the documented alphabet get through, and they appear as '...' literals.
        assert re.fullmatch(r"[\w-]+", payload), payload
        for literal in re.findall(r"'([^']*)'", compiled.sql):
            assert literal in ("number", "string") or re.fullmatch(r"[\w-]+", literal)


# ---------------------------------------------------------------------------------------------
# Other column kinds.

KINDS = FilterTarget(
    metadata_sql='"m"',
    columns={
        "u": FilterColumn('"u"', "uuid"),
        "b": FilterColumn('"b"', "boolean"),
        "f": FilterColumn('"f"', "float"),
        "t": FilterColumn('"t"', "timestamptz"),
    },
)
_UUID = uuid.UUID("12345678-1234-5678-1234-567812345678")

KIND_SHAPES: list[tuple[dict[str, Any], str, tuple[object, ...]]] = [
    ({"@u": str(_UUID).upper()}, '("u" = $1::uuid)', (str(_UUID),)),
    ({"@u": _UUID}, '("u" = $1::uuid)', (str(_UUID),)),
    ({"@u": {"$in": [_UUID.hex, None]}}, '("u" = ANY($1::uuid[]) OR "u" IS NULL)', ([str(_UUID)],)),
    ({"@b": True}, '("b" = $1::bool)', (True,)),
    ({"@b": {"$ne": False}}, '(("b" = $1::bool) IS NOT TRUE)', (False,)),
    ({"@f": {"$gt": 1}}, '("f" > $1::float8)', (1.0,)),
    ({"@f": {"$between": [0.5, 10**20]}}, '("f" >= $1::float8 AND "f" <= $2::float8)', (0.5, 1e20)),
    (
        {"@t": dt.datetime(2024, 1, 1)},
        '("t" = $1::timestamptz)',
        (dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),),
    ),
    (
        {"@t": {"$lt": dt.date(2024, 1, 1)}},
        '("t" < $1::timestamptz)',
        (dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),),
    ),
]


@pytest.mark.parametrize(("document", "sql", "params"), KIND_SHAPES)
def test_column_kinds(document: dict[str, Any], sql: str, params: tuple[object, ...]) -> None:
    compiled = compile_filter(document, KINDS)
    assert (compiled.sql, compiled.params) == (sql, params)
    for param in compiled.params:  # timestamps are sent as aware UTC datetimes
        if isinstance(param, dt.datetime):
            assert param.tzinfo is dt.timezone.utc


KIND_ERRORS: list[tuple[dict[str, Any], str, str]] = [
    ({"@u": "not-a-uuid"}, "@u", "not a valid UUID"),
    ({"@u": "12345678-1234-5678-1234-56781234567"}, "@u", "not a valid UUID"),
    ({"@u": 5}, "@u", "compares with strings"),
    ({"@u": {"$gt": str(_UUID)}}, "@u.$gt", "does not apply to a uuid column"),
    ({"@u": {"$like": "1%"}}, "@u.$like", "text columns only"),
    ({"@b": 1}, "@b", "true/false"),
    ({"@b": {"$lt": True}}, "@b.$lt", "does not apply to a boolean column"),
    ({"@f": "1.0"}, "@f", "compares with numbers"),
    ({"@f": 10**400}, "@f", "out of range"),
    ({"@t": "2024-13-01"}, "@t", "invalid timestamp"),
    ({"@t": "01/02/2024"}, "@t", "ISO-8601"),
    ({"@t": "0001-01-01T00:00:00+01:00"}, "@t", "out of range"),
    ({"@t": {"$lt": "9999-12-31T23:59:59-01:00"}}, "@t.$lt", "out of range"),
]


@pytest.mark.parametrize(("document", "path", "fragment"), KIND_ERRORS)
def test_column_kind_errors(document: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(document, KINDS)
    assert info.value.path == path
    assert fragment in str(info.value)


_UTC = dt.timezone.utc
TIMESTAMPS: list[tuple[str, dt.datetime]] = [
    ("2024-05-01", dt.datetime(2024, 5, 1, tzinfo=_UTC)),
    ("2024-05-01T12:30", dt.datetime(2024, 5, 1, 12, 30, tzinfo=_UTC)),
    ("2024-05-01 12:30:15", dt.datetime(2024, 5, 1, 12, 30, 15, tzinfo=_UTC)),
    ("2024-05-01t12:30:15z", dt.datetime(2024, 5, 1, 12, 30, 15, tzinfo=_UTC)),
    ("2024-05-01T12:30:15.5Z", dt.datetime(2024, 5, 1, 12, 30, 15, 500000, tzinfo=_UTC)),
    ("2024-05-01T12:30:15,25Z", dt.datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=_UTC)),
    ("2024-05-01T12:30:15.1234567Z", dt.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=_UTC)),
    ("2024-05-01T12:30:00+05:30", dt.datetime(2024, 5, 1, 7, 0, tzinfo=_UTC)),
    ("2024-05-01T12:30:00-0200", dt.datetime(2024, 5, 1, 14, 30, tzinfo=_UTC)),
    ("2024-05-01T00:00:00+00:00", dt.datetime(2024, 5, 1, tzinfo=_UTC)),
]


@pytest.mark.parametrize(("text", "expected"), TIMESTAMPS)
def test_timestamp_strings(text: str, expected: dt.datetime) -> None:
    compiled = compile_filter({"@t": text}, KINDS)
    assert compiled.params == (expected,)


@pytest.mark.parametrize(
    "text", ["", "2024", "2024-5-1", "2024-05-01T", "2024-05-01T1:00", "2024-05-01Z", "now"]
)
def test_bad_timestamp_strings(text: str) -> None:
    with pytest.raises(FilterError, match="ISO-8601"):
        compile_filter({"@t": text}, KINDS)


def test_unknown_column_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown column kind"):
        FilterColumn('"x"', "json")  # type: ignore[arg-type]


def test_no_columns_target() -> None:
    target = FilterTarget('"metadata"', {})
    with pytest.raises(FilterError, match="filterable columns are none"):
        compile_filter({"@id": "x"}, target)


# ---------------------------------------------------------------------------------------------
# Limits.


def test_limits_are_inclusive() -> None:
    nested: dict[str, Any] = {"a": 1}
    for _ in range(10):
        nested = {"$not": nested}
    compile_filter(nested, TARGET)
    compile_filter({"$or": [{"a": i} for i in range(256)]}, TARGET)
    compiled = compile_filter({"a": {"$in": list(range(MAX_IN_ITEMS))}}, TARGET)
    assert len(compiled.params[0]) == MAX_IN_ITEMS  # type: ignore[arg-type]
    value: Any = 1
    for _ in range(16):
        value = [value]
    compile_filter({"a": {"$eq": value}}, TARGET)


def test_cyclic_value_is_an_error_not_a_crash() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(FilterError, match="deeper than"):
        compile_filter({"a": {"$eq": cyclic}}, TARGET)


# ---------------------------------------------------------------------------------------------
# Fuzzing: arbitrary junk either compiles consistently or raises FilterError, nothing else.

_junk_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=6),
    st.sampled_from(["$and", "$or", "$not", "$eq", "$in", "$gt", "$like", "$contains", "@content"]),
    st.builds(object),
    st.binary(max_size=2),
)
_junk_keys = st.one_of(
    st.sampled_from(
        [
            *("$and", "$or", "$not", "$eq", "$ne", "$in", "$nin", "$gt", "$between", "$like"),
            *("$exists", "$contains", "@content", "@chunk_index", "@created_at", "@id", "a", "a.b"),
        ]
    ),
    st.text(max_size=5),
)
_junk = st.recursive(
    _junk_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(_junk_keys, inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=st.dictionaries(_junk_keys, _junk, max_size=3))
def test_fuzz_only_filter_errors(document: dict[str, Any]) -> None:
    try:
        compiled = compile_filter(document, TARGET, first_param=2)
    except FilterError:
        return
    assert sorted(set(_placeholders(compiled.sql))) == list(range(2, compiled.next_param))
    assert compiled.sql.count("(") == compiled.sql.count(")")


@settings(max_examples=300, deadline=None)
@given(document=filters)
def test_generated_filters_compile(document: dict[str, Any]) -> None:
    try:
        compiled = compile_filter(document, TARGET)
    except FilterError as exc:  # only the depth limit can be hit by the generator
        if "deeper than" not in str(exc):
            raise
        return
    assert len(compiled.params) == compiled.next_param - 1


# ---------------------------------------------------------------------------------------------
# Purity and speed.


def test_module_is_pure() -> None:
    source = Path(__file__).parents[1] / "src" / "pgvs" / "filters.py"
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
    allowed = {"__future__", "datetime", "json", "json.encoder", "math", "re", "unicodedata"}
    allowed |= {"uuid", "collections.abc", "dataclasses", "decimal", "functools", "typing"}
    allowed |= {".errors", "._sql"}
    assert imported <= allowed, imported - allowed


TYPICAL = {
    "category": "news",
    "year": {"$gte": 2000, "$lt": 2010},
    "tags": {"$contains": "ai"},
    "@document_id": {"$in": ["d1", "d2", "d3"]},
}


def test_compile_speed_typical_filter() -> None:
    # 5 conditions; measured ~30 µs on a laptop-class CPU. The bound is loose to stay stable.
    runs = 2000
    best = min(timeit.repeat(lambda: compile_filter(TYPICAL, TARGET), number=runs, repeat=5))
    assert best / runs < 250e-6


def test_values_do_not_leak_between_compilations() -> None:
    first = compile_filter({"a": "one", "b.c": {"$gt": 1}}, TARGET)
    second = compile_filter({"a": "two", "b.c": {"$gt": 2}}, TARGET)
    assert first.sql == second.sql
    assert first.params == ('{"a":"one"}', "1")
    assert second.params == ('{"a":"two"}', "2")
