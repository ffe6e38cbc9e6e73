"""Compile filter documents into parameterized SQL.

A *filter document* is a dict, usually written by a program or an LLM tool call, so every key,
operator and value in it is untrusted input. :func:`compile_filter` turns one into a boolean SQL
expression with ``$n`` placeholders plus the values to bind to them. It does no I/O and imports
no driver. docs/filters.md is the user documentation; this docstring is the summary.

Documents::

    {"year": 2020}                                  metadata key equals a value
    {"year": {"$gte": 2000, "$lt": 2010}}           several operators on one field: AND
    {"genre": "sf", "year": 2020}                   several keys: AND
    {"author.name": "Ada"}                          dotted key: walk into nested objects
    {"@document_id": "doc-1"}                       '@' addresses a real column, not metadata
    {"$or": [{"a": 1}, {"$not": {"b": 2}}]}         logical operators

Field operators: ``$eq $ne $lt $lte $gt $gte $in $nin $between $like $ilike $exists $contains``
and ``$not`` (of an operator document); logical operators: ``$and $or`` (a non-empty list of
documents) and ``$not`` (one document).

Semantics (the reference evaluator in tests/filter_cases.py implements exactly these):

* **Null is a value.** ``{"k": None}`` matches a key that is present and holds JSON ``null``; a
  missing key does not match it (test that with ``$exists``). For a column, ``None`` matches SQL
  ``NULL``.
* **Negations are complements.** ``$ne`` is ``$not`` of ``$eq``, ``$nin`` is ``$not`` of
  ``$in``, and ``$not`` matches exactly the rows its operand does not match. So a missing key, a
  JSON null and a value of another type all match ``$ne``/``$nin``/``$not``.
  ``$exists: false`` matches a missing key only (a key holding ``null`` exists).
* **Types never mix.** Numbers compare numerically (as the decimal values of their JSON text),
  strings in Unicode code-point order (``COLLATE "C"``, whatever the database's collation),
  booleans only equal booleans. A comparison with a stored value of another JSON type is false,
  never an error. Range operators take a number or a string. ISO-8601 dates stored as strings
  therefore compare as strings: keep one format and one UTC offset.
* **No array magic.** Equality is exact (``{"tags": {"$eq": ["a"]}}`` needs that whole array);
  ``$contains`` tests membership. A dotted path walks JSON objects only, never into arrays.
* **Columns are typed.** ``@name`` compares with the column's SQL type; a value of the wrong type
  for the column is a :class:`~pgvs.errors.FilterError` when compiling.

SQL shapes, chosen so indexes can serve them:

* equality, ``$in`` of scalars and ``$contains`` compile to ``metadata @> $n::jsonb`` (``$in``
  to ``metadata @> ANY($n::jsonb[])``, one parameter whatever the list length), which a GIN
  ``jsonb_path_ops`` index serves;
* number ranges compile to a jsonb-to-jsonb comparison (it cannot raise), guarded by
  ``jsonb_typeof``: ``jsonb_typeof((metadata -> 'k')) = 'number' AND (metadata -> 'k') > $n::jsonb``;
  a B-tree index on ``((metadata -> 'k'))`` serves it. String ranges and ``$like`` compare
  ``(metadata ->> 'k') COLLATE "C"``; a B-tree index on ``((metadata ->> 'k') COLLATE "C")``
  serves them (``$like`` with a literal prefix too);
* metadata keys appear in SQL as string literals, so an expression index matches even in a
  generic plan of a prepared statement. They are validated first (:func:`parse_key`: at most
  :data:`MAX_KEY_SEGMENTS` dotted segments of 1 to :data:`MAX_SEGMENT_LENGTH` Unicode letters,
  marks, digits, ``_`` or ``-``, so no quote, backslash or NUL can occur) and then quoted by the
  one literal-quoting helper, :func:`pgvs._sql.quote_literal`. Values are always bound parameters.

Every compiled expression is TRUE when a row matches and FALSE or NULL when it does not, and
negations are written ``(expr) IS NOT TRUE``, so SQL's three-valued logic never leaks into the
filter language.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from json.encoder import encode_basestring_ascii as _json_string
from typing import Any, Final, Literal, TypeAlias

from ._sql import quote_literal
from .errors import FilterError

__all__ = [
    "COLUMN_PREFIX",
    "FIELD_OPERATORS",
    "LOGICAL_OPERATORS",
    "MAX_CONDITIONS",
    "MAX_IN_ITEMS",
    "MAX_KEY_SEGMENTS",
    "MAX_LOGICAL_DEPTH",
    "MAX_SEGMENT_LENGTH",
    "MAX_VALUE_DEPTH",
    "ColumnKind",
    "CompiledFilter",
    "FilterColumn",
    "FilterTarget",
    "compile_filter",
    "parse_key",
]

#: A key starting with this marker addresses a real column (``{"@document_id": "d1"}``).
COLUMN_PREFIX: Final = "@"
#: Segments in a dotted metadata key (``"a.b.c"`` has 3).
MAX_KEY_SEGMENTS: Final = 8
#: Characters in one segment of a metadata key.
MAX_SEGMENT_LENGTH: Final = 64
#: Nesting of ``$and`` / ``$or`` / ``$not`` (a field-level ``$not`` counts too).
MAX_LOGICAL_DEPTH: Final = 10
#: Conditions (operators applied to a field) in one filter document.
MAX_CONDITIONS: Final = 256
#: Items in one ``$in`` / ``$nin`` / ``$contains`` list.
MAX_IN_ITEMS: Final = 1000
#: Nesting of arrays and objects inside one operand value.
MAX_VALUE_DEPTH: Final = 16
# Integers beyond ~1000 decimal digits are refused (Python will not even print them by default).
_MAX_INT_BITS: Final = 3321
_INT8_MIN: Final = -(2**63)
_INT8_MAX: Final = 2**63 - 1

LOGICAL_OPERATORS: Final = frozenset({"$and", "$or", "$not"})
FIELD_OPERATORS: Final = frozenset(
    {
        "$eq",
        "$ne",
        "$lt",
        "$lte",
        "$gt",
        "$gte",
        "$in",
        "$nin",
        "$between",
        "$like",
        "$ilike",
        "$exists",
        "$contains",
        "$not",
    }
)
_RANGE_SQL: Final = {"$lt": "<", "$lte": "<=", "$gt": ">", "$gte": ">="}

ColumnKind = Literal["text", "integer", "float", "timestamptz", "uuid", "boolean"]
_COLUMN_KINDS: Final = frozenset({"text", "integer", "float", "timestamptz", "uuid", "boolean"})
# Column kinds with an order (ranges, $between); uuid and boolean columns take equality only.
_ORDERED_KINDS: Final = frozenset({"text", "integer", "float", "timestamptz"})


@dataclass(frozen=True)
class FilterColumn:
    """A real column a filter may address as ``@name``."""

    sql: str  # already-quoted column reference, e.g. '"document_id"' (from quote_ident)
    kind: ColumnKind

    def __post_init__(self) -> None:
        if self.kind not in _COLUMN_KINDS:
            raise ValueError(f"unknown column kind {self.kind!r}; expected one of {_COLUMN_KINDS}")


@dataclass(frozen=True)
class FilterTarget:
    """Where a filter looks: the jsonb metadata column and the real columns by logical name."""

    metadata_sql: str  # already-quoted jsonb column, e.g. '"metadata"'
    columns: Mapping[str, FilterColumn]


@dataclass(frozen=True)
class CompiledFilter:
    """A boolean SQL expression and the values of its placeholders."""

    sql: str  # "TRUE" for an empty or absent filter
    params: tuple[object, ...]  # values for $first_param, $first_param + 1, ...
    next_param: int  # the first parameter number not used


# ---------------------------------------------------------------------------------------------
# Paths of nodes, for error messages. Built lazily: a linked list of (parent, part) pairs that is
# only formatted when an error is raised.

_Path: TypeAlias = "tuple[_Path, str | int] | None"

_PATH_DISPLAY = re.compile(r"[A-Za-z0-9_.$@-]{1,80}")


def _format_path(path: _Path) -> str:
    parts: list[str | int] = []
    while path is not None:
        path, part = path
        parts.append(part)
    text = ""
    for part in reversed(parts):
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PATH_DISPLAY.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{part if len(part) <= 40 else part[:40] + '...'!r}]"
    return text


def _error(message: str, path: _Path, hint: str | None = None) -> FilterError:
    return FilterError(message, path=_format_path(path), hint=hint)


def _sorted(names: frozenset[str]) -> str:
    return ", ".join(sorted(names))


# ---------------------------------------------------------------------------------------------
# Keys


_ASCII_SEGMENT = re.compile(r"[A-Za-z0-9_-]{1,%d}" % MAX_SEGMENT_LENGTH)  # noqa: UP031
_KEY_HINT: Final = (
    "Metadata keys are dotted paths of letters, digits, '_' and '-' (e.g. \"author.name\"); "
    "a leading '@' addresses a column."
)


class _BadKey(ValueError):
    pass


def _segment_problem(segment: str) -> str | None:
    if _ASCII_SEGMENT.fullmatch(segment):
        return None
    if not segment:
        return "it has an empty segment"
    if len(segment) > MAX_SEGMENT_LENGTH:
        return f"a segment is longer than {MAX_SEGMENT_LENGTH} characters"
    for char in segment:
        if char not in "_-" and unicodedata.category(char)[0] not in "LMN":
            return (
                f"it contains {char!r} (U+{ord(char):04X}); a key segment may hold only letters, "
                "marks and digits of any script, '_' and '-'"
            )
    return None


@lru_cache(maxsize=1024)
def _parse_key(key: str) -> tuple[str, ...]:
    # Cached by the key alone; nothing a value could influence is kept. Invalid keys raise, and
    # lru_cache does not cache exceptions.
    if key.startswith((COLUMN_PREFIX, "$")):
        raise _BadKey(f"a metadata key may not start with {key[0]!r}")
    segments = tuple(key.split("."))
    if len(segments) > MAX_KEY_SEGMENTS:
        raise _BadKey(f"it has more than {MAX_KEY_SEGMENTS} dotted segments")
    for segment in segments:
        problem = _segment_problem(segment)
        if problem is not None:
            raise _BadKey(problem)
    return segments


def parse_key(key: str) -> tuple[str, ...]:
    """Split a metadata key into its dotted segments, or raise :class:`FilterError`.

    ``"author.name"`` gives ``("author", "name")``. A key has at most :data:`MAX_KEY_SEGMENTS`
    segments, each 1 to :data:`MAX_SEGMENT_LENGTH` characters that are Unicode letters, marks or
    digits (general categories L, M and N), ``_`` or ``-``.
    """
    return _key(key, (None, key))


def _key(key: str, path: _Path) -> tuple[str, ...]:
    if type(key) is not str:
        if not isinstance(key, str):
            raise _error(f"keys must be strings, got {_describe(key)}", path)
        key = str.__str__(key)  # a str subclass could override hashing or comparison
    try:
        return _parse_key(key)
    except _BadKey as exc:
        raise _error(f"invalid metadata key: {exc}", path, _KEY_HINT) from None


@dataclass(frozen=True)
class _KeySQL:
    """The SQL and JSON fragments of one validated key (built from the key alone)."""

    expr: str  # (metadata -> 'a' -> 'b')
    text: str  # (metadata -> 'a' ->> 'b')
    doc_head: str  # {"a":{"b":
    doc_tail: str  # }}


@lru_cache(maxsize=1024)
def _key_sql(metadata_sql: str, segments: tuple[str, ...]) -> _KeySQL:
    # Segments are validated, so no quote, backslash or NUL reaches quote_literal.
    literals = [quote_literal(segment) for segment in segments]
    head = "".join(f" -> {literal}" for literal in literals[:-1])
    return _KeySQL(
        expr=f"({metadata_sql}{head} -> {literals[-1]})",
        text=f"({metadata_sql}{head} ->> {literals[-1]})",
        doc_head="".join("{" + _json_string(segment) + ":" for segment in segments),
        doc_tail="}" * len(segments),
    )


# ---------------------------------------------------------------------------------------------
# Values

_Scalar: TypeAlias = "str | int | float | bool | None"
_Number: TypeAlias = "int | float"

_SURROGATE = re.compile("[\ud800-\udfff]")


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__}"


def _check_str(value: str, path: _Path) -> str:
    if "\x00" in value:
        raise _error("the string contains a NUL character, which PostgreSQL cannot store", path)
    if not value.isascii() and _SURROGATE.search(value):
        raise _error("the string contains a lone surrogate, which is not valid Unicode", path)
    return value


def _check_number(value: _Number, path: _Path) -> _Number:
    if type(value) is float:
        if not math.isfinite(value):
            raise _error(f"{value!r} is not a JSON number", path)
    elif value.bit_length() > _MAX_INT_BITS:  # type: ignore[union-attr]
        raise _error("the integer has more than 1000 digits", path)
    return value


def _check_scalar(value: object, path: _Path) -> _Scalar:
    """Validate a JSON scalar (string, number, boolean or null); subclasses become base types."""
    kind = type(value)
    if kind is str:
        return _check_str(value, path)  # type: ignore[arg-type]
    if kind is int or kind is float:
        return _check_number(value, path)  # type: ignore[arg-type]
    if value is None or kind is bool:
        return value  # type: ignore[return-value]
    if isinstance(value, str):
        return _check_str(str.__str__(value), path)
    if isinstance(value, int):
        return _check_number(int(value), path)
    if isinstance(value, float):
        return _check_number(float(value), path)
    if isinstance(value, list | tuple | Mapping):
        raise _error(f"expected a string, number, boolean or null, got {_describe(value)}", path)
    raise _error(f"{type(value).__name__} is not a JSON value", path)


def _check_json(value: object, path: _Path, depth: int = 0) -> Any:
    """Validate any JSON value; returns it with tuples as lists and subclasses as base types."""
    if isinstance(value, list | tuple):
        if depth >= MAX_VALUE_DEPTH:
            raise _error(f"the value is nested deeper than {MAX_VALUE_DEPTH} levels", path)
        return [_check_json(item, (path, i), depth + 1) for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        if depth >= MAX_VALUE_DEPTH:
            raise _error(f"the value is nested deeper than {MAX_VALUE_DEPTH} levels", path)
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _error(f"object keys must be strings, got {_describe(key)}", path)
            key = _check_str(str.__str__(key), (path, key))
            result[key] = _check_json(item, (path, key), depth + 1)
        return result
    return _check_scalar(value, path)


def _json_scalar(value: _Scalar) -> str:
    """JSON text of a checked scalar (what json.dumps gives, without its per-call overhead)."""
    kind = type(value)
    if kind is str:
        return _json_string(value)  # type: ignore[arg-type]
    if kind is int:
        return int.__repr__(value)
    if kind is float:
        return float.__repr__(value)
    if value is None:
        return "null"
    return "true" if value else "false"


def _list_operand(operand: object, path: _Path, op: str) -> list[Any] | tuple[Any, ...]:
    if type(operand) is not list and not isinstance(operand, list | tuple):
        raise _error(
            f"{op} takes a list of values, got {_describe(operand)}",
            path,
            f'Write {{"{op}": [value, ...]}}.',
        )
    if len(operand) > MAX_IN_ITEMS:
        raise _error(f"the {op} list has more than {MAX_IN_ITEMS} items", path)
    return operand


def _scalar_list(operand: object, path: _Path, op: str) -> list[_Scalar]:
    items = _list_operand(operand, path, op)
    return [_check_scalar(item, (path, i)) for i, item in enumerate(items)]


def _like_pattern(operand: object, path: _Path, op: str) -> str:
    if not isinstance(operand, str):
        raise _error(f"{op} takes a string pattern, got {_describe(operand)}", path)
    pattern = _check_str(str.__str__(operand), path)
    # PostgreSQL rejects a pattern that ends in an unpaired escape character: refuse it here.
    if (len(pattern) - len(pattern.rstrip("\\"))) % 2:
        raise _error(
            "the pattern ends with an unpaired escape character '\\'",
            path,
            "Write '\\\\' for a literal backslash.",
        )
    return pattern


def _range_value(operand: object, path: _Path, op: str) -> _Number | str:
    kind = type(operand)
    if kind is int or kind is float:
        return _check_number(operand, path)  # type: ignore[arg-type]
    if kind is str:
        return _check_str(operand, path)  # type: ignore[arg-type]
    if isinstance(operand, bool) or not isinstance(operand, int | float | str):
        raise _error(f"{op} takes a number or a string, got {_describe(operand)}", path)
    return _check_scalar(operand, path)  # type: ignore[return-value]


def _pair(operand: object, path: _Path) -> tuple[object, object]:
    if not isinstance(operand, list | tuple) or len(operand) != 2:
        got = f"{len(operand)} items" if isinstance(operand, list | tuple) else _describe(operand)
        raise _error(f"$between takes a list of two values [low, high], got {got}", path)
    return operand[0], operand[1]


def _bool_operand(operand: object, path: _Path, op: str) -> bool:
    if not isinstance(operand, bool):
        raise _error(f"{op} takes true or false, got {_describe(operand)}", path)
    return operand


_ISO_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?)?"
)


def _timestamp(value: object, path: _Path) -> _dt.datetime:
    """An aware UTC datetime from an ISO-8601 string or a datetime/date; no offset means UTC."""
    if isinstance(value, _dt.datetime):
        result = value
    elif isinstance(value, _dt.date):
        result = _dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        match = _ISO_TIMESTAMP.fullmatch(value)
        if match is None:
            raise _error(
                "expected an ISO-8601 timestamp such as '2024-05-01' or '2024-05-01T12:00:00Z', "
                f"got {value[:60]!r}",
                path,
            )
        year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
        tz: _dt.tzinfo | None = _dt.timezone.utc if zulu else None
        try:
            if sign:
                offset = _dt.timedelta(hours=int(off_h), minutes=int(off_m))
                tz = _dt.timezone(-offset if sign == "-" else offset)
            result = _dt.datetime(
                int(year),
                int(month),
                int(day),
                int(hour or 0),
                int(minute or 0),
                int(second or 0),
                int((fraction or "0")[:6].ljust(6, "0")),  # sub-microsecond digits truncated
                tzinfo=tz,
            )
        except ValueError as exc:
            raise _error(f"invalid timestamp {value[:60]!r}: {exc}", path) from None
    else:
        raise _error(f"expected an ISO-8601 timestamp string, got {_describe(value)}", path)
    if result.utcoffset() is None:
        return result.replace(tzinfo=_dt.timezone.utc)
    try:
        return result.astimezone(_dt.timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise _error("the timestamp is out of range", path) from None


# ---------------------------------------------------------------------------------------------
# The compiler


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"


def _or(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def _not(sql: str) -> str:
    # A compiled expression is TRUE when the row matches, FALSE or NULL when it does not. NOT
    # would keep a NULL as NULL (no match either way), so the complement is "IS NOT TRUE".
    if sql == "FALSE":
        return "TRUE"
    if sql == "TRUE":
        return "FALSE"
    return f"({sql} IS NOT TRUE)"


def _field_not_operand(operand: object, path: _Path) -> Mapping[Any, Any]:
    if not isinstance(operand, Mapping):
        raise _error(
            f"$not on a field takes an operator document, got {_describe(operand)}",
            path,
            'Write {"field": {"$not": {"$gt": 1}}}, or {"$not": {...}} around a whole document.',
        )
    return operand


_Items: TypeAlias = "list[tuple[str, object, _Path]]"


class _Compiler:
    __slots__ = ("columns", "conditions", "first", "meta", "params")

    def __init__(self, target: FilterTarget, first: int) -> None:
        self.meta = target.metadata_sql
        self.columns = target.columns
        self.first = first
        self.params: list[object] = []
        self.conditions = 0

    def bind(self, value: object, cast: str) -> str:
        params = self.params
        params.append(value)
        return f"${self.first + len(params) - 1}::{cast}"

    def count(self, path: _Path) -> None:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise _error(f"the filter has more than {MAX_CONDITIONS} conditions", path)

    def deeper(self, depth: int, path: _Path) -> int:
        if depth >= MAX_LOGICAL_DEPTH:
            raise _error(
                f"logical operators are nested deeper than {MAX_LOGICAL_DEPTH} levels", path
            )
        return depth + 1

    # -- documents and logical operators ------------------------------------------------------

    def document(self, doc: object, path: _Path, depth: int) -> str:
        if type(doc) is not dict and not isinstance(doc, Mapping):
            raise _error(f"expected a filter document (an object), got {_describe(doc)}", path)
        if not doc:
            raise _error("empty filter document", path)
        parts: list[str] = []
        for key, value in doc.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    raise _error(f"filter keys must be strings, got {_describe(key)}", path)
                key = str.__str__(key)
            child = (path, key)
            first = key[:1]
            if first == "$":
                parts.append(self.logical(key, value, child, depth))
            elif first == COLUMN_PREFIX:
                parts.append(self.column_field(key, value, child, depth))
            else:
                parts.append(self.metadata_field(key, value, child, depth))
        return _and(parts)

    def logical(self, op: str, operand: object, path: _Path, depth: int) -> str:
        if op not in LOGICAL_OPERATORS:
            if op in FIELD_OPERATORS:
                raise _error(
                    f"{op} must be applied to a field", path, f'Write {{"field": {{"{op}": ...}}}}.'
                )
            raise _error(
                f"unknown operator {op[:40]!r}; logical operators are {_sorted(LOGICAL_OPERATORS)}",
                path,
            )
        inner = self.deeper(depth, path)
        if op == "$not":
            return _not(self.document(operand, path, inner))
        if not isinstance(operand, list | tuple):
            raise _error(
                f"{op} takes a list of filter documents, got {_describe(operand)}",
                path,
                f'Write {{"{op}": [{{...}}, {{...}}]}}.',
            )
        if not operand:
            raise _error(f"{op} needs at least one filter document", path)
        parts = [self.document(item, (path, i), inner) for i, item in enumerate(operand)]
        return _and(parts) if op == "$and" else _or(parts)

    def operators(self, spec: object, path: _Path) -> _Items:
        """The (operator, operand, path) items of a field's value."""
        if type(spec) is dict or isinstance(spec, Mapping):
            if not spec:
                raise _error("empty operator document", path)
            items: _Items = []
            for op, operand in spec.items():
                if type(op) is not str or op[:1] != "$":
                    raise _error(
                        'an object value must be an operator document such as {"$gt": 1}',
                        path,
                        'Use a dotted key ("author.name") to reach into a nested object, '
                        'or {"$eq": {...}} to compare with a whole object.',
                    )
                if op not in FIELD_OPERATORS:
                    raise _error(
                        f"unknown operator {op[:40]!r}; field operators are "
                        f"{_sorted(FIELD_OPERATORS)}",
                        (path, op),
                    )
                items.append((op, operand, (path, op)))
            return items
        if isinstance(spec, list | tuple):
            raise _error(
                "a list value is ambiguous",
                path,
                'Use {"$in": [...]} (any of these values), {"$contains": [...]} (the array '
                'holds all of them) or {"$eq": [...]} (the array equals this list).',
            )
        return [("$eq", spec, path)]

    # -- metadata fields ----------------------------------------------------------------------

    def metadata_field(self, key: str, spec: object, path: _Path, depth: int) -> str:
        key_sql = _key_sql(self.meta, _key(key, path))
        kind = type(spec)
        if kind is str or kind is int or kind is float or kind is bool or spec is None:
            # The common case, {"key": scalar}, without the operator machinery.
            self.count(path)
            return f"({self.contains(key_sql, _json_scalar(_check_scalar(spec, path)))})"
        return self.metadata_ops(key_sql, self.operators(spec, path), depth)

    def metadata_ops(self, key: _KeySQL, items: _Items, depth: int) -> str:
        parts: list[str] = []
        numbers: list[tuple[str, _Number]] | None = None
        strings: list[tuple[str, str]] | None = None
        for op, operand, path in items:
            if op == "$not":
                inner = self.deeper(depth, path)
                spec = _field_not_operand(operand, path)
                parts.append(_not(self.metadata_ops(key, self.operators(spec, path), inner)))
                continue
            self.count(path)
            if op in _RANGE_SQL or op == "$between":
                # Ranges on one field share one type guard.
                if op == "$between":
                    low_op, high_op = _pair(operand, path)
                    low = _range_value(low_op, (path, 0), op)
                    high = _range_value(high_op, (path, 1), op)
                    if isinstance(low, str) != isinstance(high, str):
                        raise _error("$between bounds must be two numbers or two strings", path)
                    bounds: list[tuple[str, _Number | str]] = [(">=", low), ("<=", high)]
                else:
                    bounds = [(_RANGE_SQL[op], _range_value(operand, path, op))]
                for symbol, bound in bounds:
                    if isinstance(bound, str):
                        strings = strings or []
                        strings.append((symbol, bound))
                    else:
                        numbers = numbers or []
                        numbers.append((symbol, bound))
            else:
                parts.append(self.metadata_op(key, op, operand, path))
        if numbers:
            sql = f"(jsonb_typeof({key.expr}) = 'number'"
            for symbol, number in numbers:
                sql += f" AND {key.expr} {symbol} {self.bind(_json_scalar(number), 'jsonb')}"
            parts.append(sql + ")")
        if strings:
            sql = f"(jsonb_typeof({key.expr}) = 'string'"
            for symbol, text in strings:
                sql += f' AND {key.text} COLLATE "C" {symbol} {self.bind(text, "text")}'
            parts.append(sql + ")")
        return _and(parts)

    def contains(self, key: _KeySQL, value_json: str) -> str:
        param = self.bind(key.doc_head + value_json + key.doc_tail, "jsonb")
        return f"{self.meta} @> {param}"

    def metadata_op(self, key: _KeySQL, op: str, operand: object, path: _Path) -> str:
        if op == "$eq" or op == "$ne":
            if type(operand) is dict or isinstance(operand, list | tuple | Mapping):
                value_json = json.dumps(_check_json(operand, path))
                # Containment is necessary for equality and lets a GIN index narrow the rows;
                # the jsonb equality makes it exact (containment alone accepts a superset).
                sql = f"({self.contains(key, value_json)} AND {key.expr} = "
                sql += f"{self.bind(value_json, 'jsonb')})"
            else:
                sql = f"({self.contains(key, _json_scalar(_check_scalar(operand, path)))})"
            return sql if op == "$eq" else _not(sql)
        if op == "$in" or op == "$nin":
            items = _scalar_list(operand, path, op)
            if not items:
                sql = "FALSE"
            elif len(items) == 1:
                sql = f"({self.contains(key, _json_scalar(items[0]))})"
            else:
                docs = [key.doc_head + _json_scalar(item) + key.doc_tail for item in items]
                sql = f"({self.meta} @> ANY({self.bind(docs, 'jsonb[]')}))"
            return sql if op == "$in" else _not(sql)
        if op == "$contains":
            if isinstance(operand, list | tuple):
                needles = _scalar_list(operand, path, op)
                if not needles:
                    raise _error("$contains needs at least one value", path)
            else:
                needles = [_check_scalar(operand, path)]
            array = "[" + ",".join(_json_scalar(needle) for needle in needles) + "]"
            return f"({self.contains(key, array)})"
        if op == "$like" or op == "$ilike":
            pattern = self.bind(_like_pattern(operand, path, op), "text")
            like = "LIKE" if op == "$like" else "ILIKE"
            return (
                f"(jsonb_typeof({key.expr}) = 'string' AND {key.text} COLLATE \"C\" {like} "
                f"{pattern})"
            )
        if op == "$exists":
            present = _bool_operand(operand, path, op)
            return f"({key.expr} IS {'NOT ' if present else ''}NULL)"
        raise AssertionError(op)  # pragma: no cover - the operators are exhaustive

    # -- columns ------------------------------------------------------------------------------

    def column_field(self, key: str, spec: object, path: _Path, depth: int) -> str:
        column = self.columns.get(key[len(COLUMN_PREFIX) :])
        if column is None:
            known = ", ".join(COLUMN_PREFIX + name for name in sorted(self.columns)) or "none"
            raise _error(
                f"unknown column {key[:80]!r}; the filterable columns are {known}",
                path,
                "Metadata keys are written without the '@'.",
            )
        return self.column_ops(column, self.operators(spec, path), depth)

    def column_ops(self, column: FilterColumn, items: _Items, depth: int) -> str:
        parts: list[str] = []
        for op, operand, path in items:
            if op == "$not":
                inner = self.deeper(depth, path)
                spec = _field_not_operand(operand, path)
                parts.append(_not(self.column_ops(column, self.operators(spec, path), inner)))
            else:
                self.count(path)
                parts.append(self.column_op(column, op, operand, path))
        return _and(parts)

    def column_op(self, column: FilterColumn, op: str, operand: object, path: _Path) -> str:
        col = column.sql
        if op == "$eq" or op == "$ne":
            if operand is None:
                return f"({col} IS {'NOT ' if op == '$ne' else ''}NULL)"
            sql = f"({col} = {self.bind(*_column_value(column, operand, path))})"
            return sql if op == "$eq" else _not(sql)
        if op == "$in" or op == "$nin":
            array: list[object] = []
            casts: set[str] = set()
            has_null = False
            for i, item in enumerate(_list_operand(operand, path, op)):
                if item is None:
                    has_null = True
                else:
                    value, cast = _column_value(column, item, (path, i))
                    array.append(value)
                    casts.add(cast)
            parts: list[str] = []
            if array:
                if len(casts) == 1:
                    cast = casts.pop()
                else:  # int8 and numeric mixed on an integer column
                    cast = "numeric"
                    array = [_decimal(value) for value in array]
                parts.append(f"{col} = ANY({self.bind(array, cast + '[]')})")
            if has_null:
                parts.append(f"{col} IS NULL")
            if not parts:
                sql = "FALSE"
            elif len(parts) == 1:
                sql = f"({parts[0]})"
            else:
                sql = _or(parts)
            return sql if op == "$in" else _not(sql)
        if op == "$exists" or op == "$contains":
            raise _error(
                f"{op} applies to metadata fields, not to columns",
                path,
                'Compare a column with null instead: {"@content": {"$ne": null}}.'
                if op == "$exists"
                else None,
            )
        if op == "$like" or op == "$ilike":
            if column.kind != "text":
                raise _error(
                    f"{op} applies to text columns only, not to a {column.kind} column", path
                )
            pattern = self.bind(_like_pattern(operand, path, op), "text")
            return f'({col} COLLATE "C" {"LIKE" if op == "$like" else "ILIKE"} {pattern})'
        # $lt $lte $gt $gte $between
        if column.kind not in _ORDERED_KINDS:
            raise _error(f"{op} does not apply to a {column.kind} column", path)
        lhs = f'{col} COLLATE "C"' if column.kind == "text" else col
        if op == "$between":
            low, high = _pair(operand, path)
            low_sql = self.bind(*_column_value(column, low, (path, 0), op))
            high_sql = self.bind(*_column_value(column, high, (path, 1), op))
            return f"({lhs} >= {low_sql} AND {lhs} <= {high_sql})"
        return f"({lhs} {_RANGE_SQL[op]} {self.bind(*_column_value(column, operand, path, op))})"


