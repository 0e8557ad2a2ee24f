"""The lexical index of a collection, written by ingest into the store itself, read by every server.

Why in the store: every serving process (one machine or many, embedded store or a Chroma
server) loads the same index without rebuilding it from all chunks at start, and an ingest adds
to it instead of rebuilding it. The index is a list of immutable *segments*; an ingest writes one
segment holding the files it (re)wrote, and a *manifest* per corpus fingerprint names, for every
source file, its sha and the segment holding its current version. A chunk of a segment is live
when the manifest names that segment for its source; the rest is dead weight until ingest
compacts (when segments pile up or dead chunks outnumber live ones, it rewrites them as one).

A segment holds postings of *raw tokens* (maximal `\\w+` runs of the lower-cased chunk text as
embedded: heading trail, table header, text) with their counts, and each chunk's length in BM25
tokens. Every analyzer built from token-local steps maps onto the raw vocabulary: BM25's
(bm25s / llama-index BM25Retriever: English stopwords dropped, Snowball-stemmed, here), and
the assistant's content terms (its own `terms.content_terms`, applied when it loads a segment).
BM25 scores are computed at query time from the live statistics (N, average length, df), with
bm25s's "lucene" formula and defaults (k1 1.5, b 0.75).

Stored as records of the collection `<name>__lexical` (one-dimensional dummy embeddings; the
payload is an npz, base64 in a metadata field, cut into parts of at most 1 MB).
"""
from __future__ import annotations

import base64
import io
import json
import re
from collections import Counter
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

from .records import Chunk

LEXICAL_SUFFIX = "__lexical"
FORMAT = 1
PART_CHARS = 1_000_000
_RAW = re.compile(r"\w+")  # the same runs as bm25s's token pattern (?u)\b\w+\b
K1, B = 1.5, 0.75  # bm25s defaults (method "lucene")


@lru_cache(maxsize=1)
def _bm25_stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def raw_tokens(text: str) -> list[str]:
    return _RAW.findall(text.lower())


def bm25_tokens(text: str) -> list[str]:
    """Tokens as bm25s.tokenize(text, stopwords='en', stemmer=english, token_pattern=r'(?u)\\b\\w+\\b')."""
    stop = _bm25_stopwords()
    words = [w for w in raw_tokens(text) if w not in stop]
    return _stemmer().stemWords(words) if words else []


def build_segment(chunks: Sequence[Chunk]) -> bytes:
    """One segment over these chunks, serialised (npz)."""
    chunks = sorted(chunks, key=lambda c: (c.source, c.start, c.id))
    sources = sorted({c.source for c in chunks})
    src_ix = {s: i for i, s in enumerate(sources)}
    stop = _bm25_stopwords()
    postings: dict[str, tuple[list[int], list[int]]] = {}
    doc_len = np.zeros(len(chunks), dtype=np.float32)
    for doc, c in enumerate(chunks):
        counts = Counter(raw_tokens(c.embed_text()))
        doc_len[doc] = sum(n for w, n in counts.items() if w not in stop)
        for w, n in counts.items():
            p = postings.setdefault(w, ([], []))
            p[0].append(doc)
            p[1].append(n)
    vocab = sorted(postings)
    indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
    np.cumsum([len(postings[w][0]) for w in vocab], out=indptr[1:])
    docs = np.fromiter((d for w in vocab for d in postings[w][0]), dtype=np.int32, count=int(indptr[-1]))
    tf = np.fromiter((n for w in vocab for n in postings[w][1]), dtype=np.float32, count=int(indptr[-1]))
    meta = {"format": FORMAT, "chunk_ids": [c.id for c in chunks], "sources": sources, "vocab": vocab}
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
        doc_source=np.asarray([src_ix[c.source] for c in chunks], dtype=np.int32),
        doc_len=doc_len, indptr=indptr, docs=docs, tf=tf,
    )
    return buf.getvalue()


def to_parts(blob: bytes) -> list[str]:
    text = base64.b64encode(blob).decode("ascii")
    return [text[i : i + PART_CHARS] for i in range(0, len(text), PART_CHARS)] or [""]


def from_parts(parts: Sequence[str]) -> bytes:
    return base64.b64decode("".join(parts))


