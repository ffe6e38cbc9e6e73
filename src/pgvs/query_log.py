"""The query log (``query_log=N``): the newest N query vectors a store's searches were given,
kept in the database, so that ``tune(queries="recent")`` in any process measures recall on the
queries users send rather than on points made from the stored rows.

Why it exists: how hard a query is for an approximate index depends on where the queries come
from. Questions asked of docstrings, or descriptors of other images, need several times the
``ef_search`` the stored rows themselves need (README, "Tuning recall"), and nothing in the
stored rows reveals that. The served queries do.

This module is the pure half: the side table's name and statements. The store part that buffers
queries and writes them in the background is :mod:`pgvs.store._query_log`.

The side table (one per store table, beside it): ``seq`` orders the entries across processes,
``domain_id`` keeps each tenant's queries apart (a tenant tunes on its own), and ``embedding``
has the store's vector type, so an entry is written with the very parameter encoding a search
used and read back through the same codecs.
"""

from __future__ import annotations

import hashlib

from ._sql import MAX_IDENTIFIER_BYTES, qualified, quote_ident

__all__ = [
    "FLUSH_ROWS",
    "FLUSH_SECONDS",
    "MAX_QUERY_LOG",
    "column_type_sql",
    "create_statements",
    "forget_sql",
    "insert_sql",
    "log_table_name",
    "recent_sql",
    "trim_sql",
]

#: The largest ``query_log``: a tune reads every entry, and a few thousand queries already pin a
#: mean recall to ±0.01.
MAX_QUERY_LOG = 100_000
#: A store writes its buffered queries once this many have gathered ...
FLUSH_ROWS = 64
#: ... or when the oldest has waited this long (checked when the next query arrives), so a
#: quiet store's queries still reach the table; ``close()`` and ``tune()`` write the rest.
FLUSH_SECONDS = 30.0

_SUFFIX = "_pgvs_queries"


def log_table_name(table_name: str) -> str:
    """The side table's (unquoted) name: the store table's name + ``_pgvs_queries``, or, when
    that would pass PostgreSQL's 63 bytes, a cut name + a hash of the whole one (two tables
    never share a log)."""
    name = table_name + _SUFFIX
    if len(name.encode()) <= MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.blake2b(table_name.encode(), digest_size=4).hexdigest()
    tail = f"_{digest}{_SUFFIX}"
    head = table_name.encode()[: MAX_IDENTIFIER_BYTES - len(tail)].decode(errors="ignore")
    return head + tail


def create_statements(schema: str, table_name: str, vector_sql_type: str) -> list[str]:
    """``CREATE TABLE`` / ``CREATE INDEX IF NOT EXISTS`` of the side table (run under the store
    table's DDL lock, so racing processes create it once). ``vector_sql_type`` comes from the
    store's validated configuration (``vector(768)``), never from user data."""
    name = log_table_name(table_name)
    table = qualified(schema, name)
    head = name.encode()[: MAX_IDENTIFIER_BYTES - 4].decode(errors="ignore")  # bytes, not chars
    index = quote_ident(head + "_seq")
    return [
        f"CREATE TABLE IF NOT EXISTS {table} ("
        "seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
        "domain_id text NOT NULL, "
        "recorded_at timestamptz NOT NULL DEFAULT now(), "
        f"embedding {vector_sql_type} NOT NULL)",
        f"CREATE INDEX IF NOT EXISTS {index} ON {table} (domain_id, seq)",
    ]


def column_type_sql() -> str:
    """$1 = the side table (qualified text): its embedding column's type, as ``vector(768)``
    (NULL when the table does not exist)."""
    return (
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass($1) AND a.attname = 'embedding' AND NOT a.attisdropped"
    )


def insert_sql(table: str, query_cast: str) -> str:
    """$1 = domain, $2 = a query vector, cast as the store's searches cast it."""
    return f"INSERT INTO {table} (domain_id, embedding) VALUES ($1, $2::{query_cast})"


def trim_sql(table: str) -> str:
    """$1 = domain, $2 = entries to keep: delete that domain's older entries. The newest
    ``$2`` survive whichever processes wrote them (``seq`` orders across processes)."""
    return (
        f"DELETE FROM {table} WHERE domain_id = $1 AND seq <= ("
        f"SELECT seq FROM {table} WHERE domain_id = $1 ORDER BY seq DESC OFFSET $2 LIMIT 1)"
    )


def forget_sql(table: str) -> str:
    """$1 = domain: delete all of that domain's entries (``drop_domain``)."""
    return f"DELETE FROM {table} WHERE domain_id = $1"


def recent_sql(table: str) -> str:
    """$1 = domain, $2 = how many: that domain's newest entries, newest first."""
    return f"SELECT embedding FROM {table} WHERE domain_id = $1 ORDER BY seq DESC LIMIT $2"
