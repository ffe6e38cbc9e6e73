"""Search strategies beyond one query's k nearest rows: the home of what extends ``search()``.

Text, hybrid (one statement fusing ranks), MMR, two-stage and centroid search each get a module
here: the pure part (SQL, ranking) beside the capability, awaited through the store's parts
(:mod:`pgvs.store`). Nothing lives here yet; the layer is fixed: this package may import the
store and everything below it, and only the facade, integrations and the CLI import it.
"""
