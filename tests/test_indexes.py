"""Vector indexes: the pure planning in pgvs.indexes (tables of cases), then the lifecycle against a
real server: automatic creation, INVALID-index repair, build settings and progress, query
settings that never leak, filtered search through HNSW, quantized indexes and process races."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import numpy as np
import pytest

from pgvs import (
    AsyncPGVectorStore,
    ConfigurationError,
    QueryTimeoutError,
    SparseVector,
    ValidationError,
)
from pgvs._statements import Statements
from pgvs.config import StoreConfig
from pgvs.indexes import (
    IndexProgress,
    check_index_params,
    default_lists,
    index_problem,
    operator_class,
    parse_reloptions,
    progress_from_row,
    resolve_quantization,
    uses_index,
    version_tuple,
)
from pgvs.planning import index_spec, search_settings, session_settings, set_local_sql
from pgvs.store import _index_builds

# -- pure: operator classes, limits, parameters ---------------------------------------------------


@pytest.mark.parametrize(
    ("vector_type", "metric", "index_type", "expected"),
    [
        ("vector", "cosine", "hnsw", "vector_cosine_ops"),
        ("vector", "euclidean", "hnsw", "vector_l2_ops"),
        ("vector", "inner_product", "ivfflat", "vector_ip_ops"),
        ("vector", "l1", "hnsw", "vector_l1_ops"),
        ("vector", "l1", "ivfflat", "IVFFlat has no L1"),
        ("halfvec", "cosine", "ivfflat", "halfvec_cosine_ops"),
        ("halfvec", "l1", "hnsw", "halfvec_l1_ops"),
        ("sparsevec", "euclidean", "hnsw", "sparsevec_l2_ops"),
        ("sparsevec", "cosine", "ivfflat", "IVFFlat cannot index sparsevec"),
        ("bit", "hamming", "hnsw", "bit_hamming_ops"),
        ("bit", "hamming", "ivfflat", "bit_hamming_ops"),
        ("bit", "jaccard", "hnsw", "bit_jaccard_ops"),
        ("bit", "jaccard", "ivfflat", "IVFFlat has no Jaccard"),
        ("vector", "cosine", "diskann", "not one of hnsw, ivfflat"),
    ],
)
def test_operator_class(vector_type: str, metric: str, index_type: str, expected: str) -> None:
    if expected.endswith("_ops"):
        assert operator_class(vector_type, metric, index_type) == expected
    else:
        with pytest.raises(ConfigurationError, match=expected):
            operator_class(vector_type, metric, index_type)


@pytest.mark.parametrize(
    ("vector_type", "dimensions", "requested", "expected"),
    [
        ("vector", 1536, "auto", "none"),
        ("vector", 2000, "auto", "none"),
        ("vector", 2001, "auto", "halfvec"),
        ("vector", 4000, "auto", "halfvec"),
        ("vector", 4001, "auto", "none"),
        ("halfvec", 3000, "auto", "none"),
        ("vector", 3000, "binary", "binary"),
        ("vector", 100, "halfvec", "halfvec"),
    ],
)
def test_resolve_quantization(
    vector_type: str, dimensions: int, requested: str, expected: str
) -> None:
    assert resolve_quantization(vector_type, dimensions, requested) == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dimensions": 2001, "quantization": "none"}, "hnsw indexes vector of at most 2000"),
        ({"dimensions": 2001, "quantization": "none"}, "quantization='halfvec'"),
        ({"dimensions": 4001}, "quantization='binary'"),
        ({"dimensions": 4001, "quantization": "halfvec"}, "at most 4000 dimensions"),
        ({"dimensions": 4001, "vector_type": "halfvec"}, "hnsw indexes halfvec of at most 4000"),
        ({"dimensions": 2500, "index_type": "ivfflat", "quantization": "none"}, "ivfflat indexes"),
        ({"dimensions": 64001, "vector_type": "bit", "metric": "hamming"}, "at most 64000"),
        ({"dimensions": 8, "index_type": "ivfflat", "metric": "l1"}, "IVFFlat has no L1"),
        ({"dimensions": 8, "index_type": "ivfflat", "vector_type": "sparsevec"}, "sparsevec"),
        (
            {"dimensions": 8, "index_type": "ivfflat", "vector_type": "bit", "metric": "jaccard"},
            "no Jaccard",
        ),
        ({"dimensions": 8, "vector_type": "halfvec", "quantization": "halfvec"}, "half precision"),
        (
            {"dimensions": 8, "vector_type": "bit", "metric": "hamming", "quantization": "binary"},
            "applies to vector and halfvec",
        ),
        (
            {
                "dimensions": 8,
                "index_type": "none",
                "vector_type": "sparsevec",
                "quantization": "binary",
            },
            "applies to vector and halfvec",
        ),
        ({"dimensions": 8, "quantization": "pq"}, "quantization 'pq' is not one of"),
        ({"dimensions": 8, "iterative_scan": "always"}, "iterative_scan 'always' is not one of"),
        ({"dimensions": 8, "ef_search": 0}, "ef_search must be an integer from 1 to 1000"),
        ({"dimensions": 8, "ef_search": 1001}, "ef_search must be an integer from 1 to 1000"),
        ({"dimensions": 8, "probes": True}, "probes must be an integer"),
        ({"dimensions": 8, "rerank_factor": 0}, "rerank_factor must be an integer from 1"),
        ({"dimensions": 8, "max_scan_tuples": -5}, "max_scan_tuples must be an integer"),
        ({"dimensions": 8, "max_parallel_maintenance_workers": -1}, "from 0 to 1024"),
        ({"dimensions": 8, "maintenance_work_mem": "lots"}, "maintenance_work_mem must be a size"),
        ({"dimensions": 8, "maintenance_work_mem": "1 GB"}, "maintenance_work_mem must be a size"),
        ({"dimensions": 8, "index_type": "ivfflat", "index_params": {"m": 4}}, "do not apply"),
        ({"dimensions": 8, "index_params": {"ef_construction": 2000}}, "from 4 to 1000"),
    ],
)
def test_impossible_index_configurations(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        StoreConfig.from_mapping(options)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("options", "quantization"),
    [
        ({"dimensions": 3072}, "halfvec"),  # auto: OpenAI text-embedding-3-large
        ({"dimensions": 5000, "quantization": "binary"}, "binary"),
        ({"dimensions": 5000, "index_type": "none"}, "none"),  # no index: no limit
        ({"dimensions": 8000, "vector_type": "halfvec", "quantization": "binary"}, "binary"),
        ({"dimensions": 30000, "vector_type": "sparsevec"}, "none"),
        ({"dimensions": 64000, "vector_type": "bit", "metric": "hamming"}, "none"),
    ],
)
def test_possible_index_configurations(options: dict[str, Any], quantization: str) -> None:
    assert StoreConfig.from_mapping(options).index_quantization == quantization


def test_memory_setting_takes_megabytes() -> None:
    config = StoreConfig.from_mapping({"dimensions": 3, "maintenance_work_mem": 512})
    assert config.maintenance_work_mem == "512MB"
    assert StoreConfig(dimensions=3, maintenance_work_mem="2GB").maintenance_work_mem == "2GB"


@pytest.mark.parametrize(
    ("rows", "lists"),
    [(0, 1), (999, 1), (5_000, 5), (1_000_000, 1000), (4_000_000, 2000), (10**12, 32768)],
)
def test_default_lists(rows: int, lists: int) -> None:
    assert default_lists(rows) == lists


@pytest.mark.parametrize(
    ("index_type", "params", "result"),
    [
        ("hnsw", {"m": 16, "ef_construction": 64}, {"m": 16, "ef_construction": 64}),
        ("hnsw", {}, {}),
        ("ivfflat", {"lists": 100}, {"lists": 100}),
        ("ivfflat", {"lists": 0}, "from 1 to 32768"),
        ("hnsw", {"m": 32, "ef_construction": 40}, "at least 2 * m"),
        ("hnsw", {"lists": 3}, "do not apply to hnsw"),
        ("hnsw", {"m": 2.5}, "must be an integer"),
    ],
)
def test_check_index_params(index_type: str, params: dict[str, Any], result: Any) -> None:
    if isinstance(result, dict):
        assert check_index_params(index_type, params) == result
    else:
        with pytest.raises(ConfigurationError, match=re.escape(result)):
            check_index_params(index_type, params)


def test_parse_reloptions() -> None:
    assert parse_reloptions(None) == {}
    assert parse_reloptions(["m=8", "ef_construction=80"]) == {"m": 8, "ef_construction": 80}
    assert parse_reloptions(["lists=3", "odd=x"]) == {"lists": 3, "odd": "x"}


@pytest.mark.parametrize(
    ("options", "index_type", "rows", "ddl"),
    [
        (
            {"dimensions": 8},
            "hnsw",
            0,
            'CREATE INDEX IF NOT EXISTS "t_embedding_hnsw" ON "public"."t" '
            'USING hnsw ("embedding" vector_cosine_ops)',
        ),
        (
            {"dimensions": 8, "metric": "l2", "index_params": {"m": 8, "ef_construction": 32}},
            "hnsw",
            0,
            'CREATE INDEX IF NOT EXISTS "t_embedding_hnsw" ON "public"."t" '
            'USING hnsw ("embedding" vector_l2_ops) WITH (m = 8, ef_construction = 32)',
        ),
        (
            {"dimensions": 8, "metric": "ip", "index_type": "ivfflat"},
            "ivfflat",
            25_000,
            'CREATE INDEX IF NOT EXISTS "t_embedding_ivfflat" ON "public"."t" '
            'USING ivfflat ("embedding" vector_ip_ops) WITH (lists = 25)',
        ),
        (
            {"dimensions": 3000},
            "hnsw",
            0,
            'CREATE INDEX IF NOT EXISTS "t_embedding_hnsw_halfvec" ON "public"."t" '
            'USING hnsw (("embedding"::halfvec(3000)) halfvec_cosine_ops)',
        ),
        (
            {"dimensions": 768, "quantization": "binary", "metric": "l2"},
            "ivfflat",
            4000,
            'CREATE INDEX IF NOT EXISTS "t_embedding_ivfflat_binary" ON "public"."t" '
            'USING ivfflat ((binary_quantize("embedding")::bit(768)) bit_hamming_ops) '
            "WITH (lists = 4)",
        ),
        (
            {"dimensions": 100, "vector_type": "halfvec", "metric": "l1"},
            "hnsw",
            0,
            'CREATE INDEX IF NOT EXISTS "t_embedding_hnsw" ON "public"."t" '
            'USING hnsw ("embedding" halfvec_l1_ops)',
        ),
        (
            {"dimensions": 100, "vector_type": "bit", "metric": "jaccard"},
            "hnsw",
            0,
            'CREATE INDEX IF NOT EXISTS "t_embedding_hnsw" ON "public"."t" '
            'USING hnsw ("embedding" bit_jaccard_ops)',
        ),
    ],
)
def test_index_ddl(options: dict[str, Any], index_type: str, rows: int, ddl: str) -> None:
    config = StoreConfig.from_mapping(options, table_name="t")
    sql = Statements(config)
    spec = index_spec(
        config,
        name=sql.index_name(index_type),
        column_sql=sql.col("embedding"),
        index_type=index_type,
        params=None,
        rows=rows,
    )
    assert spec.create_sql(sql.table, concurrently=False) == ddl
    assert spec.create_sql(sql.table, concurrently=True).startswith("CREATE INDEX CONCURRENTLY ")


def test_index_names_are_63_byte_safe_and_distinct() -> None:
    config = StoreConfig(dimensions=3000, table_name="x" * 63)
    sql = Statements(config)
    names = sql.index_names()
    assert len(set(names)) == 2
    assert all(len(name.encode()) <= 63 for name in names)
    assert names[0].endswith("_embedding_hnsw_halfvec")


def test_explicit_create_index_refuses_impossible_types() -> None:
    config = StoreConfig(dimensions=8, metric="l1")
    with pytest.raises(ConfigurationError, match="IVFFlat has no L1"):
        index_spec(config, name="n", column_sql="e", index_type="ivfflat", params=None, rows=0)
    assert (
        index_problem(
            vector_type="vector",
            metric="l1",
            dimensions=8,
            index_type="hnsw",
            quantization="none",
        )
        is None
    )


# -- pure: query settings -------------------------------------------------------------------------

PLAIN = {"dimensions": 8}
ITERATE = {"hnsw.iterative_scan": "relaxed_order", "ivfflat.iterative_scan": "relaxed_order"}
CUSTOM_PLAN = {"plan_cache_mode": "force_custom_plan"}


@pytest.mark.parametrize(
    ("options", "managed", "lists", "expected"),
    [
        (PLAIN, True, None, {"hnsw.ef_search": "200"}),  # pgvs's default for its own index
        (PLAIN, False, None, {}),  # not pgvs's index: the server's defaults
        (
            {**PLAIN, "ef_search": 64, "probes": 3},
            False,
            None,
            {"hnsw.ef_search": "64", "ivfflat.probes": "3"},
        ),
        (
            {**PLAIN, "index_type": "ivfflat"},
            True,
            400,
            {"hnsw.ef_search": "200", "ivfflat.probes": "20"},
        ),
        (
            {**PLAIN, "index_type": "ivfflat", "probes": 7},
            True,
            400,
            {"hnsw.ef_search": "200", "ivfflat.probes": "7"},
        ),
        (
            {**PLAIN, "index_type": "ivfflat"},
            True,
            1,
            {"hnsw.ef_search": "200", "ivfflat.probes": "1"},
        ),
    ],
)
def test_session_settings(
    options: dict[str, Any], managed: bool, lists: int | None, expected: dict[str, str]
) -> None:
    config = StoreConfig.from_mapping(options)
    assert session_settings(config, managed=managed, lists=lists) == expected


@pytest.mark.parametrize(
    ("options", "call", "settings", "resort"),
    [
        # The hot path: nothing to set.
        (PLAIN, {"k": 10}, {}, False),
        (PLAIN, {"k": 200}, {}, False),
        ({**PLAIN, "index_type": "none"}, {"k": 500}, {}, False),
        # HNSW yields at most ef_search rows: raise it to k, then iterate past 1000.
        (PLAIN, {"k": 201}, {"hnsw.ef_search": "201"}, False),
        ({**PLAIN, "ef_search": 40}, {"k": 41}, {"hnsw.ef_search": "41"}, False),
        (
            PLAIN,
            {"k": 1500},
            {"hnsw.ef_search": "1000", **ITERATE, "hnsw.iterative_scan": "strict_order"},
            True,
        ),
        # Per-call values that differ from the store's (session) values.
        (PLAIN, {"k": 10, "ef_search": 100}, {"hnsw.ef_search": "100"}, False),
        ({**PLAIN, "ef_search": 100}, {"k": 10, "ef_search": 100}, {}, False),
        ({**PLAIN, "ef_search": 100}, {"k": 10}, {}, False),
        ({**PLAIN, "ef_search": 100}, {"k": 10, "ef_search": 40}, {"hnsw.ef_search": "40"}, False),
        (PLAIN, {"k": 10, "probes": 7}, {"ivfflat.probes": "7"}, False),
        ({**PLAIN, "probes": 7}, {"k": 10, "probes": 7}, {}, False),
        # Filtered: iterative scans, re-sorted rows, per-call plans.
        (PLAIN, {"k": 10, "filtered": True}, {**ITERATE, **CUSTOM_PLAN}, True),
        (
            {**PLAIN, "iterative_scan": "strict_order", "max_scan_tuples": 50000, "max_probes": 9},
            {"k": 10, "filtered": True},
            {
                "hnsw.iterative_scan": "strict_order",
                "ivfflat.iterative_scan": "relaxed_order",
                "hnsw.max_scan_tuples": "50000",
                "ivfflat.max_probes": "9",
                **CUSTOM_PLAN,
            },
            True,
        ),
        ({**PLAIN, "iterative_scan": "off"}, {"k": 10, "filtered": True}, CUSTOM_PLAN, False),
        ({**PLAIN, "index_type": "none"}, {"k": 10, "filtered": True}, CUSTOM_PLAN, False),
        # Exact: no ANN index at all.
        (PLAIN, {"k": 10, "exact": True}, {"enable_indexscan": "off"}, False),
        (
            PLAIN,
            {"k": 10, "exact": True, "filtered": True},
            {"enable_indexscan": "off", **CUSTOM_PLAN},
            False,
        ),
        # Quantized: k * rerank_factor candidates; the outer query re-ranks, so never resort.
        ({**PLAIN, "quantization": "halfvec"}, {"k": 10}, {}, False),
        ({**PLAIN, "quantization": "binary"}, {"k": 10}, {}, False),
        (
            {**PLAIN, "quantization": "binary", "ef_search": 40},
            {"k": 10},
            {"hnsw.ef_search": "100"},
            False,
        ),
        (
            {**PLAIN, "quantization": "binary", "rerank_factor": 40},
            {"k": 10},
            {"hnsw.ef_search": "400"},
            False,
        ),
        (
            {**PLAIN, "quantization": "binary"},
            {"k": 200},
            {"hnsw.ef_search": "1000", **ITERATE},
            False,
        ),
    ],
)
def test_search_settings(
    options: dict[str, Any], call: dict[str, Any], settings: dict[str, str], resort: bool
) -> None:
    config = StoreConfig.from_mapping(options)
    managed = config.index_type != "none"
    plan = search_settings(
        config,
        k=call["k"],
        filtered=call.get("filtered", False),
        ann=managed,
        session=session_settings(config, managed=managed),
        ef_search=call.get("ef_search"),
        probes=call.get("probes"),
        exact=call.get("exact", False),
    )
    assert dict(plan.settings) == settings
    assert plan.resort is resort


def test_old_pgvector_gets_no_iterative_scan_settings() -> None:
    plan = search_settings(
        StoreConfig(dimensions=8), k=10, filtered=True, ann=True, iterative=False
    )
    assert dict(plan.settings) == CUSTOM_PLAN
    assert not plan.resort
    assert version_tuple("0.8.6") >= (0, 8, 0) > version_tuple("0.7.4")
    assert version_tuple("0.10.0-dev") == (0, 10, 0)


def test_set_local_sql() -> None:
    assert set_local_sql([]) == "BEGIN"
    assert (
        set_local_sql([("hnsw.ef_search", "100"), ("plan_cache_mode", "force_custom_plan")])
        == "BEGIN; SET LOCAL hnsw.ef_search = 100; SET LOCAL plan_cache_mode = force_custom_plan"
    )


def test_quantized_search_sql_orders_by_the_index_expression() -> None:
    half = Statements(StoreConfig(dimensions=3000, table_name="t"))
    sql = half.search(condition=None, include_metadata=False, include_vectors=False)
    assert 'ORDER BY ("embedding"::halfvec(3000)) <=> ($1::vector)::halfvec(3000)' in sql
    assert sql.endswith("LIMIT $2::integer * 1) AS c ORDER BY distance LIMIT $2::integer")
    binary = Statements(
        StoreConfig.from_mapping({"dimensions": 64, "quantization": "binary", "metric": "l2"})
    )
    sql = binary.search(condition=None, include_metadata=False, include_vectors=False)
    assert 'ORDER BY (binary_quantize("embedding")::bit(64)) <~> binary_quantize($1::vector)' in sql
    assert '"embedding" <-> $1::vector AS distance' in sql
    assert "LIMIT $2::integer * 10)" in sql
    batch = binary.search_batch(condition=None, include_metadata=False, include_vectors=False)
    assert "binary_quantize(q.vec)" in batch


def test_uses_index_walks_the_plan() -> None:
    plan = {
        "Node Type": "Limit",
        "Plans": [
            {
                "Node Type": "Subquery Scan",
                "Plans": [{"Node Type": "Index Scan", "Index Name": "t_embedding_hnsw"}],
            }
        ],
    }
    assert uses_index(plan, ["t_embedding_hnsw"]) == "t_embedding_hnsw"
    assert uses_index(plan, ["other"]) is None
    assert uses_index({"Node Type": "Seq Scan"}, ["t_embedding_hnsw"]) is None


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (None, None),
        (
            {
                "phase": "building index: loading tuples",
                "tuples_total": 200,
                "tuples_done": 50,
                "blocks_total": 0,
                "blocks_done": 0,
            },
            IndexProgress("loading tuples", 25.0, 50, 200, 0, 0, 1.5),
        ),
        (
            {
                "phase": "building index: scanning table",
                "tuples_total": 0,
                "tuples_done": 0,
                "blocks_total": 10,
                "blocks_done": 4,
            },
            IndexProgress("scanning table", 40.0, 0, 0, 4, 10, 1.5),
        ),
        (
            {
                "phase": "initializing",
                "tuples_total": None,
                "tuples_done": None,
                "blocks_total": 0,
                "blocks_done": 0,
            },
            IndexProgress("initializing", None, 0, 0, 0, 0, 1.5),
        ),
    ],
)
def test_progress_from_row(row: dict[str, Any] | None, expected: IndexProgress | None) -> None:
    assert progress_from_row(row, 1.5) == expected


# -- against a real server -----------------------------------------------------------------------

DIM = 16


def _vectors(count: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)


@pytest.fixture
async def manual(pg_dsn: str, table_name: str) -> AsyncIterator[AsyncPGVectorStore]:
    """A store that creates no index by itself."""
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=DIM, table_name=table_name, auto_create_index=False
    ) as opened:
        yield opened


async def _mark_invalid(raw_conn: asyncpg.Connection, name: str) -> None:
    # What an interrupted CREATE INDEX CONCURRENTLY leaves (the superuser shortcut to it).
    await raw_conn.execute(
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = $1::regclass", name
    )


async def _prefer_vector_index(store: AsyncPGVectorStore) -> None:
    """Session-wide on the store's one pooled connection: no sequential or bitmap scans, and no
    sorts, so small test tables take the path of big ones (the ANN index serves the ORDER BY)."""
    assert store.config.pool_max_size == 1
    await store.pool.execute(
        "SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off"
    )


async def test_hnsw_is_created_at_initialize_and_serves_searches(
    pg_dsn: str, table_name: str, raw_conn: asyncpg.Connection
) -> None:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn,
        dimensions=DIM,
        table_name=table_name,
        pool_min_size=1,
        pool_max_size=1,
    ) as store:
        status = await store.index_status()
        assert status.exists
        assert status.valid
        assert status.index_type == "hnsw"
        assert status.opclass == "vector_cosine_ops"
        assert status.name == f"{table_name}_embedding_hnsw"
        assert status.size_bytes > 0
        vectors = _vectors(2000)
        ids = await store.add_vectors(vectors)
        await raw_conn.execute(f'ANALYZE "{table_name}"')
        # At 2,000 rows and ef_search 200 an exact scan is cheaper, and the planner says so.
        assert not (await store.explain_search(vectors[5], k=10)).uses_vector_index
        exact = await store.explain_search(vectors[5], k=10, exact=True)
        assert not exact.uses_vector_index
        assert exact.settings == (("enable_indexscan", "off"),)
        assert (await store.search(vectors[5], k=5, exact=True))[0].id == ids[5]
        await _prefer_vector_index(store)
        plan = await store.explain_search(vectors[5], k=10)
        assert plan.uses_vector_index
        assert plan.index_name == status.name
        assert plan.settings == ()
        assert (await store.search(vectors[5], k=1))[0].id == ids[5]
        analyzed = await store.explain_search(vectors[5], k=10, analyze=True)
        assert analyzed.plan["Actual Rows"] == 10
        # More rows than hnsw.ef_search (200): the search raises it for this call.
        assert len(await store.search(vectors[5], k=250)) == 250
        assert len((await store.search_batch(vectors[:2], k=250))[1]) == 250
        assert len(await store.search(vectors[5], k=1500)) == 1500  # past 1000: iterative


async def test_index_lifecycle(
    manual: AsyncPGVectorStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = manual
    assert not (await store.index_status()).exists
    assert await store.drop_index() is False
    assert not (await store.reindex()).exists
    await store.add_vectors(_vectors(300))
    caplog.set_level(logging.INFO, logger="pgvs")
    built = await store.create_index("ivfflat", {"lists": 3})
    assert (built.index_type, dict(built.params), built.valid) == ("ivfflat", {"lists": 3}, True)
    assert await store.create_index("ivfflat") == built  # kept, not rebuilt
    with pytest.raises(ConfigurationError, match="drop_index"):
        await store.create_index("ivfflat", {"lists": 5})
    rebuilt = await store.reindex(concurrently=True)
    assert rebuilt.valid
    assert rebuilt.params == {"lists": 3}
    assert await store.drop_index(concurrently=True) is True
    assert not (await store.index_status()).exists
    hnsw = await store.create_index(
        "hnsw",
        {"m": 8, "ef_construction": 32},
        concurrently=True,
        maintenance_work_mem="64MB",
        max_parallel_maintenance_workers=0,
    )
    assert hnsw.params == {"m": 8, "ef_construction": 32}
    assert "building hnsw index" in caplog.text
    with pytest.raises(ConfigurationError, match="maintenance_work_mem must be a size"):
        await store.create_index("hnsw", maintenance_work_mem="plenty")
    with pytest.raises(ConfigurationError, match="needs an index type"):
        await AsyncPGVectorStore(manual.config.replace(index_type="none")).create_index()
    with pytest.raises(ConfigurationError, match="IVFFlat has no L1"):
        await AsyncPGVectorStore(manual.config.replace(metric="l1")).create_index("ivfflat")


async def test_build_settings_apply_to_the_build(
    manual: AsyncPGVectorStore, caplog: pytest.LogCaptureFixture
) -> None:
    # pgvector says so when the graph outgrows maintenance_work_mem: proof the setting applied.
    await manual.add_vectors(_vectors(2500))
    caplog.set_level(logging.INFO, logger="pgvs")
    await manual.create_index("hnsw", maintenance_work_mem="1MB")
    assert "maintenance_work_mem" in caplog.text
    caplog.clear()
    await manual.reindex(concurrently=True, maintenance_work_mem="1MB")
    assert "maintenance_work_mem" in caplog.text
    caplog.clear()
    await manual.reindex(maintenance_work_mem="256MB")
    assert "no longer fits" not in caplog.text
    # The concurrent build's session-level settings stayed on its own connection.
    assert await manual.pool.fetchval("SHOW maintenance_work_mem") == "64MB"


async def test_progress_callback_and_bar(
    manual: AsyncPGVectorStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_index_builds, "_PROGRESS_INTERVAL", 0.01)
    await manual.add_vectors(_vectors(3000))
    samples: list[IndexProgress] = []
    await manual.create_index("hnsw", progress=samples.append)
    assert samples[-1] == IndexProgress("done", 100.0, elapsed=samples[-1].elapsed)
    assert len(samples) >= 2
    phases = {sample.phase for sample in samples[:-1]}
    assert phases <= {"initializing", "loading tuples"}, phases
    percents = [s.percent for s in samples[:-1] if s.percent is not None]
    assert percents == sorted(percents)
    assert all(0 <= p <= 100 for p in percents)

    def broken(sample: IndexProgress) -> None:
        raise RuntimeError("callback bug")

    assert (await manual.reindex(progress=broken)).valid  # a broken callback never stops a build
    assert (await manual.reindex(concurrently=True, progress=True)).valid
    assert "reindex hnsw" in capsys.readouterr().err


async def test_invalid_index_is_repaired_at_start_up(
    pg_dsn: str, table_name: str, raw_conn: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    config = {"connection_string": pg_dsn, "dimensions": DIM, "table_name": table_name}
    async with AsyncPGVectorStore(config) as store:
        await store.add_vectors(_vectors(200))
        name = (await store.index_status()).name
    await _mark_invalid(raw_conn, name)
    caplog.set_level(logging.INFO, logger="pgvs")
    async with AsyncPGVectorStore(config) as store:
        assert "INVALID" in caplog.text
        status = await store.wait_for_index(timeout=60)
        assert status.valid
        assert status.name == name
        assert "dropping and rebuilding" in caplog.text


async def test_invalid_index_is_repaired_before_a_build(
    manual: AsyncPGVectorStore, raw_conn: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    await manual.add_vectors(_vectors(200))
    status = await manual.create_index("hnsw")
    await _mark_invalid(raw_conn, status.name)
    assert not (await manual.index_status()).valid
    caplog.set_level(logging.WARNING, logger="pgvs")
    assert (await manual.create_index("hnsw", concurrently=True)).valid
    assert "INVALID" in caplog.text
    await _mark_invalid(raw_conn, status.name)
    assert (await manual.reindex(concurrently=True)).valid


async def test_interrupted_concurrent_build_leaves_invalid_index_then_repair(
    manual: AsyncPGVectorStore, raw_conn: asyncpg.Connection
) -> None:
    await manual.add_vectors(_vectors(8000, seed=3))
    build = asyncio.ensure_future(manual.create_index("hnsw", concurrently=True))
    for _ in range(400):
        phase = await raw_conn.fetchval(
            "SELECT phase FROM pg_stat_progress_create_index WHERE relid = $1::regclass",
            manual.config.table_name,
        )
        if phase and "loading tuples" in phase:
            break
        await asyncio.sleep(0.01)
    build.cancel()
    with pytest.raises(asyncio.CancelledError):
        await build
    for _ in range(200):  # the server notices the cancel request (or the closed socket)
        if not await raw_conn.fetchval(
            "SELECT count(*) FROM pg_stat_progress_create_index WHERE relid = $1::regclass",
            manual.config.table_name,
        ):
            break
        await asyncio.sleep(0.05)
    left = await manual.index_status()
    assert left.exists
    assert not left.valid
    assert not left.building
    repaired = await manual.create_index("hnsw")
    assert repaired.valid


async def test_ivfflat_waits_for_rows_and_is_built_in_the_background(
    pg_dsn: str, table_name: str
) -> None:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn,
        dimensions=DIM,
        table_name=table_name,
        index_type="ivfflat",
        min_rows_for_index=500,
    ) as store:
        assert not (await store.wait_for_index()).exists
        await store.add_vectors(_vectors(400))
        assert not (await store.wait_for_index()).exists
        await store.add_vectors(_vectors(200, seed=1))
        # The write returned without waiting for the build: it runs in a task of its own.
        status = await store.wait_for_index(timeout=60)
        assert status.valid
        assert status.index_type == "ivfflat"
        assert status.params == {"lists": 1}
        assert len(await store.search(_vectors(1)[0], k=5)) == 5


async def test_populated_table_gets_its_hnsw_index_in_the_background(
    manual: AsyncPGVectorStore,
) -> None:
    await manual.add_vectors(_vectors(500))
    async with AsyncPGVectorStore(manual.config.replace(auto_create_index=True)) as store:
        status = await store.wait_for_index(timeout=60)
        assert status.valid
        assert status.index_type == "hnsw"


async def test_query_settings_never_leak_to_the_next_user(
    pg_dsn: str, table_name: str, raw_conn: asyncpg.Connection
) -> None:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn,
        dimensions=DIM,
        table_name=table_name,
        pool_min_size=1,
        pool_max_size=1,  # one connection: every call below reuses it
        ef_search=60,
        command_timeout=2,
    ) as store:
        vectors = _vectors(300)
        await store.add_vectors(vectors, metadata=[{"b": i % 10} for i in range(300)])

        async def session() -> tuple[str, str, str, str]:
            async with store.pool.acquire() as connection:
                # A fresh backend (the timed-out search's connection is replaced, not reused)
                # knows pgvector's settings once the library is loaded: use the type first.
                await connection.fetchval("SELECT '[1]'::vector IS NOT NULL")
                row = await connection.fetchrow(
                    "SELECT current_setting('hnsw.ef_search'), "
                    "current_setting('hnsw.iterative_scan'), current_setting('plan_cache_mode'), "
                    "current_setting('enable_indexscan')"
                )
                assert row is not None
                return row[0], row[1], row[2], row[3]

        defaults = ("60", "off", "auto", "on")  # the store's ef_search is its session default
        assert await session() == defaults
        assert len(await store.search(vectors[0], k=10, ef_search=200, filter={"b": 3})) == 10
        assert await session() == defaults
        await store.search(vectors[0], k=5, exact=True, probes=3)
        await store.search_batch(vectors[:3], k=100, filter={"b": 1})
        await store.explain_search(vectors[0], k=5, ef_search=10, filter={"b": 1}, analyze=True)
        assert await session() == defaults

        # A search that fails inside its transaction (a timeout here) leaves nothing behind.
        async with raw_conn.transaction():
            await raw_conn.execute(f'LOCK TABLE "{table_name}" IN ACCESS EXCLUSIVE MODE')
            with pytest.raises(QueryTimeoutError):
                await store.search(vectors[0], k=5, filter={"b": 1}, ef_search=99)
        assert await session() == defaults
        assert len(await store.search(vectors[0], k=5, filter={"b": 1})) == 5
        with pytest.raises(ValidationError, match="ef_search must be an integer from 1 to 1000"):
            await store.search(vectors[0], ef_search=0)
        with pytest.raises(ValidationError, match="probes must be an integer"):
            await store.search(vectors[0], probes=1.5)  # type: ignore[arg-type]


async def test_plain_search_is_one_statement_without_a_transaction(
    manual: AsyncPGVectorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    vectors = _vectors(50)
    await manual.add_vectors(vectors)
    calls: list[str] = []
    original = asyncpg.Connection.fetch

    async def counting_fetch(self: asyncpg.Connection, sql: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(sql)
        return await original(self, sql, *args, **kwargs)

    async def no_transaction(*args: Any) -> Any:
        raise AssertionError("the plain path opened a transaction")

    monkeypatch.setattr(asyncpg.Connection, "fetch", counting_fetch)
    monkeypatch.setattr(manual._session, "fetch_with_settings", no_transaction)
    await manual.search(vectors[0], k=10)
    await manual.search(vectors[0], k=10, include_metadata=False)
    assert len(calls) == 2
    assert all("BEGIN" not in sql and sql.endswith("ORDER BY distance LIMIT 10") for sql in calls)


async def test_filtered_search_through_hnsw_returns_k_rows(pg_dsn: str, table_name: str) -> None:
    vectors = _vectors(3000, seed=5)
    metadata = [{"bucket": i % 100} for i in range(3000)]  # 1 % per bucket
    for iterative, expect_all in (("relaxed_order", True), ("strict_order", True), ("off", False)):
        async with AsyncPGVectorStore(
            connection_string=pg_dsn,
            dimensions=DIM,
            table_name=table_name,
            pool_min_size=1,
            pool_max_size=1,
            iterative_scan=iterative,
        ) as store:
            if not await store.count():
                ids = await store.add_vectors(vectors, metadata=metadata)
                await store.pool.execute(f'ANALYZE "{table_name}"')
            # Take the filter's own indexes and the sequential scan away (session-wide on the one
            # pooled connection): the planner must use HNSW, the case iterative scans fix.
            await _prefer_vector_index(store)
            plan = await store.explain_search(vectors[7], k=10, filter={"bucket": 7})
            assert plan.uses_vector_index
            hits = await store.search(vectors[7], k=10, filter={"bucket": 7})
            assert all(hit.metadata == {"bucket": 7} for hit in hits)
            distances = [hit.distance for hit in hits]
            assert distances == sorted(distances)
            if expect_all:
                assert len(hits) == 10
                members = np.arange(7, 3000, 100)
                unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
                nearest = members[np.argsort(-(unit[members] @ unit[7]))[:10]]
                found = {ids.index(hit.id) for hit in hits}
                assert len(found & set(nearest.tolist())) >= 9
            else:
                assert len(hits) < 10  # pgvector without iterative scans: the bug pgvs avoids


async def test_halfvec_expression_index_for_3000_dimensions(
    pg_dsn: str, table_name: str, raw_conn: asyncpg.Connection
) -> None:
    vectors = _vectors(300, 3000, seed=2)
    async with AsyncPGVectorStore(
        connection_string=pg_dsn,
        dimensions=3000,
        table_name=table_name,
        pool_min_size=1,
        pool_max_size=1,
    ) as store:
        status = await store.index_status()
        assert status.valid
        assert status.opclass == "halfvec_cosine_ops"
        assert "halfvec(3000)" in (status.definition or "")
        ids = await store.add_vectors(vectors)
        await raw_conn.execute(f'ANALYZE "{table_name}"')
        await _prefer_vector_index(store)  # 300 rows: a sequential scan would be cheaper
        plan = await store.explain_search(vectors[9], k=5)
        assert plan.uses_vector_index
        hits = await store.search(vectors[9], k=5)
        assert hits[0].id == ids[9]
        # Distances are the exact ones, computed on the stored full-precision vectors.
        assert hits[0].distance == pytest.approx(0.0, abs=1e-6)
        assert [h.distance for h in hits] == sorted(h.distance for h in hits)


async def test_binary_quantized_index_reranks_by_exact_distance(
    pg_dsn: str, table_name: str, raw_conn: asyncpg.Connection
) -> None:
    vectors = _vectors(2000, 64, seed=4)
    async with AsyncPGVectorStore(
        connection_string=pg_dsn,
        dimensions=64,
        table_name=table_name,
        metric="euclidean",
        quantization="binary",
        rerank_factor=30,
        pool_min_size=1,
        pool_max_size=1,
    ) as store:
        ids = await store.add_vectors(vectors)
        status = await store.index_status()
        assert status.opclass == "bit_hamming_ops"
        assert status.name.endswith("_embedding_hnsw_binary")
        await raw_conn.execute(f'ANALYZE "{table_name}"')
        await _prefer_vector_index(store)  # 2,000 rows: a sequential scan would be cheaper
        plan = await store.explain_search(vectors[3], k=10)
        assert plan.uses_vector_index
        assert ("hnsw.ef_search", "300") in plan.settings  # k * rerank_factor candidates
        hits = await store.search(vectors[3], k=10)
        assert hits[0].id == ids[3]
        expected = np.linalg.norm(vectors - vectors[3], axis=1)
        for hit in hits:
            assert hit.distance == pytest.approx(expected[ids.index(hit.id)], rel=1e-5)
        assert [h.distance for h in hits] == sorted(h.distance for h in hits)
        batch = await store.search_batch(vectors[:3], k=10)
        assert [b[0].id for b in batch] == ids[:3]


async def test_sparsevec_rows_over_the_hnsw_limit_are_refused(pg_dsn: str, table_name: str) -> None:
    async with AsyncPGVectorStore(
        connection_string=pg_dsn,
        dimensions=5000,
        table_name=table_name,
        vector_type="sparsevec",
        metric="l2",
    ) as store:
        assert (await store.index_status()).opclass == "sparsevec_l2_ops"
        ok = SparseVector(dict.fromkeys(range(1000), 1.0), 5000)
        too_many = SparseVector(dict.fromkeys(range(1001), 1.0), 5000)
        with pytest.raises(ValidationError, match="row 1: vector has 1001 non-zero elements"):
            await store.add_vectors([ok, too_many])
        assert await store.count() == 0


RACE = textwrap.dedent(
    """
    import asyncio, json, sys
    import numpy as np
    from pgvs import AsyncPGVectorStore

    async def main() -> None:
        dsn, table, mode, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
        options = dict(connection_string=dsn, dimensions=16, table_name=table,
                       pool_min_size=1, pool_max_size=2)
        if mode == "explicit":
            async with AsyncPGVectorStore(options, auto_create_index=False) as store:
                status = await store.create_index("hnsw", concurrently=True)
        else:
            async with AsyncPGVectorStore(options, index_type="ivfflat",
                                          min_rows_for_index=1000) as store:
                rng = np.random.default_rng(seed)
                for _ in range(3):
                    await store.add_vectors(rng.normal(size=(100, 16)).astype(np.float32))
                    await asyncio.sleep(0.05)
                status = await store.wait_for_index(timeout=120)
        print(json.dumps({"valid": status.valid, "exists": status.exists}))

    asyncio.run(main())
    """
)


async def _race(pg_dsn: str, table_name: str, mode: str) -> list[dict[str, Any]]:
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            RACE,
            pg_dsn,
            table_name,
            mode,
            str(i),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(4)
    ]
    outcomes = [await p.communicate() for p in processes]
    failures = [
        err.decode() for p, (_, err) in zip(processes, outcomes, strict=True) if p.returncode
    ]
    assert failures == []
    for _, err in outcomes:
        assert "Traceback" not in err.decode()
        assert "failed" not in err.decode()
    return [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outcomes]


async def _vector_indexes(raw_conn: asyncpg.Connection, table_name: str) -> list[asyncpg.Record]:
    return await raw_conn.fetch(
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_am am ON am.oid = c.relam "
        "WHERE i.indrelid = $1::regclass AND am.amname IN ('hnsw', 'ivfflat')",
        table_name,
    )


@pytest.mark.slow
async def test_four_processes_racing_explicit_builds_make_one_index(
    manual: AsyncPGVectorStore, raw_conn: asyncpg.Connection
) -> None:
    await manual.add_vectors(_vectors(5000))
    table_name = manual.config.table_name
    results = await _race(manual.config.resolved_connection_string() or "", table_name, "explicit")
    assert results == [{"valid": True, "exists": True}] * 4
    indexes = await _vector_indexes(raw_conn, table_name)
    assert [(r["relname"], r["indisvalid"]) for r in indexes] == [
        (f"{table_name}_embedding_hnsw", True)
    ]


@pytest.mark.slow
async def test_four_processes_racing_automatic_ivfflat_builds_make_one_index(
    pg_dsn: str, table_name: str, raw_conn: asyncpg.Connection
) -> None:
    await _race(pg_dsn, table_name, "auto")
    indexes = await _vector_indexes(raw_conn, table_name)
    assert [(r["relname"], r["indisvalid"]) for r in indexes] == [
        (f"{table_name}_embedding_ivfflat", True)
    ]


async def test_explicit_defaults_are_the_defaults(
    pg_dsn: str, table_name: str, raw_conn: asyncpg.Connection
) -> None:
    # The index built on its own (initialize, or ingest's background build) has pgvector's
    # defaults and no WITH (...): asking for those same values explicitly is no conflict.
    async with AsyncPGVectorStore(
        connection_string=pg_dsn, dimensions=DIM, table_name=table_name
    ) as store:
        await store.ingest(_vectors(200))
        built = await store.index_status()
        assert built.params == {}
        assert await store.create_index("hnsw", {"m": 16, "ef_construction": 64}) == built
        assert await store.create_index("hnsw", {"ef_construction": 64}) == built
        with pytest.raises(ConfigurationError, match=r"'m': 16, 'ef_construction': 64.*'m': 8"):
            await store.create_index("hnsw", {"m": 8, "ef_construction": 64})
        # IVFFlat alike: lists=100 is what an index built without WITH (lists) has.
        await store.drop_index()
        name = f"{table_name}_embedding_ivfflat"
        await raw_conn.execute(
            f'CREATE INDEX "{name}" ON "{table_name}" USING ivfflat (embedding vector_cosine_ops)'
        )
        status = await store.create_index("ivfflat", {"lists": 100})
        assert (status.name, status.params) == (name, {})
        with pytest.raises(ConfigurationError, match="'lists': 7"):
            await store.create_index("ivfflat", {"lists": 7})
        # And for partial indexes.
        hot = await store.create_index("hnsw", where={"n": 1}, domain="")
        assert await store.create_index("hnsw", {"m": 16}, where={"n": 1}, domain="") == hot
