"""What reads return. Both unpack like tuples and carry the rest as attributes.

``for id, score, metadata in store.search(q)`` and ``for vector, metadata in store.get_vectors(ids)``
work as written; ``result.content``, ``result.distance``, ... are there when wanted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Record", "SearchResult"]


# Not frozen: a frozen dataclass sets every field through object.__setattr__, which made building
# ten results cost several times reading them (measured in bench/search.py's breakdown).
@dataclass(slots=True)
class SearchResult:
    """One search hit. Unpacks as ``(id, score, metadata)``.

    ``score`` grows with similarity (see the README's table per metric); ``distance`` is what
    pgvector's operator returned. ``vector`` is None unless ``include_vectors=True``.
    """

    id: Any
    score: float
    metadata: dict[str, Any] | None
    distance: float
    content: str | None = None
    document_id: str | None = None
    chunk_index: int | None = None
    vector: Any = None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.id, self.score, self.metadata))


@dataclass(slots=True)
class Record:
    """One stored row from ``get_vectors``. Unpacks as ``(vector, metadata)``.

    For an id that is not stored, ``found`` is False and ``vector`` and ``metadata`` are None.
    """

    id: Any
    vector: Any
    metadata: dict[str, Any] | None
    content: str | None = None
    document_id: str | None = None
    chunk_index: int | None = None

    @property
    def found(self) -> bool:
        return self.vector is not None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.vector, self.metadata))
