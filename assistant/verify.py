"""Checking a generated answer against the passages it cites: pure functions, no model server.

The model is asked to end every sentence with [n] markers that point at numbered passages.
Here we parse those markers, drop the ones that point at no passage, split the answer into
sentences and keep only the sentences whose cited passages support them:

* lexical support: the share of the sentence's content words (stemmed, no stopwords) that
  occur in the cited passages, and every number of the sentence must occur there too;
* embedding support: the best cosine between the sentence and a sentence of a cited passage
  (when an encoder is given); both must pass a floor and their mean a threshold.

A sentence with no citation, or without support, is removed; so is one that only says the
passages do not answer (it is counted apart, so the caller can abstain). Of the citations of a
supported sentence, those that add nothing to its support are dropped. The surviving citations
are renumbered 1..k in order of first use, so every listed citation is used.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .terms import content_terms, words

# -- thresholds ---------------------------------------------------------------------------
LEXICAL_MIN = 0.5  # share of a sentence's content words that its cited passages must contain
DENSE_MIN = 0.3  # cosine a sentence must reach with some sentence of a cited passage
SUPPORT_MIN = 0.6  # and the mean of the two must reach this (a short sentence of quoted words
#                    can have a low cosine with a long source sentence; a loose paraphrase must
#                    then be close in meaning)
NUMBERS_MUST_MATCH = True  # a number the cited passages do not contain is unsupported

# [1]  [1, 2]  [1-3]  [Passage 2]  [passages 1 and 3]
MARKER = re.compile(
    r"\[\s*(?:passages?\s*)?(\d{1,3}(?:\s*(?:,|;|-|–|and)\s*\d{1,3})*)\s*\]", re.IGNORECASE
)
_MARKER_RUN = r"(?:\s*\[\s*(?:passages?\s*)?\d{1,3}(?:\s*(?:,|;|-|–|and)\s*\d{1,3})*\s*\])"
# end of a sentence: terminal punctuation (+ closing quotes/brackets, + markers), or a run of
# markers, followed by whitespace and something that starts a sentence
_BOUNDARY = re.compile(
    r"([.!?][\"'”’)]*" + _MARKER_RUN + r"*|" + _MARKER_RUN + r"+)\s+(?=[A-Z0-9\"“(\[])"
)
_LEADING_MARKERS = re.compile(r"^(" + _MARKER_RUN + r"+)\s*")
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,2}[.)])\s+")
_ABBREV = {"e.g", "i.e", "dr", "mr", "ms", "mrs", "vs", "etc", "cf", "no", "fig", "st", "al", "approx"}
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?])")


@dataclass(frozen=True)
class Source:
    """A numbered passage as the verifier sees it.

    text: everything the model was shown for it (label + passage text);
    sentences: its quotable sentences (units), in order; vectors: their embeddings
    (L2-normalised rows, same order), or None to encode them on demand.
    """

    text: str
    sentences: tuple[str, ...] = ()
    vectors: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Checked:
    """One sentence of the model's answer after checking."""

    body: str  # the sentence without its markers
    cites: tuple[int, ...]  # passage numbers as the model gave them (valid ones only)
    lexical: float
    dense: float | None
    kept: bool
    reason: str  # "supported", "uncited", "unsupported", "no content", "refusal"
    best: tuple[tuple[int, int], ...] = ()  # (passage number, index of its best-matching sentence)


@dataclass(frozen=True)
class Verified:
    text: str  # kept sentences, markers renumbered 1..k
    sentences: tuple[Checked, ...]  # every sentence, kept or not
    order: tuple[int, ...]  # original passage numbers, in new-number order (new n = i + 1)
    best: dict  # original passage number -> index of its best-matching sentence (or -1)
    removed: int  # sentences removed as uncited or unsupported
    phantoms: int  # markers dropped because they point at no passage
    refusals: int = 0  # sentences saying the passages do not answer (removed too, not counted above)

    @property
    def kept(self) -> tuple[Checked, ...]:
        return tuple(c for c in self.sentences if c.kept)


# -- markers --------------------------------------------------------------------------------
def _numbers(group: str) -> list[int]:
    out: list[int] = []
    for part in re.split(r"\s*(?:,|;|and)\s*", group):
        part = part.strip()
        if not part:
            continue
        span = re.split(r"\s*[-–]\s*", part)
        if len(span) == 2 and span[0].isdigit() and span[1].isdigit():
            a, b = int(span[0]), int(span[1])
            if a <= b and b - a < 20:
                out.extend(range(a, b + 1))
                continue
        out.extend(int(x) for x in span if x.isdigit())
    return out


def parse_markers(text: str) -> list[int]:
    """Passage numbers of the [n] markers in text, in order (repeats kept)."""
    return [n for m in MARKER.finditer(text) for n in _numbers(m.group(1))]


def strip_markers(text: str) -> str:
    """Text without markers, spaces tidied ('X [1].' -> 'X.')."""
    text = MARKER.sub(" ", text)
    return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(text.split()))


