"""Partial vector indexes: a filter document as an index predicate, and the searches it serves.

Pure: no I/O. :mod:`pgvs.store._index_manager` builds, lists and repairs the indexes;
:mod:`pgvs.store._reads` asks :func:`route` which one a search may use.

**The predicate.** ``create_index(where=..., domain=...)`` takes a document of the filter language
(:mod:`pgvs.filters`) restricted to what PostgreSQL's planner can reason about: equality (a bare
value or ``$eq``), ``$in``, ranges (``$gt $gte $lt $lte $between``) on numbers, strings or typed
columns, ``$exists`` (``IS [NOT] NULL``), ``{"@column": null}``, ``$and``, and ``$or`` of
equalities on one key (an ``$in``). Anything else (``$ne``, ``$nin``, ``$not``, ``$like``,
``$ilike``, ``$contains``, an ``$or`` over different keys, an object or list as a value) is a
:class:`~pgvs.errors.FilterError` naming the operator. The document is reduced to *atoms* (one
constraint on one field), written back as a canonical document and compiled by the filter compiler
itself, so a predicate selects exactly the rows the same document selects in ``search()``. The
compiler's ``$n`` placeholders are then replaced by literals (an index predicate cannot take
parameters), each value through :func:`pgvs._sql.quote_literal`, the one audited quoting helper.

**Which searches use it.** A partial index serves a query only when the planner can prove that the
query's WHERE implies the index predicate. A bound ``metadata @> $4::jsonb`` proves nothing in a
generic plan (measured with ``PREPARE`` / ``EXPLAIN EXECUTE``: the full index is chosen; a custom
plan, where the value is a constant, does prove it). So :func:`route` decides the implication in
Python (conservatively: each predicate atom must follow from one atom of the search's filter or
tenant) and the search then carries the predicate's literal SQL as an extra, redundant condition:
the planner finds the predicate's clauses among the query's own, whatever the plan. When the
filter says no more than the predicate (``covered``), every row of the index matches: the search
needs neither the filter's parameters nor an iterative scan.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from ._sql import quote_literal
from .errors import FilterError, ValidationError
from .filters import COLUMN_PREFIX, FilterTarget, compile_filter, parse_key

__all__ = [
    "COMMENT_PREFIX",
    "PARTIAL_OPERATORS",
    "Atom",
    "Predicate",
    "Route",
    "compile_predicate",
    "filter_atoms",
    "implies",
    "parse_comment",
    "route",
]

#: Field operators a partial-index predicate may use (``$and`` and a same-key ``$or`` too).
PARTIAL_OPERATORS: Final = frozenset(
    {"$eq", "$in", "$gt", "$gte", "$lt", "$lte", "$between", "$exists"}
)
#: The ``COMMENT ON INDEX`` of a partial index pgvs built starts with this, then its JSON.
COMMENT_PREFIX: Final = "pgvs:partial:"
_COMMENT_VERSION: Final = 1
_LOWER: Final = {"$gt": False, "$gte": True}
_UPPER: Final = {"$lt": False, "$lte": True}
_REFUSED_HINT: Final = (
    "A partial index predicate takes equality, $in, ranges ($gt, $gte, $lt, $lte, $between), "
    "$exists, $and, and $or of equalities on one key: what PostgreSQL's planner can prove a "
    "search's filter implies."
)
# A placeholder of the filter compiler: "$7::jsonb", "$8::text[]".
_PLACEHOLDER = re.compile(r"\$(\d+)::([a-z0-9_]+(?:\[\])?)")


@dataclass(frozen=True)
class Atom:
    """One constraint on one field: the unit of implication.

    ``field`` is ``("meta", *segments)``, ``("col", logical_name)`` or ``("domain",)``. ``kind``:
    ``values`` (equal to one of ``values``), ``range`` (``low``/``high``, None when open, in the
    ``order`` "num" or "str" for metadata, the column kind for columns), ``null`` or ``notnull``.
    Values are canonical: metadata scalars as ``("s", str)``, ``("n", Decimal)``, ``("b", bool)``,
    ``("z", None)``, so ``1`` and ``1.0`` are one value, as in jsonb; column values as the filter
    compiler types them (aware UTC datetimes, numbers, strings).
    """

    field: tuple[str, ...]
    kind: str
    values: frozenset[Any] = frozenset()
    order: str = ""
    low: Any = None
    low_inclusive: bool = True
    high: Any = None
    high_inclusive: bool = True


@dataclass(frozen=True)
class Predicate:
    """A partial index's predicate: its atoms, canonical document, literal SQL and identity."""

    where: Mapping[str, Any] | None  # canonical filter document (JSON), None: domain only
    domain: str | None
    atoms: tuple[Atom, ...]
    sql: str  # literal SQL; no placeholders
    digest: str  # 8 hex digits of the canonical form: part of the derived index name

    def comment(self, index_type: str, quantization: str) -> str:
        """The ``COMMENT ON INDEX`` text that lets any store recognise the index later."""
        body = {
            "v": _COMMENT_VERSION,
            "where": self.where,
            "domain": self.domain,
            "index_type": index_type,
            "quantization": quantization,
            "sql_sha256": hashlib.sha256(self.sql.encode()).hexdigest(),
        }
        return COMMENT_PREFIX + json.dumps(body, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Route:
    """The partial index a search may use: its name, the literal predicate to add, and whether
    it covers the search (the filter and tenant say no more than the predicate)."""

    name: str
    predicate_sql: str
    covered: bool
    probes: int | None = None  # an IVFFlat partial index's own sqrt(lists), set by the store


# -- values --------------------------------------------------------------------------------------


def _meta_value(value: Any) -> tuple[str, Any]:
    if value is None:
        return ("z", None)
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int):
        return ("n", Decimal(value))
    if isinstance(value, float):
        return ("n", Decimal(float.__repr__(value)))
    return ("s", str.__str__(value))


