"""Row-level security mode (``row_level_security=True``): tenant isolation enforced by
PostgreSQL, not only by the store's own ``WHERE domain_id = $n``.

The table gets ``ENABLE`` and ``FORCE ROW LEVEL SECURITY`` (FORCE: its owner is subject too)
and one policy admitting the rows whose domain equals ``current_setting('pgvs.domain', true)``,
for reads and writes alike. The store sets that setting per transaction
(``set_config(..., true)``, see :func:`._session.scope`), so a pooled connection outside the
store's own transactions (raw SQL on ``store.pool``) has no tenant and sees no row. A role
that bypasses RLS (a superuser, or ``BYPASSRLS``) sees every row anyway: the store warns.
"""

from __future__ import annotations

import warnings

import asyncpg

from .._sql import quote_ident
from ..errors import SchemaMismatchError
from ._context import StoreContext
from ._session import logger

__all__ = ["POLICY", "ensure_policy"]

POLICY = "pgvs_domain"
_STATE = (
    "SELECT c.relrowsecurity AND c.relforcerowsecurity AS forced, EXISTS (SELECT 1 FROM "
    "pg_policy p WHERE p.polrelid = c.oid AND p.polname = $2) AS has_policy "
    "FROM pg_class c WHERE c.oid = to_regclass($1)"
)
_BYPASSES = "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"


async def ensure_policy(
    connection: asyncpg.Connection,
    ctx: StoreContext,
    *,
    table: str | None = None,
    table_text: str | None = None,
) -> None:
    """Enable, force and create the policy when missing (auto_create_table), else verify;
    in the set-up transaction, under the table's lock. Warn when this role bypasses RLS.

    ``table`` / ``table_text`` (quoted / as text): a side table of the store with its own
    ``domain_id`` column (the query log), held to the same policy; default the store's table.
    """
    config, sql = ctx.config, ctx.sql
    if not config.row_level_security:
        return
    side = table is not None
    table = table or sql.table
    table_text = table_text or sql.table_text
    state = await connection.fetchrow(_STATE, table_text, POLICY)
    assert state is not None, "the table exists by now"
    if not (state["forced"] and state["has_policy"]):
        if not config.auto_create_table:
            raise SchemaMismatchError(
                f"row_level_security=True but {table} has no forced {POLICY} policy",
                hint="Initialize once with auto_create_table=True as the table's owner, or "
                "create the policy as the README's Reliability section shows.",
            )
        domain = quote_ident("domain_id") if side else sql.col("domain_id")
        predicate = f"{domain} = current_setting('pgvs.domain', true)"
        await connection.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        await connection.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        if not state["has_policy"]:
            await connection.execute(
                f"CREATE POLICY {POLICY} ON {table} USING ({predicate}) WITH CHECK ({predicate})"
            )
        logger.info("row-level security enabled on %s (policy %s)", table, POLICY)
    if not side and await connection.fetchval(_BYPASSES):
        warnings.warn(
            f"row_level_security=True, but the role connecting to {sql.table} is a superuser "
            "or has BYPASSRLS, so PostgreSQL does not apply the policy to it: only the store's "
            "own domain filter isolates tenants. Connect as an ordinary role.",
            RuntimeWarning,
            stacklevel=2,
        )
