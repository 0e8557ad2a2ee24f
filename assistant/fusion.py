"""Reciprocal rank fusion of ranked id lists."""
from __future__ import annotations

from typing import Sequence


def rrf(rankings: Sequence[tuple[Sequence[str], float]], k: int) -> list[tuple[str, float]]:
    """(id, fused score), best first, for lists of ids each given with its weight."""
    scores: dict[str, float] = {}
    for ids, weight in rankings:
        for rank, cid in enumerate(ids, 1):
            scores[cid] = scores.get(cid, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])
