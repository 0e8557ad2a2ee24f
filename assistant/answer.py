"""The default answerer: a short answer composed of verbatim sentences of the best passages.

No generative model: each sentence of the answer is a quoted span of the corpus followed by
its [n]. Sentences are scored against the question with the embedding model (vectors made at
ingest), an idf-weighted term overlap, and the rank of their passage.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ingest.records import Unit, split_row

from . import qtype
from .conversation import Query
from .records import Citation, Hit
from .terms import TermStats, content_terms

W_DENSE, W_LEX, W_RANK = 0.55, 0.35, 0.10
W_IDENTIFIER = 0.25  # a sentence naming the exact 'v2.2' or 'ASL-4' the question names
CONTEXT_WEIGHT = 0.5  # earlier turns count half as much as the question asked
MARGIN = 0.06  # further sentences must score within this of the best one
REDUNDANT = 0.9


@dataclass(frozen=True)
class Scored:
    unit: Unit
    score: float
    dense: float
    lexical: float
    rank: int
    named: float = 0.0  # share of the question's identifiers this unit names

    @property
    def evidence(self) -> float:
        """The score without the identifier bonus: how well the unit answers, not what it names."""
        return self.score - W_IDENTIFIER * self.named


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
    query: Query, qvec: np.ndarray, hits: list[Hit], index, candidates: int, everywhere: bool = True
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
    total_score = W_DENSE * dense + W_LEX * lexical + W_RANK * prior + W_IDENTIFIER * named
    if not everywhere:
        total_score = np.where(ranks >= 0, total_score, -np.inf)
        total_score[ranks >= candidates] = -np.inf
    top = np.argsort(-total_score)[: max(candidates * 6, 30)]
    return [
        Scored(index.units[i], float(total_score[i]), float(dense[i]), float(lexical[i]), int(ranks[i]), float(named[i]))
        for i in top
        if np.isfinite(total_score[i])
    ]


MAX_LIST_ITEMS = 6


def answerable_units(scored: list[Scored]) -> list[Scored]:
    """Units that say something on their own ('Evaluation methods:' does not)."""
    return [s for s in scored if not _label_only(s.unit)]


def select(scored: list[Scored], index, max_sentences: int) -> list[Scored]:
    """The best sentence, then near-best ones that add something and repeat nothing."""
    scored = answerable_units(scored)
    if not scored:
        return []
    chosen = [scored[0]]
    vec_of = {u.id: i for i, u in enumerate(index.units)}
    for cand in scored[1:]:
        if len(chosen) >= max_sentences or cand.score < scored[0].score - MARGIN:
            break
        cv = index.unit_vecs[vec_of[cand.unit.id]]
        if any(float(cv @ index.unit_vecs[vec_of[c.unit.id]]) > REDUNDANT for c in chosen):
            continue
        if any(_overlaps(cand.unit, c.unit) for c in chosen):
            continue
        chosen.append(cand)
    return chosen


def _label_only(unit: Unit) -> bool:
    """'Evaluation methods:' and the like say nothing by themselves."""
    return unit.text.rstrip().endswith(":") and len(unit.text.split()) < 5


def with_list(unit: Unit, index) -> tuple[Unit, list[Unit]]:
    """A lead-in ending in ':' together with the list items that follow it in its passage.

    Returns the unit spanning lead-in and items (one contiguous quote), and the items.
    """
    if not unit.text.rstrip().endswith(":"):
        return unit, []
    pos = {u.id: i for i, u in enumerate(index.units)}.get(unit.id)
    chunk = index.chunks.get(unit.chunk_id)
    if pos is None or chunk is None:
        return unit, []
    items = []
    for u in index.units[pos + 1 : pos + 1 + MAX_LIST_ITEMS]:
        if u.kind != "item" or u.chunk_id != unit.chunk_id:
            break
        items.append(u)
    if not items:
        return unit, []
    end = items[-1].end
    text = chunk.text[unit.start - chunk.start : end - chunk.start]
    return Unit(unit.id, unit.chunk_id, unit.source, unit.section, "list", unit.start, end, text), items


def _overlaps(a: Unit, b: Unit) -> bool:
    return a.source == b.source and a.start < b.end and b.start < a.end


def render(unit: Unit, query: Query) -> str:
    """The unit as it reads in the answer; table rows get their column names."""
    if unit.kind != "row" or not unit.header:
        return unit.text.strip()
    names, cells = split_row(unit.header), split_row(unit.text)
    if len(names) != len(cells) or len(cells) < 2:
        return unit.text.strip()
    asked = set(content_terms(query.focus))
    wanted = [j for j in range(1, len(names)) if asked & set(content_terms(names[j]))]
    cols = wanted or list(range(1, len(names)))
    parts = "; ".join(f"{names[j]}: {cells[j]}" for j in cols)
    return f"{names[0]}: {cells[0]} — {parts}"


def citation_for(n: int, unit: Unit) -> Citation:
    return Citation(
        n=n,
        chunk_id=unit.chunk_id,
        source=unit.source,
        section=" › ".join(unit.section),
        start=unit.start,
        end=unit.end,
        quote=unit.text,
        header=unit.header,
    )


def compose(chosen: list[Scored], query: Query, index) -> tuple[str, tuple[Citation, ...]]:
    """Answer text with a [n] after every sentence, and its citations (each used once)."""
    parts, cites = [], []
    covered: list[Unit] = []
    for s in chosen:
        if any(_overlaps(s.unit, c) for c in covered):
            continue  # already quoted as an item of a list above
        unit, items = with_list(s.unit, index)
        n = len(cites) + 1
        if items:
            lead = s.unit.text.strip()
            parts.append(f"{lead} {'; '.join(i.text.strip() for i in items)} [{n}]")
        else:
            parts.append(f"{render(unit, query)} [{n}]")
        cites.append(citation_for(n, unit))
        covered.append(unit)
    return " ".join(parts), tuple(cites)
