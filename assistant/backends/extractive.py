"""The default answerer: a short answer made of verbatim units of the corpus, each followed by [n].

No generative model. The best unit, then near-best ones that add something and repeat nothing;
a lead-in ending in ':' brings its list items; a table row is shown with its column names. Each
cited sentence is yielded as soon as it is composed.
"""
from __future__ import annotations

from typing import Iterator, Sequence

from ingest.records import Unit, split_row

from ..records import NOT_IN_CORPUS, Answer, Citation, Evidence, Query, Scored, Turn
from ..terms import content_terms
from ..units import label_only, overlaps, with_list

MARGIN = 0.06  # further sentences must score within this of the best one
REDUNDANT = 0.9  # cosine above which a further sentence repeats a chosen one


class ExtractiveBackend:
    name = "extractive"

    def __init__(self, settings) -> None:
        self.settings = settings

    def condense(self, question: str, query: Query, history: Sequence[Turn]) -> Query:
        return query

    def compose(self, evidence: Evidence) -> Iterator[str | Answer]:
        d = evidence.decision
        common = dict(
            query=evidence.query.text, hits=evidence.hits, confidence=d.confidence, threshold=d.threshold
        )
        if d.abstain:
            yield NOT_IN_CORPUS
            yield Answer(NOT_IN_CORPUS, True, related=evidence.related, **common)
            return
        parts: list[str] = []
        cites: list[Citation] = []
        for part, citation in compose_parts(select(d.units, evidence.index, self.settings.max_sentences), evidence.query, evidence.index):
            yield part if not parts else " " + part
            parts.append(part)
            cites.append(citation)
        yield Answer(" ".join(parts), False, tuple(cites), **common)


def select(scored: Sequence[Scored], index, max_sentences: int) -> list[Scored]:
    """The best unit, then near-best ones that add something and repeat nothing."""
    scored = [s for s in scored if not label_only(s.unit)]
    if not scored:
        return []
    chosen = [scored[0]]
    for cand in scored[1:]:
        if len(chosen) >= max_sentences or cand.score < scored[0].score - MARGIN:
            break
        cv = index.vector_of(cand.unit)
        if any(float(cv @ index.vector_of(c.unit)) > REDUNDANT for c in chosen):
            continue
        if any(overlaps(cand.unit, c.unit) for c in chosen):
            continue
        chosen.append(cand)
    return chosen


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


def compose_parts(chosen: Sequence[Scored], query: Query, index) -> Iterator[tuple[str, Citation]]:
    """Each answer sentence with its [n], and its citation (each used once)."""
    covered: list[Unit] = []
    n = 0
    for s in chosen:
        if any(overlaps(s.unit, c) for c in covered):
            continue  # already quoted as an item of a list above
        unit, items = with_list(s.unit, index)
        n += 1
        if items:
            text = f"{s.unit.text.strip()} {'; '.join(i.text.strip() for i in items)} [{n}]"
        else:
            text = f"{render(unit, query)} [{n}]"
        covered.append(unit)
        yield text, Citation.of_unit(n, unit)
