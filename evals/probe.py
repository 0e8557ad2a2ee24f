"""How the learned ranker compares with the cheap unit score on an eval set, without composing answers.

    python -m evals probe --set rsp --set nodejs [--set squad-dev]

For each question item (dialogues are left out), the pipeline runs to the rank stage with the ranker
on at weight 0, so the cheap order is kept and every re-scored unit carries p(answers). A unit is
*gold* when its text lies inside one of the item's evidence quotes (or holds one). Reported:

- top-1: over the answerable items with a gold unit among the re-scored ones, the share whose best
  unit is gold, for the cheap score, the ranker's p alone, and cheap + w × p;
- AUC: how well a score separates answerable from unanswerable items (0.5 = chance), for the
  decide stage's confidence and the ranker's best p.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from assistant.conversation import resolve
from assistant.pipeline import Assistant, clean_question
from assistant.settings import Settings

from .dataset import EvalSet, normalize

BLENDS = (0.15, 0.5)
MIN_INSIDE = 25  # a unit this long or longer counts as gold when it lies inside a quote


@dataclass(frozen=True)
class ProbeRow:
    id: str
    kind: str
    answerable: bool
    confidence: float
    cheap: tuple[float, ...]  # the re-scored units' cheap scores, best first
    p: tuple[float, ...]  # their p(answers)
    gold: tuple[bool, ...]


def is_gold(text: str, quotes: Sequence[str]) -> bool:
    t = normalize(text)
    return any(q in t or (len(t) >= MIN_INSIDE and t in q) for q in quotes)


def probe_rows(es: EvalSet, settings: Settings) -> list[ProbeRow]:
    assistant = Assistant(replace(settings, ranker=True, ranker_weight=0.0))
    n = settings.rank_candidates
    rows = []
    for item in es.items:
        question = clean_question(item.question, settings.max_question_chars)
        ev = assistant.evidence(question, [], resolve(question, [], settings.history_turns))
        scored = [s for s in ev.scored[:n] if s.model >= 0]
        quotes = [normalize(q) for q in item.evidence]
        rows.append(ProbeRow(item.id, item.kind, item.answerable, ev.decision.confidence,
                             tuple(s.score for s in scored), tuple(s.model for s in scored),
                             tuple(is_gold(s.unit.text, quotes) for s in scored)))
    return rows


def auc(pos: Sequence[float], neg: Sequence[float]) -> float | None:
    if not pos or not neg:
        return None
    p, q = np.asarray(pos, float), np.asarray(neg, float)
    return float(((p[:, None] > q[None, :]).sum() + 0.5 * (p[:, None] == q[None, :]).sum()) / (len(p) * len(q)))


def _top1(rows: Sequence[ProbeRow], score) -> float | None:
    hits = [r.gold[int(np.argmax(score(np.asarray(r.cheap), np.asarray(r.p))))] for r in rows]
    return round(float(np.mean(hits)), 3) if hits else None


def summarize(rows: Sequence[ProbeRow]) -> dict:
    with_gold = [r for r in rows if r.answerable and any(r.gold)]
    out = {
        "items": len(rows),
        "answerable_with_gold_candidate": len(with_gold),
        "top1_cheap": _top1(with_gold, lambda c, p: c),
        "top1_ranker": _top1(with_gold, lambda c, p: p),
        **{f"top1_cheap+{w:g}p": _top1(with_gold, lambda c, p, w=w: c + w * p) for w in BLENDS},
    }
    pos = [r for r in rows if r.answerable and r.p]
    neg = [r for r in rows if not r.answerable and r.p]
    a = auc([r.confidence for r in pos], [r.confidence for r in neg])
    b = auc([max(r.p) for r in pos], [max(r.p) for r in neg])
    out["auc_confidence"] = None if a is None else round(a, 3)
    out["auc_ranker_max_p"] = None if b is None else round(b, 3)
    return out


def by_kind(rows: Sequence[ProbeRow]) -> dict[str, dict]:
    return {k: summarize([r for r in rows if r.kind == k]) for k in sorted({r.kind for r in rows})}


def table(name: str, overall: dict, kinds: dict[str, dict]) -> str:
    cols = ["answerable_with_gold_candidate", "top1_cheap", "top1_ranker", *(f"top1_cheap+{w:g}p" for w in BLENDS),
            "auc_confidence", "auc_ranker_max_p"]
    head = ["set / kind", "with gold", "top-1 cheap", "top-1 ranker", *(f"cheap+{w:g}p" for w in BLENDS), "AUC conf", "AUC max p"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, d in [(name, overall), *((f"{name} / {k}", v) for k, v in kinds.items())]:
        lines.append("| " + " | ".join([label] + ["" if d.get(c) is None else str(d[c]) for c in cols]) + " |")
    return "\n".join(lines)
