"""The Chroma side: one collection of chunks; a chunk record carries its quotable units too.

Chroma never embeds anything here: every vector comes from our model. The chunk
collection's metadata records how it was built (model, chunker, corpus fingerprint, counts).
A chunk record holds its text as the document, its vector (the normalised mean of its units'
vectors), and in its metadata its source, heading trail, offsets, table header (when it has one),
for a PDF its pages as `page_first`/`page_last` (1-based; absent when the source has no pages),
and its units: `units`, their spans as JSON (see `_spans_meta`), and `unit_vectors`, their
vectors as base64 float16 in the same order. A unit is a span of its chunk (`doc.text[start:end]`,
inside the chunk's own span) and takes its text and heading trail from the chunk when read.

Units are not records of their own (chunker v7 and v8 kept them in a second collection, searched
through its HNSW index). Every lookup of unit vectors, even by id, made Chroma load that whole
index into the serving process (about 1.9 KB per unit, most of the memory at 50 MB of text), and
writing them was most of the store's write time; the one query that searched them
(the units nearest the question anywhere in the corpus) changed no eval figure by more than 0.003
on three sets when it was left out (see assistant.rank). A record with its units is also written
atomically: no unit outlives its chunk after an interrupted ingest.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .errors import StoreError
from .lexical import LEXICAL_SUFFIX, from_parts, to_parts
from .records import SECTION_SEP, Chunk, Unit
from .settings import StoreSettings

LEGACY_UNITS_SUFFIX = "__units"  # the unit collection of chunker v7 and v8: dropped on rebuild
_PAGE = 2000


@dataclass(frozen=True)
class FileState:
    """What the store holds for one source file."""

    sha: str
    expected_chunks: int
    expected_units: int
    chunks: int
    units: int

    @property
    def complete(self) -> bool:
        return self.chunks == self.expected_chunks and self.units == self.expected_units


@dataclass(frozen=True)
class CollectionInfo:
    embedding_model: str
    chunker_version: str
    corpus_fingerprint: str
    ingested_at: str
    documents: int
    chunks: int
    units: int = 0


def rebuild_hint(settings: StoreSettings) -> str:
    flags = settings.cli_flags()
    return "make ingest" if flags == f"--store {StoreSettings().path}" else f"python -m ingest {flags}"


def _client(settings: StoreSettings, create: bool):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.is_server:
        try:
            import httpx

            # chromadb's client waits forever on a frozen server: ask it with a deadline first
            httpx.get(
                f"http://{settings.host}:{settings.port}/api/v2/heartbeat",
                timeout=httpx.Timeout(HTTP_TIMEOUT[1], connect=HTTP_TIMEOUT[0]),
            ).raise_for_status()
            client = chromadb.HttpClient(host=settings.host, port=settings.port, settings=chroma_settings)
            _bound_http_timeout(client)
            client.heartbeat()
            return client
        except Exception as err:  # connection refused, DNS, timeouts: all mean the same to a user
            raise StoreError(
                f"cannot reach the Chroma server at {settings.host}:{settings.port} ({type(err).__name__}) — "
                f"start it with `chroma run --path data/chroma-server --host {settings.host} --port {settings.port}` "
                "or fix --chroma-host/--chroma-port"
            ) from None
    if not create and not (settings.path / "chroma.sqlite3").exists():
        raise StoreError(f"no Chroma store at {settings.path} — build it with `{rebuild_hint(settings)}`")
    try:
        settings.path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(settings.path), settings=chroma_settings)
    except Exception as err:
        raise StoreError(
            f"the Chroma store at {settings.path} cannot be opened ({type(err).__name__}: {str(err)[:80]}) — "
            f"delete that folder and rebuild it with `{rebuild_hint(settings)}`"
        ) from None


HTTP_TIMEOUT = (3.0, 10.0)  # connect, read: a frozen server must not hang every user


def _bound_http_timeout(client) -> None:
    """chromadb's HttpClient waits forever (httpx timeout=None); give its session a deadline.

    The session is a private attribute of chromadb 1.5 (pinned <1.6 in pyproject.toml);
    if it moves, the client keeps chromadb's own behaviour.
    """
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(HTTP_TIMEOUT[1], connect=HTTP_TIMEOUT[0])


def store_identity(settings: StoreSettings) -> tuple:
    """Changes when an embedded store's files are replaced (deleted and rebuilt)."""
    if settings.is_server:
        return ()
    try:
        st = (settings.path / "chroma.sqlite3").stat()
        return (st.st_ino, st.st_dev)
    except OSError:
        return ("missing",)


