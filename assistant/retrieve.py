"""Hybrid retrieval: dense (Chroma through llama-index) + BM25 (llama-index), fused by RRF.

llama-index types stay inside this module: callers get Hits of our own Chunks.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from ingest.chunk import CHUNKER_VERSION
from ingest.embed import Embedder
from ingest.errors import StoreError
from ingest.records import Chunk, Unit
from ingest.store import Store, forget_clients, store_identity

from .records import Hit
from .settings import Settings
from .qtype import corpus_identifiers
from .terms import TermStats, content_terms

_FRESHNESS_SECONDS = 1.0


def _embed_model(embedder: Embedder):
    """Our embedder as a llama-index embedding model (set explicitly; llama-index's default is OpenAI)."""
    from llama_index.core.base.embeddings.base import BaseEmbedding

    class _Adapter(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            return embedder.encode_one(query).tolist()

        def _get_text_embedding(self, text: str) -> list[float]:
            return embedder.encode_one(text).tolist()

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

    return _Adapter(model_name=embedder.model_id, embed_batch_size=64)


@dataclass
class _Index:
    """Everything derived from one state of the collection."""

    fingerprint: str
    chunks: dict[str, Chunk]
    bm25: object | None
    units: list[Unit]
    unit_vecs: np.ndarray
    units_by_chunk: dict[str, list[int]]
    stats: TermStats
    unit_postings: dict[str, np.ndarray]  # term -> indices of the units that contain it
    identifiers: set[str]  # names with numbers the corpus mentions (ASL-3, v2.1, ...)
    identifier_postings: dict[str, np.ndarray]  # identifier -> indices of the units that name it
    documents: int
    ingested_at: str


class Retriever:
    def __init__(self, settings: Settings, embedder: Embedder) -> None:
        self.settings = settings
        self.embedder = embedder
        self._lock = threading.Lock()
        self._index: _Index | None = None
        self._checked = 0.0
        self._store: Store | None = None
        self._dense = None

    # -- keeping in step with the collection ----------------------------------------
    def _open(self) -> Store:
        if self._store is None:
            store = Store(self.settings.store)
            store.check_compatible(self.embedder.model_id, CHUNKER_VERSION)
            self._store = store
        return self._store

    def index(self) -> _Index:
        """The current index; rebuilt when an ingest changed the collection."""
        now = time.monotonic()
        if self._index is not None and now - self._checked < _FRESHNESS_SECONDS:
            return self._index
        with self._lock:
            if self._store is not None and store_identity(self.settings.store) != self._store.identity:
                # the store folder was deleted and rebuilt under us: reopen it
                self._store, self._index = None, None
                forget_clients()
            try:
                store = self._open()
                fresh = store.client.get_collection(self.settings.store.collection, embedding_function=None)
                meta = fresh.metadata or {}
            except StoreError:
                self._store = None
                raise
            except Exception as err:
                self._store = None
                raise StoreError(
                    f"lost the store ({type(err).__name__}) — check that {self.settings.store.describe()} "
                    "exists (or that the Chroma server is running) and try again"
                ) from None
            if meta.get("embedding_model") != self.embedder.model_id:
                self._store = None
                self._open()  # raises the right message
            fp = meta.get("corpus_fingerprint", "")
            if self._index is None or self._index.fingerprint != fp:
                try:
                    self._index = self._build(store, fp, meta)
                except Exception as err:
                    self._store = None
                    raise StoreError(
                        f"could not read {self.settings.store.describe()} ({type(err).__name__}) — "
                        "if an ingest is running, ask again when it ends; otherwise rebuild the store "
                        "with `make ingest`"
                    ) from None
            self._checked = now
            return self._index

    def _build(self, store: Store, fp: str, meta: dict) -> _Index:
        from llama_index.core import VectorStoreIndex
        from llama_index.core.schema import TextNode
        from llama_index.vector_stores.chroma import ChromaVectorStore

        chunks = {c.id: c for c in store.all_chunks()}
        units, vecs = store.all_units(with_vectors=True)
        if units:  # document order, so a list's items follow its lead-in
            order = sorted(range(len(units)), key=lambda i: (units[i].source, units[i].start))
            units = [units[i] for i in order]
            vecs = vecs[order]
        by_chunk: dict[str, list[int]] = {}
        for i, u in enumerate(units):
            by_chunk.setdefault(u.chunk_id, []).append(i)
        bm25 = None
        if chunks:
            from llama_index.retrievers.bm25 import BM25Retriever

            nodes = [TextNode(text=c.embed_text(), id_=c.id) for c in chunks.values()]
            bm25 = BM25Retriever.from_defaults(
                nodes=nodes,
                similarity_top_k=min(self.settings.bm25_k, len(nodes)),
                token_pattern=r"(?u)\b\w+\b",
            )
        vector_store = ChromaVectorStore(chroma_collection=store.chunks)
        index = VectorStoreIndex.from_vector_store(vector_store, embed_model=_embed_model(self.embedder))
        self._dense = index.as_retriever(similarity_top_k=self.settings.dense_k)
        postings: dict[str, list[int]] = {}
        id_postings: dict[str, list[int]] = {}
        for i, u in enumerate(units):
            heading = u.section[-1] if u.section else ""
            for term in set(content_terms(f"{heading} {u.text} {u.header}")):
                postings.setdefault(term, []).append(i)
            for ident in corpus_identifiers([f"{heading} {u.text}"]):
                id_postings.setdefault(ident, []).append(i)
        return _Index(
            fingerprint=fp,
            chunks=chunks,
            bm25=bm25,
            units=units,
            unit_vecs=vecs if vecs is not None and len(vecs) else np.zeros((0, 384), np.float32),
            units_by_chunk=by_chunk,
            stats=TermStats(c.embed_text() for c in chunks.values()),
            unit_postings={t: np.asarray(ix, dtype=np.int64) for t, ix in postings.items()},
            identifiers=corpus_identifiers(c.embed_text() for c in chunks.values()),
            identifier_postings={t: np.asarray(ix, dtype=np.int64) for t, ix in id_postings.items()},
            documents=int(meta.get("documents", 0)),
            ingested_at=str(meta.get("ingested_at", "")),
        )

    # -- searching -------------------------------------------------------------------
    def dense(self, text: str, vec: np.ndarray, k: int | None = None) -> list[str]:
        from llama_index.core.schema import QueryBundle

        self.index()
        retriever = self._dense
        if k is not None and k != self.settings.dense_k:
            retriever = retriever._index.as_retriever(similarity_top_k=k)  # noqa: SLF001 - same index, other k
        try:
            nodes = retriever.retrieve(QueryBundle(query_str=text, embedding=vec.tolist()))
        except Exception as err:
            self._index = None
            self._store = None
            raise StoreError(
                f"the store stopped answering ({type(err).__name__}) — check that "
                f"{self.settings.store.describe()} is reachable, then ask again"
            ) from None
        return [n.node.node_id for n in nodes]

    def bm25(self, text: str, k: int | None = None) -> list[str]:
        from llama_index.core.schema import QueryBundle

        idx = self.index()
        if idx.bm25 is None or not text.strip():
            return []
        try:
            nodes = idx.bm25.retrieve(QueryBundle(query_str=text))
        except Exception:  # bm25s raises on queries made only of stopwords: no lexical match then
            return []
        ids = [n.node.node_id for n in nodes if (n.score or 0) > 0]
        return ids[:k] if k else ids

    def search(self, text: str, vec: np.ndarray, mode: str = "hybrid") -> list[Hit]:
        """Chunks ranked by reciprocal rank fusion of dense and BM25 (or one of them alone)."""
        idx = self.index()
        s = self.settings
        dense_ids = self.dense(text, vec) if mode in ("hybrid", "dense") else []
        bm25_ids = self.bm25(text) if mode in ("hybrid", "bm25") else []
        scores: dict[str, float] = {}
        for rank, cid in enumerate(dense_ids, 1):
            scores[cid] = scores.get(cid, 0.0) + s.dense_weight / (s.rrf_k + rank)
        for rank, cid in enumerate(bm25_ids, 1):
            scores[cid] = scores.get(cid, 0.0) + s.bm25_weight / (s.rrf_k + rank)
        d_rank = {cid: r for r, cid in enumerate(dense_ids, 1)}
        b_rank = {cid: r for r, cid in enumerate(bm25_ids, 1)}
        ranked = sorted(scores, key=lambda c: -scores[c])
        return [
            Hit(idx.chunks[c], scores[c], d_rank.get(c), b_rank.get(c)) for c in ranked if c in idx.chunks
        ]
