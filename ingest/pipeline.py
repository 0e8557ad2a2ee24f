"""Incremental, idempotent ingest: only new or changed files are embedded."""
from __future__ import annotations

import datetime as dt
import fcntl
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .chunk import CHUNKER_VERSION, chunk_document
from .embed import Embedder
from .errors import IngestError, LockedError
from .lexical import build_segment
from .load import load_paths
from .records import Chunk, Document, Unit
from .settings import REPO_ROOT, IngestSettings, StoreSettings
from .store import CollectionInfo, Store, fingerprint

_GROUP_TEXTS = 4096  # embed and write this many texts at a time: bounded memory, few round trips


@dataclass
class Summary:
    files: int = 0
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    embedded: int = 0  # texts that went through the model (every unit; a chunk only when it has none)
    seconds: float = 0.0
    rebuilt: str = ""
    problems: list[str] = field(default_factory=list)
    embed_seconds: float = 0.0
    embedded_tokens: int = 0

    def line(self) -> str:
        return (
            f"{self.files} files: {self.added} chunks added, {self.updated} updated, {self.removed} removed, "
            f"{self.unchanged} unchanged; {self.embedded} texts embedded; {len(self.problems)} skipped; "
            f"{self.seconds:.1f} s"
        )


def _lock_path(store: StoreSettings) -> Path:
    if store.is_server:
        return REPO_ROOT / "data" / "locks" / f"{store.host}_{store.port}_{store.collection}.lock"
    return store.path / f".ingest-{store.collection}.lock"


@contextmanager
def store_lock(store: StoreSettings):
    """One ingest per collection at a time; a second one refuses at once."""
    path = _lock_path(store)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise LockedError(
                f"another ingest (pid {other}) is writing {store.describe()} — wait for it to finish, then run again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def run_ingest(
    settings: IngestSettings, embedder: Embedder, log=print, on_progress: Callable[[int, int], None] | None = None
) -> Summary:
    """Bring the collection in line with the corpus paths; returns what changed.

    on_progress(done, total) is called as texts are embedded (total: all texts to embed), e.g.
    for a progress bar in a page; it is not called when nothing changed."""
    t0 = time.perf_counter()
    loaded = load_paths(list(settings.corpus), settings.max_file_mb)
    summary = Summary(files=len(loaded.documents), problems=list(loaded.problems))
    for line in loaded.problems:
        log(f"skipped: {line}")
    if not loaded.documents:
        raise IngestError(
            "nothing to ingest: "
            + (loaded.problems[0] if loaded.problems else "no documents found")
            + " (the store was left as it was)"
        )
    with store_lock(settings.store):
        store = Store(settings.store, create=True)
        info = store.info()
        if store.count() and (info.embedding_model != embedder.model_id or info.chunker_version != CHUNKER_VERSION):
            was = info.embedding_model or "an unfinished ingest"
            summary.rebuilt = f"rebuilding the collection (it was built with {was}, chunker v{info.chunker_version})"
            log(summary.rebuilt)
            store.drop()
            store = Store(settings.store, create=True)
        manifest = store.manifest()
        seen = {d.source for d in loaded.documents}
        todo: list[Document] = []
        for doc in loaded.documents:
            state = manifest.get(doc.source)
            if state and state.sha == doc.sha and state.complete:
                summary.unchanged += state.chunks
            else:
                todo.append(doc)
        for source, state in manifest.items():
            # a file that vanished loses its chunks; one that failed to load keeps them
            if source not in seen and source not in loaded.failed_sources:
                store.delete_source(source)
                summary.removed += state.chunks
        _embed_and_write(store, todo, manifest, settings, embedder, summary, log, on_progress)
        final = store.manifest()
        new_fp = fingerprint((s, st.sha) for s, st in final.items())
        update_lexical(store, info.corpus_fingerprint, new_fp, {s: st.sha for s, st in final.items()})
        store.set_info(
            CollectionInfo(
                embedding_model=embedder.model_id,
                chunker_version=CHUNKER_VERSION,
                corpus_fingerprint=new_fp,
                ingested_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                documents=len(final),
                chunks=sum(st.chunks for st in final.values()),
                units=sum(st.units for st in final.values()),
            )
        )
    summary.seconds = time.perf_counter() - t0
    return summary


MAX_SEGMENTS = 8


