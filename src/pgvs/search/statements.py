"""The SQL of text, hybrid and centroid search. Pure: built from the store's :class:`Statements`.

Parameters follow :meth:`Statements.search`: ``$1`` the query (vector, or text for text search),
``$2`` a row count, ``$3`` the domain when the table has one, then the filter's parameters, then
the extra ones each builder names. Identifiers come quoted from :class:`Statements`; the filter
condition is compiled by :mod:`pgvs.filters` with its values bound; weights and counts are bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .._statements import Statements
from .text import query_sql

__all__ = ["Fusion", "SearchStatements"]

Fusion = Literal["rrf", "weighted"]


@dataclass(frozen=True)
class SearchStatements:
    sql: Statements

    def _where(self, condition: str | None, *extra: str, domain_param: int = 3) -> str:
        where = self.sql.domain_condition(None, domain_param)
        where += "".join(f"{part} AND " for part in extra)
        if condition:
            where += f"({condition}) AND "
        return where.removesuffix(" AND ")

    def _text_candidates(self, condition: str | None, text_param: int, limit: str) -> str:
        sql = self.sql
        tsv = sql.col("content_tsv")
        return (
            f"SELECT {sql.id_select} AS id, ts_rank_cd({tsv}, q.q) AS score "
            f"FROM {sql.table}, {query_sql(sql.config, f'${text_param}', syntax='plain')} AS q(q) "
            f"WHERE {self._where(condition, f'{tsv} @@ q.q')} "
            f"ORDER BY score DESC, id LIMIT {limit}"
        )

    def text_search(
        self, *, condition: str | None, include_metadata: bool, include_vectors: bool
    ) -> str:
        """Rows matching ``$1`` (web-search syntax), best ``ts_rank_cd`` first; ``$2`` = k."""
        sql = self.sql
        tsv = sql.col("content_tsv")
        columns = [
            f"{sql.id_select} AS id",
            f"ts_rank_cd({tsv}, q.q) AS score",
            *sql.row_columns(include_metadata, include_vectors),
        ]
        return (
            f"SELECT {', '.join(columns)} "
            f"FROM {sql.table}, {query_sql(sql.config, '$1')} AS q(q) "
            f"WHERE {self._where(condition, f'{tsv} @@ q.q')} "
            f"ORDER BY score DESC, id LIMIT $2::integer"
        )

    def hybrid_search(
        self,
        *,
        vector_leg: str,
        condition: str | None,
        first_extra: int,
        fusion: Fusion,
        include_metadata: bool,
        include_vectors: bool,
    ) -> str:
        """Vector and text legs fused in one statement.

        ``vector_leg`` is the store's own top-k statement (``$1`` query, ``$2`` candidates, the
        domain and the filter), so the vector leg runs exactly as ``search()`` would, through
        the vector index. The text leg takes the same domain and filter. Extra parameters from
        ``first_extra``: text, k, vector weight, text weight, and for ``rrf`` rrf_k.

        Ranks are 1-based within each leg's candidates (ties broken by id); a row only one leg
        found has no rank in the other (NULL) and gets nothing from it. ``rrf``: the sum of
        ``weight / (rrf_k + rank)``; ``weighted``: the sum of ``weight * s`` with each leg's
        score min-max normalised over its candidates (1 when they are all equal).
        """
        sql = self.sql
        text_p, k_p, wv_p, wt_p, rrf_p = (first_extra + i for i in range(5))
        text_leg = self._text_candidates(condition, text_p, "$2::integer")
        if fusion == "rrf":
            score = (
                f"coalesce(${wv_p}::float8 / (${rrf_p}::float8 + v.rank), 0) + "
                f"coalesce(${wt_p}::float8 / (${rrf_p}::float8 + t.rank), 0)"
            )
        else:
            score = (
                f"${wv_p}::float8 * coalesce(v.normalised, 0) + "
                f"${wt_p}::float8 * coalesce(t.normalised, 0)"
            )
        id_type = sql.id_array_type.removesuffix("[]")
        domain = f"r.{sql.col('domain_id')} = $3::text AND " if sql.has("domain_id") else ""
        columns = [
            "f.id AS id",
            "f.pgvs_score AS score",
            "f.pgvs_vector_rank AS vector_rank",
            "f.pgvs_text_rank AS text_rank",
            f"r.{sql.col('embedding')} {sql.operator} $1::{sql.query_cast} AS distance",
            *(f"r.{column}" for column in sql.row_columns(include_metadata, include_vectors)),
        ]
        return (
            "WITH vector_leg AS (\n"
            "    SELECT id, row_number() OVER (ORDER BY distance, id) AS rank,\n"
            "        CASE WHEN max(distance) OVER () = min(distance) OVER () THEN 1.0\n"
            "             ELSE (max(distance) OVER () - distance)\n"
            "                  / (max(distance) OVER () - min(distance) OVER ()) END AS normalised\n"
            f"    FROM ({vector_leg}) AS c\n"
            "), text_leg AS (\n"
            "    SELECT id, row_number() OVER (ORDER BY score DESC, id) AS rank,\n"
            "        CASE WHEN max(score) OVER () = min(score) OVER () THEN 1.0\n"
            "             ELSE (score - min(score) OVER ())\n"
            "                  / (max(score) OVER () - min(score) OVER ()) END AS normalised\n"
            f"    FROM ({text_leg}) AS c\n"
            "), fused AS (\n"
            "    SELECT coalesce(v.id, t.id) AS id, v.rank AS pgvs_vector_rank,\n"
            f"        t.rank AS pgvs_text_rank, {score} AS pgvs_score\n"
            "    FROM vector_leg AS v FULL OUTER JOIN text_leg AS t ON t.id = v.id\n"
            "    ORDER BY pgvs_score DESC, pgvs_vector_rank NULLS LAST, pgvs_text_rank NULLS LAST\n"
            f"    LIMIT ${k_p}::integer\n"
            ")\n"
            f"SELECT {', '.join(columns)}\n"
            f"FROM fused AS f JOIN {sql.table} AS r "
            f"ON {domain}r.{sql.col('id')} = f.id::{id_type}\n"
            "ORDER BY f.pgvs_score DESC, f.pgvs_vector_rank NULLS LAST, "
            "f.pgvs_text_rank NULLS LAST"
        )

    def centroid(self, condition: str | None) -> str:
        """The mean vector of the matching rows (pgvector's ``avg``); NULL when none match.

        ``$1`` is the domain when the table has one; the filter's parameters follow
        (:meth:`Statements.first_param`).
        """
        sql = self.sql
        where = self._where(condition, domain_param=1)
        return f"SELECT avg({sql.col('embedding')}) FROM {sql.table}" + (
            f" WHERE {where}" if where else ""
        )
