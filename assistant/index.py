"""CorpusIndex: one state of the collection as the serving stages see it, served from the store.

Nothing here holds the whole corpus. What stays in memory:
- the lexical index (ingest.lexical: raw-token postings written by ingest into the store, loaded
  once per segment and shared by later states of the same store), with the assistant's own
  content terms mapped onto its vocabulary on first use;
- a bounded LRU of chunks fetched by id (`chunks`, CHUNK_CACHE of them);
- a bounded LRU of the units of the chunks a question touched, with their vectors (`units`,
  `unit_vecs`, `units_by_chunk`, `unit_pos`: rows are stable per chunk for the life of this index,
  so a lead-in's list items follow it, as they did when every unit was loaded);
- per identifier a question named, the chunks and units that name it (IDENT_CACHE entries).
Units and their vectors come with their chunk's record (ingest.store); no unit is searched on its own.
"""
from __future__ import annotations

import math
import re
import threading
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ingest.lexical import LexicalIndex
from ingest.records import Chunk, Unit, split_row

from .qtype import corpus_identifiers, path_terms
from .terms import content_terms

EMBED_DIM = 384
CHUNK_CACHE = 4096  # chunks kept (text + metadata, about 1 KB each)
UNIT_CACHE = 20_000  # units kept with their vectors (about 2 KB each)
IDENT_CHUNKS = 64  # an identifier named by more chunks than this is common: a tiny bonus, no extra candidates
IDENT_CACHE = 4096


def _content(text: str) -> list[str]:
    return content_terms(text)


class LiveTermStats:
    """Document frequencies of content terms over the live chunks (TermStats' interface)."""

    def __init__(self, lexical: LexicalIndex) -> None:
        self.lexical = lexical
        self.n = lexical.n
        self._df: dict[str, int] = {}
        self._sources: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()

    def df_of(self, term: str) -> int:
        got = self._df.get(term)
        if got is None:
            got = self.lexical.df("content", _content, term)
            with self._lock:
                if len(self._df) > 100_000:
                    self._df.clear()
                self._df[term] = got
        return got

    def idf(self, term: str) -> float:
        return math.log(1 + (self.n + 1) / (self.df_of(term) + 0.5))

    def known(self, term: str) -> bool:
        return self.df_of(term) > 0

    def sources_of(self, term: str) -> frozenset[str]:
        """The source files that use the term."""
        got = self._sources.get(term)
        if got is None:
            got = frozenset(self.lexical.sources_with("content", _content, term)) if self.known(term) else frozenset()
            with self._lock:
                if len(self._sources) > 100_000:
                    self._sources.clear()
                self._sources[term] = got
        return got


class ChunkCache:
    """Chunks by id, fetched from the store on demand (mapping interface: get, [], in, len)."""

    def __init__(self, store, count: int, capacity: int = CHUNK_CACHE) -> None:
        self.store, self.count, self.capacity = store, count, capacity
        self._lru: OrderedDict[str, Chunk | None] = OrderedDict()
        self._lock = threading.Lock()

    def fetch(self, ids: Sequence[str]) -> dict[str, Chunk]:
        with self._lock:
            missing = [i for i in dict.fromkeys(ids) if i not in self._lru]
        got = {c.id: c for c in self.store.get_chunks(missing)} if missing else {}
        out: dict[str, Chunk] = {}
        with self._lock:
            for i in missing:
                self._lru[i] = got.get(i)  # None: not (or no longer) in the store
            for i in ids:
                if i in self._lru:
                    self._lru.move_to_end(i)
                    c = self._lru[i]
                    if c is not None:
                        out[i] = c
            while len(self._lru) > self.capacity:
                self._lru.popitem(last=False)
        return out

    def get(self, cid: str, default=None):
        return self.fetch([cid]).get(cid, default)

    def __getitem__(self, cid: str) -> Chunk:
        got = self.get(cid)
        if got is None:
            raise KeyError(cid)
        return got

    def __contains__(self, cid: object) -> bool:
        return isinstance(cid, str) and self.get(cid) is not None

    def __len__(self) -> int:
        return self.count

    def values(self):
        """Every chunk: a full scan of the store (for tools and evals; serving never calls it)."""
        return self.store.all_chunks()

    def keys(self):
        return [c.id for c in self.values()]

    def items(self):
        return [(c.id, c) for c in self.values()]

    def __iter__(self):
        return iter(self.keys())


