"""CorpusIndex: everything derived from one state of the collection, built once per state.

The chunks and their quotable units (in document order, so a list's items follow its lead-in),
the unit vectors made at ingest, the BM25 index over the chunks, term and identifier postings
over the units, and the collection's metadata (it records how the collection was built and,
when `make calibrate` ran on it, its own abstention threshold).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ingest.records import Chunk, Unit

from .qtype import corpus_identifiers
from .terms import TermStats, content_terms

EMBED_DIM = 384


@dataclass
class CorpusIndex:
    fingerprint: str
    chunks: dict[str, Chunk]
    bm25: Any  # llama-index BM25Retriever, or None for an empty collection
    units: list[Unit]
    unit_vecs: np.ndarray
    units_by_chunk: dict[str, list[int]]
    unit_pos: dict[str, int]  # unit id -> its row in units / unit_vecs
    stats: TermStats
    unit_postings: dict[str, np.ndarray]  # term -> rows of the units that contain it
    identifiers: set[str]  # names with numbers the corpus mentions (ASL-3, v2.1, ...)
    identifier_postings: dict[str, np.ndarray]  # identifier -> rows of the units that name it
    documents: int
    ingested_at: str
    meta: dict = field(default_factory=dict)

    def vector_of(self, unit: Unit) -> np.ndarray:
        return self.unit_vecs[self.unit_pos[unit.id]]


def build_index(
    fingerprint: str, meta: dict, chunks: list[Chunk], units: list[Unit], vecs: np.ndarray | None, bm25_k: int
) -> CorpusIndex:
    """The index of one state of the collection, from what the store holds."""
    by_id = {c.id: c for c in chunks}
    if units:
        order = sorted(range(len(units)), key=lambda i: (units[i].source, units[i].start))
        units = [units[i] for i in order]
        vecs = vecs[order] if vecs is not None else None
    by_chunk: dict[str, list[int]] = {}
    for i, u in enumerate(units):
        by_chunk.setdefault(u.chunk_id, []).append(i)
    postings: dict[str, list[int]] = {}
    id_postings: dict[str, list[int]] = {}
    for i, u in enumerate(units):
        heading = u.section[-1] if u.section else ""
        for term in set(content_terms(f"{heading} {u.text} {u.header}")):
            postings.setdefault(term, []).append(i)
        for ident in corpus_identifiers([f"{heading} {u.text}"]):
            id_postings.setdefault(ident, []).append(i)
    texts = [c.embed_text() for c in chunks]
    return CorpusIndex(
        fingerprint=fingerprint,
        chunks=by_id,
        bm25=_bm25(chunks, bm25_k) if chunks else None,
        units=units,
        unit_vecs=vecs if vecs is not None and len(vecs) else np.zeros((0, EMBED_DIM), np.float32),
        units_by_chunk=by_chunk,
        unit_pos={u.id: i for i, u in enumerate(units)},
        stats=TermStats(texts),
        unit_postings={t: np.asarray(ix, dtype=np.int64) for t, ix in postings.items()},
        identifiers=corpus_identifiers(texts),
        identifier_postings={t: np.asarray(ix, dtype=np.int64) for t, ix in id_postings.items()},
        documents=int(meta.get("documents", 0)),
        ingested_at=str(meta.get("ingested_at", "")),
        meta=dict(meta),
    )


def _bm25(chunks: list[Chunk], k: int):
    from llama_index.core.schema import TextNode
    from llama_index.retrievers.bm25 import BM25Retriever

    nodes = [TextNode(text=c.embed_text(), id_=c.id) for c in chunks]
    return BM25Retriever.from_defaults(
        nodes=nodes, similarity_top_k=min(k, len(nodes)), token_pattern=r"(?u)\b\w+\b"
    )