def _meta_json(value: tuple[str, Any]) -> Any:
    tag, raw = value
    if tag == "n":
        return int(raw) if raw == raw.to_integral_value() else float(raw)
    return raw


def _column_json(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _column_value(target: FilterTarget, name: str, value: Any) -> Any:
    """``value`` typed as the filter compiler types it for column ``name`` (validated by it)."""
    compiled = compile_filter({COLUMN_PREFIX + name: {"$eq": value}}, target)
    return compiled.params[0]


# -- predicates ----------------------------------------------------------------------------------


def _refuse(op: str, path: str, why: str = "") -> FilterError:
    return FilterError(f"{op} cannot define a partial index{why}", path=path, hint=_REFUSED_HINT)


class _Reader:
    """Reads a filter document into atoms. ``strict`` (a predicate): anything else is an error.
    Lenient (a search's filter): anything else is skipped and the result marked incomplete."""

    def __init__(
        self,
        target: FilterTarget,
        *,
        strict: bool,
        fields: frozenset[tuple[str, ...]] | None = None,
    ) -> None:
        self.target = target
        self.strict = strict
        self.fields = fields  # lenient: only these fields matter (others: not complete)
        self.complete = True
        self.atoms: list[Atom] = []

    def skip(self, op: str, path: str, why: str = "") -> None:
        if self.strict:
            raise _refuse(op, path, why)
        self.complete = False

    def document(self, doc: Any, path: str) -> None:
        if not isinstance(doc, Mapping) or not doc:
            self.skip("this value", path, ": expected a non-empty filter document")
            return
        for key, spec in doc.items():
            where = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str):
                self.skip("a non-string key", path)
            elif key == "$and":
                if not isinstance(spec, list | tuple) or not spec:
                    self.skip("$and", where, ": it takes a non-empty list of documents")
                    continue
                for i, item in enumerate(spec):
                    self.document(item, f"{where}[{i}]")
            elif key == "$or":
                self.or_(spec, where)
            elif key.startswith("$"):
                self.skip(key, where)
            else:
                self.field(key, spec, where)

    def or_(self, spec: Any, path: str) -> None:
        """``$or`` of equalities on one key is that key's ``$in``; any other ``$or`` is not."""
        values: list[Any] = []
        keys: set[str] = set()
        for item in spec if isinstance(spec, list | tuple) else ():
            if not isinstance(item, Mapping) or len(item) != 1:
                break
            ((key, value),) = item.items()
            if isinstance(value, Mapping):
                if set(value) == {"$eq"}:
                    value = value["$eq"]
                elif set(value) == {"$in"} and isinstance(value["$in"], list | tuple):
                    keys.add(key)
                    values.extend(value["$in"])
                    continue
                else:
                    break
            if isinstance(value, Mapping | list | tuple) or not isinstance(key, str):
                break
            keys.add(key)
            values.append(value)
        else:
            if len(keys) == 1 and values:
                (key,) = keys
                if not key.startswith("$"):
                    self.field(key, {"$in": values}, path)
                    return
        self.skip("$or", path, " unless every branch is an equality on the same key")

    def field(self, key: str, spec: Any, path: str) -> None:
        column = key.startswith(COLUMN_PREFIX)
        if column:
            name = key[len(COLUMN_PREFIX) :]
            if name not in self.target.columns:
                self.skip(key, path, ": unknown column")
                return
            field: tuple[str, ...] = ("col", name)
            order: str = self.target.columns[name].kind
        else:
            try:
                field = ("meta", *parse_key(key))
            except FilterError:
                if self.strict:
                    raise
                self.complete = False
                return
            order = ""
        if self.fields is not None and field not in self.fields:
            # No predicate constrains this field: it can neither imply one nor be covered, so
            # it is not read at all (typing a long column $in list costs per search).
            self.complete = False
            return
        ops = spec if isinstance(spec, Mapping) else {"$eq": spec}
        if not ops:
            self.skip("an empty operator document", path)
            return
        low: tuple[Any, bool] | None = None
        high: tuple[Any, bool] | None = None
        range_order = order
        for op, operand in ops.items():
            where = f"{path}.{op}"
            if op not in PARTIAL_OPERATORS:
                self.skip(str(op), where)
                continue
            try:
                if op == "$eq" or op == "$in":
                    items = [operand] if op == "$eq" else operand
                    if op == "$in" and not isinstance(operand, list | tuple):
                        self.skip(op, where, ": it takes a list of values")
                        continue
                    atom = self.values(field, list(items), where)
                    if atom is not None:
                        self.atoms.append(atom)
                elif op == "$exists":
                    if column or not isinstance(operand, bool):
                        self.skip(op, where, ": it takes true or false, on metadata keys")
                        continue
                    self.atoms.append(Atom(field, "notnull" if operand else "null"))
                else:
                    bounds = (
                        [("$gte", operand[0]), ("$lte", operand[1])]
                        if op == "$between"
                        and isinstance(operand, list | tuple)
                        and len(operand) == 2
                        else [(op, operand)]
                    )
                    for bound_op, bound in bounds:
                        if bound_op == "$between":
                            self.skip(op, where, ": it takes [low, high]")
                            continue
                        value, kind = self.bound(field, bound, where)
                        if range_order and range_order != kind:
                            self.skip(op, where, ": its bounds must be all numbers or all strings")
                            continue
                        range_order = kind
                        if bound_op in _LOWER:
                            low = _tighter(low, (value, _LOWER[bound_op]), lower=True)
                        else:
                            high = _tighter(high, (value, _UPPER[bound_op]), lower=False)
            except FilterError:
                if self.strict:
                    raise
                self.complete = False
        if low is not None or high is not None:
            self.atoms.append(
                Atom(
                    field,
                    "range",
                    order=range_order,
                    low=low[0] if low else None,
                    low_inclusive=low[1] if low else True,
                    high=high[0] if high else None,
                    high_inclusive=high[1] if high else True,
                )
            )

    def values(self, field: tuple[str, ...], items: list[Any], path: str) -> Atom | None:
        if not items:
            self.skip("$in", path, ": the list is empty (the index would hold no row)")
            return None
        canon: set[Any] = set()
        for item in items:
            if isinstance(item, Mapping | list | tuple):
                self.skip("an object or list value", path, ": compare scalars only")
                return None
            if field[0] == "col":
                if item is None:
                    if len(items) > 1:
                        self.skip("$in", path, ": null in a column's $in")
                        return None
                    return Atom(field, "null")
                canon.add(_column_value(self.target, field[1], item))
            else:
                canon.add(_meta_value(item))
        return Atom(field, "values", frozenset(canon))

    def bound(self, field: tuple[str, ...], value: Any, path: str) -> tuple[Any, str]:
        if field[0] == "col":
            return _column_value(self.target, field[1], value), self.target.columns[field[1]].kind
        tag, raw = _meta_value(value)
        return raw, "num" if tag == "n" else "str"


