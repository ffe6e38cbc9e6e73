"""Integrations of pgvs with other libraries, one module (or subpackage) per library.

Nothing here is imported by the package root: ``import pgvs`` never loads SQLAlchemy or any other
optional dependency. Import the integration itself, e.g. ``pgvs.integrations.sqlalchemy``, after
installing its extra (``pip install 'pgvs[sqlalchemy]'``).
"""
