"""Search strategies beyond one query's k nearest rows: their rules, SQL and ranking. Pure.

``text`` (how content and queries become tsvector/tsquery), ``statements`` (the SQL of text,
hybrid and centroid search), ``ranking`` (MMR, and the fusion maths as a reference). They are
awaited by the store part :mod:`pgvs.store._strategies`; nothing here does I/O.
"""