def _tighter(
    current: tuple[Any, bool] | None, new: tuple[Any, bool], *, lower: bool
) -> tuple[Any, bool]:
    """The stricter of two bounds on the same side."""
    if current is None:
        return new
    (a, a_inc), (b, b_inc) = current, new
    if a == b:
        return (a, a_inc and b_inc)
    if lower:
        return current if a > b else new
    return current if a < b else new


def _atom_document(atom: Atom) -> dict[str, Any]:
    key = COLUMN_PREFIX + atom.field[1] if atom.field[0] == "col" else ".".join(atom.field[1:])
    column = atom.field[0] == "col"
    if atom.kind == "null":
        return {key: None} if column else {key: {"$exists": False}}
    if atom.kind == "notnull":
        return {key: {"$exists": True}}
    if atom.kind == "values":
        as_json = [_column_json(v) if column else _meta_json(v) for v in atom.values]
        ordered = sorted(as_json, key=lambda v: json.dumps(v, sort_keys=True))
        return {key: {"$eq": ordered[0]}} if len(ordered) == 1 else {key: {"$in": ordered}}
    ops: dict[str, Any] = {}
    convert = (
        _column_json if column else (lambda v: _meta_json(("n", v)) if atom.order == "num" else v)
    )
    if atom.low is not None:
        ops["$gte" if atom.low_inclusive else "$gt"] = convert(atom.low)
    if atom.high is not None:
        ops["$lte" if atom.high_inclusive else "$lt"] = convert(atom.high)
    return {key: ops}


