"""SearchResult and Record are the tuples they unpack to, plus attributes."""

from __future__ import annotations

import numpy as np
import pytest

from pgvs import AsyncPGVectorStore, PGVectorStore, Record, SearchResult


def test_a_search_result_is_the_tuple_id_score_metadata() -> None:
    hit = SearchResult("a", 0.9, {"k": 1}, 0.1, content="text", chunk_index=3)
    as_tuple = ("a", 0.9, {"k": 1})
    assert hit == as_tuple
    assert as_tuple == hit
    assert hit != ("a", 0.9, {"k": 2})
    assert hit != ("a", 0.9)
    assert hit != ["a", 0.9, {"k": 1}]  # a list is not a tuple, as for tuples
    assert (hit[0], hit[1], hit[2], hit[-1]) == ("a", 0.9, {"k": 1}, {"k": 1})
    assert hit[:2] == ("a", 0.9)
    assert len(hit) == 3
    assert tuple(hit) == as_tuple
    assert list(reversed(hit)) == [{"k": 1}, 0.9, "a"]
    assert 0.9 in hit
    assert hit.index(0.9) == 1
    assert hit.count("a") == 1
    with pytest.raises(IndexError):
        hit[3]
    identifier, score, metadata = hit
    assert (identifier, score, metadata) == as_tuple
    assert (hit.distance, hit.content, hit.chunk_index, hit.vector) == (0.1, "text", 3, None)


def test_equality_and_hashing_follow_the_tuple() -> None:
    one = SearchResult(1, 0.5, None, 0.5)
    same = SearchResult(1, 0.5, None, 0.5, content="other attributes do not count")
    assert one == same
    assert hash(one) == hash(same) == hash((1, 0.5, None))
    assert {one, same} == {one}
    with pytest.raises(TypeError, match="unhashable"):
        hash(SearchResult(1, 0.5, {"a": 1}, 0.5))  # a dict inside, as hash(tuple) says
    assert sorted([SearchResult(2, 0.1, None, 0.9), one]) == [one, (2, 0.1, None)]


def test_a_record_is_the_tuple_vector_metadata() -> None:
    vector = np.array([1.0, 2.0], dtype=np.float32)
    record = Record("id", vector, {"m": 1}, content="c")
    assert len(record) == 2
    assert record[0] is vector
    assert record[1] == {"m": 1}
    assert record == (np.array([1.0, 2.0], dtype=np.float32), {"m": 1})  # arrays compared whole
    assert record != (np.array([1.0, 3.0], dtype=np.float32), {"m": 1})
    assert record != (np.array([1.0, 2.0, 0.0], dtype=np.float32), {"m": 1})
    assert record != (vector,)
    assert record == Record("other id", vector.copy(), {"m": 1})
    missing = Record("gone", None, None)
    assert not missing.found
    assert missing == (None, None)
    assert tuple(missing) == (None, None)


async def test_search_and_get_return_tuples(pg_dsn: str, table_name: str) -> None:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=3, table_name=table_name
    ) as store:
        ids = await store.add_vectors([[1, 0, 0], [0, 1, 0]], metadata=[{"a": 1}, {"a": 2}])
        results = await store.search([1, 0, 0], k=2)
        first = results[0]
        assert first[0] == ids[0]
        assert first[1] == pytest.approx(1.0)
        assert first[2] == {"a": 1}
        assert len(first) == 3
        assert first == (first.id, first.score, first.metadata)
        records = await store.get_vectors([ids[1], "00000000-0000-0000-0000-000000000000"])
        assert records[0] == (np.array([0, 1, 0], dtype=np.float32), {"a": 2})
        assert records[0][1] == {"a": 2}
        assert len(records[1]) == 2
        assert records[1] == (None, None)


def test_the_sync_store_returns_the_same_tuples(pg_dsn: str, table_name: str) -> None:
    with PGVectorStore(connection_string=pg_dsn, dimensions=3, table_name=table_name) as store:
        (key,) = store.add_vectors([[0, 0, 1]])
        (hit,) = store.search([0, 0, 1], k=1)
        assert hit[0] == key
        assert hit == (key, hit.score, {})
