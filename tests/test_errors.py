"""The error tree and DSN redaction."""

from __future__ import annotations

import pytest

from pgvs import errors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://bob:pa55@host/db", "postgresql://bob:***@host/db"),
        (
            "postgres://bob:p%40ss@h:5432/db?sslmode=require",
            "postgres://bob:***@h:5432/db?sslmode=require",
        ),
        ("postgresql://bob@host/db", "postgresql://bob@host/db"),
        ("host=h user=u password=secret dbname=d", "host=h user=u password=*** dbname=d"),
        ("host=h password='se cret' dbname=d", "host=h password=*** dbname=d"),
        (
            "postgresql://h/db?user=u&password=secret&x=1",
            "postgresql://h/db?user=u&password=***&x=1",
        ),
    ],
)
def test_redact_dsn(text: str, expected: str) -> None:
    assert errors.redact_dsn(text) == expected


def test_tree_shape() -> None:
    assert issubclass(errors.FilterError, errors.ValidationError)
    assert issubclass(errors.ValidationError, ValueError)
    assert issubclass(errors.ConfigurationError, ValueError)
    assert issubclass(errors.ConnectionLostError, ConnectionError)
    assert issubclass(errors.QueryTimeoutError, TimeoutError)
    for name in errors.__all__:
        value = getattr(errors, name)
        if isinstance(value, type):
            assert issubclass(value, errors.PGVSError)


def test_hint_is_shown() -> None:
    error = errors.SchemaMismatchError("table t is wrong", hint="fix it")
    assert str(error) == "table t is wrong\nHint: fix it"


def test_internal_client_error_is_a_lost_connection() -> None:
    import asyncpg

    translated = errors.translate_error(
        asyncpg.exceptions.InternalClientError("unexpected error while performing authentication"),
        operation="search",
    )
    assert isinstance(translated, errors.ConnectionLostError)
    assert str(translated).startswith("search: connection to PostgreSQL lost")
