"""The retrieve stage: dense search (Chroma through llama-index) and BM25, fused by RRF. BM25 also
searches, for each question word the corpus lacks, its closest synonym the corpus uses.

`Retriever` keeps the CorpusIndex in step with the collection (a cheap metadata check at most
once a second; a new index when an ingest changed the corpus fingerprint) and searches it.
BM25 runs over the lexical index ingest wrote into the store (ingest.lexical); a new state
loads only the segments this process does not hold yet. A store whose state has no lexical
index (written by an older version) gets one built in memory from all chunks, once per state,
with a one-line notice naming the fix. llama-index types stay inside this module: callers get
Hits of our own Chunks.

Failures of the store (missing, corrupt, server down or frozen) become a one-line StoreError that
names the fix; any other exception is a bug and propagates with its traceback.
"""
from __future__ import annotations

import sys
import threading
import time

import numpy as np

from ingest.chunk import CHUNKER_VERSION
from ingest.embed import Embedder
from ingest.errors import StoreError
from ingest.lexical import LexicalIndex, Segment, build_segment
from ingest.store import Store, forget_clients, rebuild_hint, store_identity

from .fusion import rrf
from .index import CorpusIndex, build_index
from .records import Hit
from .settings import Settings
from .synonyms import NONE, Synonyms

_FRESHNESS_SECONDS = 1.0
MODES = ("hybrid", "dense", "bm25")


def store_failures() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the store itself failed (not our code)."""
    import sqlite3

    import httpx
    from chromadb.errors import ChromaError

    # chromadb's Rust bindings report a damaged sqlite file as a RuntimeError
    return (ChromaError, sqlite3.Error, OSError, httpx.HTTPError, RuntimeError)


def release_heap() -> None:
    """Hand the heap that loading a state freed back to the OS (glibc keeps it otherwise: the
    lexical segments arrive as base64 text and are decoded, so loading one peaks at several times
    its size; at 50 MB of text that garbage was ~90 MB of RSS). A no-op off glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    trim.argtypes = [ctypes.c_size_t]
    trim(0)


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