def forget_clients() -> None:
    """Drop chromadb's cached clients, so a rebuilt store is opened afresh."""
    from chromadb.api.shared_system_client import SharedSystemClient

    SharedSystemClient.clear_system_cache()


def _meta_to_section(value: str) -> tuple[str, ...]:
    return tuple(value.split(SECTION_SEP)) if value else ()


def _meta_to_pages(meta: dict) -> tuple[int, ...]:
    first = int(meta.get("page_first") or 0)
    return (first, int(meta.get("page_last") or first)) if first > 0 else ()


def chunk_from_record(cid: str, text: str, meta: dict) -> Chunk:
    return Chunk(
        id=cid,
        source=meta["source"],
        section=_meta_to_section(meta.get("section", "")),
        start=int(meta["start"]),
        end=int(meta["end"]),
        text=text,
        header=meta.get("header", ""),
        pages=_meta_to_pages(meta),
    )


def unit_from_span(span: list, chunk: Chunk, headers: list[str]) -> Unit | None:
    """The unit one entry of a chunk record's `units` list describes, its text cut from the chunk;
    None if the span is not inside the chunk."""
    uid, kind, start, end, header, first, last = span
    if not chunk.start <= start <= end <= chunk.end:
        return None
    return Unit(
        id=uid,
        chunk_id=chunk.id,
        source=chunk.source,
        section=chunk.section,
        kind=kind,
        start=start,
        end=end,
        text=chunk.text[start - chunk.start : end - chunk.start],
        header=headers[header] if header >= 0 else "",
        pages=(first, last) if first > 0 else (),
    )


def _spans_meta(units: Sequence[Unit]) -> str:
    """A chunk's units as the chunk record keeps them: {"u": [[id, kind, start, end, header index
    or -1, first page, last page], ...], "h": [table headers]} (pages 0, 0 without pages)."""
    headers: list[str] = []
    rows = []
    for u in units:
        if u.header and u.header not in headers:
            headers.append(u.header)
        first, last = u.pages or (0, 0)
        rows.append([u.id, u.kind, u.start, u.end, headers.index(u.header) if u.header else -1, first, last])
    return json.dumps({"u": rows, "h": headers}, separators=(",", ":"))


def _vectors_meta(vecs: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(vecs, dtype=np.float16).tobytes()).decode("ascii")


def _spans(meta: dict) -> dict:
    """A chunk record's `units` (see _spans_meta); empty for a record without them."""
    return json.loads(meta.get("units") or '{"u": [], "h": []}')


def unit_vectors(meta: dict, n: int) -> np.ndarray:
    """The float16 vectors a chunk record holds for its n units, one row each."""
    raw = base64.b64decode(meta.get("unit_vectors") or "")
    return np.frombuffer(raw, dtype=np.float16).reshape(n, -1) if n and raw else np.zeros((0, 0), np.float16)


def listed_units(chunk: Chunk, meta: dict) -> tuple[list[Unit], np.ndarray]:
    """The units a chunk record lists, with their vectors (float32, one row each; none for a record
    without units)."""
    spans = _spans(meta)
    n = len(spans["u"])
    vecs = unit_vectors(meta, n)
    if len(vecs) != n:
        raise StoreError(f"the chunk record {chunk.id} lists {n} units but holds {len(vecs)} vectors — rebuild the store (`make ingest`)")
    keep = [(u, i) for i, span in enumerate(spans["u"]) if (u := unit_from_span(span, chunk, spans["h"])) is not None]
    return [u for u, _ in keep], vecs[[i for _, i in keep]].astype(np.float32)


def _pages_to_meta(pages: tuple[int, ...]) -> dict[str, int]:
    return {"page_first": pages[0], "page_last": pages[1]} if pages else {}


def _chunk_meta(c: Chunk, file_meta: dict, units: Sequence[Unit], unit_vecs: np.ndarray) -> dict:
    meta = {"source": c.source, "section": SECTION_SEP.join(c.section), "start": c.start, "end": c.end,
            **_pages_to_meta(c.pages), **file_meta, "units": _spans_meta(units)}
    if len(units):
        meta["unit_vectors"] = _vectors_meta(unit_vecs)
    if c.header:
        meta["header"] = c.header
    return meta