def update_lexical(store: Store, old_fp: str, new_fp: str, shas: dict[str, str]) -> dict:
    """Bring the store's lexical index (ingest.lexical) to the corpus state `new_fp`: one new
    segment for the files that changed (read back from the store: whatever wrote them, a crash
    included), or one segment for all when segments pile up or dead chunks outnumber live ones.
    Written before the collection's fingerprint changes, so a server that sees the new
    fingerprint finds its manifest; the previous state's manifest and segments are kept for
    servers still on it, older ones are deleted. Returns what it did."""
    current = store.lexical_manifest(new_fp)
    if current is not None and {s: v[0] for s, v in current.items()} == shas:
        return {"segment": "", "files": 0}
    old = (store.lexical_manifest(old_fp) or {}) if old_fp else {}
    manifest = {s: old[s] for s, sha in shas.items() if s in old and old[s][0] == sha}
    changed = sorted(s for s in shas if s not in manifest)
    sizes = store.lexical_sizes()
    referenced = {v[1] for v in manifest.values()}
    held = sum(sizes.get(seg, 0) for seg in referenced)  # chunks in the kept segments, dead ones included
    if len(referenced) + 1 > MAX_SEGMENTS or held > 2 * max(1, store.count()):
        manifest, changed = {}, sorted(shas)  # compact: every file into one segment
    done = {"segment": "", "files": len(changed)}
    if changed:
        chunks = store.chunks_of_sources(changed)
        seg_id = fingerprint([(new_fp, ""), *((s, shas[s]) for s in changed)])
        store.write_lexical_segment(seg_id, build_segment(chunks), len(chunks))
        manifest.update({s: [shas[s], seg_id] for s in changed})
        done["segment"] = seg_id
    store.write_lexical_manifest(new_fp, manifest)
    keep = {v[1] for v in manifest.values()} | {v[1] for v in old.values()}
    store.prune_lexical({new_fp, old_fp}, keep)
    return done


def _embed_and_write(store, todo, manifest, settings, embedder, summary, log, on_progress=None) -> None:
    if not todo:
        log("nothing changed: 0 chunks embedded")
        return
    planned: list[tuple[Document, list[Chunk], list[Unit]]] = []
    for doc in todo:
        chunks, units = chunk_document(doc, embedder.count_tokens, settings.chunk_tokens, settings.overlap_tokens)
        if not chunks:  # said, never silently dropped
            what = "headings and navigation" if doc.kind == "html" else "headings, '#' lines or blank lines"
            line = f"{doc.source}: no text to index (only {what}) — add prose or remove the file"
            summary.problems.append(line)
            log(f"skipped: {line}")
        planned.append((doc, chunks, units))
    total = sum(_texts_to_embed(c, u) for _, c, u in planned)
    bar = _CallbackBar(total, on_progress) if on_progress else _progress(total, settings.progress)
    group: list[tuple[Document, list[Chunk], list[Unit]]] = []
    size = 0
    for item in planned:
        group.append(item)
        size += _texts_to_embed(item[1], item[2])
        if size >= _GROUP_TEXTS:
            _write_group(store, group, manifest, settings, embedder, summary, bar)
            group, size = [], 0
    if group:
        _write_group(store, group, manifest, settings, embedder, summary, bar)
    bar.close()


def _unitless(chunks: list[Chunk], units: list[Unit]) -> list[Chunk]:
    """The chunks no unit belongs to: the only ones encoded themselves (see chunk_vectors)."""
    owners = {u.chunk_id for u in units}
    return [c for c in chunks if c.id not in owners]


def _texts_to_embed(chunks: list[Chunk], units: list[Unit]) -> int:
    return len(units) + len(_unitless(chunks, units))


def chunk_vectors(chunks, units, unit_vecs: np.ndarray, encoded: dict) -> np.ndarray:
    """A chunk's vector is the normalised mean of its units' vectors (each unit is embedded with its
    heading): the passage is not encoded a second time, which halves the tokens an ingest embeds.
    A chunk without units takes its own vector from `encoded`. unit_vecs is (units, dimension),
    as Embedder.encode returns it (also for no units)."""
    rows: dict[str, list[int]] = {}
    for i, u in enumerate(units):
        rows.setdefault(u.chunk_id, []).append(i)
    out = np.zeros((len(chunks), unit_vecs.shape[1]), dtype=np.float32)
    for k, c in enumerate(chunks):
        v = unit_vecs[rows[c.id]].mean(axis=0) if c.id in rows else encoded[c.id]
        out[k] = v / (np.linalg.norm(v) or 1.0)
    return out


def _write_group(store, group, manifest, settings, embedder, summary, bar) -> None:
    chunks = [c for _, cs, _ in group for c in cs]
    units = [u for _, _, us in group for u in us]
    bare = _unitless(chunks, units)
    texts = [u.embed_text() for u in units] + [c.embed_text() for c in bare]
    t = time.perf_counter()
    vecs = embedder.encode(texts, settings.batch_size, on_batch=bar.update)
    summary.embed_seconds += time.perf_counter() - t
    summary.embedded += len(texts)
    unit_vecs = vecs[: len(units)]
    chunk_vecs = chunk_vectors(chunks, units, unit_vecs, dict(zip((c.id for c in bare), vecs[len(units) :])))
    files, ci, ui = [], 0, 0
    for doc, chunks, units in group:
        if manifest.get(doc.source):
            store.delete_source(doc.source)
            summary.updated += len(chunks)
        else:
            summary.added += len(chunks)
        files.append((chunks, chunk_vecs[ci : ci + len(chunks)], units, unit_vecs[ui : ui + len(units)], doc.sha))
        ci += len(chunks)
        ui += len(units)
    store.add(files)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


class _CallbackBar:
    def __init__(self, total: int, callback: Callable[[int, int], None]) -> None:
        self.total, self.done, self.callback = total, 0, callback
        callback(0, total)

    def update(self, n: int) -> None:
        self.done += n
        self.callback(self.done, self.total)

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="text", desc="embedding", dynamic_ncols=True)
