"""The pgvs exception tree, and the one place lower-level errors are translated into it.

::

    PGVSError
    ├── ConfigurationError        (also ValueError)   bad or unknown config key, impossible setup
    ├── ValidationError           (also ValueError)   bad input rows, found before anything is sent
    │   └── FilterError                               bad filter document; names the node's path
    ├── StoreClosedError                              the store was closed (or never initialized)
    └── DatabaseError                                 anything the server or the connection said
        ├── ConnectionLostError   (also ConnectionError)  connection refused, dropped, server crashed
        ├── QueryTimeoutError     (also TimeoutError)     command_timeout or statement_timeout hit
        ├── PoolTimeoutError      (also TimeoutError)     no pooled connection free in acquire_timeout
        ├── QueryCanceledError                            the query was cancelled on the server
        ├── ExtensionMissingError                         pgvector is not installed in the database
        ├── SchemaMismatchError                           an existing table does not fit the config
        ├── PermissionDeniedError                         the role lacks a needed privilege
        └── IngestError                                   a bulk ingest batch failed (says which)

Every translated error is raised ``from`` the original exception, and carries a ``hint`` that says
what to do next. Messages never contain a DSN password: :func:`redact_dsn` scrubs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, ParamSpec, TypeVar

__all__ = [
    "ConfigurationError",
    "ConnectionLostError",
    "DatabaseError",
    "ExtensionMissingError",
    "FilterError",
    "IngestError",
    "PGVSError",
    "PermissionDeniedError",
    "PoolTimeoutError",
    "QueryCanceledError",
    "QueryTimeoutError",
    "SchemaMismatchError",
    "StoreClosedError",
    "ValidationError",
    "connection_lost",
    "redact_dsn",
    "translate_error",
    "translated",
    "translating",
]

P = ParamSpec("P")
R = TypeVar("R")


class PGVSError(Exception):
    """Base of every error pgvs raises on purpose."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        message = super().__str__()
        if self.hint:
            return f"{message}\nHint: {self.hint}"
        return message


class ConfigurationError(PGVSError, ValueError):
    """A configuration key is unknown, mistyped or impossible for this server."""


class ValidationError(PGVSError, ValueError):
    """Input data was rejected before anything reached the server."""


class FilterError(ValidationError):
    """A filter document is malformed; the message names the offending node's path."""

    def __init__(self, message: str, *, path: str = "", hint: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message, hint=hint)


class StoreClosedError(PGVSError):
    """The store is closed, or was used before ``initialize()``."""


class DatabaseError(PGVSError):
    """An error reported by PostgreSQL or the connection to it."""

    sqlstate: str | None = None


class ConnectionLostError(DatabaseError, ConnectionError):
    """The connection could not be made, or broke while in use."""


class QueryTimeoutError(DatabaseError, TimeoutError):
    """The operation ran past its timeout."""


class PoolTimeoutError(DatabaseError, TimeoutError):
    """No pooled connection came free within ``acquire_timeout``."""


class QueryCanceledError(DatabaseError):
    """The server cancelled the query (user request or administrator)."""


class ExtensionMissingError(DatabaseError):
    """The ``vector`` extension is not installed in the database."""


class SchemaMismatchError(DatabaseError):
    """An existing table or column does not match the store's configuration."""


class PermissionDeniedError(DatabaseError):
    """The database role lacks a privilege the operation needs."""


class IngestError(DatabaseError):
    """A bulk-ingest batch failed. ``committed_batches`` stay committed."""

    def __init__(
        self,
        message: str,
        *,
        batch: int,
        row_range: tuple[int, int],
        committed_batches: list[int],
        rows_written: int,
        hint: str | None = None,
    ) -> None:
        self.batch = batch
        self.row_range = row_range
        self.committed_batches = committed_batches
        self.rows_written = rows_written
        super().__init__(message, hint=hint)