def drop_phantoms(text: str, n_sources: int) -> tuple[str, int]:
    """Remove the numbers of markers that refer to no passage; returns (text, how many)."""
    dropped = 0

    def fix(m: re.Match) -> str:
        nonlocal dropped
        nums = _numbers(m.group(1))
        good = [n for n in nums if 1 <= n <= n_sources]
        dropped += len(nums) - len(good)
        return "".join(f"[{n}]" for n in dict.fromkeys(good))

    out = MARKER.sub(fix, text)
    out = _SPACE_BEFORE_PUNCT.sub(r"\1", re.sub(r"[ \t]+", " ", out)).strip()
    return out, dropped


# -- sentences ------------------------------------------------------------------------------
def split_sentences(text: str) -> list[str]:
    """Sentences of an answer, each with the markers that follow it."""
    out: list[str] = []
    for line in text.splitlines():
        line = _BULLET.sub("", line).strip()
        if not line:
            continue
        pos = 0
        for m in _BOUNDARY.finditer(line):
            head = line[pos : m.end(1)]
            last = head.rstrip(".!?\"'”’)").split()
            if last and last[-1].lower().rstrip(".") in _ABBREV and not MARKER.search(m.group(1)):
                continue  # 'e.g. The' is not the end of a sentence
            out.append(head.strip())
            pos = m.end()
        tail = line[pos:].strip()
        if tail:
            out.append(tail)
    # markers that open a sentence belong to the one before it ('X. [1] Y' split after 'X.')
    # (before the first sentence, they go to the first one)
    fixed: list[str] = []
    pending = ""
    for s in out:
        m = _LEADING_MARKERS.match(s)
        if m:
            if fixed:
                fixed[-1] = f"{fixed[-1]} {m.group(1).strip()}"
            else:
                pending = f"{pending} {m.group(1).strip()}".strip()
            s = s[m.end() :].strip()
        if strip_markers(s):
            fixed.append(f"{s} {pending}".strip() if pending else s)
            pending = ""
    return fixed


# -- support --------------------------------------------------------------------------------
def _nums(text: str) -> set[str]:
    return {w for w in words(text) if w.isdigit()}


def lexical_support(sentence: str, passages: Sequence[str]) -> float:
    """Share of the sentence's content words found in the passages (0 when it has none),
    and 0 when NUMBERS_MUST_MATCH and it has a number the passages do not."""
    terms = set(content_terms(sentence))
    if not terms:
        return 0.0
    found: set[str] = set()
    for p in passages:
        found |= set(content_terms(p))
    if NUMBERS_MUST_MATCH:
        have = set().union(*(_nums(p) for p in passages)) if passages else set()
        if _nums(sentence) - have:
            return 0.0
    return len(terms & found) / len(terms)


def dense_support(vector: np.ndarray, vectors: np.ndarray) -> tuple[float, int]:
    """Best cosine of a (normalised) vector against rows of vectors, and the row."""
    if vectors is None or len(vectors) == 0:
        return 0.0, -1
    sims = np.asarray(vectors, dtype=np.float32) @ np.asarray(vector, dtype=np.float32)
    i = int(np.argmax(sims))
    return float(sims[i]), i


def prune_citations(
    sentence: str, cites: Sequence[int], texts: Sequence[str], supports: Sequence[tuple[float, float | None]]
) -> tuple[int, ...]:
    """The citations of a supported sentence worth keeping: those that support it alone, plus
    those that contribute words of the sentence the others lack (a claim joining two passages)."""
    terms = set(content_terms(sentence))
    keep = [n for n, sup in zip(cites, supports) if is_supported(*sup)]
    covered = set().union(*(set(content_terms(texts[cites.index(n)])) for n in keep)) if keep else set()
    for n, text in zip(cites, texts):
        if n in keep:
            continue
        mine = terms & set(content_terms(text))
        if mine - covered:
            keep.append(n)
            covered |= mine
    return tuple(n for n in cites if n in keep)


def is_supported(lexical: float, dense: float | None) -> bool:
    if dense is None:  # no encoder: words alone
        return lexical >= SUPPORT_MIN
    return lexical >= LEXICAL_MIN and dense >= DENSE_MIN and (lexical + dense) / 2 >= SUPPORT_MIN


# -- the whole check ------------------------------------------------------------------------
Encoder = Callable[[Sequence[str]], np.ndarray]


def renumber(sentences: Sequence[tuple[str, Sequence[int]]]) -> tuple[str, tuple[int, ...]]:
    """(body, cited numbers) pairs -> text with markers 1..k in order of first use, and the
    original numbers in new order."""
    order: list[int] = []
    parts = []
    for body, cites in sentences:
        for n in cites:
            if n not in order:
                order.append(n)
        marks = "".join(f"[{order.index(n) + 1}]" for n in dict.fromkeys(cites))
        parts.append(f"{body} {marks}".strip())
    return " ".join(parts), tuple(order)


