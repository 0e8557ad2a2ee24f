"""Sentence spans with offsets, using NLTK's punkt model that ships inside llama-index-core."""
from __future__ import annotations

import re
from functools import lru_cache

_ABBREV = {"e.g", "i.e", "et al", "cf", "vs", "etc", "approx", "no", "fig", "dr", "mr", "ms", "st", "u.s", "u.k"}
_LINE_END = re.compile(r"[.!?:;”\")]\s*$")


@lru_cache(maxsize=1)
def _punkt():
    import nltk
    import llama_index.core as lic
    from pathlib import Path

    cache = str(Path(lic.__file__).parent / "_static" / "nltk_cache")
    if cache not in nltk.data.path:
        nltk.data.path.append(cache)
    from nltk.tokenize.punkt import PunktTokenizer

    tok = PunktTokenizer("english")
    tok._params.abbrev_types.update(_ABBREV)
    return tok


def sentence_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Spans (absolute offsets) of the sentences in text[start:end], whitespace trimmed."""
    spans: list[tuple[int, int]] = []
    # lines that end a sentence-like unit (or a label ending in ':') split first
    piece_start = start
    for m in re.finditer(r"\n", text[start:end]):
        pos = start + m.start()
        if _LINE_END.search(text[piece_start:pos]) or pos - piece_start > 0 and _next_is_item(text, pos):
            spans.extend(_punkt_spans(text, piece_start, pos))
            piece_start = pos + 1
    spans.extend(_punkt_spans(text, piece_start, end))
    return [s for s in spans if s[1] > s[0]]


def _next_is_item(text: str, pos: int) -> bool:
    return bool(re.match(r"\n\s*([-*+•]|\d+[.)])\s", text[pos : pos + 8]))


def _punkt_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    segment = text[start:end]
    out = []
    for a, b in _punkt().span_tokenize(segment):
        a2, b2 = _trim(segment, a, b)
        if b2 > a2:
            out.append((start + a2, start + b2))
    return out


def _trim(s: str, a: int, b: int) -> tuple[int, int]:
    while a < b and s[a].isspace():
        a += 1
    while b > a and s[b - 1].isspace():
        b -= 1
    return a, b
