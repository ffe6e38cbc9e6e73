"""Writer: the store's row writes (add, update, delete), each one statement and one transaction.

Large ``add_vectors`` calls take the binary-COPY path of :mod:`pgvs.store._ingest` under the same
contract. Every write tells the index manager once its rows are committed (``after_write``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence, Sized
from typing import Any

from .. import _rows
from ..errors import ValidationError
from ._context import StoreContext
from ._ingest import INGEST_THRESHOLD, upsert_all
from ._session import Session, retry_once

__all__ = ["Writer"]


def _affected(status: str) -> int:
    """Rows a command touched, from its status tag (``DELETE 3``, ``UPDATE 1``)."""
    return int(status.split()[-1])


class Writer:
    def __init__(
        self, ctx: StoreContext, session: Session, after_write: Callable[[], None]
    ) -> None:
        self.ctx = ctx
        self.session = session
        self.after_write = after_write

    async def add_vectors(
        self,
        vectors: Any,
        ids: Sequence[Any] | None,
        metadata: Sequence[Mapping[str, Any] | None] | None,
        contents: Sequence[str | None] | None,
        document_ids: Sequence[str | None] | None,
        chunk_indexes: Sequence[int | None] | None,
    ) -> list[Any]:
        args = (vectors, ids, metadata, contents, document_ids, chunk_indexes)
        if ids is not None and isinstance(vectors, Sized):
            # An upsert of given ids from re-readable input is idempotent: run again on a lost
            # connection (if the first run's COMMIT was applied, the second writes the same).
            return await retry_once(self.session, "add_vectors", lambda: self._add(*args))
        return await self._add(*args)

    async def _add(
        self,
        vectors: Any,
        ids: Sequence[Any] | None,
        metadata: Sequence[Mapping[str, Any] | None] | None,
        contents: Sequence[str | None] | None,
        document_ids: Sequence[str | None] | None,
        chunk_indexes: Sequence[int | None] | None,
    ) -> list[Any]:
        ctx = self.ctx
        if isinstance(vectors, Sized) and len(vectors) >= INGEST_THRESHOLD:
            # Large calls take the binary-COPY path: same validation, same contract (one
            # transaction, ids in input order), measured faster from 500 rows up.
            written = await upsert_all(
                ctx, self.session, vectors, ids, metadata, contents, document_ids, chunk_indexes
            )
            self.after_write()
            return written
        pool = self.session.pool
        generated: list[Any] | None = None
        if ids is None:
            count = len(vectors)
            if ctx.config.id_type == "bigint":
                rows = await pool.fetch(
                    ctx.sql.next_ids(), ctx.sql.table_text, ctx.config.column("id"), count
                )
                generated = [row[0] for row in rows]
            else:
                generated = [str(uuid.uuid4()) for _ in range(count)]
        prepared = ctx.prepare(
            vectors, ids, metadata, contents, document_ids, chunk_indexes, generated
        )
        if not prepared.ids:
            return []
        arrays = [prepared.columns[name] for name in ctx.sql.payload_names]
        await pool.execute(ctx.sql.upsert(), *ctx.domain_args(), *arrays)
        self.after_write()
        return prepared.ids

    async def update_metadata(
        self, ids: Sequence[Any], metadatas: Sequence[Mapping[str, Any]], merge: bool
    ) -> int:
        checked = self.ctx.ids(ids)
        if len(metadatas) != len(checked):
            raise ValidationError(
                f"metadatas has {len(metadatas)} entries but there are {len(checked)} ids"
            )
        documents = [_rows.encode_json(meta, row) for row, meta in enumerate(metadatas)]
        last: dict[Any, str] = dict(zip(checked, documents, strict=True))
        status = await self.session.pool.execute(
            self.ctx.sql.update_metadata(),
            *self.ctx.domain_args(),
            list(last),
            list(last.values()),
            merge,
        )
        return _affected(status)

    async def delete_vectors(self, ids: Sequence[Any]) -> int:
        checked = self.ctx.ids(ids)
        status = await self.session.pool.execute(
            self.ctx.sql.delete_ids(), *self.ctx.domain_args(), checked
        )
        return _affected(status)

    async def delete(self, filter: Mapping[str, Any]) -> int:
        if not filter:
            raise ValidationError(
                "delete() needs a non-empty filter", hint="Use clear() to delete every row."
            )
        return await self._delete_where(filter)

    async def clear(self) -> int:
        return await self._delete_where(None)

    async def _delete_where(self, filter: Mapping[str, Any] | None) -> int:
        ctx = self.ctx
        compiled = ctx.compile(filter, ctx.sql.first_param())
        status = await self.session.pool.execute(
            ctx.sql.delete_where(compiled.sql), *ctx.domain_args(), *compiled.params
        )
        return _affected(status)
