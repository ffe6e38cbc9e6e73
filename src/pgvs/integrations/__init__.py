"""Integrations with other libraries, one module per library, each behind its own extra.

Never imported by the package root: ``import pgvs`` loads none of them (or their libraries).
They sit on top of the public API (the stores, :mod:`pgvs.types`, :mod:`pgvs.codecs`).
"""