def _decimal(value: object) -> object:
    return Decimal(float.__repr__(value)) if isinstance(value, float) else value


def _column_value(
    column: FilterColumn, value: object, path: _Path, op: str = ""
) -> tuple[object, str]:
    """(parameter value, SQL cast) for comparing ``column`` with ``value``."""
    kind = column.kind
    if kind == "text" and type(value) is str:
        return _check_str(value, path), "text"
    if value is None:
        raise _error(f"{op} does not compare with null", path)
    if kind == "text":
        if not isinstance(value, str):
            raise _error(f"this text column compares with strings, got {_describe(value)}", path)
        return _check_str(str.__str__(value), path), "text"
    if kind == "integer" or kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _error(f"this {kind} column compares with numbers, got {_describe(value)}", path)
        number = _check_scalar(value, path)
        if kind == "float":
            try:
                return float(number), "float8"  # type: ignore[arg-type]
            except OverflowError:
                raise _error("the number is out of range for a float column", path) from None
        if isinstance(number, float):
            if not number.is_integer():
                return Decimal(float.__repr__(number)), "numeric"
            number = int(number)
        if _INT8_MIN <= number <= _INT8_MAX:  # type: ignore[operator]
            return number, "int8"
        return number, "numeric"
    if kind == "timestamptz":
        return _timestamp(value, path), "timestamptz"
    if kind == "uuid":
        if isinstance(value, uuid.UUID):
            return str(value), "uuid"
        if not isinstance(value, str):
            raise _error(f"this uuid column compares with strings, got {_describe(value)}", path)
        try:
            return str(uuid.UUID(value)), "uuid"
        except ValueError:
            raise _error(f"{value[:60]!r} is not a valid UUID", path) from None
    if not isinstance(value, bool):  # boolean
        raise _error(f"this boolean column compares with true/false, got {_describe(value)}", path)
    return value, "bool"


def compile_filter(
    document: Mapping[str, Any] | None, target: FilterTarget, *, first_param: int = 1
) -> CompiledFilter:
    """Compile a filter document into a boolean SQL expression over ``target``.

    Placeholders are numbered from ``first_param``; ``params`` holds their values in order and
    ``next_param`` is the first number left free. ``None`` or ``{}`` compile to ``TRUE``. Raises
    :class:`~pgvs.errors.FilterError` (a ``ValueError``) naming the offending node's path, e.g.
    ``$or[1].year.$gt``.
    """
    if type(first_param) is not int or first_param < 1:
        raise ValueError(f"first_param must be a positive integer, got {first_param!r}")
    if document is None:
        return CompiledFilter("TRUE", (), first_param)
    if type(document) is not dict and not isinstance(document, Mapping):
        raise FilterError(f"a filter must be a dict (object), got {_describe(document)}")
    if not document:
        return CompiledFilter("TRUE", (), first_param)
    compiler = _Compiler(target, first_param)
    sql = compiler.document(document, None, 0)
    params = tuple(compiler.params)
    return CompiledFilter(sql, params, first_param + len(params))
