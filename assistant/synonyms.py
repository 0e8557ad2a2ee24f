"""Words of like meaning, so that a question worded apart from the corpus still meets it.

A question about 'outside bodies' and 'danger' should find the passage on 'external
organisations' and 'risk'. The table (`assistant/models/synonyms.tsv.gz`, rebuilt by
`make synonyms`, see SYNONYMS.md) lists for each English word its nearest words in counter-fitted
word vectors, which pull synonyms together and push antonyms apart. Two uses, both only towards
words the corpus itself uses:

- the rank stage credits a unit holding a synonym of a question word with `CREDIT` × similarity
  of that word's weight, and a question word the corpus lacks is not "unknown" when a synonym of
  it is in the corpus (`expansions`);
- BM25 searches, beside the question, the closest synonym the corpus uses of each question word
  it lacks (`bridge`).

The table is read once, on first use, after checking it against the sha256 in its manifest.
"""
from __future__ import annotations

import gzip
import threading
from functools import lru_cache
from pathlib import Path
from typing import Callable

from ingest.errors import IngestError

from .shipped import read_checked
from .terms import _stopwords, stem, words

MODELS_DIR = Path(__file__).resolve().parent / "models"
MANIFEST = "synonyms.json"
FIX = "run `make synonyms` to rebuild it"
CREDIT = 0.8  # a synonym covers this share of the question word's weight, times their similarity

Known = Callable[[str], bool]


class SynonymsError(IngestError):
    """The synonym table is missing or corrupt."""


class Synonyms:
    """word -> its synonyms (surface form, stem, similarity), best first."""

    def __init__(self, rows: dict[str, str]) -> None:
        self._rows = rows  # the table's lines, parsed per word on first lookup

    def __len__(self) -> int:
        return len(self._rows)

    @lru_cache(maxsize=65536)
    def of(self, word: str) -> tuple[tuple[str, str, float], ...]:
        rest = self._rows.get(word)
        if not rest:
            return ()
        out = []
        for part in rest.split("\t"):
            surface, _, sim = part.rpartition(" ")
            out.append((surface, stem(surface), float(sim)))
        return tuple(out)

    def _asked(self, text: str) -> list[tuple[str, str]]:
        stop = _stopwords()
        return [(w, stem(w)) for w in words(text) if w not in stop]

    def expansions(self, text: str, known: Known) -> dict[str, dict[str, float]]:
        """question term (stem) -> {synonym stem: similarity}, for synonyms the corpus uses."""
        out: dict[str, dict[str, float]] = {}
        for word, term in self._asked(text):
            for _, s, sim in self.of(word):
                if s != term and known(s):
                    alts = out.setdefault(term, {})
                    alts[s] = max(alts.get(s, 0.0), sim)
        return out

    def bridge(self, text: str, known: Known) -> list[str]:
        """For each word of the text the corpus never uses, the closest synonym it does use."""
        out = []
        for word, term in self._asked(text):
            if known(term):
                continue
            found = next((surface for surface, s, _ in self.of(word) if known(s)), None)
            if found:
                out.append(found)
        return out


def load(directory: Path = MODELS_DIR) -> Synonyms:
    """The table in `directory`, checked against its manifest's sha256."""
    manifest = read_checked(directory, MANIFEST, SynonymsError, "synonym table", FIX)
    table = directory / manifest["file"]
    rows: dict[str, str] = {}
    with gzip.open(table, "rt", encoding="utf-8") as f:
        for line in f:
            word, _, rest = line.rstrip("\n").partition("\t")
            if rest:
                rows[word] = rest
    return Synonyms(rows)


_LOCK = threading.Lock()
_SHARED: dict[Path, Synonyms] = {}


def shared(directory: Path = MODELS_DIR) -> Synonyms:
    """The table of `directory`, loaded once per process."""
    with _LOCK:
        got = _SHARED.get(directory)
        if got is None:
            got = _SHARED[directory] = load(directory)
        return got


NONE = Synonyms({})  # for settings that turn synonyms off