def _literal(value: Any, cast: str) -> str:
    """One bound value of the filter compiler as SQL text, through the one quoting helper."""
    if cast.endswith("[]"):
        element = cast[:-2]
        items = ", ".join(_literal(item, element) for item in value)
        return f"ARRAY[{items}]::{cast}"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, _dt.datetime):
        text = value.isoformat()
    elif isinstance(value, float):
        text = float.__repr__(value)
    elif isinstance(value, int | Decimal | str):
        text = str(value)
    else:  # pragma: no cover - the compiler binds only these
        raise ValidationError(f"cannot write a {type(value).__name__} into an index predicate")
    # quote_literal is the one place a value becomes SQL text; the cast is the compiler's own.
    return f"{quote_literal(text)}::{cast}"


def _literal_sql(sql: str, params: Sequence[Any]) -> str:
    """The compiler's SQL with every ``$n::cast`` replaced by its value as a literal.

    Each placeholder must occur exactly once, numbered 1..n in order; anything else (a configured
    column name that looks like a placeholder) is refused rather than guessed at.
    """
    found = list(_PLACEHOLDER.finditer(sql))
    if [int(m.group(1)) for m in found] != list(range(1, len(params) + 1)):
        raise ValidationError(
            "cannot write this predicate with literal values (a column name looks like a "
            "query parameter)"
        )
    parts: list[str] = []
    last = 0
    for match in found:
        parts.append(sql[last : match.start()])
        parts.append(_literal(params[int(match.group(1)) - 1], match.group(2)))
        last = match.end()
    parts.append(sql[last:])
    return "".join(parts)


def compile_predicate(
    where: Mapping[str, Any] | None,
    domain: str | None,
    target: FilterTarget,
    *,
    domain_sql: str | None,
) -> Predicate:
    """The predicate of a partial index on ``where`` (and the tenant ``domain``).

    ``domain_sql`` is the quoted domain column (None: the table has none). Raises FilterError
    (a ValidationError) naming an operator the planner cannot use, ValidationError otherwise.
    """
    if where is not None and not isinstance(where, Mapping):
        raise FilterError("where must be a filter document (a dict)")
    if not where and domain is None:
        raise ValidationError(
            "a partial index needs a predicate: pass where (a filter document) and/or domain"
        )
    atoms: list[Atom] = []
    if domain is not None:
        if not isinstance(domain, str):
            raise ValidationError(f"domain must be a string, got {type(domain).__name__}")
        if domain_sql is None:
            raise ValidationError("domain= needs a domain column, and this store's table has none")
        if "\x00" in domain:
            raise ValidationError("domain contains a NUL character")
        atoms.append(Atom(("domain",), "values", frozenset({domain})))
    reader = _Reader(target, strict=True)
    if where:
        compile_filter(where, target)  # the filter language's own errors first, with their paths
        reader.document(where, "")
    field_atoms = sorted(reader.atoms, key=lambda a: json.dumps(_atom_document(a), sort_keys=True))
    documents = [_atom_document(atom) for atom in field_atoms]
    canonical: dict[str, Any] | None = None
    parts: list[str] = []
    if domain is not None:
        parts.append(f"{domain_sql} = {_literal(domain, 'text')}")
    if documents:
        canonical = documents[0] if len(documents) == 1 else {"$and": documents}
        compiled = compile_filter(canonical, target)
        parts.append(_literal_sql(compiled.sql, compiled.params))
    sql = parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"
    identity = json.dumps({"where": canonical, "domain": domain}, sort_keys=True)
    digest = hashlib.blake2b(identity.encode(), digest_size=4).hexdigest()
    return Predicate(canonical, domain, (*atoms, *field_atoms), sql, digest)