def _compact_counts(tf: np.ndarray) -> np.ndarray:
    """Term counts in the smallest unsigned type that holds them (they are whole numbers, stored as
    float32): at 50 MB of text, 5.5 M postings, uint8 holds them in 5.5 MB where float32 took 22."""
    top = float(tf.max()) if len(tf) else 0.0
    for dtype in (np.uint8, np.uint16):
        if top <= np.iinfo(dtype).max:
            return tf.astype(dtype)
    return tf


class Segment:
    """One immutable segment, loaded; `terms(fn)` maps an analyzer onto its raw vocabulary."""

    def __init__(self, segment_id: str, blob: bytes) -> None:
        self.id = segment_id
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"lexical segment format {meta.get('format')} (expected {FORMAT})")
        self.chunk_ids: list[str] = meta["chunk_ids"]
        self.sources: list[str] = meta["sources"]
        self.vocab: list[str] = meta["vocab"]
        self.doc_source, self.doc_len = arrays["doc_source"], arrays["doc_len"]
        self.indptr, self.docs, self.tf = arrays["indptr"], arrays["docs"], _compact_counts(arrays["tf"])
        self._maps: dict[str, dict[str, list[int]]] = {}
        self.bm25_map = self.terms("bm25", bm25_tokens)

    def __len__(self) -> int:
        return len(self.chunk_ids)

    @property
    def nbytes(self) -> int:
        arrays = sum(a.nbytes for a in (self.doc_source, self.doc_len, self.indptr, self.docs, self.tf))
        return arrays + 100 * len(self.vocab) + 60 * len(self.chunk_ids)  # + strings and dicts, roughly

    def terms(self, name: str, analyzer: Callable[[str], list[str]]) -> dict[str, list[int]]:
        """term -> raw vocabulary rows it comes from, for a token-local analyzer (cached by name)."""
        got = self._maps.get(name)
        if got is None:
            got = {}
            for i, w in enumerate(self.vocab):
                for term in set(analyzer(w)):
                    got.setdefault(term, []).append(i)
            self._maps[name] = got
        return got

    def postings(self, rows: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(docs, summed counts) over these raw rows."""
        if len(rows) == 1:
            a, b = int(self.indptr[rows[0]]), int(self.indptr[rows[0] + 1])
            return self.docs[a:b], self.tf[a:b]
        docs = np.concatenate([self.docs[self.indptr[r] : self.indptr[r + 1]] for r in rows])
        tf = np.concatenate([self.tf[self.indptr[r] : self.indptr[r + 1]] for r in rows])
        uniq, inv = np.unique(docs, return_inverse=True)
        summed = np.zeros(len(uniq), dtype=np.float32)
        np.add.at(summed, inv, tf)
        return uniq, summed

    def live_mask(self, manifest: dict[str, list]) -> np.ndarray:
        """Chunks whose source's current version is in this segment."""
        mine = np.asarray([(manifest.get(s) or ["", ""])[1] == self.id for s in self.sources], dtype=bool)
        return mine[self.doc_source] if len(mine) else np.zeros(0, dtype=bool)


class LexicalIndex:
    """The live view of one manifest's segments."""

    def __init__(self, manifest: dict[str, list], segments: Sequence[Segment]) -> None:
        self.manifest = manifest
        self.segments = [s for s in segments if len(s)]
        self.live = [s.live_mask(manifest) for s in self.segments]
        self.n = int(sum(int(m.sum()) for m in self.live))
        total = sum(float(s.doc_len[m].sum()) for s, m in zip(self.segments, self.live))
        self.avgdl = total / self.n if self.n else 1.0

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.segments)

    def bm25(self, text: str, k: int) -> list[tuple[str, float]]:
        """(chunk id, score) of the k best chunks with a positive score, best first."""
        tokens = bm25_tokens(text)
        if not tokens or not self.n:
            return []
        per_segment: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in self.segments]
        for tok in tokens:  # a repeated query token counts again, as in bm25s
            found, df = [], 0
            for si, (seg, live) in enumerate(zip(self.segments, self.live)):
                rows = seg.bm25_map.get(tok)
                if not rows:
                    continue
                docs, tf = seg.postings(rows)
                keep = live[docs]
                docs, tf = docs[keep], tf[keep]
                df += len(docs)
                found.append((si, docs, tf))
            if not df:
                continue
            idf = np.float32(np.log(1 + (self.n - df + 0.5) / (df + 0.5)))
            for si, docs, tf in found:
                dl = self.segments[si].doc_len[docs]
                per_segment[si].append((docs, idf * tf / (K1 * ((1 - B) + B * dl / self.avgdl) + tf)))
        seg_ix, doc_ix, score = [], [], []
        for si, parts in enumerate(per_segment):
            if not parts:
                continue
            docs = np.concatenate([d for d, _ in parts])
            uniq, inv = np.unique(docs, return_inverse=True)
            summed = np.zeros(len(uniq), dtype=np.float32)
            np.add.at(summed, inv, np.concatenate([s for _, s in parts]).astype(np.float32))
            seg_ix.append(np.full(len(uniq), si))
            doc_ix.append(uniq)
            score.append(summed)
        if not score:
            return []
        seg_a, doc_a, score_a = np.concatenate(seg_ix), np.concatenate(doc_ix), np.concatenate(score)
        keep = score_a > 0
        seg_a, doc_a, score_a = seg_a[keep], doc_a[keep], score_a[keep]
        order = np.lexsort((doc_a, seg_a, -score_a))[:k]
        return [(self.segments[seg_a[i]].chunk_ids[doc_a[i]], float(score_a[i])) for i in order]

    def df(self, name: str, analyzer: Callable[[str], list[str]], term: str) -> int:
        """Live chunks holding `term` as `analyzer` (token-local) makes terms."""
        n = 0
        for seg, live in zip(self.segments, self.live):
            rows = seg.terms(name, analyzer).get(term)
            if rows:
                docs, _ = seg.postings(rows)
                n += int(live[docs].sum())
        return n

    def sources_with(self, name: str, analyzer: Callable[[str], list[str]], term: str) -> set[str]:
        """Source files whose live chunks hold `term` as `analyzer` (token-local) makes terms."""
        out: set[str] = set()
        for seg, live in zip(self.segments, self.live):
            rows = seg.terms(name, analyzer).get(term)
            if rows:
                docs, _ = seg.postings(rows)
                docs = docs[live[docs]]
                out.update(seg.sources[i] for i in np.unique(seg.doc_source[docs]))
        return out

    def first_with_all(self, name: str, analyzer: Callable[[str], list[str]], terms: Sequence[str], limit: int) -> list[str]:
        """For each source (up to `limit`), its first live chunk holding every one of `terms`: where
        a document first speaks of a thing, it usually says what the thing is."""
        out: list[str] = []
        for seg, docs in self._with_all(name, analyzer, terms):
            docs = np.sort(docs)  # a segment holds its chunks in document order
            _, first = np.unique(seg.doc_source[docs], return_index=True)
            out.extend(seg.chunk_ids[docs[i]] for i in sorted(first))
            if len(out) >= limit:
                return out[:limit]
        return out

    def chunks_with_all(self, name: str, analyzer: Callable[[str], list[str]], terms: Sequence[str], limit: int) -> list[str] | None:
        """Live chunk ids holding every one of `terms` (as `analyzer` makes them); None when more than `limit` do."""
        out: list[str] = []
        for seg, docs in self._with_all(name, analyzer, terms):
            out.extend(seg.chunk_ids[d] for d in docs)
            if len(out) > limit:
                return None
        return out

    def _with_all(self, name: str, analyzer: Callable[[str], list[str]], terms: Sequence[str]):
        """(segment, its live rows holding every one of `terms`), for each segment where some do."""
        for seg, live in zip(self.segments, self.live):
            vocab = seg.terms(name, analyzer)
            docs = None
            for term in terms:
                rows = vocab.get(term)
                d = seg.postings(rows)[0] if rows else seg.docs[:0]
                docs = d if docs is None else np.intersect1d(docs, d, assume_unique=True)
                if not len(docs):
                    break
            if docs is not None and len(docs):
                docs = docs[live[docs]]
                if len(docs):
                    yield seg, docs
