"""A PCA store's projection function: created provisional at set-up, fitted at index build.

The pure half (the fit, the function's SQL, why a function) is :mod:`pgvs.search.reduction`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._sql import quote_literal
from ..search import reduction
from ._context import StoreContext
from ._session import Session, logger, transaction

__all__ = ["ensure_projection", "fit_projection"]


async def ensure_projection(ctx: StoreContext, connection: Any) -> None:
    """The projection function exists (the provisional prefix until fitted)."""
    sql, config = ctx.sql, ctx.config
    signature = f"{sql.projection}({config.vector_type})"
    if await connection.fetchval("SELECT to_regprocedure($1) IS NOT NULL", signature):
        return
    assert config.index_dimensions is not None
    components = reduction.prefix_components(config.dimensions, config.index_dimensions)
    await _write(ctx, connection, components, reduction.PROVISIONAL)


async def fit_projection(ctx: StoreContext, session: Session, connection: Any) -> None:
    """Fit the projection on a random sample of the stored rows and replace the function (on
    ``connection``, under the caller's build lock, before the index that uses it is built);
    with too few rows (at most index_dimensions) keep what there is."""
    sql, config = ctx.sql, ctx.config
    assert config.index_dimensions is not None
    # On the pool: its connections decode vectors (a dedicated one has no pgvs codecs).
    rows = await session.pool.fetch(
        f"SELECT {sql.col('embedding')} AS v FROM {sql.table} "  # noqa: S608 - quoted names
        "ORDER BY random() LIMIT $1::integer",
        reduction.SAMPLE_ROWS,
    )
    if len(rows) <= config.index_dimensions:
        logger.warning(
            "PCA index on %s: %d rows are too few to fit %d dimensions; the projection stays "
            "the prefix until the index is rebuilt with more rows",
            sql.table,
            len(rows),
            config.index_dimensions,
        )
        return
    sample = np.stack([np.asarray(row["v"], dtype=np.float32) for row in rows])
    components = reduction.fit_components(sample, config.index_dimensions)
    await _write(ctx, connection, components, reduction.FITTED)
    logger.info("fitted the PCA projection of %s on %d rows", sql.table, len(rows))


async def _write(ctx: StoreContext, connection: Any, components: Any, comment: str) -> None:
    sql, config = ctx.sql, ctx.config
    assert sql.projection is not None
    async with transaction(connection):
        await connection.execute(
            reduction.function_sql(sql.projection, config.vector_type, components)
        )
        await connection.execute(
            f"COMMENT ON FUNCTION {sql.projection}({config.vector_type}) IS "
            f"{quote_literal(comment)}"
        )