def verify(
    answer: str, sources: Sequence[Source], encode: Encoder | None = None, refusal: re.Pattern | None = None
) -> Verified:
    """Check every sentence of answer against the sources (numbered 1..len(sources)).

    Sentences matching `refusal` ("the passages do not say ...") are statements about the
    passages, not claims from them: they are never kept, whatever they cite."""
    text, phantoms = drop_phantoms(answer, len(sources))
    sentences = split_sentences(text)
    bodies = [strip_markers(s) for s in sentences]
    vecs = encode(bodies) if encode and bodies else None
    source_vecs: dict[int, np.ndarray] = {}

    def vectors_of(n: int) -> np.ndarray:
        if n not in source_vecs:
            src = sources[n - 1]
            if src.vectors is not None and len(src.vectors) == len(src.sentences) and len(src.sentences):
                source_vecs[n] = np.asarray(src.vectors, dtype=np.float32)
            else:
                texts = list(src.sentences) or [src.text]
                source_vecs[n] = encode(texts) if encode else np.zeros((0, 1), np.float32)
        return source_vecs[n]

    checked: list[Checked] = []
    for i, (sentence, body) in enumerate(zip(sentences, bodies)):
        cites = tuple(dict.fromkeys(parse_markers(sentence)))
        if refusal is not None and refusal.search(body):
            checked.append(Checked(body, cites, 0.0, None, False, "refusal"))
            continue
        if not cites:
            checked.append(Checked(body, (), 0.0, None, False, "uncited"))
            continue
        if not content_terms(body):
            checked.append(Checked(body, cites, 0.0, None, False, "no content"))
            continue
        dense_of: dict[int, tuple[float, int]] = {}
        if vecs is not None:
            dense_of = {n: dense_support(vecs[i], vectors_of(n)) for n in cites}

        def support(ns: Sequence[int]) -> tuple[float, float | None]:
            lex = lexical_support(body, [sources[n - 1].text for n in ns])
            return lex, (max(dense_of[n][0] for n in ns) if dense_of else None)

        lexical, dense = support(cites)
        kept = is_supported(lexical, dense)
        if kept and len(cites) > 1:  # drop citations that add nothing to the support
            useful = prune_citations(body, cites, [sources[n - 1].text for n in cites], [support([n]) for n in cites])
            if useful != cites and is_supported(*support(useful)):
                cites = useful
                lexical, dense = support(cites)
        best = tuple((n, dense_of[n][1]) for n in cites) if dense_of else ()
        checked.append(Checked(body, cites, lexical, dense, kept, "supported" if kept else "unsupported", best))

    kept = [c for c in checked if c.kept]
    text, order = renumber([(c.body, c.cites) for c in kept])
    best_of: dict[int, int] = {}
    score_of: dict[int, float] = {}
    if vecs is not None:
        for i, c in enumerate(checked):
            if not c.kept:
                continue
            for n, j in c.best:
                v = vectors_of(n)
                s = float(v[j] @ vecs[i]) if j >= 0 else -1.0
                if s > score_of.get(n, -2.0):
                    score_of[n], best_of[n] = s, j
    best = {n: best_of.get(n, -1) for n in order}
    refusals = sum(1 for c in checked if c.reason == "refusal")
    return Verified(text, tuple(checked), order, best, len(checked) - len(kept) - refusals, phantoms, refusals)


# -- the verify stage of every answer ------------------------------------------------------------
# a marker that cites: after a space or another marker, before a space, another marker or the end
# ('listeners[0]' quoted from code is part of the quote, not a citation)
_CITING_MARKER = re.compile(r"(?:(?<=\s)|(?<=\]))\[(\d{1,3})\](?=\s|\[|$)")


def cited_markers(answer) -> set[int]:
    """The n of every [n] in the answer that cites. What a quote holds ('hello from foo [123]', from
    a code sample; 'listeners[0]') does not cite."""
    text = answer.text
    for quote in sorted({c.quote.strip() for c in answer.citations if c.quote.strip()}, key=len, reverse=True):
        text = text.replace(quote, " ")
    return {int(m.group(1)) for m in _CITING_MARKER.finditer(text)}


def citation_faults(answer, index) -> list[str]:
    """What is wrong with an answer's citations: a [n] that names no listed citation, a citation
    never referred to, or a quote that is not the indexed text at its offsets. Empty when sound."""
    faults: list[str] = []
    listed = {c.n for c in answer.citations}
    used = cited_markers(answer)
    faults += [f"[{n}] names no listed citation" for n in sorted(used - listed)]
    faults += [f"citation {n} is never referred to" for n in sorted(listed - used)]
    for c in answer.citations:
        chunk = index.chunks.get(c.chunk_id)
        if chunk is None:
            faults.append(f"citation {c.n} points at chunk {c.chunk_id}, which is not in the collection")
        elif chunk.text[c.start - chunk.start : c.end - chunk.start] != c.quote:
            faults.append(f"citation {c.n}'s quote is not {c.source}[{c.start}:{c.end}]")
    return faults
