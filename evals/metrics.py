"""Scoring one answer against its gold item: retrieval, answer, citation and abstention measures."""
from __future__ import annotations

import string
from collections import Counter
from dataclasses import dataclass

from assistant.verify import cited_markers

from .dataset import matches_accept, normalize


def squad_tokens(text: str) -> list[str]:
    text = normalize(text)
    text = "".join(ch for ch in text if ch not in string.punctuation)
    return [w for w in text.split() if w not in ("a", "an", "the")]


def token_f1(prediction: str, gold: str) -> float:
    p, g = squad_tokens(prediction), squad_tokens(gold)
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class Span:
    source: str
    start: int
    end: int

    def overlaps(self, other: "Span") -> bool:
        return self.source == other.source and self.start < other.end and other.start < self.end


def evidence_spans(quotes, corpus_texts: dict[str, str]) -> list[list[Span]]:
    """For each gold quote, every place it occurs in the corpus."""
    out = []
    for q in quotes:
        places = []
        for source, text in corpus_texts.items():
            i = text.find(q)
            while i >= 0:
                places.append(Span(source, i, i + len(q)))
                i = text.find(q, i + 1)
        out.append(places)
    return out


def retrieval_ranks(hit_spans: list[Span], gold: list[list[Span]]) -> list[int | None]:
    """Per gold quote: the 1-based rank of the first retrieved chunk that contains it."""
    ranks = []
    for places in gold:
        rank = None
        for r, hit in enumerate(hit_spans, 1):
            if any(hit.source == p.source and hit.start <= p.start and p.end <= hit.end for p in places):
                rank = r
                break
        ranks.append(rank)
    return ranks


def citation_checks(answer, corpus_texts: dict[str, str]) -> tuple[bool, list[Span]]:
    """Valid when every [n] names a listed citation, every citation is used, and each quote is
    exactly the source text at its offsets. Brackets inside the quoted text itself (code such as
    `listeners[0]()`) are not markers: the markers are read as the verify stage reads them."""
    used = cited_markers(answer)
    listed = {c.n for c in answer.citations}
    valid = used == listed
    spans = []
    for c in answer.citations:
        text = corpus_texts.get(c.source)
        if text is None or text[c.start : c.end] != c.quote:
            valid = False
        spans.append(Span(c.source, c.start, c.end))
    return valid, spans


def score(item, answer, hit_spans: list[Span], corpus_texts: dict[str, str], latency: float) -> dict:
    gold = evidence_spans(item.evidence, corpus_texts)
    ranks = retrieval_ranks(hit_spans, gold)
    valid, cite_spans = citation_checks(answer, corpus_texts)
    gold_flat = [p for places in gold for p in places]
    supporting = [s for s in cite_spans if any(s.overlaps(g) for g in gold_flat)]
    row = {
        "id": item.id,
        "kind": item.kind,
        "answerable": item.answerable,
        "abstained": answer.abstained,
        "latency": latency,
        "citation_valid": valid,
        "citations": len(cite_spans),
        "supporting_citations": len(supporting),
        "answer": answer.text,
    }
    if item.answerable:
        found = [r for r in ranks if r is not None]
        row.update(
            {
                "correct": (not answer.abstained) and matches_accept(answer.text, item.accept, item.need),
                "f1": 0.0 if answer.abstained else token_f1(answer.text, item.answer),
                "recall@1": sum(1 for r in ranks if r is not None and r <= 1) / len(ranks),
                "recall@5": sum(1 for r in ranks if r is not None and r <= 5) / len(ranks),
                "recall@10": sum(1 for r in ranks if r is not None and r <= 10) / len(ranks),
                "rr": 1.0 / min(found) if found else 0.0,
                "cites_gold": bool(supporting),
            }
        )
    else:
        row.update({"correct": answer.abstained, "f1": float(answer.abstained)})
    return row