def _term_text(u: Unit) -> str:
    """The words a unit is matched by: its heading and text, a row's column names with its cells
    (an HTML row without its tags)."""
    if u.kind == "row":
        return f"{u.embed_text()} {' '.join(split_row(u.header)) if u.header else ''}"
    heading = u.section[-1] if u.section else ""
    return f"{heading} {u.text}"


@dataclass
class _Group:
    first: int
    units: list[Unit]
    vecs: np.ndarray
    terms: list[frozenset] = field(default_factory=list)  # content terms of heading + text + header
    names: list[set] = field(default_factory=list)  # identifiers of heading + text


class UnitArena:
    """The units of the chunks questions touched, with vectors, in rows stable per chunk."""

    def __init__(self, store, chunks: ChunkCache, capacity: int = UNIT_CACHE) -> None:
        self.store, self.chunks, self.capacity = store, chunks, capacity
        self._groups: OrderedDict[str, _Group] = OrderedDict()
        self._first: dict[str, int] = {}  # chunk id -> its first row (kept after eviction: rows stay stable)
        self._starts: list[int] = []  # first rows in increasing order, and the chunk owning each
        self._owners: list[str] = []
        self._next = 0
        self._resident = 0
        self._unit_row: dict[str, int] = {}
        self._lock = threading.Lock()

    def load(self, chunk_ids: Sequence[str]) -> dict[str, _Group]:
        """The groups of these chunks, fetched in one round trip for those not resident."""
        wanted = list(dict.fromkeys(chunk_ids))
        with self._lock:
            missing = [c for c in wanted if c not in self._groups]
        fetched: dict[str, tuple[list[Unit], list[np.ndarray]]] = {c: ([], []) for c in missing}
        if missing:
            units, vecs = self.store.units_of_chunks(list(self.chunks.fetch(missing).values()))
            for u, v in zip(units, vecs):
                if u.chunk_id in fetched:
                    fetched[u.chunk_id][0].append(u)
                    fetched[u.chunk_id][1].append(v)
        out: dict[str, _Group] = {}
        with self._lock:
            for cid, (units, vecs) in fetched.items():
                if cid in self._groups:
                    continue
                order = sorted(range(len(units)), key=lambda i: (units[i].start, units[i].end))
                units = [units[i] for i in order]
                arr = np.asarray([vecs[i] for i in order], dtype=np.float32).reshape(len(units), -1) if units else np.zeros((0, EMBED_DIM), np.float32)
                first = self._first.get(cid)
                if first is None:
                    first = self._next
                    self._next += max(1, len(units))
                    self._first[cid] = first
                    self._starts.append(first)
                    self._owners.append(cid)
                group = _Group(first, units, arr)
                for i, u in enumerate(units):
                    heading = u.section[-1] if u.section else ""
                    group.terms.append(frozenset(content_terms(_term_text(u))))
                    group.names.append(corpus_identifiers([f"{heading} {u.text}"]))
                    self._unit_row[u.id] = first + i
                self._groups[cid] = group
                self._resident += len(units)
            for cid in wanted:
                g = self._groups.get(cid)
                if g is not None:
                    self._groups.move_to_end(cid)
                    out[cid] = g
            keep = set(wanted)
            while self._resident > self.capacity and len(self._groups) > len(keep):
                cid, g = next((k, v) for k, v in self._groups.items() if k not in keep)
                del self._groups[cid]
                self._resident -= len(g.units)
                for u in g.units:
                    self._unit_row.pop(u.id, None)
        return out

    def group_at(self, row: int) -> tuple[_Group | None, int]:
        with self._lock:
            i = bisect_right(self._starts, row) - 1
            if i < 0:
                return None, 0
            cid = self._owners[i]
        g = self.load([cid]).get(cid)
        if g is None or not (g.first <= row < g.first + len(g.units)):
            return None, 0
        return g, row - g.first

    def row_of(self, unit_id: str) -> int | None:
        return self._unit_row.get(unit_id)

    @property
    def resident(self) -> int:
        return self._resident


