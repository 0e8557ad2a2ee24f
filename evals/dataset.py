"""Load and validate an evaluation set: single-turn items, multi-turn dialogues, gold evidence.

A set is a folder anywhere (a bare name means ROOT/evals/sets/NAME/) holding ``set.json``
(name, corpus folder relative to the set folder or to ROOT, description, optional
``variants``), ``items.jsonl`` (one item a line), optionally ``dialogues.jsonl`` (one
dialogue a line) and ``thresholds.json`` (its regression gate). Every evidence quote must be
a verbatim substring of a corpus document's text as the product extracts it
(``ingest.load``: Markdown and text as they are, HTML and PDF as text), so .md, .txt, .html
and .pdf corpora all work; every accept phrase of an answerable item must occur (after
``normalize``) in its gold answer or one of its evidence quotes.

Two flags mark items a person still has to finish: ``"draft": true`` (written by
``python -m evals new``; validated and scored like any item, and counted) and
``"review": true`` (from a thumbs-down in ``python -m evals from-feedback``; only its id and
question are checked, and it is not scored until the flag is removed).
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

KINDS: tuple[str, ...] = (
    "fact",
    "table",
    "multihop",
    "paraphrase",
    "numeric",
    "comparison",
    "broad",  # "Summarise …", "List …": correct when the answer holds `need` of the accept phrases
    "unanswerable",
)
DIALOGUE_KIND = "dialogue"
DEFAULT_ROOT = Path(__file__).resolve().parent.parent
VARIANT_NAMES = ("bm25", "dense", "hybrid", "full")


class EvalSetError(ValueError):
    """The evaluation set is missing, malformed, or disagrees with its corpus."""


# --------------------------------------------------------------------------- matching

_CHAR_MAP = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
        "\u00ab": '"', "\u00bb": '"',
        "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-",
        "\u2015": "-", "\u2212": "-",
        "\u00a0": " ",
    }
)


def normalize(text: str) -> str:
    """NFKC, lowercase, plain quotes/dashes, punctuation to spaces, collapsed whitespace."""
    text = unicodedata.normalize("NFKC", text or "").lower().translate(_CHAR_MAP)
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat.startswith("P") or cat.startswith("S"):
            out.append(" ")
        else:
            out.append(ch)
    return re.sub(r"\s+", " ", "".join(out)).strip()


def matches_accept(answer: str, accept: Iterable[str], need: int = 1) -> bool:
    """True when the normalized answer contains at least `need` of the normalized accept phrases."""
    norm = normalize(answer)
    found = 0
    for p in dict.fromkeys(normalize(phrase) for phrase in accept):  # a phrase given twice counts once
        if p and p in norm:
            found += 1
            if found >= need:
                return True
    return False


# --------------------------------------------------------------------------- records


class _Gold:
    evidence: tuple[str, ...]

    @property
    def answerable(self) -> bool:
        """Unanswerable questions have no evidence in the corpus."""
        return bool(self.evidence)


@dataclass(frozen=True)
class Turn(_Gold):
    question: str
    answer: str
    accept: tuple[str, ...]
    evidence: tuple[str, ...]
    need: int = 1


@dataclass(frozen=True)
class Item(_Gold):
    id: str
    kind: str
    question: str
    answer: str
    accept: tuple[str, ...]
    evidence: tuple[str, ...]
    draft: bool = False
    need: int = 1  # accept phrases a correct answer holds (a broad question's list: several)


@dataclass(frozen=True)
class Dialogue:
    id: str
    turns: tuple[Turn, ...]

    @property
    def kind(self) -> str:
        return DIALOGUE_KIND


@dataclass(frozen=True)
class EvalSet:
    name: str
    corpus_dir: Path
    items: tuple[Item, ...]  # the scored ones (items marked for review are left out)
    dialogues: tuple[Dialogue, ...]
    set_dir: Path | None = None
    variants: tuple[str, ...] = VARIANT_NAMES  # the pipelines `python -m evals` runs on it
    review: tuple[str, ...] = ()  # ids of items marked for review, not scored
    headline: tuple[tuple[str, str], ...] = ()  # (label, metric of the full pipeline) the report leads with

    @property
    def drafts(self) -> int:
        return sum(1 for i in self.items if i.draft)

    @property
    def thresholds_path(self) -> Path | None:
        return self.set_dir / "thresholds.json" if self.set_dir is not None else None

    def status(self) -> str:
        """One line: what the set holds and what is left for a person to finish."""
        line = f"set {self.name}: {len(self.items)} items, {len(self.dialogues)} dialogues"
        if self.drafts:
            line += f"; {self.drafts} drafts left to correct (remove \"draft\" once checked)"
        if self.review:
            line += f"; {len(self.review)} items marked for review, not scored"
        return line

    def by_kind(self, kind: str) -> tuple[Item, ...]:
        return tuple(i for i in self.items if i.kind == kind)


# --------------------------------------------------------------------------- loading


def available_sets(root: Path | None = None) -> list[str]:
    base = Path(root or DEFAULT_ROOT) / "evals" / "sets"
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / "set.json").is_file())


def _read_jsonl(path: Path, required: bool = True) -> list[tuple[int, dict]]:
    if not path.is_file():
        if not required:
            return []
        raise EvalSetError(f"{path}: file missing")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalSetError(f"{path.name} line {lineno}: bad JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise EvalSetError(f"{path.name} line {lineno}: expected a JSON object")
            rows.append((lineno, obj))
    return rows


def _str_tuple(value, where: str, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EvalSetError(f"{where}: '{field}' must be a list of strings")
    return tuple(value)


def _text(obj: dict, field: str, where: str, required: bool = True) -> str:
    value = obj.get(field, "")
    if not isinstance(value, str):
        raise EvalSetError(f"{where}: '{field}' must be a string")
    if required and not value.strip():
        raise EvalSetError(f"{where}: empty '{field}'")
    return value


def corpus_documents(corpus_dir: Path) -> dict[str, str]:
    """Source -> text of every document under corpus_dir, exactly as ingest extracts it."""
    from ingest.load import SUPPORTED, load_paths

    if not corpus_dir.is_dir():
        raise EvalSetError(f"corpus folder {corpus_dir} does not exist")
    loaded = load_paths([corpus_dir])
    if loaded.problems and not loaded.documents:
        raise EvalSetError(f"corpus folder {corpus_dir}: {loaded.problems[0]}")
    if not loaded.documents:
        raise EvalSetError(f"corpus folder {corpus_dir} holds no {'/'.join(sorted(SUPPORTED))} files")
    return {d.source: d.text for d in loaded.documents}


def _load_corpus(corpus_dir: Path) -> list[str]:
    return list(corpus_documents(corpus_dir).values())


def resolve_set_dir(name_or_path: str | Path, root: Path | None = None) -> Path:
    """A bare name is ROOT/evals/sets/NAME; anything with a path separator, or an existing
    folder holding set.json, is that folder."""
    root = Path(root) if root is not None else DEFAULT_ROOT
    raw = str(name_or_path)
    as_path = Path(raw).expanduser()
    if "/" in raw or raw.startswith(".") or (as_path.is_dir() and (as_path / "set.json").is_file()):
        return as_path.resolve()
    return root / "evals" / "sets" / raw


def _corpus_dir(corpus_rel: str, set_dir: Path, root: Path) -> Path:
    path = Path(corpus_rel).expanduser()
    if path.is_absolute():
        return path.resolve()
    for base in (set_dir, root):
        if (base / path).is_dir():
            return (base / path).resolve()
    raise EvalSetError(
        f"{set_dir / 'set.json'}: corpus folder {corpus_rel!r} is neither under the set folder nor the repo — fix 'corpus'"
    )


def _check_qa(where: str, question: str, answer: str, accept, evidence, texts: list[str]) -> None:
    if not question.strip():
        raise EvalSetError(f"{where}: empty question")
    for quote in evidence:
        if not quote.strip() or not any(quote in t for t in texts):
            raise EvalSetError(
                f"{where}: evidence quote not found in the corpus: {quote[:60]!r} "
                "— copy the quote verbatim from the corpus"
            )
    if evidence:
        if not accept:
            raise EvalSetError(f"{where}: answerable but has no accept phrase")
        if not answer.strip():
            raise EvalSetError(f"{where}: answerable but has an empty answer")
        haystacks = [normalize(answer)] + [normalize(q) for q in evidence]
        for phrase in accept:
            p = normalize(phrase)
            if not p:
                raise EvalSetError(f"{where}: empty accept phrase")
            if not any(p in h for h in haystacks):
                raise EvalSetError(
                    f"{where}: accept phrase {phrase!r} occurs in neither the answer nor the evidence"
                )
    elif accept:
        raise EvalSetError(f"{where}: accept phrases given but no evidence (unanswerable turns take none)")


def load_set(name: str | Path = "rsp", root: Path | None = None) -> EvalSet:
    """Load a set (a bare name under ROOT/evals/sets/, or a folder anywhere), validated against its corpus."""
    root = Path(root) if root is not None else DEFAULT_ROOT
    set_dir = resolve_set_dir(name, root)
    meta_path = set_dir / "set.json"
    if not meta_path.is_file():
        if set_dir.parent == root / "evals" / "sets":
            avail = ", ".join(available_sets(root)) or "none"
            raise EvalSetError(f"unknown eval set {str(name)!r}; available sets: {avail}")
        raise EvalSetError(f"{set_dir}: no set.json — write one, or start a set with `python -m evals new`")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise EvalSetError(f"set.json line {exc.lineno}: bad JSON ({exc.msg})") from None
    if not isinstance(meta, dict):
        raise EvalSetError(f"{meta_path}: expected a JSON object")
    corpus_rel = meta.get("corpus")
    if not isinstance(corpus_rel, str) or not corpus_rel:
        raise EvalSetError(f"{meta_path}: 'corpus' must name a folder relative to the set folder or the repo")
    corpus_dir = _corpus_dir(corpus_rel, set_dir, root)
    texts = _load_corpus(corpus_dir)
    variants = meta.get("variants", list(VARIANT_NAMES))
    if not isinstance(variants, list) or not variants or any(v not in VARIANT_NAMES for v in variants):
        raise EvalSetError(f"{meta_path}: 'variants' must be a list drawn from {', '.join(VARIANT_NAMES)}")
    headline = meta.get("headline", {})
    if not isinstance(headline, dict) or not all(isinstance(v, str) for v in headline.values()):
        raise EvalSetError(f"{meta_path}: 'headline' must map labels to metric names")

    seen: set[str] = set()

    def claim(ident, where: str) -> str:
        if not isinstance(ident, str) or not ident.strip():
            raise EvalSetError(f"{where}: missing id")
        if ident in seen:
            raise EvalSetError(f"{where}: duplicate id {ident!r}")
        seen.add(ident)
        return ident

    items: list[Item] = []
    review: list[str] = []
    for lineno, obj in _read_jsonl(set_dir / "items.jsonl"):
        ident = claim(obj.get("id"), f"items.jsonl line {lineno}")
        where = f"item {ident} (items.jsonl line {lineno})"
        if obj.get("review"):
            _text(obj, "question", where)
            review.append(ident)
            continue
        kind = obj.get("kind")
        if kind not in KINDS:
            raise EvalSetError(f"{where}: unknown kind {kind!r}; known kinds: {', '.join(KINDS)}")
        question = _text(obj, "question", where)
        answer = _text(obj, "answer", where, required=False)
        accept = _str_tuple(obj.get("accept"), where, "accept")
        evidence = _str_tuple(obj.get("evidence"), where, "evidence")
        if kind == "unanswerable" and evidence:
            raise EvalSetError(f"{where}: unanswerable items take no evidence")
        if kind != "unanswerable" and not evidence:
            raise EvalSetError(f"{where}: kind {kind!r} needs at least one evidence quote")
        _check_qa(where, question, answer, accept, evidence, texts)
        need = obj.get("need", 1)
        if not isinstance(need, int) or isinstance(need, bool) or not 1 <= need <= max(1, len(accept)):
            raise EvalSetError(f"{where}: need must be a whole number from 1 to the number of accept phrases ({len(accept)})")
        items.append(Item(ident, kind, question, answer, accept, evidence, bool(obj.get("draft")), need))

    dialogues: list[Dialogue] = []
    for lineno, obj in _read_jsonl(set_dir / "dialogues.jsonl", required=False):
        ident = claim(obj.get("id"), f"dialogues.jsonl line {lineno}")
        where = f"dialogue {ident} (dialogues.jsonl line {lineno})"
        raw_turns = obj.get("turns")
        if not isinstance(raw_turns, list) or not raw_turns:
            raise EvalSetError(f"{where}: 'turns' must be a non-empty list")
        turns = []
        for n, t in enumerate(raw_turns, 1):
            tw = f"{where} turn {n}"
            if not isinstance(t, dict):
                raise EvalSetError(f"{tw}: expected a JSON object")
            question = _text(t, "question", tw)
            answer = _text(t, "answer", tw, required=False)
            accept = _str_tuple(t.get("accept"), tw, "accept")
            evidence = _str_tuple(t.get("evidence"), tw, "evidence")
            _check_qa(tw, question, answer, accept, evidence, texts)
            turns.append(Turn(question, answer, accept, evidence))
        dialogues.append(Dialogue(ident, tuple(turns)))

    if not items and not dialogues:
        raise EvalSetError(f"{set_dir}: no item to score — add items to items.jsonl (or remove \"review\" from checked ones)")
    return EvalSet(
        name=str(meta.get("name") or set_dir.name),
        corpus_dir=corpus_dir,
        items=tuple(items),
        dialogues=tuple(dialogues),
        set_dir=set_dir,
        variants=tuple(variants),
        review=tuple(review),
        headline=tuple(headline.items()),
    )
