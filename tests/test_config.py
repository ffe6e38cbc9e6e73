"""StoreConfig: every key validated, built from keywords or a dict, never shows a password."""

from __future__ import annotations

from typing import Any

import pytest

from pgvs.config import StoreConfig
from pgvs.errors import ConfigurationError


def test_from_dict_and_keywords_agree() -> None:
    from_dict = StoreConfig.from_mapping({"dimensions": 768, "metric": "cosine"})
    from_keywords = StoreConfig(dimensions=768, metric="cosine")
    assert from_dict == from_keywords
    assert from_dict.pool_min_size == 2
    assert from_dict.pool_max_size == 10


@pytest.mark.parametrize(
    ("alias", "metric"),
    [("l2", "euclidean"), ("L2", "euclidean"), ("ip", "inner_product"), ("euclidean", "euclidean")],
)
def test_metric_aliases(alias: str, metric: str) -> None:
    assert StoreConfig(dimensions=3, metric=alias).metric == metric  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dimensions": 3, "colour": "red"}, "unknown configuration key(s) 'colour'; valid keys:"),
        ({"metric": "cosine"}, "dimensions is required"),
        ({"dimensions": 0}, "dimensions must be between 1 and 16000"),
        ({"dimensions": 16001}, "dimensions must be between 1 and 16000"),
        ({"dimensions": "768"}, "dimensions must be a positive integer"),
        ({"dimensions": True}, "dimensions must be a positive integer"),
        ({"dimensions": 3, "metric": "cosinus"}, "metric 'cosinus' is not one of"),
        ({"dimensions": 3, "metric": "hamming"}, "not available for vector_type 'vector'"),
        (
            {"dimensions": 3, "vector_type": "bit", "metric": "cosine"},
            "not available for vector_type 'bit'",
        ),
        ({"dimensions": 3, "vector_type": "float"}, "vector_type 'float' is not one of"),
        ({"dimensions": 3, "pool_min_size": 5, "pool_max_size": 2}, "pool sizes must satisfy"),
        ({"dimensions": 3, "pool_max_size": 0}, "pool sizes must satisfy"),
        ({"dimensions": 3, "command_timeout": -1}, "command_timeout must be a positive number"),
        ({"dimensions": 3, "command_timeout": float("nan")}, "command_timeout must be a positive"),
        ({"dimensions": 3, "id_type": "int"}, "id_type 'int' is not one of"),
        ({"dimensions": 3, "table_name": "x" * 64}, "is 64 bytes long; PostgreSQL keeps only 63"),
        ({"dimensions": 3, "schema": "é" * 32}, "is 64 bytes long"),
        ({"dimensions": 3, "table_name": ""}, "identifier must not be empty"),
        ({"dimensions": 3, "table_name": "a\x00b"}, "NUL"),
        ({"dimensions": 3, "columns": {"vector": "v"}}, "unknown logical column(s) 'vector'"),
        (
            {"dimensions": 3, "columns": {"content": "body", "metadata": "body"}},
            "several logical names",
        ),
        ({"dimensions": 3, "columns": {"id": None}, "auto_create_table": False}, "required"),
        ({"dimensions": 3, "columns": {"content": None}}, "only for existing tables"),
        (
            {
                "dimensions": 3,
                "columns": {"domain_id": None},
                "auto_create_table": False,
                "domain_id": "t1",
            },
            "tenancy needs that column",
        ),
        ({"dimensions": 3, "domain_id": ""}, "domain_id must be a non-empty string"),
        ({"dimensions": 3, "index_type": "diskann"}, "index_type 'diskann' is not one of"),
        ({"dimensions": 3, "index_params": {"lists": 10}}, "do not apply to hnsw"),
        ({"dimensions": 3, "index_params": {"m": 1}}, "must be an integer from 2 to 100"),
        ({"dimensions": 3, "index_params": {"m": 16, "ef_construction": 20}}, "at least 2 * m"),
        ({"dimensions": 3, "auto_create_table": "yes"}, "auto_create_table must be True or False"),
    ],
)
def test_invalid_configuration(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        StoreConfig.from_mapping(options)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_repr_hides_password() -> None:
    config = StoreConfig(
        dimensions=3, connection_string="postgresql://alice:s3cr3t-pw@db.example:5432/app"
    )
    assert "s3cr3t-pw" not in repr(config)
    assert "postgresql://alice:***@db.example:5432/app" in repr(config)


def test_config_is_immutable_and_replace_revalidates() -> None:
    config = StoreConfig(dimensions=3)
    with pytest.raises(AttributeError):
        config.dimensions = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.columns["id"] = "x"  # type: ignore[index]
    assert config.replace(metric="l2").metric == "euclidean"
    with pytest.raises(ConfigurationError):
        config.replace(dimensions=-1)


def test_database_url_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    assert StoreConfig(dimensions=3).resolved_connection_string() == "postgresql://u@h/db"
    explicit = StoreConfig(dimensions=3, connection_string="postgresql://x@y/z")
    assert explicit.resolved_connection_string() == "postgresql://x@y/z"
    monkeypatch.delenv("DATABASE_URL")
    assert StoreConfig(dimensions=3).resolved_connection_string() is None
