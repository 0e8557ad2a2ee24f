"""The decide stage: answer, or say plainly that the corpus does not say.

Confidence is the best evidence score (with the bonus for naming the identifier the question
names) among the top answerable units that hold what the question asks for (a date, a number, an
amount, a version — or, when no unit holds a version number, a year; the numbers inside the
names the question names do not count, nor a 'one' that does not count what "how many" asks
about), lowered by half the share of the question's words the
corpus never uses (nor a synonym of them) and by a quarter of the share its own document never
uses though other documents do. The corpus "does not say"
when no unit qualifies, when the question names an identifier the corpus never mentions
("ASL-5", "v2.6"), or when confidence is below the threshold.
"""
from __future__ import annotations

from typing import Sequence

from . import qtype
from .rank import W_ELSEWHERE, W_IDENTIFIER, documents_named_by, foreign_share, named_documents, unknown_share
from .records import Citation, Decision, Query, Scored
from .synonyms import NONE, Synonyms
from .units import label_only

TOP_FOR_CONFIDENCE = 5
# confidence lost per share of the question's words the corpus never uses, and per share of those
# the unit's own document never uses though other documents do (0.5 for these cost squad-dev 0.021
# -> 0.042 false abstention for 0.433 vs 0.408 abstention on squad-holdout)
W_UNKNOWN, W_FOREIGN = 0.5, 0.25


def decide(
    query: Query, scored: Sequence[Scored], index, threshold: float, model_weight: float = 0.0, synonyms: Synonyms = NONE
) -> Decision:
    useful = [s for s in scored if not label_only(s.unit)]
    kind = qtype.expected_type(query.focus)
    names = qtype.identifiers(query.focus)
    thing = qtype.counted(query.focus)  # 'How many phases …?': a number in words must count phases
    typed = tuple(s for s in useful if qtype.satisfies(kind, s.unit.text, names, thing))
    if not typed and kind in qtype.FALLBACK:
        typed = tuple(s for s in useful if qtype.satisfies(qtype.FALLBACK[kind], s.unit.text, names))
    if not typed:
        return Decision(True, 0.0, threshold, "answer type" if useful else "no candidates")
    unknown_ids = qtype.unknown_identifiers(query.focus, index.identifiers)
    if any(not documents_named_by(i, query, index) for i in unknown_ids):
        return Decision(True, 0.0, threshold, "unknown identifier")
    top = typed[:TOP_FOR_CONFIDENCE]
    unknown = unknown_share(query, index.stats, synonyms)
    foreign = {src: foreign_share(query, index.stats, src, synonyms) for src in {s.unit.source for s in top}}
    docs = named_documents(query, index)
    confidence = max(
        _strength(s, model_weight) * (1.0 - W_UNKNOWN * unknown - W_FOREIGN * foreign[s.unit.source])
        - (W_ELSEWHERE if docs and s.unit.source not in docs else 0.0)
        for s in top
    )
    if confidence < threshold:
        return Decision(True, confidence, threshold, "below threshold", typed)
    return Decision(False, confidence, threshold, "", typed)


def _strength(s: Scored, model_weight: float) -> float:
    """How well the unit answers: the cheap evidence score plus its bonus for naming the identifier
    the question names, blended with the ranker's probability where the ranker scored the unit.
    'When did RSP v2.4 come out?' is answered by the one row naming v2.4, though a bare table row
    shares few words with the question. A quoted phrase orders units but adds no confidence: on
    nodejs it lifted 'the StringDecoder `fatal` option', which the corpus has only for another
    class, above most answerable questions."""
    base = s.evidence + W_IDENTIFIER * s.named
    if model_weight and s.model >= 0:
        return (1.0 - model_weight) * base + model_weight * s.model
    return base


def related(scored: Sequence[Scored], limit: int) -> tuple[Citation, ...]:
    """The closest passages (one unit each), offered apart when abstaining; never citations."""
    out: list[Citation] = []
    seen: set[str] = set()
    for s in scored:
        if s.unit.chunk_id in seen:
            continue
        seen.add(s.unit.chunk_id)
        out.append(Citation.of_unit(len(out) + 1, s.unit))
        if len(out) >= limit:
            break
    return tuple(out)