def parse_comment(text: str | None) -> dict[str, Any] | None:
    """The JSON of a pgvs partial index's comment, or None for any other comment."""
    if not text or not text.startswith(COMMENT_PREFIX):
        return None
    try:
        body = json.loads(text[len(COMMENT_PREFIX) :])
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("v") != _COMMENT_VERSION:
        return None
    return body


# -- implication ---------------------------------------------------------------------------------


def filter_atoms(
    filter: Mapping[str, Any] | None,
    target: FilterTarget,
    domain: str | None,
    fields: frozenset[tuple[str, ...]] | None = None,
) -> tuple[list[Atom], bool]:
    """What a search's filter (and tenant ``domain``) says, as atoms, and whether that is all it
    says (``complete``). Only ``fields`` are read when given. Never raises: what it cannot read
    is left out (and not complete)."""
    reader = _Reader(target, strict=False, fields=fields)
    tenant = [Atom(("domain",), "values", frozenset({domain}))] if domain is not None else []
    if filter:
        try:
            reader.document(filter, "")
        except Exception:  # routing never fails a search: the filter compiler reports bad input
            return tenant, False
    return [*reader.atoms, *tenant], reader.complete


def _within(value: Any, atom: Atom) -> bool:
    below = atom.low is not None and (
        value < atom.low or (value == atom.low and not atom.low_inclusive)
    )
    above = atom.high is not None and (
        value > atom.high or (value == atom.high and not atom.high_inclusive)
    )
    return not (below or above)


def _implies_atom(a: Atom, b: Atom) -> bool:
    """Whether every row satisfying ``a`` satisfies ``b``."""
    if a.field != b.field:
        return False
    if b.kind == "null":
        return a.kind == "null"
    if b.kind == "notnull":
        return a.kind in ("notnull", "values", "range") and a.field[0] == "meta"
    if b.kind == "values":
        return a.kind == "values" and a.values <= b.values
    # b is a range: the values or the range of a must lie inside it, in the same order.
    if a.kind == "values":
        if a.field[0] == "meta":
            tag = "n" if b.order == "num" else "s"
            return all(v[0] == tag and _within(v[1], b) for v in a.values)
        return all(_within(v, b) for v in a.values)
    if a.kind != "range" or a.order != b.order:
        return False
    if b.low is not None:
        if a.low is None or a.low < b.low:
            return False
        if a.low == b.low and a.low_inclusive and not b.low_inclusive:
            return False
    if b.high is not None:
        if a.high is None or a.high > b.high:
            return False
        if a.high == b.high and a.high_inclusive and not b.high_inclusive:
            return False
    return True


def implies(premises: Sequence[Atom], conclusions: Sequence[Atom]) -> bool:
    """Whether the conjunction ``premises`` implies every atom of ``conclusions`` (each must
    follow from one premise: sound, and complete enough for filters written as predicates)."""
    return all(any(_implies_atom(p, c) for p in premises) for c in conclusions)


def route(
    candidates: Sequence[tuple[str, Predicate, int]],
    filter: Mapping[str, Any] | None,
    target: FilterTarget,
    *,
    domain: str | None,
    tenant: bool,
) -> Route | None:
    """The partial index (of ``candidates``: name, predicate, size in bytes) a search with
    ``filter`` in ``domain`` may use, or None. A covering index is preferred, then the smallest.

    ``domain`` is the domain every search of the store is restricted to; ``tenant`` says whether
    that restriction is a real filter (a store with a ``domain_id``) or the default domain.
    """
    if not candidates or (not filter and not tenant):
        return None
    fields = frozenset(atom.field for _, predicate, _ in candidates for atom in predicate.atoms)
    atoms, complete = filter_atoms(filter, target, domain, fields)
    best: tuple[bool, int, str, Predicate] | None = None
    for name, predicate, size in candidates:
        if not implies(atoms, predicate.atoms):
            continue
        # Covered: the filter (and, for a tenant, its domain) follows from the predicate too.
        said = [a for a in atoms if tenant or a.field != ("domain",)]
        covered = complete and implies(predicate.atoms, said)
        key = (not covered, size, name, predicate)
        if best is None or key[:3] < best[:3]:
            best = key
    if best is None:
        return None
    return Route(best[2], best[3].sql, not best[0])
