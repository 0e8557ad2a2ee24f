"""Writing eval sets: a starter set drafted from a corpus (`python -m evals new`) and items
made from the chat's thumbs up and down (`python -m evals from-feedback`)."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .dataset import EvalSetError, corpus_documents, normalize

SET_README = """# Eval set `{name}`

Run it with `python -m evals --set {path}`; it ingests its corpus into its own store under
`data/evals/{name}/chroma` (or give `--store DIR`), prints a table, writes
`evals/reports/{name}/latest.{{json,md,png}}` and checks `thresholds.json` when this folder has one.

## Files

- `set.json`: `name`, `corpus` (the corpus folder, relative to this folder or to the repo;
  `.md`, `.txt`, `.html`, `.pdf` files), `description`, optionally `variants` (which pipelines
  to run, from `bm25`, `dense`, `hybrid`, `full`).
- `items.jsonl`: one question a line:
  `{{"id": "fact-01", "kind": "fact", "question": "...", "answer": "...", "accept": ["..."], "evidence": ["..."]}}`
  - `kind`: fact, table, multihop, paraphrase, numeric, comparison or unanswerable.
  - `evidence`: quotes copied verbatim from the corpus text as the product reads it (for HTML and
    PDF: the extracted text, as `python -m assistant cite` shows it); unanswerable items take none.
  - `accept`: short phrases, one of which a correct answer must contain (case, punctuation and
    dashes are ignored); each must occur in `answer` or in an evidence quote.
  - `"draft": true`: drafted by `python -m evals new`; it is checked and scored, and counted as a
    draft until you correct the question, answer and phrases and remove the flag.
  - `"review": true`: from a thumbs-down in `python -m evals from-feedback`; not scored until you
    write the right answer, accept phrases and evidence and remove the flag.
- `dialogues.jsonl` (optional): `{{"id": "dlg-01", "turns": [{{"question": ..., "answer": ..., "accept": [...], "evidence": [...]}}, ...]}}`,
  later turns asked with the conversation so far.
- `thresholds.json` (optional): the gate, e.g. `{{"full": {{"accuracy": {{"min": 0.6}}, "false_abstain": {{"max": 0.25}}}}}}`.