class UnitRows:
    """`index.units[row]` and `index.units[a:b]` (rows past a chunk's last unit end the slice)."""

    def __init__(self, arena: UnitArena, count: int) -> None:
        self.arena, self.count = arena, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, key):
        if isinstance(key, slice):
            out = []
            for row in range(*key.indices(self.arena._next)):  # noqa: SLF001 - same module
                g, i = self.arena.group_at(row)
                if g is None:
                    break
                out.append(g.units[i])
            return out
        g, i = self.arena.group_at(int(key))
        if g is None:
            raise IndexError(key)
        return g.units[i]


class VectorRows:
    """`index.unit_vecs[rows]`: the vectors of those rows, stacked."""

    def __init__(self, arena: UnitArena) -> None:
        self.arena = arena

    def __getitem__(self, key):
        rows = [int(key)] if np.isscalar(key) else [int(r) for r in key]
        out = []
        for row in rows:
            g, i = self.arena.group_at(row)
            if g is None:
                raise IndexError(row)
            out.append(g.vecs[i])
        return out[0] if np.isscalar(key) else np.stack(out) if out else np.zeros((0, EMBED_DIM), np.float32)


class _RowsByChunk:
    def __init__(self, arena: UnitArena) -> None:
        self.arena = arena

    def get(self, cid: str, default=None):
        g = self.arena.load([cid]).get(cid)
        if g is None or not g.units:
            return default
        return list(range(g.first, g.first + len(g.units)))


class _RowOfUnit:
    def __init__(self, arena: UnitArena) -> None:
        self.arena = arena

    def get(self, uid: str, default=None):
        row = self.arena.row_of(uid)
        return default if row is None else row


class LiveIdentifiers:
    """The identifiers the live chunks name, asked about one at a time (set interface: `in`).

    An identifier's candidate chunks are those holding all of its content terms (lexical index);
    they are read and checked with qtype.corpus_identifiers. Past IDENT_CHUNKS candidates it counts
    as named (it is common) and its units are not listed."""

    def __init__(self, lexical: LexicalIndex, chunks: ChunkCache, arena: UnitArena) -> None:
        self.lexical, self.chunks, self.arena = lexical, chunks, arena
        self._cache: dict[str, tuple[bool, list[str] | None, int]] = {}
        self._lock = threading.Lock()

    def lookup(self, ident: str) -> tuple[bool, list[str] | None, int]:
        """(named by the corpus, chunk ids of the units naming it or None when common, how many units)."""
        got = self._cache.get(ident)
        if got is not None:
            return got
        terms = list(dict.fromkeys(content_terms(ident)))
        cands = self.lexical.chunks_with_all("content", _content, terms, IDENT_CHUNKS) if terms else None
        if cands is None:
            got = (True, None, IDENT_CHUNKS + 1)
        else:
            chunks = self.chunks.fetch(cands)
            named = [cid for cid, c in chunks.items() if ident in corpus_identifiers([c.embed_text()])]
            groups = self.arena.load(named) if named else {}
            owners = [cid for cid, g in groups.items() for names in g.names if ident in names]
            got = (bool(named), list(dict.fromkeys(owners)), len(owners))
        with self._lock:
            if len(self._cache) > IDENT_CACHE:
                self._cache.clear()
            self._cache[ident] = got
        return got

    def __contains__(self, ident: object) -> bool:
        return isinstance(ident, str) and self.lookup(ident)[0]