# Chroma's default (100) let a question's nearest passage drop out of the 20 dense hits in some
# processes and not others (the same SQuAD question, same store: HNSW is approximate and its
# graph is not the same in every process); 400 found it in every run, at a millisecond's cost.
EF_SEARCH = 400


def _hnsw(collection) -> dict:
    config = collection.configuration or {}
    return config.get("hnsw") or {}


class Store:
    """Chunks and units of one collection; opened for reading unless create=True."""

    def __init__(self, settings: StoreSettings, create: bool = False) -> None:
        self.settings = settings
        self.client = _client(settings, create)
        name = settings.collection
        try:
            if create:
                self.chunks = self.client.get_or_create_collection(
                    name, embedding_function=None, configuration={"hnsw": {"space": "cosine", "ef_search": EF_SEARCH}}
                )
                if (_hnsw(self.chunks).get("ef_search") or 0) < EF_SEARCH:  # made by an earlier version
                    self.chunks.modify(configuration={"hnsw": {"ef_search": EF_SEARCH}})
            else:
                self.chunks = self.client.get_collection(name, embedding_function=None)
        except StoreError:
            raise
        except Exception as err:
            if "does not exist" in str(err) or "NotFound" in type(err).__name__:
                raise StoreError(
                    f"no collection '{name}' in the store — build it with `{rebuild_hint(settings)}`"
                ) from None
            raise StoreError(
                f"the collection '{name}' cannot be opened ({type(err).__name__}) — "
                f"delete the store and rebuild it with `{rebuild_hint(settings)}`"
            ) from None
        self.identity = store_identity(settings)
        self._lexical = None

    @property
    def lexical(self):
        """The collection holding the lexical index (ingest.lexical); created on first write."""
        if self._lexical is None:
            self._lexical = self.client.get_or_create_collection(
                self.settings.collection + LEXICAL_SUFFIX, embedding_function=None, configuration={"hnsw": {"space": "l2"}}
            )
        return self._lexical

    # -- reading -----------------------------------------------------------------
    def info(self) -> CollectionInfo:
        meta = self.chunks.metadata or {}
        return CollectionInfo(
            embedding_model=meta.get("embedding_model", ""),
            chunker_version=str(meta.get("chunker_version", "")),
            corpus_fingerprint=meta.get("corpus_fingerprint", ""),
            ingested_at=meta.get("ingested_at", ""),
            documents=int(meta.get("documents", 0)),
            chunks=int(meta.get("chunks", 0)),
            units=int(meta.get("units", 0)),
        )

    def check_compatible(self, model_id: str, chunker_version: str) -> CollectionInfo:
        info = self.info()
        if not info.embedding_model:
            raise StoreError(
                f"{self.settings.describe()} was never completely ingested — run `{rebuild_hint(self.settings)}`"
            )
        if info.embedding_model != model_id:
            raise StoreError(
                f"{self.settings.describe()} was built with another embedding model ({info.embedding_model}); "
                f"rebuild it with `{rebuild_hint(self.settings)}`"
            )
        if info.chunker_version != chunker_version:
            raise StoreError(
                f"{self.settings.describe()} was built by an older chunker (v{info.chunker_version}); "
                f"rebuild it with `{rebuild_hint(self.settings)}`"
            )
        return info

    def _scan(self, collection, include: list[str]):
        offset = 0
        while True:
            page = collection.get(include=include, limit=_PAGE, offset=offset)
            ids = page["ids"]
            if not ids:
                return
            for i, rid in enumerate(ids):
                yield rid, {k: page[k][i] for k in include}
            if len(ids) < _PAGE:
                return
            offset += len(ids)

    def all_chunks(self) -> list[Chunk]:
        return [
            chunk_from_record(cid, rec["documents"], rec["metadatas"])
            for cid, rec in self._scan(self.chunks, ["documents", "metadatas"])
        ]

    def all_units(self, with_vectors: bool = False) -> tuple[list[Unit], np.ndarray | None]:
        """Every unit of every chunk (a full scan, for tools and tests), and their vectors if asked."""
        units, vecs = [], []
        for cid, rec in self._scan(self.chunks, ["documents", "metadatas"]):
            us, vs = listed_units(chunk_from_record(cid, rec["documents"], rec["metadatas"]), rec["metadatas"])
            units += us
            vecs.append(vs)
        if not with_vectors:
            return units, None
        return units, (np.concatenate([v for v in vecs if len(v)]) if units else np.zeros((0, 0), np.float32))

    def manifest(self) -> dict[str, FileState]:
        """Per source file: the hash it was ingested from and how complete it is."""
        states: dict[str, dict] = {}
        for _, rec in self._scan(self.chunks, ["metadatas"]):
            m = rec["metadatas"]
            s = states.setdefault(m["source"], {"shas": set(), "ec": 0, "eu": 0, "c": 0, "u": 0})
            s["shas"].add(m["file_sha"])
            s["ec"], s["eu"] = int(m["file_chunks"]), int(m["file_units"])
            s["c"] += 1
            s["u"] += len(_spans(m)["u"])
        out = {}
        for source, s in states.items():
            sha = next(iter(s["shas"])) if len(s["shas"]) == 1 else ""
            out[source] = FileState(sha, s["ec"], s["eu"], s["c"], s["u"])
        return out

    def count(self) -> int:
        return self.chunks.count()

    def chunks_of_sources(self, sources: Sequence[str]) -> list[Chunk]:
        out: list[Chunk] = []
        for i in range(0, len(sources), 100):
            page = self.chunks.get(where={"source": {"$in": list(sources[i : i + 100])}}, include=["documents", "metadatas"])
            out += [chunk_from_record(cid, d, m) for cid, d, m in zip(page["ids"], page["documents"], page["metadatas"])]
        return out

    def chunk_ids_after(self, source: str, start: int, window: int) -> list[str]:
        """Ids of the chunks of `source` that start in [start, start + window), in document order."""
        where = {"$and": [{"source": source}, {"start": {"$gte": int(start)}}, {"start": {"$lt": int(start) + int(window)}}]}
        page = self.chunks.get(where=where, include=["metadatas"])
        return [cid for _, cid in sorted((int(m["start"]), cid) for cid, m in zip(page["ids"], page["metadatas"]))]

    def units_of_chunks(self, chunks: Sequence[Chunk]) -> tuple[list[Unit], np.ndarray]:
        """The units of these chunks, with their vectors, read from the chunk records (one round trip
        per 200 chunks)."""
        units, vecs = [], []
        for i in range(0, len(chunks), 200):
            part = {c.id: c for c in chunks[i : i + 200]}
            page = self.chunks.get(ids=list(part), include=["metadatas"])
            for cid, meta in zip(page["ids"], page["metadatas"]):
                us, vs = listed_units(part[cid], meta)
                units += us
                vecs += [vs] if us else []
        return units, (np.concatenate(vecs) if vecs else np.zeros((0, 0), np.float32))

    # -- the lexical index (ingest.lexical) ----------------------------------------
    def lexical_manifest(self, fingerprint: str) -> dict | None:
        """{source: [sha, segment id]} of the corpus state with this fingerprint, or None."""
        try:
            col = self.client.get_collection(self.settings.collection + LEXICAL_SUFFIX, embedding_function=None)
        except Exception as err:  # no lexical collection yet (a store built before it existed)
            if "does not exist" in str(err) or "NotFound" in type(err).__name__:
                return None
            raise
        page = col.get(ids=[f"manifest:{fingerprint}"], include=["metadatas"])
        if not page["ids"]:
            return None
        return json.loads(from_parts(_parts_of(page)).decode("utf-8"))

    def lexical_segment(self, segment_id: str) -> bytes:
        page = self.lexical.get(where={"segment": segment_id}, include=["metadatas"])
        if not page["ids"]:
            raise StoreError(f"lexical segment {segment_id} is missing — run `{rebuild_hint(self.settings)}` again")
        return from_parts(_parts_of(page))

    def lexical_sizes(self) -> dict[str, int]:
        """Chunks held by each stored segment (live or not)."""
        page = self.lexical.get(where={"kind": "segment"}, include=["metadatas"])
        return {m["segment"]: int(m.get("docs", 0)) for m in page["metadatas"] if int(m.get("part", 0)) == 0}

    def write_lexical_segment(self, segment_id: str, blob: bytes, docs: int) -> None:
        parts = to_parts(blob)
        self._put_parts(
            [f"segment:{segment_id}:{i}" for i in range(len(parts))],
            [{"kind": "segment", "segment": segment_id, "part": i, "parts": len(parts), "docs": docs, "data": p}
             for i, p in enumerate(parts)],
        )

    def write_lexical_manifest(self, fingerprint: str, manifest: dict) -> None:
        parts = to_parts(json.dumps(manifest, sort_keys=True).encode("utf-8"))
        if len(parts) > 1:
            raise StoreError("the lexical manifest is over 1 MB: too many files for one collection")
        self._put_parts([f"manifest:{fingerprint}"], [{"kind": "manifest", "fingerprint": fingerprint, "part": 0, "data": parts[0]}])

    def prune_lexical(self, keep_fingerprints: set[str], keep_segments: set[str]) -> None:
        page = self.lexical.get(include=["metadatas"])
        stale = [
            rid for rid, m in zip(page["ids"], page["metadatas"])
            if (m.get("kind") == "manifest" and m.get("fingerprint") not in keep_fingerprints)
            or (m.get("kind") == "segment" and m.get("segment") not in keep_segments)
        ]
        if stale:
            self.lexical.delete(ids=stale)

    def _put_parts(self, ids: list[str], metas: list[dict]) -> None:
        for i in range(0, len(ids), 8):
            self.lexical.upsert(ids=ids[i : i + 8], embeddings=[[0.0]] * len(ids[i : i + 8]), metadatas=metas[i : i + 8])

    def get_chunks(self, ids: Sequence[str]) -> list[Chunk]:
        if not ids:
            return []
        page = self.chunks.get(ids=list(ids), include=["documents", "metadatas"])
        by_id = {
            cid: chunk_from_record(cid, doc, meta)
            for cid, doc, meta in zip(page["ids"], page["documents"], page["metadatas"])
        }
        return [by_id[i] for i in ids if i in by_id]

    # -- writing -----------------------------------------------------------------
    def delete_source(self, source: str) -> None:
        self.chunks.delete(where={"source": source})

    def add(self, files: Sequence[tuple[list[Chunk], np.ndarray, list[Unit], np.ndarray, str]]) -> None:
        """Write files' (chunks, chunk vectors, units, unit vectors, file sha) in few round trips
        (upsert: ids are deterministic, so a retry never duplicates). Each chunk record carries its
        units and their vectors, so a file is present exactly as far as its chunks are."""
        chunks, chunk_meta = [], []
        for cs, _, us, uv, sha in files:
            file_meta = {"file_sha": sha, "file_chunks": len(cs), "file_units": len(us)}
            rows: dict[str, list[int]] = {}
            for i, u in enumerate(us):
                rows.setdefault(u.chunk_id, []).append(i)
            for c in cs:
                mine = rows.get(c.id, [])
                chunk_meta.append(_chunk_meta(c, file_meta, [us[i] for i in mine], uv[mine]))
            chunks += cs
        chunk_vecs = np.concatenate([f[1] for f in files]) if chunks else None
        for i in range(0, len(chunks), _PAGE):
            part = chunks[i : i + _PAGE]
            self.chunks.upsert(
                ids=[c.id for c in part],
                embeddings=chunk_vecs[i : i + _PAGE],
                documents=[c.text for c in part],
                metadatas=chunk_meta[i : i + _PAGE],
            )

    def set_info(self, info: CollectionInfo) -> None:
        meta = dict(self.chunks.metadata or {})
        meta.update(
            {
                "embedding_model": info.embedding_model,
                "chunker_version": info.chunker_version,
                "corpus_fingerprint": info.corpus_fingerprint,
                "ingested_at": info.ingested_at,
                "documents": info.documents,
                "chunks": info.chunks,
                "units": info.units,
            }
        )
        self.chunks.modify(metadata=meta)

    def drop(self) -> None:
        self._lexical = None
        names = ("", LEGACY_UNITS_SUFFIX, LEXICAL_SUFFIX)
        for name in (self.settings.collection + suffix for suffix in names):
            try:
                self.client.delete_collection(name)
            except Exception:  # absent already: nothing to drop
                pass


def _parts_of(page) -> list[str]:
    metas = sorted(page["metadatas"], key=lambda m: int(m.get("part", 0)))
    return [m["data"] for m in metas]


def fingerprint(states: Iterable[tuple[str, str]]) -> str:
    import hashlib

    return hashlib.sha1(json.dumps(sorted(states)).encode()).hexdigest()[:16]