Every load checks each quote and phrase against the corpus and names the item and the fix when
one does not match.
"""

_STOP = set(
    "a an the of to in on at by for with from and or but is are was were be been being it its this that these those "
    "as into than then there their they them he she his her we our you your i not no do does did has have had "
    "which who whom whose what when where why how can could may might must shall should will would also such".split()
)
_WORD = re.compile(r"[^\W_][\w'’.\-/]*[^\W_]|[^\W_]", re.UNICODE)


def key_phrase(text: str, avoid: str = "", words: int = 3) -> str:
    """A short phrase of `text` worth accepting: the window of up to `words` words holding the most
    content (long words, numbers, capitals) that `avoid` (the question) does not already hold."""
    avoid_set = set(normalize(avoid).split())
    tokens = list(_WORD.finditer(text))
    if not tokens:
        return text.strip()

    def weight(tok: str) -> float:
        norm = normalize(tok)
        if not norm or norm in _STOP or norm in avoid_set:
            return 0.0
        return len(norm) + 4 * any(c.isdigit() for c in tok) + 2 * tok[:1].isupper()

    best, best_score = (0, 0), -1.0
    for i in range(len(tokens)):
        for j in range(i, min(i + words, len(tokens))):
            ws = [weight(t.group()) for t in tokens[i : j + 1]]
            if ws[0] == 0 or ws[-1] == 0:  # no stop word at either end
                continue
            score = sum(ws) - 0.5 * (j - i)
            if score > best_score:
                best, best_score = (i, j), score
    if best_score < 0:
        return tokens[0].group()
    return text[tokens[best[0]].start() : tokens[best[1]].end()]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _write_set_files(out: Path, corpus: Path, name: str, description: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "set.json").exists():
        meta = {"name": name, "corpus": os.path.relpath(corpus.resolve(), out.resolve()), "description": description}
        (out / "set.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if not (out / "README.md").exists():
        (out / "README.md").write_text(SET_README.format(name=name, path=out), encoding="utf-8")


# --------------------------------------------------------------------------- new


@dataclass(frozen=True)
class Draft:
    source: str
    heading: str
    sentence: str


def draft_candidates(corpus: Path) -> list[Draft]:
    """Per section of every document: its heading and the first sentence of its first paragraph."""
    from ingest.load import load_paths
    from ingest.sentences import sentence_spans
    from ingest.structure import parse_blocks, sections

    out = []
    for doc in load_paths([corpus]).documents:
        seen: set[tuple[str, ...]] = set()
        for trail, block in sections(parse_blocks(doc.text, doc.kind, dict(doc.layout))):
            if not trail or trail in seen or block.kind != "paragraph":
                continue
            seen.add(trail)
            spans = sentence_spans(doc.text, block.start, block.end)
            if not spans:
                continue
            sentence = doc.text[spans[0][0] : spans[0][1]]
            if 30 <= len(sentence) <= 400:
                out.append(Draft(doc.source, trail[-1].strip(), sentence))
    return out


def _question_of(heading: str) -> str:
    heading = heading.strip().rstrip(":.")
    if heading.endswith("?"):
        return heading
    return f"What does the documentation say about {heading}?"


def new_set(corpus: Path, out: Path, items: int = 12, force: bool = False) -> str:
    """Write a starter set for `corpus` into `out`; returns a one-line summary."""
    corpus, out = Path(corpus), Path(out)
    corpus_documents(corpus)  # one line naming the fix when the corpus cannot be read
    if (out / "items.jsonl").exists() and not force:
        raise EvalSetError(f"{out / 'items.jsonl'} exists — choose another --out, or pass --force to replace it")
    found = draft_candidates(corpus)
    if not found:
        raise EvalSetError(f"{corpus}: no headed paragraph to draft a question from — write items.jsonl by hand")
    step = max(1, len(found) / items)
    picked = [found[int(k * step)] for k in range(min(items, len(found)))]
    rows = []
    for n, d in enumerate(picked, 1):
        question = _question_of(d.heading)
        rows.append(
            {
                "id": f"draft-{n:02d}",
                "kind": "fact",
                "question": question,
                "answer": d.sentence,
                "accept": [key_phrase(d.sentence, avoid=question)],
                "evidence": [d.sentence],
                "draft": True,
                "source": d.source,
            }
        )
    _write_set_files(out, corpus, out.name, f"Questions on {corpus.name} (drafted by python -m evals new; correct them).")
    _write_jsonl(out / "items.jsonl", rows)
    return f"wrote {out}: set.json, README.md and {len(rows)} draft items to correct in items.jsonl"


# --------------------------------------------------------------------------- from feedback

_MARKER = re.compile(r"\s*\[\d+\]")


def read_feedback(path: Path) -> tuple[list[dict], int]:
    """The feedback records (the last vote per question wins) and how many lines were unreadable."""
    if not Path(path).is_file():
        raise EvalSetError(f"{path}: no such feedback file — vote in the chat first (python -m ui), or name the file")
    latest: dict[str, dict] = {}
    bad = 0
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if not isinstance(rec, dict) or rec.get("vote") not in ("up", "down") or not str(rec.get("question", "")).strip():
            if not isinstance(rec, dict) or rec.get("vote") not in ("cleared",):
                bad += 1
            continue
        key = normalize(rec["question"])
        latest.pop(key, None)  # keep the order of the last votes
        latest[key] = rec
    return list(latest.values()), bad


def _quotes(rec: dict) -> list[str]:
    out = []
    for c in rec.get("citations") or []:
        q = c.get("quote") if isinstance(c, dict) else None
        if isinstance(q, str) and q.strip() and q not in out:
            out.append(q)
    return out


def feedback_item(rec: dict, ident: str, texts: list[str]) -> dict:
    question = str(rec["question"]).strip()
    answer = _MARKER.sub("", str(rec.get("answer", ""))).strip()
    quotes = _quotes(rec)
    base = {"id": ident, "kind": "fact", "question": question}
    if rec["vote"] == "down":
        return base | {
            "answer": "",
            "accept": [],
            "evidence": [],
            "review": True,
            "note": "thumbs-down: write the right answer, accept phrases and evidence quotes, then remove \"review\"",
            "rejected_answer": answer,
            "rejected_quotes": quotes,
        }
    if not quotes:  # a liked abstention: the corpus does not say
        return base | {"kind": "unanswerable", "answer": "", "accept": [], "evidence": []}
    missing = [q for q in quotes if not any(q in t for t in texts)]
    if missing:
        return base | {
            "answer": answer,
            "accept": [],
            "evidence": quotes,
            "review": True,
            "note": "a cited quote is no longer in the corpus: re-check the answer and evidence, then remove \"review\"",
        }
    accept = []
    for q in quotes[:2]:
        phrase = key_phrase(q, avoid=question)
        if phrase and normalize(phrase) not in [normalize(a) for a in accept]:
            accept.append(phrase)
    return base | {"answer": answer, "accept": accept, "evidence": quotes}


def from_feedback(feedback: Path, out: Path, corpus: Path) -> str:
    """Append items made from the feedback file to the set in `out` (created if missing); one line back."""
    records, bad = read_feedback(feedback)
    texts = list(corpus_documents(Path(corpus)).values())
    out = Path(out)
    _write_set_files(out, Path(corpus), out.name, "Questions from thumbs up and down in the chat.")
    items_path = out / "items.jsonl"
    existing = []
    if items_path.exists():
        existing = [json.loads(line) for line in items_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    asked = {normalize(r.get("question", "")) for r in existing}
    ids = {r.get("id") for r in existing}
    n = len(existing)
    rows, up, down = [], 0, 0
    for rec in records:
        if normalize(rec["question"]) in asked:
            continue
        n += 1
        while f"fb-{n:03d}" in ids:
            n += 1
        item = feedback_item(rec, f"fb-{n:03d}", texts)
        rows.append(item)
        if item.get("review"):
            down += 1
        else:
            up += 1
    _write_jsonl(items_path, existing + rows)
    line = f"wrote {items_path}: {up} items to score, {down} marked for review; {len(records) - len(rows)} questions already in the set"
    return line + (f"; {bad} unreadable feedback lines skipped" if bad else "")