@dataclass
class CorpusIndex:
    fingerprint: str
    store: Any  # ingest.store.Store
    lexical: LexicalIndex
    chunks: ChunkCache
    arena: UnitArena
    unit_count: int
    documents: int
    ingested_at: str
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.units = UnitRows(self.arena, self.unit_count)
        self.unit_vecs = VectorRows(self.arena)
        self.units_by_chunk = _RowsByChunk(self.arena)
        self.unit_pos = _RowOfUnit(self.arena)
        self.stats = LiveTermStats(self.lexical)
        self.identifiers = LiveIdentifiers(self.lexical, self.chunks, self.arena)
        self._following: dict[tuple[str, int], list[str]] = {}
        self._following_lock = threading.Lock()

    def chunks_following(self, chunk: Chunk, window: int) -> list[str]:
        """Ids of the chunks of the same document that start after this one does and within `window`
        characters of its end: where a list or a paragraph it begins goes on. One store query per
        chunk and state of the collection."""
        key = (chunk.id, window)
        got = self._following.get(key)
        if got is None:
            got = self.store.chunk_ids_after(chunk.source, chunk.start + 1, chunk.end - chunk.start + window)
            with self._following_lock:
                if len(self._following) > 100_000:
                    self._following.clear()
                self._following[key] = got
        return got

    def vector_of(self, unit: Unit) -> np.ndarray:
        g = self.arena.load([unit.chunk_id]).get(unit.chunk_id)
        row = self.arena.row_of(unit.id)
        if g is None or row is None:
            raise KeyError(unit.id)
        return g.vecs[row - g.first]

    def sources(self) -> list[str]:
        """The source files of this state (from the lexical manifest: no scan)."""
        return list(self.source_names)

    @cached_property
    def source_names(self) -> tuple[str, ...]:
        return tuple(sorted(self.lexical.manifest))

    @cached_property
    def path_words(self) -> dict[str, frozenset[str]]:
        """Each content word of the documents' paths ('libffi-manual/Types.html': libffi, manual,
        types), with the documents whose path holds it; built once per state of the collection."""
        found: dict[str, set[str]] = {}
        for source in self.source_names:
            for term in path_terms(source):
                found.setdefault(term, set()).add(source)
        return {t: frozenset(s) for t, s in found.items()}

    @cached_property
    def file_numbers(self) -> dict[str, frozenset[str]]:
        """Each number a file name carries ('gpl-3.txt': 3), with the documents whose file names carry it."""
        found: dict[str, set[str]] = {}
        for source in self.source_names:
            for ident in corpus_identifiers([Path(source).stem.replace("_", " ")]):
                if re.fullmatch(r"\d+(?:\.\d+)*", ident):
                    found.setdefault(ident, set()).add(source)
        return {n: frozenset(s) for n, s in found.items()}

    def first_mentions(self, terms: Sequence[str], limit: int) -> list[str]:
        """For each document (up to `limit`), its first chunk holding all these content terms."""
        return self.lexical.first_with_all("content", _content, terms, limit)

    @cached_property
    def file_identifiers(self) -> frozenset[str]:
        """Identifiers the file names hold ('libtasn1.pdf', 'sb-53.md'): a document's own name."""
        return frozenset(corpus_identifiers(Path(s).stem.replace("_", " ") for s in self.sources()))

    def memory(self) -> dict:
        """What this index holds in memory, roughly, in bytes and counts."""
        return {
            "lexical_bytes": self.lexical.nbytes,
            "chunks_cached": len(self.chunks._lru),  # noqa: SLF001 - same module
            "units_cached": self.arena.resident,
        }


def build_index(fingerprint: str, meta: dict, store, lexical: LexicalIndex, unit_count: int) -> CorpusIndex:
    """The index of one state of the collection: nothing is read but the counts."""
    chunks = ChunkCache(store, int(meta.get("chunks", 0)) or store.count())
    return CorpusIndex(
        fingerprint=fingerprint,
        store=store,
        lexical=lexical,
        chunks=chunks,
        arena=UnitArena(store, chunks),
        unit_count=unit_count,
        documents=int(meta.get("documents", 0)),
        ingested_at=str(meta.get("ingested_at", "")),
        meta=dict(meta),
    )
