"""The one place identifiers become SQL text.

Values are bound as ``$n`` parameters wherever PostgreSQL takes one. Identifiers (schema, table,
column, index names) cannot be bound, so they are validated and double-quoted by
:func:`quote_ident`, and nothing else in pgvs pastes a name into SQL. The few values that cannot
be bound (index predicates, comments) go through :func:`quote_literal` and nothing else.
"""

from __future__ import annotations

from .errors import ConfigurationError

__all__ = ["MAX_IDENTIFIER_BYTES", "qualified", "quote_ident", "quote_literal"]

# PostgreSQL's NAMEDATALEN - 1. Longer names are silently truncated by the server, so two distinct
# configured names could end up as one table: refuse them instead.
MAX_IDENTIFIER_BYTES = 63


def quote_ident(name: str) -> str:
    """Return ``name`` as a quoted SQL identifier, or raise ConfigurationError."""
    if not isinstance(name, str):
        raise ConfigurationError(f"identifier must be a string, got {type(name).__name__}")
    if not name:
        raise ConfigurationError("identifier must not be empty")
    if "\x00" in name:
        raise ConfigurationError(f"identifier {name!r} contains a NUL character")
    size = len(name.encode("utf-8"))
    if size > MAX_IDENTIFIER_BYTES:
        raise ConfigurationError(
            f"identifier {name!r} is {size} bytes long; PostgreSQL keeps only "
            f"{MAX_IDENTIFIER_BYTES} and would silently truncate it",
            hint="Choose a shorter name.",
        )
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str | None, name: str) -> str:
    """``"schema"."name"`` (or just ``"name"`` when no schema is given)."""
    if schema is None:
        return quote_ident(name)
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def quote_literal(value: str) -> str:
    """A SQL string literal: the one audited place a *value* becomes SQL text.

    Bound parameters are always preferred. This exists for the spots where PostgreSQL cannot take
    one: metadata *keys* in compiled filters (already checked against :mod:`pgvs.filters`'s key
    alphabet, so an expression index on ``metadata -> 'key'`` matches a generic plan), the
    predicate of a partial index and its ``COMMENT`` (:mod:`pgvs.partial`: index predicates and
    utility statements take no parameters), and a text-search configuration name.

    Safe whatever ``standard_conforming_strings`` says, as PostgreSQL's own ``quote_literal()``:
    quotes are doubled, and a value holding a backslash is written as an escape string
    (``E'...'``) with every backslash doubled, so no backslash can escape the closing quote.
    NUL and lone surrogates (which no PostgreSQL string can hold) are refused.
    """
    if not isinstance(value, str):
        raise ConfigurationError(f"literal must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise ConfigurationError(f"literal {value[:60]!r} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(
            f"literal {value[:60]!r} contains a lone surrogate, which is not valid Unicode"
        ) from None
    body = value.replace("'", "''")
    if "\\" in value:
        return "E'" + body.replace("\\", "\\\\") + "'"
    return "'" + body + "'"
