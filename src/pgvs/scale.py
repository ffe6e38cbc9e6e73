"""Past one server, pure half: read-replica rules and rotation, tenant partitions, Citus DDL.

Nothing here does I/O (the store part :mod:`pgvs.store._replicas` and
:mod:`pgvs.store._tenancy` await). docs/scale.md describes the three ways out of one table on
one server and what pgvs issues for each.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Literal

from ._sql import quote_ident, quote_literal
from .errors import ConfigurationError, redact_dsn

__all__ = [
    "CITUS_DISTRIBUTE",
    "CITUS_HINT",
    "CITUS_INSTALLED",
    "CITUS_IS_DISTRIBUTED",
    "CONSISTENCIES",
    "Consistency",
    "PartitionBy",
    "ReplicaRotation",
    "ReplicaState",
    "check_replicas",
    "create_partition_sql",
    "distribute_args",
    "drop_partition_sql",
    "partition_name",
    "scale_problem",
]

Consistency = Literal["read_your_writes", "eventual"]
PartitionBy = Literal["domain"]
ReplicaState = Literal["unverified", "up", "down"]
CONSISTENCIES: tuple[Consistency, ...] = ("read_your_writes", "eventual")
_PARTITION_KEYS = ("domain",)
_DSN_SCHEMES = ("postgresql://", "postgres://")
_MAX_IDENTIFIER_BYTES = 63

# -- read replicas ------------------------------------------------------------------------------


def check_replicas(value: object) -> tuple[str, ...]:
    """``read_replicas`` as a tuple of URL DSNs (a single string is refused: it is a list).

    A message names a DSN only through :func:`pgvs.errors.redact_dsn` (no password)."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigurationError(
            "read_replicas must be a list of connection strings",
            hint="read_replicas=['postgresql://user@replica1/db', ...]",
        )
    checked = []
    for position, dsn in enumerate(value):
        if not isinstance(dsn, str) or not dsn.startswith(_DSN_SCHEMES):
            shown = redact_dsn(dsn) if isinstance(dsn, str) else type(dsn).__name__
            raise ConfigurationError(
                f"read_replicas[{position}] must be a postgresql:// URL, got {shown!r}",
                hint="Write it as postgresql://user:password@host:port/database.",
            )
        checked.append(dsn)
    if len(set(checked)) != len(checked):
        raise ConfigurationError("read_replicas lists one server twice")
    return tuple(checked)


class ReplicaRotation:
    """Which replica a read goes to, and when each replica is due a health probe.

    A replica is ``"unverified"`` (never seen answering: the state every replica starts in),
    ``"up"`` or ``"down"``. Reads go round-robin to the ones that are up, never to the others:
    a replica enters the rotation only when a health probe (run in the background by the
    caller) has seen it answer as a standby. A failed probe, or a read whose connection failed,
    makes it down; its next probe is due ``retry_after`` seconds later. A read that timed out
    on it makes it down with a probe due at once (a slow query or a hung server: the probe,
    bounded, tells which). At most one probe per replica at a time: :meth:`probes_due` marks
    what it returns as probing until :meth:`probe_done`. The clock is the caller's (``now`` in
    seconds), so the rules are testable without waiting."""

    __slots__ = ("_due", "_next", "_probing", "_state", "retry_after")

    def __init__(self, count: int, retry_after: float) -> None:
        self._state: list[ReplicaState] = ["unverified"] * count
        self._due = [0.0] * count  # when the next probe may start (a replica not up)
        self._probing = [False] * count
        self._next = 0
        self.retry_after = retry_after

    def pick(self) -> int | None:
        """The next replica that is up (None: none is; read the primary)."""
        count = len(self._state)
        for step in range(count):
            index = (self._next + step) % count
            if self._state[index] == "up":
                self._next = (index + 1) % count
                return index
        return None

    def probes_due(self, now: float) -> list[int]:
        """The replicas to probe now (each marked probing until :meth:`probe_done`)."""
        due = [
            index
            for index, state in enumerate(self._state)
            if state != "up" and not self._probing[index] and self._due[index] <= now
        ]
        for index in due:
            self._probing[index] = True
        return due

    def probe_done(self, index: int, ok: bool, now: float) -> None:
        """A probe of ``index`` ended: it answered as a standby (``ok``: up), or not."""
        self._probing[index] = False
        if ok:
            self._state[index] = "up"
        else:
            self._state[index] = "down"
            self._due[index] = now + self.retry_after

    def failed(self, index: int, now: float) -> None:
        """A read found the replica's connection refused or lost."""
        self._state[index] = "down"
        self._due[index] = now + self.retry_after

    def suspect(self, index: int, now: float) -> None:
        """A read timed out on the replica: out of the rotation, a probe due at once."""
        self._state[index] = "down"
        self._due[index] = now

    def state(self, index: int) -> ReplicaState:
        return self._state[index]

    def probing(self, index: int) -> bool:
        return self._probing[index]


