"""Ranking that happens in Python: MMR selection, and the fusion maths as a reference. Pure.

Hybrid search fuses on the server (:mod:`pgvs.search.statements`); :func:`fuse` computes the
same scores from two ranked id lists, so tests can hold the SQL to it.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ValidationError

__all__ = ["check_hybrid", "check_mmr", "fuse", "mmr_select"]


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_hybrid(
    *,
    k: int,
    fusion: str,
    rrf_k: Any,
    vector_weight: Any,
    text_weight: Any,
    candidates: Any,
) -> int:
    """Validate hybrid_search's options before any I/O; returns the candidates per leg."""
    if fusion not in ("rrf", "weighted"):
        raise ValidationError(f"fusion must be 'rrf' or 'weighted', got {fusion!r}")
    if _number("rrf_k", rrf_k) < 1:
        raise ValidationError(f"rrf_k must be at least 1, got {rrf_k!r}")
    weights = (_number("vector_weight", vector_weight), _number("text_weight", text_weight))
    if min(weights) < 0:
        raise ValidationError(f"weights must not be negative, got {weights}")
    if max(weights) == 0:
        raise ValidationError("vector_weight and text_weight are both 0: nothing would rank")
    if candidates is None:
        # Deep enough that a row ranked well by one leg and fairly by the other still meets in
        # the fusion; a reciprocal rank past ~50 adds little (1/110 vs 1/61 for rank 1).
        return max(50, 5 * k)
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < k:
        raise ValidationError(
            f"candidates must be an integer of at least k={k}, got {candidates!r}"
        )
    return candidates


def fuse(
    vector_ids: Sequence[Hashable],
    text_ids: Sequence[Hashable],
    *,
    fusion: str = "rrf",
    rrf_k: float = 60,
    vector_weight: float = 1.0,
    text_weight: float = 1.0,
    vector_scores: Sequence[float] | None = None,
    text_scores: Sequence[float] | None = None,
) -> dict[Hashable, float]:
    """Fused score per id from each leg's ranked ids (best first). ``weighted`` needs each leg's
    similarity scores (higher is better), min-max normalised here over the leg."""
    fused: dict[Hashable, float] = {}
    legs = ((vector_ids, vector_weight, vector_scores), (text_ids, text_weight, text_scores))
    for ids, weight, scores in legs:
        if fusion == "rrf":
            values = [weight / (rrf_k + rank) for rank in range(1, len(ids) + 1)]
        else:
            assert scores is not None
            assert len(scores) == len(ids)
            low, high = min(scores, default=0.0), max(scores, default=0.0)
            values = [weight * (1.0 if high == low else (s - low) / (high - low)) for s in scores]
        for key, value in zip(ids, values, strict=True):
            fused[key] = fused.get(key, 0.0) + value
    return fused


def check_mmr(k: int, fetch_k: Any, lambda_mult: Any) -> None:
    if isinstance(fetch_k, bool) or not isinstance(fetch_k, int) or fetch_k < k:
        raise ValidationError(f"fetch_k must be an integer of at least k={k}, got {fetch_k!r}")
    value = _number("lambda_mult", lambda_mult)
    if not 0.0 <= value <= 1.0:
        raise ValidationError(f"lambda_mult must be between 0 and 1, got {lambda_mult!r}")


def _unit_rows(matrix: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    rows = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    unit: npt.NDArray[np.float64] = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
    return unit


def mmr_select(
    query: npt.ArrayLike, candidates: npt.ArrayLike, k: int, lambda_mult: float
) -> list[int]:
    """Maximal marginal relevance: positions of ``k`` candidates, in the order chosen.

    Each step takes the candidate maximising ``lambda * sim(query, c) - (1 - lambda) *
    max(sim(c, chosen))`` with cosine similarity (a zero vector is similar to nothing):
    ``lambda_mult=1`` is plain relevance order, ``0`` pure diversity. Ties go to the earlier
    (nearer) candidate.
    """
    matrix = _unit_rows(np.atleast_2d(np.asarray(candidates)))
    if matrix.shape[0] == 0 or k <= 0:
        return []
    relevance = matrix @ _unit_rows(np.asarray(query).reshape(1, -1))[0]
    chosen: list[int] = []
    redundancy = np.full(matrix.shape[0], -np.inf)
    available = np.ones(matrix.shape[0], dtype=bool)
    for _ in range(min(k, matrix.shape[0])):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0) if chosen else 0.0
        objective = lambda_mult * relevance - (1.0 - lambda_mult) * penalty
        objective = np.where(available, objective, -np.inf)
        best = int(np.argmax(objective))
        chosen.append(best)
        available[best] = False
        redundancy = np.maximum(redundancy, matrix @ matrix[best])
    return chosen
