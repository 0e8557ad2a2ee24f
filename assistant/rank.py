"""The rank stage: units (sentences, list items, table rows) scored against the question, and
passages re-ordered by their best unit.

The score is cheap: 0.55 × cosine (unit vectors made at ingest) + 0.35 × idf-weighted coverage of
the question's terms + 0.10 × the rank of the unit's passage among the fused hits, plus a bonus for
naming the exact identifier the question names ('v2.2', 'ASL-4'), larger the rarer it is.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from . import qtype
from .records import Hit, Query, Scored
from .terms import TermStats, content_terms

W_DENSE, W_LEX, W_RANK = 0.55, 0.35, 0.10
W_IDENTIFIER = 0.25
CONTEXT_WEIGHT = 0.5  # earlier turns count half as much as the question asked


def query_vector(embedder, query: Query) -> np.ndarray:
    vec = embedder.encode_one(query.focus)
    if query.context:
        vec = vec + CONTEXT_WEIGHT * embedder.encode_one(query.context)
        vec = vec / (np.linalg.norm(vec) or 1.0)
    return vec


def _weighted_terms(query: Query, stats: TermStats) -> tuple[dict[str, float], float]:
    """Term weights, and the total a fully covered question reaches: the question's own words
    (earlier turns only add evidence; an answer to a follow-up rarely repeats them all)."""
    weights: dict[str, float] = {}
    for term in content_terms(query.context):
        weights[term] = max(weights.get(term, 0.0), CONTEXT_WEIGHT * stats.idf(term))
    focus = {t: stats.idf(t) for t in content_terms(query.focus)}
    weights.update(focus)
    return weights, (sum(focus.values()) or sum(weights.values()) or 1.0)


def unknown_share(query: Query, stats: TermStats) -> float:
    """Share of the question's words the corpus never uses. A follow-up is judged with the
    turns it leans on: in 'In which book?' after a question about an argument, 'book' is one
    word of the request, not all of it."""
    terms = set(content_terms(query.text))
    if not terms:
        return 0.0
    return sum(1 for t in terms if not stats.known(t)) / len(terms)


def score_units(
    query: Query, qvec: np.ndarray, hits: Sequence[Hit], index, candidates: int, everywhere: bool = True
) -> list[Scored]:
    """Units scored against the question by meaning and words, plus a bonus for those in the
    top fused passages; best first, the top few dozen. With everywhere=False only the units
    of the top passages compete (plain retrieve-then-read)."""
    n = len(index.units)
    if n == 0:
        return []
    dense = index.unit_vecs @ qvec
    weights, total = _weighted_terms(query, index.stats)
    lexical = np.zeros(n, dtype=np.float32)
    for term, w in weights.items():
        ix = index.unit_postings.get(term)
        if ix is not None:
            lexical[ix] += w / total
    np.minimum(lexical, 1.0, out=lexical)
    named = np.zeros(n, dtype=np.float32)
    asked = [i for i in qtype.identifiers(query.focus) if i in index.identifier_postings]
    for ident in asked:
        ix = index.identifier_postings[ident]
        # 'v2.2' named in one row is a sharp signal; 'v3', named everywhere, is not
        named[ix] += min(1.0, 3.0 / len(ix)) / len(asked)
    prior = np.zeros(n, dtype=np.float32)
    ranks = np.full(n, -1)
    for rank, hit in enumerate(hits[: candidates * 2]):
        ix = index.units_by_chunk.get(hit.chunk.id)
        if ix:
            prior[ix] = np.maximum(prior[ix], 1.0 / (1.0 + 0.25 * rank))
            ranks[ix] = np.where(ranks[ix] < 0, rank, ranks[ix])
    evidence = W_DENSE * dense + W_LEX * lexical + W_RANK * prior
    total_score = evidence + W_IDENTIFIER * named
    if not everywhere:
        total_score = np.where(ranks >= 0, total_score, -np.inf)
        total_score[ranks >= candidates] = -np.inf
    top = np.argsort(-total_score)[: max(candidates * 6, 30)]
    return [
        Scored(
            index.units[i], float(total_score[i]), float(dense[i]), float(lexical[i]), int(ranks[i]),
            float(named[i]), float(evidence[i]),
        )
        for i in top
        if np.isfinite(total_score[i])
    ]


def rerank(hits: Sequence[Hit], scored: Sequence[Scored], chunks: dict) -> list[Hit]:
    """Passages ordered by their best unit; passages with no scored unit follow in fused order."""
    best: dict[str, float] = {}
    for s in scored:
        best[s.unit.chunk_id] = max(best.get(s.unit.chunk_id, -1.0), s.score)
    by_id = {h.chunk.id: h for h in hits}
    head = [by_id.get(cid) or Hit(chunks[cid], 0.0) for cid in sorted(best, key=lambda c: -best[c]) if cid in chunks]
    return head + [h for h in hits if h.chunk.id not in best]