# -- partitions and Citus ------------------------------------------------------------------------


def scale_problem(
    *,
    partition_by: object,
    distributed: object,
    has_domain_column: bool,
    auto_create_table: bool,
    index_type: str,
    pca: bool,
) -> ConfigurationError | None:
    """What is wrong with ``partition_by`` / ``distributed`` for this config (None: nothing)."""
    if partition_by is not None and partition_by not in _PARTITION_KEYS:
        return ConfigurationError(
            f"partition_by {partition_by!r} is not one of None, 'domain'",
            hint="partition_by='domain' gives each domain_id (tenant) a partition of its own.",
        )
    if not isinstance(distributed, bool):
        return ConfigurationError("distributed must be True or False")
    if (partition_by or distributed) and not has_domain_column:
        return ConfigurationError(
            "partition_by and distributed split the table by domain_id; columns maps "
            "domain_id to None"
        )
    if partition_by is not None:
        if not auto_create_table:
            return ConfigurationError(
                "partition_by='domain' needs auto_create_table=True: pgvs creates the "
                "partitioned table and each tenant's partition",
                hint="For an existing table, partition it by LIST (domain_id) yourself and "
                "leave partition_by unset.",
            )
        if index_type == "ivfflat" or pca:
            return ConfigurationError(
                "partition_by='domain' builds each tenant's index when its partition is "
                "created, empty; IVFFlat lists and a PCA projection must learn from rows",
                hint="Use index_type='hnsw' (or 'none') with partition_by.",
            )
        if distributed:
            return ConfigurationError(
                "partition_by and distributed=True together are not supported (untested)",
                hint="Citus splits the table by domain_id across nodes already: pick one.",
            )
    return None


def partition_name(table_name: str, domain: str) -> str:
    """The (unquoted) name of ``domain``'s partition of ``table_name``: the table's name, a
    readable part of the domain and a hash of all of it (two domains never share a name,
    whatever characters they hold), within PostgreSQL's 63 bytes."""
    digest = hashlib.blake2b(domain.encode(), digest_size=5).hexdigest()
    slug = re.sub(r"[^a-z0-9]+", "_", domain.lower()).strip("_")[:16]
    suffix = f"p_{slug}_{digest}" if slug else f"p_{digest}"
    room = _MAX_IDENTIFIER_BYTES - len(suffix) - 1
    head = table_name.encode()[:room].decode(errors="ignore")
    return f"{head}_{suffix}"


def create_partition_sql(
    schema: str, table_sql: str, name: str, domain: str, storage: str | None
) -> str:
    """``CREATE TABLE IF NOT EXISTS`` of a domain's partition. The domain is a literal (a
    partition bound takes no parameters), through :func:`pgvs._sql.quote_literal`. The
    parent's indexes (its HNSW index among them) are created on the partition with it."""
    return (
        f"CREATE TABLE IF NOT EXISTS {quote_ident(schema)}.{quote_ident(name)} "
        f"PARTITION OF {table_sql} FOR VALUES IN ({quote_literal(domain)})"
        + (f" WITH ({storage})" if storage else "")
    )


def drop_partition_sql(schema: str, name: str) -> str:
    return f"DROP TABLE IF EXISTS {quote_ident(schema)}.{quote_ident(name)}"


#: Whether the connected database has Citus (``CREATE EXTENSION citus`` done).
CITUS_INSTALLED = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')"
#: Whether the table is already in Citus's metadata ($1: the table's regclass text).
CITUS_IS_DISTRIBUTED = (
    "SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = to_regclass($1))"
)
#: The one statement that distributes the table: hash-sharded on the domain column, so every
#: tenant's rows (and its searches) live on one worker. $1: the table, $2: the column name.
CITUS_DISTRIBUTE = "SELECT create_distributed_table($1, $2)"
CITUS_HINT = (
    "distributed=True needs the citus extension in this database: install Citus on the "
    "server, add it to shared_preload_libraries, run `CREATE EXTENSION citus;` (docs/scale.md)."
)


def distribute_args(table_text: str, domain_column: str) -> tuple[str, str]:
    """The bound parameters of :data:`CITUS_DISTRIBUTE`: the quoted table name as regclass
    text and the domain column's plain name (Citus quotes it itself)."""
    return table_text, domain_column
