"""Scenario 9: a corpus of bad input. Each is refused with a typed error naming the row or key,
and the stored rows are exactly what they were before."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from pgvs import AsyncPGVectorStore, ConfigurationError, FilterError, ValidationError

Call = Callable[[AsyncPGVectorStore], Awaitable[Any]]
V = [1.0, 0.0, 0.0]
NON_STRING_KEY: Any = {1: "v"}
NOT_A_MAPPING: Any = ["a"]

CORPUS: list[tuple[str, Call, type[Exception] | None, str]] = [
    ("NaN", lambda s: s.add_vectors([V, [1, math.nan, 0]]), ValidationError, "row 1"),
    ("inf", lambda s: s.add_vectors([V, [1, math.inf, 0]]), ValidationError, "row 1"),
    (
        "-inf in COPY",
        lambda s: s.add_vectors(_with(600, 599, [0, -math.inf, 0])),
        ValidationError,
        "row 599",
    ),
    ("ragged", lambda s: s.add_vectors([V, [1, 0]]), ValidationError, "row 1"),
    ("wrong dimensions", lambda s: s.add_vectors([[1, 0, 0, 0]]), ValidationError, "dimension"),
    ("empty vector", lambda s: s.add_vectors([[]]), ValidationError, "0 dimensions"),
    ("zero vector under cosine", lambda s: s.add_vectors([V, [0, 0, 0]]), ValidationError, "row 1"),
    ("zero query under cosine", lambda s: s.search([0, 0, 0]), ValidationError, "all zeros"),
    ("NaN query", lambda s: s.search([math.nan, 0, 0]), ValidationError, "query"),
    (
        "NUL in content",
        lambda s: s.add_vectors([V, V], contents=["ok", "a\x00b"]),
        ValidationError,
        "row 1",
    ),
    (
        "NUL in metadata value",
        lambda s: s.add_vectors([V, V], metadata=[{}, {"k": "a\x00"}]),
        ValidationError,
        "row 1",
    ),
    (
        "NUL in metadata key",
        lambda s: s.add_vectors([V, V], metadata=[{}, {"a\x00": 1}]),
        ValidationError,
        "row 1",
    ),
    (
        "lone surrogate in content",
        lambda s: s.add_vectors([V, V], contents=["ok", "\ud800"]),
        ValidationError,
        "row 1",
    ),
    (
        "lone surrogate in key",
        lambda s: s.add_vectors([V, V], metadata=[{}, {"\udfff": 1}]),
        ValidationError,
        "row 1",
    ),
    (
        "non-JSON metadata",
        lambda s: s.add_vectors([V, V], metadata=[{}, {"k": object()}]),
        ValidationError,
        "row 1",
    ),
    (
        "NaN in metadata",
        lambda s: s.add_vectors([V, V], metadata=[{}, {"k": math.nan}]),
        ValidationError,
        "row 1",
    ),
    (
        "non-string key",
        lambda s: s.add_vectors([V, V], metadata=[{}, NON_STRING_KEY]),
        ValidationError,
        "row 1",
    ),
    (
        "metadata not a mapping",
        lambda s: s.add_vectors([V, V], metadata=[{}, NOT_A_MAPPING]),
        ValidationError,
        "row 1",
    ),
    ("duplicate ids", lambda s: s.ingest(np.ones((2, 3)), ids=["d", "d"], atomic=True), None, ""),
    ("wrong-typed id", lambda s: s.add_vectors([V, V], ids=["a", 3.5]), ValidationError, "row 1"),
    ("None id", lambda s: s.add_vectors([V, V], ids=["a", None]), ValidationError, "row 1"),
    ("ids of the wrong length", lambda s: s.add_vectors([V, V], ids=["a"]), ValidationError, "ids"),
    (
        "filter injection",
        lambda s: s.search(V, filter={"a'); DROP TABLE x; --": 1}),
        FilterError,
        "invalid metadata key",
    ),
    (
        "filter value injection",
        lambda s: s.search(V, filter={"a": "1'; DROP TABLE x; --"}),
        None,
        "",
    ),
    (
        "filter operator injection",
        lambda s: s.search(V, filter={"a": {"$eq; DROP": 1}}),
        FilterError,
        "\\$eq; DROP",
    ),
    ("filter value type", lambda s: s.search(V, filter={"a": {"$in": 5}}), FilterError, "\\$in"),
    ("bad k", lambda s: s.search(V, k=0), ValidationError, "k must be"),
    ("bad ef_search", lambda s: s.search(V, ef_search=-1), ValidationError, "ef_search"),
    ("bad ids for get_vectors", lambda s: s.get_vectors([object()]), ValidationError, "id"),
]


def _with(rows: int, row: int, vector: list[float]) -> Any:
    data = np.ones((rows, 3))
    data[row] = vector
    return data


@pytest.mark.parametrize(
    ("label", "call", "error", "match"), CORPUS, ids=[label for label, *_ in CORPUS]
)
async def test_bad_input_is_refused_and_nothing_changes(
    pg_dsn: str,
    table_name: str,
    label: str,
    call: Call,
    error: type[Exception] | None,
    match: str,
) -> None:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=3, table_name=table_name, id_type="text"
    ) as store:
        await store.add_vectors([V, [0, 1, 0]], ids=["keep1", "keep2"], metadata=[{"a": 1}, {}])
        before = sorted(record.id for record in await store.get_vectors(["keep1", "keep2"]))
        if error is None:
            # Harmless by construction: stored as data (a duplicate id keeps its last row), or
            # a filter value that is only ever a bound parameter.
            await call(store)
        else:
            with pytest.raises(error, match=match):
                await call(store)
        count = await store.count()
        assert count == (3 if label == "duplicate ids" else 2)
        after = sorted(record.id for record in await store.get_vectors(["keep1", "keep2"]))
        assert after == before == ["keep1", "keep2"]
        assert len(await store.search(V, k=5)) == count  # the table is intact


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:s3cret@localhost:notaport/db",
        "mysql://u:s3cret@localhost/db",
        "postgresql://u:s3cret@localhost/db?sslmode=bogus",
        "host=localhost user=u password=s3cret dbname=db",
        "postgresql://u:s3cret@[::1/db",
    ],
)
async def test_malformed_connection_strings(dsn: str) -> None:
    store = AsyncPGVectorStore(connection_string=dsn, dimensions=3)
    with pytest.raises(ConfigurationError) as caught:
        await store.initialize()
    assert "s3cret" not in str(caught.value)
    assert caught.value.hint
    await store.close()


@pytest.mark.parametrize(
    "name", ['t"; DROP TABLE x; --', "a" * 80, "", "bad\x00name", "ok name with space"]
)
def test_identifier_injection_is_a_configuration_error_or_quoted(name: str) -> None:
    if name in ("a" * 80, "", "bad\x00name"):
        with pytest.raises(ConfigurationError, match="identifier"):
            AsyncPGVectorStore(dimensions=3, table_name=name)
        return
    store = AsyncPGVectorStore(dimensions=3, table_name=name)
    # Accepted names are quoted: the statement names exactly that table.
    assert store.config.table_name == name
    assert '"' in store._ctx.sql.table