class Retriever:
    def __init__(self, settings: Settings, embedder: Embedder, synonyms: Synonyms = NONE) -> None:
        self.settings = settings
        self.embedder = embedder
        self.synonyms = synonyms
        self._lock = threading.Lock()
        self._index: CorpusIndex | None = None
        self._checked = 0.0
        self._store: Store | None = None
        self._dense = None
        self._segments: dict[str, Segment] = {}  # loaded segments, shared by successive states

    # -- keeping in step with the collection ----------------------------------------
    def _open(self) -> Store:
        if self._store is None:
            store = Store(self.settings.store)
            store.check_compatible(self.embedder.model_id, CHUNKER_VERSION)
            self._store = store
        return self._store

    def _lost(self, err: BaseException, doing: str) -> StoreError:
        self._store, self._index, self._dense = None, None, None
        self._segments = {}
        return StoreError(
            f"{doing} {self.settings.store.describe()} failed ({type(err).__name__}) — if an ingest is running, "
            "ask again when it ends; otherwise check that the store exists (or that the Chroma server is "
            "running) and rebuild it with "
            f"`{_rebuild(self.settings)}`"
        )

    def index(self) -> CorpusIndex:
        """The current index; rebuilt when an ingest changed the collection."""
        now = time.monotonic()
        if self._index is not None and now - self._checked < _FRESHNESS_SECONDS:
            return self._index
        failures = store_failures()
        with self._lock:
            if self._store is not None and store_identity(self.settings.store) != self._store.identity:
                # the store folder was deleted and rebuilt under us: reopen it
                self._store, self._index, self._segments, self._dense = None, None, {}, None
                forget_clients()
            try:
                store = self._open()
                fresh = store.client.get_collection(self.settings.store.collection, embedding_function=None)
                meta = fresh.metadata or {}
            except StoreError:
                self._store = None
                raise
            except failures as err:
                raise self._lost(err, "reading") from err
            if meta.get("embedding_model") != self.embedder.model_id:
                self._store = None
                self._open()  # raises the message that names the rebuild
            fp = meta.get("corpus_fingerprint", "")
            if self._index is None or self._index.fingerprint != fp:
                try:
                    self._index = self._build(store, fp, meta)
                except failures as err:
                    raise self._lost(err, "reading") from err
            self._checked = now
            return self._index

    def _build(self, store: Store, fp: str, meta: dict) -> CorpusIndex:
        from llama_index.core import VectorStoreIndex
        from llama_index.vector_stores.chroma import ChromaVectorStore

        index = build_index(fp, meta, store, self._lexical(store, fp), int(meta.get("units", 0)))
        if self._dense is None:  # the same collection whatever its state: built once
            vector_store = ChromaVectorStore(chroma_collection=store.chunks)
            dense = VectorStoreIndex.from_vector_store(vector_store, embed_model=_embed_model(self.embedder))
            self._dense = dense.as_retriever(similarity_top_k=self.settings.dense_k)
        release_heap()
        return index

    def _lexical(self, store: Store, fp: str) -> LexicalIndex:
        manifest = store.lexical_manifest(fp)
        if manifest is None:
            print(
                f"assistant: {self.settings.store.describe()} holds no lexical index for its current state; "
                f"built one in memory (slow on a large corpus) — run `{rebuild_hint(self.settings.store)}` to store it",
                file=sys.stderr,
            )
            segment = Segment(f"memory:{fp}", build_segment(store.all_chunks()))
            return LexicalIndex({s: ["", segment.id] for s in segment.sources}, [segment])
        wanted = sorted({v[1] for v in manifest.values()})
        loaded = {sid: self._segments.get(sid) or Segment(sid, store.lexical_segment(sid)) for sid in wanted}
        self._segments = loaded  # segments no state uses any more are let go
        return LexicalIndex(manifest, [loaded[sid] for sid in wanted])

    # -- searching -------------------------------------------------------------------
    def dense(self, text: str, vec: np.ndarray, k: int | None = None) -> list[str]:
        from llama_index.core.schema import QueryBundle

        self.index()
        retriever = self._dense
        if k is not None and k != self.settings.dense_k:
            retriever = retriever._index.as_retriever(similarity_top_k=k)  # noqa: SLF001 - same index, other k
        try:
            nodes = retriever.retrieve(QueryBundle(query_str=text, embedding=vec.tolist()))
        except store_failures() as err:
            raise self._lost(err, "searching") from err
        return [n.node.node_id for n in nodes]

    def bm25(self, text: str, k: int | None = None) -> list[str]:
        idx = self.index()
        if not text.strip():
            return []
        return [cid for cid, _ in idx.lexical.bm25(text, k or self.settings.bm25_k)]  # positive scores only

    def search(self, text: str, vec: np.ndarray, mode: str = "hybrid") -> list[Hit]:
        """Chunks ranked by reciprocal rank fusion of dense and BM25 (or one of them alone)."""
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode '{mode}' — use one of {', '.join(MODES)}")
        idx = self.index()
        s = self.settings
        dense_ids = self.dense(text, vec) if mode in ("hybrid", "dense") else []
        if mode in ("hybrid", "bm25"):  # words the corpus lacks are searched by a synonym it uses, too
            bm25_ids = self.bm25(" ".join([text, *self.synonyms.bridge(text, idx.stats.known)]))
        else:
            bm25_ids = []
        d_rank = {cid: r for r, cid in enumerate(dense_ids, 1)}
        b_rank = {cid: r for r, cid in enumerate(bm25_ids, 1)}
        fused = rrf([(dense_ids, s.dense_weight), (bm25_ids, s.bm25_weight)], s.rrf_k)
        try:
            chunks = idx.chunks.fetch([c for c, _ in fused])
        except store_failures() as err:
            raise self._lost(err, "reading") from err
        return [Hit(chunks[c], score, d_rank.get(c), b_rank.get(c)) for c, score in fused if c in chunks]


def _rebuild(settings: Settings) -> str:
    from ingest.store import rebuild_hint

    return rebuild_hint(settings.store)