_PASSWORD_IN_URL = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*:)[^@/?#\s]*(?=@)")
_PASSWORD_IN_KV = re.compile(
    r"(?P<head>(?<![?&])\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE
)
_PASSWORD_IN_QUERY = re.compile(r"(?P<head>[?&]password=)[^&#\s]*", re.IGNORECASE)


def redact_dsn(text: str) -> str:
    """Replace any password in a DSN (URL, ``key=value`` or query-parameter form) with ``***``."""
    text = _PASSWORD_IN_URL.sub(r"\g<head>***", text)
    text = _PASSWORD_IN_QUERY.sub(r"\g<head>***", text)
    return _PASSWORD_IN_KV.sub(r"\g<head>***", text)


_EXTENSION_HINT = (
    "Run `CREATE EXTENSION vector;` in this database as a role allowed to (a superuser or the "
    "database owner on PostgreSQL 13+), or install pgvector on the server first."
)

DSN_HINT = (
    "Write it as postgresql://user:password@host:port/database (percent-encode special "
    "characters; ?sslmode=require and the like as query parameters); libpq's key=value form "
    "is not accepted."
)

# SQLSTATE classes and codes that mean the connection is gone or was never made.
_CONNECTION_SQLSTATES = {"08000", "08003", "08006", "08001", "08004", "57P01", "57P02", "57P03"}


def _server_error_message(exc: BaseException) -> str:
    detail = getattr(exc, "detail", None)
    message = str(exc)
    if detail:
        message = f"{message} ({detail})"
    return redact_dsn(message)


def translate_error(exc: BaseException, *, operation: str = "") -> BaseException:
    """Map an exception from asyncpg, the OS or asyncio to the pgvs tree.

    Returns the exception to raise (callers write ``raise translate_error(e) from e``). pgvs errors
    and exceptions with no better translation are returned unchanged; cancellation is never
    swallowed.
    """
    if isinstance(exc, PGVSError | asyncio.CancelledError | KeyboardInterrupt):
        return exc

    import asyncpg  # local: the types layer must import without the driver being touched

    prefix = f"{operation}: " if operation else ""
    sqlstate: str | None = getattr(exc, "sqlstate", None)
    if isinstance(exc, asyncpg.exceptions.ClientConfigurationError):
        return ConfigurationError(
            f"{prefix}the connection string is not usable: {redact_dsn(str(exc))}",
            hint=DSN_HINT,
        )
    result: DatabaseError

    if (isinstance(exc, asyncpg.exceptions.UndefinedObjectError) and "vector" in str(exc)) or (
        isinstance(exc, asyncpg.exceptions.FeatureNotSupportedError) and "extension" in str(exc)
    ):
        result = ExtensionMissingError(
            f"{prefix}{_server_error_message(exc)}", hint=_EXTENSION_HINT
        )
    elif isinstance(exc, asyncpg.exceptions.InsufficientPrivilegeError):
        result = PermissionDeniedError(
            f"{prefix}{_server_error_message(exc)}",
            hint="Grant the role the privilege named above, or connect as a role that has it.",
        )
    elif isinstance(exc, asyncpg.exceptions.QueryCanceledError):
        if "statement timeout" in str(exc):
            result = QueryTimeoutError(
                f"{prefix}{_server_error_message(exc)}",
                hint="Raise command_timeout / statement_timeout, or add an index for this query.",
            )
        else:
            result = QueryCanceledError(f"{prefix}{_server_error_message(exc)}")
    elif isinstance(exc, asyncio.TimeoutError | TimeoutError):
        # Before the connection branch: TimeoutError is an OSError.
        result = QueryTimeoutError(
            f"{prefix}timed out" + (f": {exc}" if str(exc) else ""),
            hint="Raise command_timeout, or check the server's load and locks.",
        )
    elif sqlstate in _CONNECTION_SQLSTATES or isinstance(
        exc,
        asyncpg.exceptions.ConnectionDoesNotExistError
        | asyncpg.exceptions.InterfaceError
        | asyncpg.exceptions.InternalClientError
        | ConnectionError
        | OSError
        | EOFError,
    ):
        # InternalClientError surfaces when the server dies mid-protocol (SIGKILL of the
        # postmaster): to the user that is a lost connection, not a bug of theirs or ours.
        if isinstance(exc, asyncpg.exceptions.InterfaceError) and not _looks_like_connection(exc):
            return exc
        result = ConnectionLostError(
            f"{prefix}connection to PostgreSQL lost or refused: {_server_error_message(exc)}",
            hint="Check that the server is running and reachable; the operation can be retried.",
        )
    elif isinstance(
        exc, asyncpg.exceptions.UndefinedTableError | asyncpg.exceptions.UndefinedColumnError
    ):
        result = SchemaMismatchError(
            f"{prefix}{_server_error_message(exc)}",
            hint="Call initialize() with auto_create_table=True, or map `columns` to the real names.",
        )
    elif isinstance(exc, asyncpg.PostgresError):
        result = DatabaseError(f"{prefix}{_server_error_message(exc)}")
    else:
        return exc
    result.sqlstate = sqlstate
    return result


def _looks_like_connection(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(word in text for word in ("connection", "closed", "terminat", "protocol"))


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` (raw or translated) means the connection is gone: the one test for what
    a retry on a fresh connection can cure."""
    return isinstance(translate_error(exc), ConnectionLostError)


def translated(
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Route every exception of a public coroutine through :func:`translate_error`.

    The operation named in messages is the coroutine's own name. This decorator (on the store's
    public methods) and :func:`translating` (for work outside them: background builds, the sync
    facade's ``run``) are the only places lower-level errors become pgvs errors.
    """
    operation = method.__name__

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except Exception as exc:
            error = translate_error(exc, operation=operation)
            if error is exc:
                raise
            raise error from exc

    return wrapper


@contextlib.contextmanager
def translating(operation: str) -> Iterator[None]:
    """``with translating("ingest"): ...``: the block's exceptions leave as pgvs errors."""
    try:
        yield
    except Exception as exc:
        error = translate_error(exc, operation=operation)
        if error is exc:
            raise
        raise error from exc
