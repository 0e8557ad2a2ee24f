"""Sentence spans with offsets, using NLTK's punkt model that ships inside llama-index-core."""
from __future__ import annotations

import re
from functools import lru_cache

_ABBREV = {"e.g", "i.e", "al", "cf", "vs", "etc", "approx", "no", "fig", "dr", "mr", "ms", "st", "u.s", "u.k"}
SENTENCE_END = re.compile(r"[.!?:;”\")]\s*$")  # a line that ends a sentence (or a label)


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


MAX_SENTENCE_CHARS = 600  # a 'sentence' longer than this (a list without stops) is cut at lines or words


def sentence_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Spans (absolute offsets) of the sentences in text[start:end], whitespace trimmed."""
    spans: list[tuple[int, int]] = []
    # lines that end a sentence-like unit (or a label ending in ':') split first
    piece_start = line_start = start
    for m in re.finditer(r"\n", text[start:end]):
        pos = start + m.start()
        if (SENTENCE_END.search(text[line_start:pos]) or pos > piece_start and _next_is_item(text, pos)
                or _ends_option(text, piece_start, pos)):
            spans.extend(_punkt_spans(text, piece_start, pos))
            piece_start = pos + 1
        line_start = pos + 1
    spans.extend(_punkt_spans(text, piece_start, end))
    out: list[tuple[int, int]] = []
    for a, b in spans:
        out.extend(_cut_long(text, a, b) if b - a > MAX_SENTENCE_CHARS else [(a, b)])
    return [s for s in out if s[1] > s[0]]


def _cut_long(text: str, a: int, b: int) -> list[tuple[int, int]]:
    """Cut an over-long span at line ends, else at spaces, into pieces of at most MAX_SENTENCE_CHARS."""
    out = []
    while b - a > MAX_SENTENCE_CHARS:
        window = text[a : a + MAX_SENTENCE_CHARS]
        cut = window.rfind("\n")
        if cut <= 0:
            cut = window.rfind(" ")
        if cut <= 0:
            cut = MAX_SENTENCE_CHARS
        x, y = _trim(text, a, a + cut)
        if y > x:
            out.append((x, y))
        a += cut
    x, y = _trim(text, a, b)
    if y > x:
        out.append((x, y))
    return out


_ITEM_LINE = re.compile(r"\n\s*(?:[-*+•]|\d+[.)])\s")  # a line that starts a list item
# a line of a usage text that starts with a command-line option ('-s, --strict use strict DER decoding',
# '--output=FILE output file')
_OPTION_LINE = re.compile(r"[ \t]*--?[A-Za-z0-9][\w-]*(?:[,=]|\s)")


def _next_is_item(text: str, pos: int) -> bool:
    return bool(_ITEM_LINE.match(text, pos))


def _ends_option(text: str, piece_start: int, pos: int) -> bool:
    """A unit that starts with an option's line (after a sentence or another option) ends where the
    next line does not go on in lower case: at the next option, or at 'Report bugs to: …' after
    '-v, --version output version information and exit'. In wrapped prose a line may start with
    an option too ('… call dpkg' / '--triggers-only <package>'): it goes on its sentence."""
    return bool(_OPTION_LINE.match(text, piece_start, pos)) and not re.match(r"\n\s*[a-z]", text[pos : pos + 40])


def _punkt_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    segment = text[start:end]
    out: list[tuple[int, int]] = []
    for a, b in _punkt().span_tokenize(segment):
        a2, b2 = _trim(segment, a, b)
        if b2 <= a2:
            continue
        if out and segment.count("`", out[-1][0] - start, out[-1][1] - start) % 2:
            out[-1] = (out[-1][0], start + b2)  # the cut fell inside inline code ('then `'.'` is returned')
        else:
            out.append((start + a2, start + b2))
    return out


def _trim(s: str, a: int, b: int) -> tuple[int, int]:
    while a < b and s[a].isspace():
        a += 1
    while b > a and s[b - 1].isspace():
        b -= 1
    return a, b
