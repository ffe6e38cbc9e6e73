"""Shared material for the filter tests: rows, a table of filter cases with hand-written answers,
a pure-Python reference evaluator of the filter language, an injection corpus, and hypothesis
strategies for random documents and filters.

The evaluator is written from the documented semantics (docs/filters.md), independently of the
compiler: it never looks at SQL. tests/test_filters.py checks it against the hand-written answers;
tests/test_filters_db.py checks PostgreSQL against both.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from functools import partial
from typing import Any

from hypothesis import strategies as st

from pgvs._sql import quote_ident
from pgvs.filters import ColumnKind, FilterColumn, FilterTarget

# ---------------------------------------------------------------------------------------------
# The table shape the store uses, and the filter target over it.

COLUMN_KINDS: dict[str, ColumnKind] = {
    "id": "text",
    "document_id": "text",
    "chunk_index": "integer",
    "content": "text",
    "created_at": "timestamptz",
}
TARGET = FilterTarget(
    metadata_sql=quote_ident("metadata"),
    columns={name: FilterColumn(quote_ident(name), kind) for name, kind in COLUMN_KINDS.items()},
)


def create_table_sql(table: str) -> str:
    return (
        f"CREATE TEMP TABLE {quote_ident(table)} (id text PRIMARY KEY, document_id text, "
        "chunk_index integer, content text, created_at timestamptz, metadata jsonb)"
    )


def insert_sql(table: str) -> str:
    return (
        f"INSERT INTO {quote_ident(table)} "
        "(id, document_id, chunk_index, content, created_at, metadata) "
        "VALUES ($1, $2, $3, $4, $5, $6::jsonb)"
    )


def row_args(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        row["id"],
        row["document_id"],
        row["chunk_index"],
        row["content"],
        row["created_at"],
        json.dumps(row["metadata"]),
    )


def _ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _row(
    rid: str,
    document_id: str | None,
    chunk_index: int | None,
    content: str | None,
    created_at: str | None,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": rid,
        "document_id": document_id,
        "chunk_index": chunk_index,
        "content": content,
        "created_at": _ts(created_at) if created_at else None,
        "metadata": metadata,
    }


ROWS: list[dict[str, Any]] = [
    _row(
        "r01",
        "doc-a",
        0,
        "hello world",
        "2024-01-01T00:00:00+00:00",
        {
            "year": 2020,
            "genre": "sf",
            "tags": ["ai", "space"],
            "author": {"name": "Ada", "born": 1815},
            "rating": 4.5,
            "published": True,
            "date": "2024-01-15",
            "flag": True,
        },
    ),
    _row(
        "r02",
        "doc-a",
        1,
        "Hello again",
        "2024-01-02T00:00:00+00:00",
        {
            "year": 1999,
            "genre": "fantasy",
            "tags": ["magic"],
            "author": {"name": "Bob"},
            "rating": 3,
            "published": False,
            "date": "2023-12-31",
            "flag": 1,
        },
    ),
    _row(
        "r03",
        "doc-b",
        0,
        None,
        "2024-02-01T00:00:00+00:00",
        {"year": "2020", "genre": "sf", "tags": [], "rating": None},
    ),
    _row(
        "r04",
        "doc-b",
        1,
        "100% sure",
        "2024-02-15T12:00:00+00:00",
        {"year": 2020.0, "genre": "SF", "tags": "ai", "flag": "1"},
    ),
    _row(
        "r05",
        "doc-c",
        0,
        "",
        "2023-12-31T23:59:59+00:00",
        {"year": None, "genre": None, "author": "Ada"},
    ),
    _row("r06", "doc-c", 1, "empty metadata", None, {}),
    _row(
        "r07",
        "doc-d",
        0,
        "x",
        "2024-03-01T00:00:00+00:00",
        {
            "year": 2010,
            "genre": "sf",
            "tags": ["ai", "ai", 1, True, None],
            "author": {"name": "ada"},
            "price": 10**20,
        },
    ),
    _row(
        "r08",
        "doc-d",
        1,
        "arrays",
        "2024-03-02T00:00:00+00:00",
        {"year": True, "genre": ["sf"], "tags": [["ai"]], "author": [{"name": "Ada"}]},
    ),
    _row(
        "r09",
        "doc-e",
        0,
        "Ünïcode",
        "2024-04-01T00:00:00+00:00",
        {
            "genre": "sci-fi",
            "title": "100% real_deal",
            "path": "C:\\docs",
            "note": "naïve café",
            "author": {"name": {"first": "Ada"}},
        },
    ),
    _row(
        "r10",
        "doc-e",
        1,
        "É",
        "2024-04-02T00:00:00+00:00",
        {"genre": "Sf", "title": "Émile", "year": -5, "rating": 4.50, "obj": {"a": 1, "b": [1, 2]}},
    ),
    _row(
        "r11",
        "doc-f",
        0,
        "dots",
        "2024-05-01T00:00:00+00:00",
        {"a.b": 1, "a": {"b": 2}, "date": "2024-01-15T10:00:00Z"},
    ),
    _row(
        "r12",
        "doc-f",
        2,
        "emoji 😀",
        "2024-05-02T00:00:00+00:00",
        {"year": 2021, "tags": ["space", "AI"], "obj": {"a": 1}, "emoji": "😀", "größe": 3},
    ),
]
ALL_IDS = frozenset(row["id"] for row in ROWS)


def _ids(text: str) -> frozenset[str]:
    return frozenset(f"r{n}" for n in text.split()) if text != "*" else ALL_IDS


def _but(text: str) -> frozenset[str]:
    return ALL_IDS - _ids(text)


# (name, filter, expected ids). Written by hand from the documented semantics.
CASES: list[tuple[str, dict[str, Any] | None, frozenset[str]]] = [
    ("none", None, ALL_IDS),
    ("empty", {}, ALL_IDS),
    # equality and types
    ("eq-int-matches-float", {"year": 2020}, _ids("01 04")),
    ("eq-string-not-number", {"year": "2020"}, _ids("03")),
    ("eq-explicit", {"year": {"$eq": 2020}}, _ids("01 04")),
    ("eq-float-literal", {"year": 2020.0}, _ids("01 04")),
    ("ne-includes-missing-null-mismatched", {"year": {"$ne": 2020}}, _but("01 04")),
    ("eq-null-present-only", {"year": None}, _ids("05")),
    ("ne-null", {"year": {"$ne": None}}, _but("05")),
    ("eq-true-not-one", {"flag": True}, _ids("01")),
    ("eq-one-not-true", {"flag": 1}, _ids("02")),
    ("eq-one-float", {"flag": 1.0}, _ids("02")),
    ("ne-one", {"flag": {"$ne": 1}}, _but("02")),
    ("eq-bool-false", {"published": False}, _ids("02")),
    ("eq-year-true", {"year": True}, _ids("08")),
    ("eq-string-case-sensitive", {"genre": "sf"}, _ids("01 03 07")),
    ("ne-string", {"genre": {"$ne": "sf"}}, _but("01 03 07")),
    ("eq-scalar-never-matches-array", {"genre": {"$eq": "sf"}}, _ids("01 03 07")),
    ("eq-big-int", {"price": 10**20}, _ids("07")),
    ("eq-big-float", {"price": 1e20}, _ids("07")),
    ("eq-unicode-key", {"größe": 3}, _ids("12")),
    ("eq-emoji-value", {"emoji": "😀"}, _ids("12")),
    # exists
    ("exists-true", {"year": {"$exists": True}}, _ids("01 02 03 04 05 07 08 10 12")),
    ("exists-false", {"year": {"$exists": False}}, _ids("06 09 11")),
    ("exists-null-counts", {"rating": {"$exists": True}}, _ids("01 02 03 10")),
    ("exists-and-ne-empty", {"tags": {"$exists": True, "$ne": []}}, _ids("01 02 04 07 08 12")),
    # number ranges
    ("gt-number", {"year": {"$gt": 2000}}, _ids("01 04 07 12")),
    ("gte-number", {"year": {"$gte": 2020}}, _ids("01 04 12")),
    ("lt-number", {"year": {"$lt": 2000}}, _ids("02 10")),
    ("lte-negative", {"year": {"$lte": -5}}, _ids("10")),
    ("range-pair", {"year": {"$gte": 2000, "$lt": 2020}}, _ids("07")),
    ("between-inclusive", {"year": {"$between": [2010, 2020]}}, _ids("01 04 07")),
    ("between-reversed-empty", {"year": {"$between": [2020, 2010]}}, _ids("")),
    ("between-float-bounds", {"rating": {"$between": [3.0, 4.5]}}, _ids("01 02 10")),
    ("gt-float", {"rating": {"$gt": 3}}, _ids("01 10")),
    ("lte-int-vs-float", {"rating": {"$lte": 3}}, _ids("02")),
    ("gt-not-bool", {"flag": {"$gte": 1}}, _ids("02")),
    ("gt-big", {"price": {"$gt": 10**20 - 1}}, _ids("07")),
    ("gt-big-float", {"price": {"$gt": 1e20}}, _ids("")),
    ("mixed-number-and-string-bounds", {"year": {"$gt": 2000, "$lt": "3"}}, _ids("")),
    ("range-number-on-strings", {"genre": {"$gt": 5}}, _ids("")),
    # string ranges (code-point order)
    ("gt-string", {"year": {"$gt": "2000"}}, _ids("03")),
    ("gte-date-string", {"date": {"$gte": "2024-01-01"}}, _ids("01 11")),
    ("between-date-strings", {"date": {"$between": ["2024-01-15", "2024-01-15"]}}, _ids("01")),
    ("gt-codepoint", {"title": {"$gt": "Z"}}, _ids("10")),
    ("gt-emoji", {"emoji": {"$gt": "z"}}, _ids("12")),
    ("gt-empty-string", {"author": {"$gt": ""}}, _ids("05")),
    # $in / $nin
    ("in-mixed", {"year": {"$in": [1999, 2021, "2020"]}}, _ids("02 03 12")),
    ("nin-mixed", {"year": {"$nin": [1999, 2021, "2020"]}}, _but("02 03 12")),
    ("in-empty", {"year": {"$in": []}}, _ids("")),
    ("nin-empty", {"year": {"$nin": []}}, ALL_IDS),
    ("in-null-and-true", {"year": {"$in": [None, True]}}, _ids("05 08")),
    ("in-one", {"genre": {"$in": ["sf"]}}, _ids("01 03 07")),
    ("in-two", {"genre": {"$in": ["sf", "fantasy"]}}, _ids("01 02 03 07")),
    ("in-bool-and-string", {"flag": {"$in": [True, "1"]}}, _ids("01 04")),
    ("in-int", {"flag": {"$in": [1]}}, _ids("02")),
    # $like / $ilike
    ("like-prefix", {"genre": {"$like": "s%"}}, _ids("01 03 07 09")),
    ("ilike-prefix", {"genre": {"$ilike": "s%"}}, _ids("01 03 04 07 09 10")),
    ("like-underscore", {"genre": {"$like": "_f"}}, _ids("01 03 07 10")),
    ("ilike-exact", {"genre": {"$ilike": "SF"}}, _ids("01 03 04 07 10")),
    ("like-escaped-percent", {"title": {"$like": "100\\%%"}}, _ids("09")),
    ("like-escaped-underscore", {"title": {"$like": "%\\_%"}}, _ids("09")),
    ("like-any-nonempty", {"title": {"$like": "%_%"}}, _ids("09 10")),
    ("ilike-ascii-only-folding", {"title": {"$ilike": "émile"}}, _ids("")),
    ("ilike-ascii-folding", {"title": {"$ilike": "ÉMILE"}}, _ids("10")),
    ("like-escaped-backslash", {"path": {"$like": "C:\\\\docs"}}, _ids("09")),
    ("like-escape-any-char", {"path": {"$like": "C:\\docs"}}, _ids("")),
    ("like-underscore-unicode", {"note": {"$like": "na_ve caf_"}}, _ids("09")),
    ("like-only-strings", {"tags": {"$like": "%"}}, _ids("04")),
    ("like-not", {"genre": {"$not": {"$like": "s%"}}}, _but("01 03 07 09")),
    # $contains
    ("contains-one", {"tags": {"$contains": "ai"}}, _ids("01 07")),
    ("contains-all", {"tags": {"$contains": ["ai", "space"]}}, _ids("01")),
    ("contains-case", {"tags": {"$contains": "AI"}}, _ids("12")),
    ("contains-null", {"tags": {"$contains": None}}, _ids("07")),
    ("contains-one-not-true", {"tags": {"$contains": 1}}, _ids("07")),
    ("contains-true", {"tags": {"$contains": True}}, _ids("07")),
    ("contains-float", {"tags": {"$contains": 1.0}}, _ids("07")),
    ("contains-needs-array", {"genre": {"$contains": "sf"}}, _ids("08")),
    ("contains-nested-key", {"obj.b": {"$contains": 2}}, _ids("10")),
    # whole arrays and objects
    ("eq-empty-array", {"tags": {"$eq": []}}, _ids("03")),
    ("eq-array", {"tags": {"$eq": ["ai", "space"]}}, _ids("01")),
    ("eq-array-order-matters", {"tags": {"$eq": ["space", "ai"]}}, _ids("")),
    ("ne-array", {"tags": {"$ne": ["ai", "space"]}}, _but("01")),
    ("eq-object-exact", {"author": {"$eq": {"name": "Bob"}}}, _ids("02")),
    ("eq-object-not-superset", {"author": {"$eq": {"name": "Ada"}}}, _ids("")),
    ("eq-object-small", {"obj": {"$eq": {"a": 1}}}, _ids("12")),
    ("eq-object-nested-array", {"obj": {"$eq": {"b": [1, 2.0], "a": 1.0}}}, _ids("10")),
    ("eq-array-value", {"genre": {"$eq": ["sf"]}}, _ids("08")),
    # dotted keys
    ("dotted-eq", {"author.name": "Ada"}, _ids("01")),
    ("dotted-ilike", {"author.name": {"$ilike": "ada"}}, _ids("01 07")),
    ("dotted-exists", {"author.name": {"$exists": True}}, _ids("01 02 07 09")),
    ("dotted-deep", {"author.name.first": "Ada"}, _ids("09")),
    ("dotted-range", {"author.born": {"$lt": 1900}}, _ids("01")),
    ("plain-author", {"author": "Ada"}, _ids("05")),
    ("dotted-not-literal-dot-key", {"a.b": 2}, _ids("11")),
    ("literal-dot-key-unreachable", {"a.b": 1}, _ids("")),
    ("dotted-ne", {"author.name": {"$ne": "Ada"}}, _but("01")),
    # logical operators
    ("or", {"$or": [{"genre": "fantasy"}, {"year": {"$lt": 0}}]}, _ids("02 10")),
    ("and", {"$and": [{"genre": "sf"}, {"year": {"$gte": 2015}}]}, _ids("01")),
    ("two-keys-and", {"genre": "sf", "year": 2020}, _ids("01")),
    ("not-eq", {"$not": {"genre": "sf"}}, _but("01 03 07")),
    ("not-range", {"$not": {"year": {"$gt": 2000}}}, _but("01 04 07 12")),
    ("field-not-range", {"year": {"$not": {"$gt": 2000}}}, _but("01 04 07 12")),
    (
        "not-or",
        {"$not": {"$or": [{"year": {"$exists": False}}, {"year": None}]}},
        _but("05 06 09 11"),
    ),
    ("not-not", {"$not": {"$not": {"genre": "sf"}}}, _ids("01 03 07")),
    (
        "or-with-column",
        {"$or": [{"@document_id": "doc-a"}, {"tags": {"$contains": "AI"}}]},
        _ids("01 02 12"),
    ),
    (
        "and-or-mix",
        {"genre": {"$in": ["sf"]}, "$or": [{"year": 2010}, {"year": "2020"}]},
        _ids("03 07"),
    ),
    ("or-single", {"$or": [{"genre": "fantasy"}]}, _ids("02")),
    (
        "and-of-not",
        {"$and": [{"$not": {"genre": "sf"}}, {"$not": {"genre": None}}]},
        _but("01 03 05 07"),
    ),
    # columns
    ("col-eq", {"@document_id": "doc-b"}, _ids("03 04")),
    ("col-in", {"@document_id": {"$in": ["doc-a", "doc-c"]}}, _ids("01 02 05 06")),
    ("col-nin", {"@document_id": {"$nin": ["doc-a", "doc-c"]}}, _but("01 02 05 06")),
    ("col-id-in", {"@id": {"$in": ["r01", "r12", "nope"]}}, _ids("01 12")),
    ("col-int-gte", {"@chunk_index": {"$gte": 1}}, _ids("02 04 06 08 10 12")),
    ("col-int-gt-fraction", {"@chunk_index": {"$gt": 1.5}}, _ids("12")),
    ("col-int-eq-float", {"@chunk_index": 2.0}, _ids("12")),
    ("col-int-eq-fraction", {"@chunk_index": 0.5}, _ids("")),
    ("col-int-between", {"@chunk_index": {"$between": [1, 2]}}, _ids("02 04 06 08 10 12")),
    ("col-int-huge", {"@chunk_index": {"$lt": 10**30}}, ALL_IDS),
    ("col-int-in-mixed", {"@chunk_index": {"$in": [2, 10**30, 0.5]}}, _ids("12")),
    ("col-int-not-in", {"@chunk_index": {"$not": {"$in": [0]}}}, _ids("02 04 06 08 10 12")),
    ("col-null", {"@content": None}, _ids("03")),
    ("col-not-null", {"@content": {"$ne": None}}, _but("03")),
    ("col-empty-string", {"@content": ""}, _ids("05")),
    ("col-ne-includes-null", {"@content": {"$ne": "x"}}, _but("07")),
    ("col-in-with-null", {"@content": {"$in": ["x", None]}}, _ids("03 07")),
    ("col-nin-with-null", {"@content": {"$nin": ["x", None]}}, _but("03 07")),
    ("col-in-only-null", {"@content": {"$in": [None]}}, _ids("03")),
    ("col-like", {"@content": {"$like": "%100\\%%"}}, _ids("04")),
    ("col-ilike", {"@content": {"$ilike": "hello%"}}, _ids("01 02")),
    ("col-like-case", {"@content": {"$like": "hello%"}}, _ids("01")),
    ("col-text-gt-codepoint", {"@content": {"$gt": "Z"}}, _ids("01 06 07 08 09 10 11 12")),
    ("col-ts-gte-date", {"@created_at": {"$gte": "2024-02-01"}}, _ids("03 04 07 08 09 10 11 12")),
    ("col-ts-lt-offset", {"@created_at": {"$lt": "2024-01-01T01:00:00+01:00"}}, _ids("05")),
    (
        "col-ts-between",
        {"@created_at": {"$between": ["2024-01-01", "2024-01-02T00:00:00Z"]}},
        _ids("01 02"),
    ),
    ("col-ts-null", {"@created_at": None}, _ids("06")),
    ("col-ts-eq-z", {"@created_at": "2024-02-15T12:00:00Z"}, _ids("04")),
    ("col-ts-eq-naive-is-utc", {"@created_at": "2024-02-15 12:00"}, _ids("04")),
    ("col-ts-fraction", {"@created_at": {"$gt": "2023-12-31T23:59:58.999999999Z"}}, _but("06")),
    ("col-and-meta", {"@document_id": "doc-a", "genre": "sf"}, _ids("01")),
]


# ---------------------------------------------------------------------------------------------
# The reference evaluator.

_MISSING: Any = object()


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise TypeError(type(value))


def _dec(number: object) -> Decimal:
    # A JSON number is the decimal value of its text; a Python float's JSON text is its repr.
    return Decimal(repr(number)) if isinstance(number, float) else Decimal(number)  # type: ignore[arg-type]


def json_equal(a: object, b: object) -> bool:
    kind = _json_type(a)
    if kind != _json_type(b):
        return False
    if kind == "number":
        return _dec(a) == _dec(b)
    if kind == "array":
        assert isinstance(a, list | tuple)
        assert isinstance(b, list | tuple)
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if kind == "object":
        assert isinstance(a, dict)
        assert isinstance(b, dict)
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return a == b


def _compare(symbol: str, a: Any, b: Any) -> bool:
    if symbol == "<":
        return bool(a < b)
    if symbol == "<=":
        return bool(a <= b)
    if symbol == ">":
        return bool(a > b)
    return bool(a >= b)


_RANGE = {"$lt": "<", "$lte": "<=", "$gt": ">", "$gte": ">="}
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def like(text: str, pattern: str, *, fold: bool) -> bool:
    """SQL LIKE with '\\' as the escape character; ``fold`` lowers ASCII letters only."""
    if fold:
        text = text.translate(_ASCII_LOWER)
        pattern = pattern.translate(_ASCII_LOWER)
    regex: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 1
            regex.append(re.escape(pattern[i]))
        elif char == "%":
            regex.append(".*")
        elif char == "_":
            regex.append(".")
        else:
            regex.append(re.escape(char))
        i += 1
    return re.fullmatch("".join(regex), text, re.DOTALL) is not None


def _lookup(metadata: object, key: str) -> Any:
    current = metadata
    for segment in key.split("."):
        if not isinstance(current, dict) or segment not in current:
            return _MISSING
        current = current[segment]
    return current


def _meta_op(actual: Any, op: str, operand: Any) -> bool:
    present = actual is not _MISSING
    if op == "$eq":
        return present and json_equal(actual, operand)
    if op == "$ne":
        return not _meta_op(actual, "$eq", operand)
    if op in _RANGE or op == "$between":
        bounds = (
            [(">=", operand[0]), ("<=", operand[1])]
            if op == "$between"
            else [(_RANGE[op], operand)]
        )
        for symbol, bound in bounds:
            if not present or _json_type(actual) != _json_type(bound):
                return False
            if _json_type(bound) == "number":
                if not _compare(symbol, _dec(actual), _dec(bound)):
                    return False
            elif not _compare(symbol, actual, bound):
                return False
        return True
    if op == "$in":
        return present and any(json_equal(actual, item) for item in operand)
    if op == "$nin":
        return not _meta_op(actual, "$in", operand)
    if op in ("$like", "$ilike"):
        return isinstance(actual, str) and like(actual, operand, fold=op == "$ilike")
    if op == "$exists":
        return present is bool(operand)
    if op == "$contains":
        needles = operand if isinstance(operand, list | tuple) else [operand]
        return isinstance(actual, list) and all(
            any(json_equal(element, needle) for element in actual) for needle in needles
        )
    raise ValueError(op)


def parse_timestamp(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        text = str(value).replace("Z", "+00:00").replace("z", "+00:00")
        match = re.fullmatch(r"(.*[T ]\d\d:\d\d:\d\d)\.(\d+)(.*)", text)
        if match:  # fromisoformat of 3.10 wants 3 or 6 digits; pgvs truncates to microseconds
            text = f"{match.group(1)}.{match.group(2)[:6].ljust(6, '0')}{match.group(3)}"
        parsed = dt.datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _column_value(kind: str, value: Any) -> Any:
    if kind == "integer" or kind == "float":
        return _dec(value)
    if kind == "timestamptz":
        return parse_timestamp(value)
    if kind == "uuid":
        return uuid.UUID(str(value))
    return value


def _column_op(kind: str, actual: Any, op: str, operand: Any) -> bool:
    if kind == "integer" and actual is not None:
        actual = Decimal(actual)
    if kind == "uuid" and actual is not None:
        actual = uuid.UUID(str(actual))
    if op == "$eq":
        if operand is None:
            return actual is None
        return actual is not None and actual == _column_value(kind, operand)
    if op == "$ne":
        return not _column_op(kind, actual, "$eq", operand)
    if op == "$in":
        return any(_column_op(kind, actual, "$eq", item) for item in operand)
    if op == "$nin":
        return not _column_op(kind, actual, "$in", operand)
    if actual is None:
        return False
    if op in _RANGE:
        return _compare(_RANGE[op], actual, _column_value(kind, operand))
    if op == "$between":
        low, high = (_column_value(kind, bound) for bound in operand)
        return bool(low <= actual <= high)
    if op in ("$like", "$ilike"):
        return like(actual, operand, fold=op == "$ilike")
    raise ValueError(op)


def _field(spec: Any, check: Callable[[str, Any], bool]) -> bool:
    if isinstance(spec, dict):
        return all(
            (not _field(operand, check)) if op == "$not" else check(op, operand)
            for op, operand in spec.items()
        )
    return check("$eq", spec)


def evaluate(
    document: Mapping[str, Any] | None,
    row: Mapping[str, Any],
    column_kinds: Mapping[str, str] = COLUMN_KINDS,
) -> bool:
    """Whether ``row`` matches ``document`` (assumed valid: compile it first)."""
    if not document:
        return True
    for key, spec in document.items():
        if key == "$and":
            ok = all(evaluate(sub, row, column_kinds) for sub in spec)
        elif key == "$or":
            ok = any(evaluate(sub, row, column_kinds) for sub in spec)
        elif key == "$not":
            ok = not evaluate(spec, row, column_kinds)
        elif key.startswith("@"):
            kind = column_kinds[key[1:]]
            actual = row[key[1:]]
            ok = _field(spec, partial(_column_op, kind, actual))
        else:
            actual = _lookup(row["metadata"], key)
            ok = _field(spec, partial(_meta_op, actual))
        if not ok:
            return False
    return True


def matching(
    document: Mapping[str, Any] | None,
    rows: Sequence[Mapping[str, Any]],
    column_kinds: Mapping[str, str] = COLUMN_KINDS,
) -> frozenset[str]:
    return frozenset(row["id"] for row in rows if evaluate(document, row, column_kinds))


# ---------------------------------------------------------------------------------------------
# Errors: (filter, path of the offending node, a fragment of the message).

_DEEP_NOT: dict[str, Any] = {"a": 1}
for _ in range(11):
    _DEEP_NOT = {"$not": _DEEP_NOT}

_DEEP_VALUE: Any = 1
for _ in range(17):
    _DEEP_VALUE = [_DEEP_VALUE]

ERROR_CASES: list[tuple[str, Any, str, str]] = [
    (
        "or-item-operand",
        {"$or": [{"a": 1}, {"year": {"$gt": [1]}}]},
        "$or[1].year.$gt",
        "number or a string",
    ),
    ("or-empty", {"$or": []}, "$or", "at least one"),
    ("and-empty", {"$and": []}, "$and", "at least one"),
    ("and-dict", {"$and": {"a": 1}}, "$and", "list of filter documents"),
    ("or-scalar", {"$or": "a"}, "$or", "list of filter documents"),
    ("or-item-empty", {"$or": [{"a": 1}, {}]}, "$or[1]", "empty filter document"),
    ("or-item-scalar", {"$or": [1]}, "$or[0]", "filter document"),
    ("not-list", {"$not": [{"a": 1}]}, "$not", "filter document"),
    ("not-empty", {"$not": {}}, "$not", "empty"),
    ("in-scalar", {"a": {"$in": 5}}, "a.$in", "list of values"),
    ("nin-dict", {"a": {"$nin": {"x": 1}}}, "a.$nin", "list of values"),
    ("in-nested-list", {"a": {"$in": [1, [2]]}}, "a.$in[1]", "string, number, boolean or null"),
    ("in-nul", {"a": {"$in": [1, "x\x00"]}}, "a.$in[1]", "NUL"),
    ("between-three", {"a": {"$between": [1, 2, 3]}}, "a.$between", "two values"),
    ("between-scalar", {"a": {"$between": 1}}, "a.$between", "two values"),
    ("between-mixed", {"a": {"$between": [1, "2"]}}, "a.$between", "two numbers or two strings"),
    ("between-null", {"a": {"$between": [None, 2]}}, "a.$between[0]", "number or a string"),
    ("unknown-field-op", {"a": {"$bogus": 1}}, "a.$bogus", "unknown operator"),
    ("unknown-logical-op", {"$bogus": 1}, "$bogus", "unknown operator"),
    ("field-op-at-top", {"$eq": 1}, "$eq", "applied to a field"),
    ("mixed-operator-doc", {"a": {"$gt": 1, "b": 2}}, "a", "operator document"),
    ("nested-object-value", {"a": {"b": 1}}, "a", "operator document"),
    ("empty-operator-doc", {"a": {}}, "a", "empty operator document"),
    ("bare-list", {"a": [1, 2]}, "a", "ambiguous"),
    ("nan", {"a": float("nan")}, "a", "not a JSON number"),
    ("inf", {"a": {"$gt": float("inf")}}, "a.$gt", "not a JSON number"),
    ("inf-in-list", {"a": {"$in": [1, float("-inf")]}}, "a.$in[1]", "not a JSON number"),
    ("set", {"a": {1, 2}}, "a", "set is not a JSON value"),
    ("bytes", {"a": b"x"}, "a", "bytes is not a JSON value"),
    ("object-value-bad", {"a": {"$eq": {"x": {1}}}}, "a.$eq.x", "set is not a JSON value"),
    ("object-value-key", {"a": {"$eq": {1: 2}}}, "a.$eq", "keys must be strings"),
    ("nul-value", {"a": "x\x00y"}, "a", "NUL"),
    ("surrogate-value", {"a": "\ud800"}, "a", "surrogate"),
    ("huge-int", {"a": 10**1001}, "a", "1000 digits"),
    ("like-number", {"a": {"$like": 5}}, "a.$like", "string pattern"),
    ("like-trailing-escape", {"a": {"$like": "abc\\"}}, "a.$like", "escape"),
    ("ilike-trailing-escape", {"a": {"$ilike": "a\\\\\\"}}, "a.$ilike", "escape"),
    ("exists-int", {"a": {"$exists": 1}}, "a.$exists", "true or false"),
    ("contains-empty", {"a": {"$contains": []}}, "a.$contains", "at least one"),
    ("contains-nested", {"a": {"$contains": [[1]]}}, "a.$contains[0]", "string, number"),
    ("contains-object", {"a": {"$contains": {"x": 1}}}, "a.$contains", "string, number"),
    ("field-not-scalar", {"a": {"$not": 5}}, "a.$not", "operator document"),
    ("field-not-bad-op", {"a": {"$not": {"$gt": "x", "$huh": 1}}}, "a.$not.$huh", "unknown"),
    ("gt-bool", {"a": {"$gt": True}}, "a.$gt", "number or a string"),
    ("gt-null", {"a": {"$gt": None}}, "a.$gt", "number or a string"),
    ("gt-list", {"a": {"$lte": [1]}}, "a.$lte", "number or a string"),
    ("value-too-deep", {"a": {"$eq": _DEEP_VALUE}}, "a.$eq" + "[0]" * 16, "deeper than 16"),
    ("logic-too-deep", _DEEP_NOT, ".".join(["$not"] * 11), "deeper than 10"),
    (
        "field-not-too-deep",
        {
            "$not": {
                "$not": {
                    "$not": {
                        "$not": {
                            "$not": {
                                "$not": {
                                    "$not": {
                                        "$not": {"$not": {"$not": {"a": {"$not": {"$eq": 1}}}}}
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
        ".".join(["$not"] * 10) + ".a.$not",
        "deeper than 10",
    ),
    (
        "too-many-conditions",
        {"$or": [{"a": i} for i in range(257)]},
        "$or[256].a",
        "256 conditions",
    ),
    ("too-many-in-items", {"a": {"$in": list(range(1001))}}, "a.$in", "1000 items"),
    # keys
    ("key-quote", {"a'b": 1}, '["a\'b"]', "invalid metadata key"),
    ("key-space", {"a b": 1}, "['a b']", "invalid metadata key"),
    ("key-empty", {"": 1}, "['']", "empty segment"),
    ("key-empty-segment", {"a..b": 1}, "a..b", "empty segment"),
    ("key-trailing-dot", {"a.": 1}, "a.", "empty segment"),
    ("key-too-long", {"k" * 65: 1}, "k" * 65, "longer than 64"),
    ("key-too-deep", {".".join("abcdefghi"): 1}, "a.b.c.d.e.f.g.h.i", "more than 8"),
    ("key-emoji", {"😀": 1}, "['😀']", "U+1F600"),
    ("key-not-string", {1: 2}, "", "keys must be strings"),
    ("key-nul", {"a\x00": 1}, "['a\\x00']", "invalid metadata key"),
    ("key-in-or", {"$or": [{"ok": 1}, {"bad key": 1}]}, "$or[1]['bad key']", "invalid"),
    ("key-dollar-inside", {"a.$gt": 1}, "a.$gt", "invalid metadata key"),
    ("key-at-inside", {"a.@b": 1}, "a.@b", "invalid metadata key"),
    ("top-not-dict", ["a"], "", "must be a dict"),
    # columns
    ("col-unknown", {"@nope": 1}, "@nope", "unknown column"),
    ("col-dotted", {"@document_id.x": 1}, "@document_id.x", "unknown column"),
    ("col-int-string", {"@chunk_index": "1"}, "@chunk_index", "compares with numbers"),
    ("col-int-bool", {"@chunk_index": True}, "@chunk_index", "compares with numbers"),
    (
        "col-int-nan",
        {"@chunk_index": {"$gt": float("nan")}},
        "@chunk_index.$gt",
        "not a JSON number",
    ),
    ("col-text-number", {"@content": 5}, "@content", "compares with strings"),
    (
        "col-text-in-number",
        {"@content": {"$in": ["a", 1]}},
        "@content.$in[1]",
        "compares with strings",
    ),
    ("col-text-in-scalar", {"@content": {"$in": "a"}}, "@content.$in", "list of values"),
    ("col-exists", {"@content": {"$exists": True}}, "@content.$exists", "metadata fields"),
    ("col-contains", {"@content": {"$contains": "x"}}, "@content.$contains", "metadata fields"),
    ("col-like-int", {"@chunk_index": {"$like": "1%"}}, "@chunk_index.$like", "text columns"),
    ("col-like-trailing-escape", {"@content": {"$like": "\\"}}, "@content.$like", "escape"),
    ("col-ts-word", {"@created_at": {"$gt": "yesterday"}}, "@created_at.$gt", "ISO-8601"),
    ("col-ts-invalid-date", {"@created_at": {"$gt": "2024-02-30"}}, "@created_at.$gt", "invalid"),
    ("col-ts-bad-offset", {"@created_at": "2024-02-01T00:00+25:00"}, "@created_at", "invalid"),
    ("col-ts-number", {"@created_at": 1700000000}, "@created_at", "ISO-8601"),
    (
        "col-between-one",
        {"@created_at": {"$between": ["2024-01-01"]}},
        "@created_at.$between",
        "two values",
    ),
    (
        "col-between-null",
        {"@chunk_index": {"$between": [None, 1]}},
        "@chunk_index.$between[0]",
        "null",
    ),
    ("col-gt-null", {"@content": {"$gt": None}}, "@content.$gt", "null"),
    ("col-not-scalar", {"@content": {"$not": "x"}}, "@content.$not", "operator document"),
]


# ---------------------------------------------------------------------------------------------
# Injection corpus: payloads tried as values and as keys.

INJECTION_PAYLOADS: list[str] = [
    "'",
    "''",
    '"',
    "`",
    "\\",
    "\\'",
    "'\\",
    "--",
    "/*",
    "*/",
    ";",
    "; DROP TABLE t; --",
    "' OR '1'='1",
    "' OR 1=1 --",
    "') OR TRUE --",
    "1); DROP TABLE t; --",
    "$1",
    "$1::text",
    "$$",
    "$tag$ x $tag$",
    "E'\\x27'",
    "U&'\\0027'",
    "%",
    "_",
    "\\%",
    "a\x00b",
    "\x00",
    "\ud800",
    "\n",
    "\r\n\t",
    "\u202e",
    "é",
    "\uff2f\u2019\uff32",  # fullwidth O, right single quotation mark, fullwidth R
    "😀",
    "metadata",
    "metadata' IS NOT NULL OR 'a'='a",
    '{"a": 1}',
    "a'b\"c\\d",
    "x" * 10_000,
    "é" * 65,
    # llama-index #22475 (metadata key interpolated into `metadata_->>'{key}'`)
    "author' = 'alice' OR '1'='1' --",
    # llama-index CVE-2025-1793 family: a quote breaking out of a JSON-path literal
    "x' UNION SELECT 1, 2, 3 --",
    "$.a') OR 1=1 --",
    # langchain.js #4396 / #5381: key interpolated into `metadata->'{key}' ?| array[...]`
    "tags' ?| array['a']) OR TRUE OR ('a",
    "a'->>'b') IS NULL OR ('1'='1",
]


# ---------------------------------------------------------------------------------------------
# Hypothesis strategies: random documents and random (valid) filters.

META_KEYS = ["a", "b", "s", "tags", "n", "n.x", "n.y", "n.x.z", "ü", "a.b"]
STORED_KEYS = ["a", "b", "s", "ü", "a.b"]
NESTED_KEYS = ["x", "y", "z"]
TIMES = [
    dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    dt.datetime(2024, 1, 1, 12, 30, tzinfo=dt.timezone.utc),
    dt.datetime(2024, 6, 1, 0, 0, 0, 1, tzinfo=dt.timezone.utc),
    dt.datetime(2023, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc),
]
TIME_STRINGS = [
    "2024-01-01",
    "2024-01-01T12:30:00Z",
    "2024-01-01T13:30:00+01:00",
    "2024-06-01T00:00:00.000001Z",
    "2023-12-31 23:59:59",
    "2024-03-15T00:00:00-05:00",
]
_ALPHABET = list("aAbz%_\\éÉ 1😀\"'\n")

numbers: st.SearchStrategy[int | float] = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([0.5, -0.5, 1.0, 2.0, 3.0, 1e20, 10**20, 2**53 + 1, 2.0**53, 1e-7, -0.0]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(),
)
strings: st.SearchStrategy[str] = st.one_of(
    st.text(alphabet=st.sampled_from(_ALPHABET), max_size=4), st.sampled_from(["a", "A", "b", ""])
)
scalars: st.SearchStrategy[Any] = st.one_of(st.none(), st.booleans(), numbers, strings)
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(NESTED_KEYS), inner, max_size=3),
    ),
    max_leaves=6,
)
metadata_docs: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries(
    {},
    optional={
        **dict.fromkeys(STORED_KEYS, json_values),
        "tags": st.one_of(st.lists(scalars, max_size=4), json_values),
        "n": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "x": st.one_of(json_values, st.fixed_dictionaries({}, optional={"z": scalars})),
                    "y": json_values,
                },
            ),
            json_values,
        ),
    },
)


@st.composite
def rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(0, 8))
    result = []
    for i in range(count):
        result.append(
            {
                "id": f"h{i}",
                "document_id": draw(
                    st.one_of(st.none(), st.sampled_from(["d1", "d2", "D1", "d%"]))
                ),
                "chunk_index": draw(st.one_of(st.none(), st.integers(-2, 5))),
                "content": draw(st.one_of(st.none(), strings)),
                "created_at": draw(st.one_of(st.none(), st.sampled_from(TIMES))),
                "metadata": draw(metadata_docs),
            }
        )
    return result


def _valid_pattern(pattern: str) -> bool:
    return (len(pattern) - len(pattern.rstrip("\\"))) % 2 == 0


like_patterns = st.one_of(
    st.text(alphabet=st.sampled_from(_ALPHABET), max_size=5),
    st.sampled_from(["%", "a%", "%a", "_"]),
).filter(_valid_pattern)


def _meta_operand(op: str) -> st.SearchStrategy[Any]:
    if op in ("$eq", "$ne"):
        return st.one_of(scalars, json_values)
    if op in ("$lt", "$lte", "$gt", "$gte"):
        return st.one_of(numbers, strings)
    if op == "$between":
        return st.one_of(
            st.lists(numbers, min_size=2, max_size=2), st.lists(strings, min_size=2, max_size=2)
        )
    if op in ("$in", "$nin"):
        return st.lists(scalars, max_size=4)
    if op in ("$like", "$ilike"):
        return like_patterns
    if op == "$exists":
        return st.booleans()
    if op == "$contains":
        return st.one_of(scalars, st.lists(scalars, min_size=1, max_size=3))
    raise ValueError(op)


_META_OPS = [
    "$eq",
    "$ne",
    "$lt",
    "$lte",
    "$gt",
    "$gte",
    "$between",
    "$in",
    "$nin",
    "$like",
    "$ilike",
    "$exists",
    "$contains",
]


@st.composite
def operator_docs(
    draw: st.DrawFn, operand: Callable[[str], st.SearchStrategy[Any]], ops: list[str]
) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(ops), min_size=1, max_size=2, unique=True))
    doc = {op: draw(operand(op)) for op in chosen}
    if draw(st.integers(0, 5)) == 0:
        return {"$not": doc}
    return doc


@st.composite
def metadata_conditions(draw: st.DrawFn) -> dict[str, Any]:
    key = draw(st.sampled_from(META_KEYS))
    spec = draw(scalars) if draw(st.booleans()) else draw(operator_docs(_meta_operand, _META_OPS))
    return {key: spec}


_COLUMN_TEXT = st.one_of(strings, st.sampled_from(["d1", "d2", "D1", "d%", "h1", "h3"]))
_COLUMN_INT = st.one_of(st.integers(-3, 6), st.sampled_from([1.5, 2.0, -0.5, 1e20, 10**30]))
_COLUMN_TS = st.sampled_from(TIME_STRINGS)


def _column_operand(kind: str) -> Callable[[str], st.SearchStrategy[Any]]:
    base = {"text": _COLUMN_TEXT, "integer": _COLUMN_INT, "timestamptz": _COLUMN_TS}[kind]

    def operand(op: str) -> st.SearchStrategy[Any]:
        if op in ("$eq", "$ne"):
            return st.one_of(st.none(), base)
        if op in ("$in", "$nin"):
            return st.lists(st.one_of(st.none(), base), max_size=4)
        if op == "$between":
            return st.lists(base, min_size=2, max_size=2)
        if op in ("$like", "$ilike"):
            return like_patterns
        return base

    return operand


@st.composite
def column_conditions(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from(sorted(COLUMN_KINDS)))
    kind = COLUMN_KINDS[name]
    ops = ["$eq", "$ne", "$lt", "$lte", "$gt", "$gte", "$between", "$in", "$nin"]
    if kind == "text":
        ops += ["$like", "$ilike"]
    return {"@" + name: draw(operator_docs(_column_operand(kind), ops))}


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    if a.keys() & b.keys():
        return {"$and": [a, b]}
    return {**a, **b}


filters: st.SearchStrategy[dict[str, Any]] = st.recursive(
    st.one_of(metadata_conditions(), metadata_conditions(), column_conditions()),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda docs: {"$and": docs}),
        st.lists(inner, min_size=1, max_size=3).map(lambda docs: {"$or": docs}),
        inner.map(lambda doc: {"$not": doc}),
        st.tuples(inner, inner).map(lambda pair: _merge(*pair)),
    ),
    max_leaves=6,
)
