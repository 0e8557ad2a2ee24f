"""Words as the lexical scorers see them: lower-cased, stemmed, without stopwords."""
from __future__ import annotations

import math
import re
from collections import Counter
from functools import lru_cache
from typing import Iterable

_TOKEN = re.compile(r"\w+", re.UNICODE)
_QUESTION_WORDS = {
    "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "does", "did", "do", "is", "are",
    "was", "were", "can", "could", "would", "should", "will", "tell", "me", "about", "according", "corpus",
    "document", "say", "says", "said", "give", "list", "name", "describe", "explain", "please", "much", "many",
    "any", "there", "kind", "sort", "type", "mean", "means", "exactly", "actually", "happen", "happened",
    "mention", "mentions", "mentioned", "cite", "cites", "cited", "discuss", "discusses", "discussed",
    # the request of a broad question ("Summarise …", "Give an overview of …"), not what it is about
    "summarise", "summarize", "summary", "outline", "overview", "enumerate", "rundown", "main",
}


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    try:
        from bm25s.stopwords import STOPWORDS_EN

        words = set(STOPWORDS_EN)
    except ImportError:  # bm25s ships them; this is only a guard for odd installs
        words = {"the", "a", "an", "of", "and", "or", "to", "in", "on", "for", "is", "are", "was", "it"}
    return frozenset(words | _QUESTION_WORDS)


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


_LETTER_DIGIT = re.compile(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])")
_ALIASES = {"version": "v", "ver": "v", "versions": "v"}


def words(text: str) -> list[str]:
    """Lower-cased words; 'v3' and 'version 3' both give 'v', '3'."""
    out = []
    for w in _TOKEN.findall(text.lower()):
        for part in _LETTER_DIGIT.split(w):
            if part:
                out.append(_ALIASES.get(part, part))
    return out


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    return _stemmer().stemWord(word)


def content_terms(text: str) -> list[str]:
    """Stemmed content words (numbers kept: '3' in 'ASL-3' matters)."""
    stop = _stopwords()
    return [stem(w) for w in words(text) if w not in stop]


class TermStats:
    """Document frequencies over a set of texts, for idf weights."""

    def __init__(self, texts: Iterable[str]) -> None:
        self.df: Counter[str] = Counter()
        self.n = 0
        for text in texts:
            self.n += 1
            self.df.update(set(content_terms(text)))

    def idf(self, term: str) -> float:
        return math.log(1 + (self.n + 1) / (self.df.get(term, 0) + 0.5))

    def known(self, term: str) -> bool:
        return term in self.df
