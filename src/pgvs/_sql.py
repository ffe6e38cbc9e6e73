"""The one place identifiers become SQL text.

Values never pass through here: they are always bound as ``$n`` parameters. Identifiers (schema,
table, column, index names) cannot be bound, so they are validated and double-quoted by
:func:`quote_ident`, and nothing else in pgvs pastes a name into SQL.
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
    """A SQL string literal, for the few spots where a bound parameter would defeat the planner.

    Used for metadata *keys* in compiled filters, only after :mod:`pgvs.filters` has checked them
    against its key alphabet, so an expression index on ``metadata -> 'key'`` still matches a
    generic plan. Filter and row *values* are never passed through here: they are always bound.
    """
    if "\x00" in value:
        raise ConfigurationError(f"literal {value!r} contains a NUL character")
    return "'" + value.replace("'", "''") + "'"
