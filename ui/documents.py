"""The Documents panel's backend: what the collection holds, files added by upload, files removed.

Uploads are checked (a safe name inside the corpus folder, a supported type, the size limit,
and a test load, as `python -m ingest` would load it) before they are moved into the first
corpus folder; then the same incremental ingest as `python -m ingest` runs (`run_ingest`: same
ids, same one-writer lock) in one background thread, one job at a time. A job that cannot
finish puts the corpus folder back as it was (added files removed, replaced or removed files
restored). Questions keep being answered meanwhile from the last complete state of the
collection: the Retriever rebuilds its index only when an ingest has recorded the new corpus
fingerprint, which `run_ingest` does last.

No Gradio here: plain methods, so the handlers can be tested without a browser.
"""
from __future__ import annotations

import itertools
import os
import queue
import re
import shutil
import sys
import threading
import time
import traceback
import unicodedata
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from ingest.load import SUPPORTED

UPLOAD_TYPES = tuple(sorted(SUPPORTED))  # .htm, .html, .markdown, .md, .pdf, .txt
_ODD = re.compile(r"[^\w .()+,\-]")  # \w: letters and digits of any script, and _
_MAX_NAME_BYTES = 150
_GENERIC_HEADINGS = {"contents", "table of contents", "introduction", "overview", "summary", "references",
                     "appendix", "index", "notes", "abstract", "preface"}


_SCAN_PAGE = 2000


@dataclass(frozen=True)
class _Catalog:
    fingerprint: str
    ingested_at: str
    sections: dict  # source -> heading trails of its chunks, in document order


class UploadRefused(ValueError):
    """A file that will not be added; str() is one line naming the fix."""


@dataclass(frozen=True)
class DocumentRow:
    """One document of the collection, as the panel lists it."""

    source: str  # path relative to the corpus folder
    kind: str  # markdown, text, html, pdf
    size: int | None  # bytes of the file in the corpus folder; None when it is not there
    chunks: int
    ingested_at: str  # ISO time
    headings: tuple[str, ...]  # its top-level headings (under its title when it has one title)


@dataclass(frozen=True)
class Job:
    """One add or remove job, as the page shows it."""

    id: int
    action: str  # "add" or "remove"
    names: tuple[str, ...]  # the files it adds or removes
    phase: str = "queued"  # queued, checking, reading, embedding, finishing, done, failed
    done: int = 0  # texts embedded so far
    total: int = 0  # texts to embed
    summary: str = ""  # the ingest's one-line summary, or why the job failed
    problems: tuple[str, ...] = ()  # one line per file that was refused
    finished: bool = False
    ok: bool = False


@dataclass
class _Pending:
    job: Job
    files: list[tuple[str, str]] = field(default_factory=list)  # (uploaded path, name as given)
    replace: bool = False
    source: str = ""  # for remove


def safe_name(name: str) -> str:
    """The file name an upload is stored under, inside the corpus folder: no folders, no
    hidden or odd characters, a supported extension; UploadRefused with one line otherwise."""
    if not isinstance(name, str) or not name.strip():
        raise UploadRefused("a file without a name — give the file a name")
    shown = _shown(name)
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise UploadRefused(f"'{shown}': the file name holds control characters (NUL, newline, …) — rename the file")
    base = re.split(r"[\\/]", name)[-1]  # '../../x.md' and '/etc/x.md' become 'x.md'
    base = _ODD.sub("_", unicodedata.normalize("NFC", base))
    base = re.sub(r"_{2,}", "_", " ".join(base.split())).lstrip(". _")  # never hidden, never '..'
    stem, ext = os.path.splitext(base)
    ext = ext.lower()
    if ext not in SUPPORTED:
        raise UploadRefused(
            f"'{shown}': unsupported file type '{ext or '(none)'}' — add {', '.join(UPLOAD_TYPES)} files"
        )
    stem = stem.rstrip(". ")
    while len((stem + ext).encode()) > _MAX_NAME_BYTES:
        stem = stem[:-1]
    if not stem.strip("_ "):
        raise UploadRefused(f"'{shown}': nothing is left of the file name once made safe — rename the file")
    return stem + ext


def _shown(name: str) -> str:
    clean = "".join(ch if unicodedata.category(ch)[0] not in "CZ" or ch == " " else "?" for ch in name)
    return clean if len(clean) <= 80 else clean[:79] + "…"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _words(heading: str) -> list[str]:
    return re.findall(r"[\w'’-]+", heading)


class DocumentLibrary:
    """The collection's documents, and uploads and removals run one at a time in a background thread."""

    def __init__(self, assistant, *, uploads: bool = True, max_file_mb: float | None = None) -> None:
        from ingest.settings import IngestSettings

        self.assistant = assistant
        self.settings = assistant.settings
        self.uploads = uploads
        self.max_file_mb = float(max_file_mb if max_file_mb is not None else IngestSettings.max_file_mb)
        self.corpus_dir = Path(self.settings.corpus_dirs[0]).absolute()
        self._lock = threading.Lock()
        self._jobs: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._queue: queue.Queue[int] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._ingested: dict[str, str] = {}  # source -> when this process ingested it
        self.generation = 0  # goes up when a job changed the collection
        self._catalog: _Catalog | None = None
        self._titles: dict[tuple[str, str], str] = {}

    # -- what the collection holds -------------------------------------------------------------
    def ingest_settings(self):
        """The settings `python -m ingest` uses for this store and these corpus folders."""
        from ingest.settings import IngestSettings

        return IngestSettings(
            store=self.settings.store, corpus=tuple(Path(p) for p in self.settings.corpus_dirs),
            max_file_mb=self.max_file_mb, progress=False,
        )

    def catalog(self) -> "_Catalog":
        """Per source: chunk count and heading trails in document order, read from the store's
        metadata once per state of the collection (its corpus fingerprint changes only when an
        ingest ends, so mid-ingest this is the last complete state). StoreError if there is none."""
        from ingest.records import SECTION_SEP
        from ingest.store import Store

        store = Store(self.settings.store)
        info = store.info()
        cached = self._catalog
        if cached is not None and cached.fingerprint == info.corpus_fingerprint:
            return cached
        seen: dict[str, dict] = {}
        offset = 0
        while True:
            page = store.chunks.get(include=["metadatas"], limit=_SCAN_PAGE, offset=offset)
            for meta in page["metadatas"]:
                s = seen.setdefault(meta["source"], {"shas": set(), "expected": -1, "trails": []})
                s["shas"].add(meta.get("file_sha", ""))
                s["expected"] = int(meta.get("file_chunks", -1))
                section = meta.get("section") or ""
                s["trails"].append((int(meta.get("start", 0)), tuple(section.split(SECTION_SEP)) if section else ()))
            if len(page["ids"]) < _SCAN_PAGE:
                break
            offset += len(page["ids"])
        docs = {}
        for source, s in sorted(seen.items(), key=lambda kv: kv[0].lower()):
            if len(s["shas"]) != 1 or len(s["trails"]) != s["expected"]:
                continue  # half-written by an ingest that is still running (or was killed)
            docs[source] = [trail for _, trail in sorted(s["trails"])]
        catalog = _Catalog(info.corpus_fingerprint, info.ingested_at, docs)
        self._catalog = catalog
        return catalog

    def documents(self) -> list[DocumentRow]:
        """The documents of the last complete state of the collection (raises StoreError if there is none)."""
        from assistant.cite import confined_path
        from assistant.errors import CiteError

        catalog = self.catalog()
        rows = []
        for source, trails in catalog.sections.items():
            try:
                size = confined_path(self.settings.corpus_dirs, source).stat().st_size
            except (CiteError, OSError):
                size = None
            rows.append(
                DocumentRow(
                    source=source,
                    kind=SUPPORTED.get(Path(source).suffix.lower(), "?"),
                    size=size,
                    chunks=len(trails),
                    ingested_at=self._ingested.get(source) or catalog.ingested_at,
                    headings=top_headings(trails),
                )
            )
        return rows

    def sections(self) -> dict[str, list[tuple[str, ...]]]:
        """Per source, the heading trails of its chunks in document order."""
        return self.catalog().sections

    def unit_kind(self, chunk_id: str, start: int, end: int) -> str:
        """The kind of the unit at start:end of a chunk (sentence, item, row, code); '' if unknown."""
        from ingest.store import Store

        store = Store(self.settings.store)
        for chunk in store.get_chunks([chunk_id]):
            units, _ = store.units_of_chunks([chunk])
            return next((u.kind for u in units if (u.start, u.end) == (start, end)), "")
        return ""

    def document_title(self, source: str) -> str:
        """The first heading of a corpus file (its title, which heading trails leave out); '' if none."""
        from assistant.cite import source_document
        from assistant.errors import CiteError
        from ingest.structure import parse_blocks

        key = (source, self.catalog().fingerprint)
        if key not in self._titles:
            try:
                doc = source_document(self.settings.corpus_dirs, source)
                blocks = parse_blocks(doc.text, doc.kind)
                self._titles = {key: next((b.title for b in blocks if b.kind == "heading" and b.title), "")}
            except CiteError:
                self._titles = {key: ""}
        return self._titles[key]

    # -- jobs ----------------------------------------------------------------------------------------
    def add(self, files: list[tuple[str, str]], replace_existing: bool = False) -> Job:
        """Queue files (uploaded path, name as given) to be added; returns the job to follow."""
        names = tuple(_shown(name or Path(path).name) for path, name in files)
        pending = _Pending(Job(0, "add", names), list(files), replace_existing)
        return self._submit(pending)

    def remove(self, source: str) -> Job:
        """Queue the removal of one document (its file and its chunks)."""
        return self._submit(_Pending(Job(0, "remove", (str(source),)), source=str(source)))

    def job(self, job_id: int) -> Job | None:
        with self._lock:
            pending = self._jobs.get(job_id)
            return pending.job if pending else None

    def busy(self) -> bool:
        with self._lock:
            return any(not p.job.finished for p in self._jobs.values())

    def wait(self, job_id: int, timeout: float = 300.0) -> Job:
        """Block until a job has finished (for scripts and tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job is None or job.finished:
                return job
            time.sleep(0.1)
        raise TimeoutError(f"job {job_id} did not finish within {timeout:.0f} s")

    def _submit(self, pending: _Pending) -> Job:
        with self._lock:
            job_id = next(self._ids)
            pending.job = replace(pending.job, id=job_id)
            if not self.uploads:
                pending.job = replace(pending.job, phase="failed", finished=True,
                                      summary="adding and removing documents is turned off on this server")
            self._jobs[job_id] = pending
            self._forget_old()
            if not pending.job.finished:
                self._queue.put(job_id)
                if self._worker is None or not self._worker.is_alive():
                    self._worker = threading.Thread(target=self._work, name="rag-ui-ingest", daemon=True)
                    self._worker.start()
            return pending.job

    def _forget_old(self, keep: int = 50) -> None:
        done = [i for i, p in self._jobs.items() if p.job.finished]
        for i in done[:-keep]:
            del self._jobs[i]

    def _update(self, job_id: int, **changes) -> None:
        with self._lock:
            pending = self._jobs[job_id]
            pending.job = replace(pending.job, **changes)

    def _work(self) -> None:
        while True:
            try:
                job_id = self._queue.get(timeout=30)
            except queue.Empty:
                with self._lock:  # idle: end the thread (a later job starts another)
                    if self._queue.empty():
                        self._worker = None
                        return
                continue
            with self._lock:
                pending = self._jobs[job_id]
            try:
                if pending.job.action == "add":
                    self._run_add(pending)
                else:
                    self._run_remove(pending)
            except Exception as err:  # noqa: BLE001 - a bug: the traceback goes to stderr, the page gets one line
                print(f"ui: unexpected error in a documents job ({pending.job.action}):", file=sys.stderr)
                traceback.print_exc(file=sys.stderr)
                self._update(job_id, phase="failed", finished=True, ok=False,
                             summary=f"Something went wrong ({type(err).__name__}); the corpus folder was left as it was")

    # -- add ----------------------------------------------------------------------------------------------
    def _source_of(self, name: str) -> str:
        if len(self.settings.corpus_dirs) > 1:  # `python -m ingest A B` prefixes each source with its folder
            return f"{self.corpus_dir.name}/{name}"
        return name

    def check_upload(self, path: str | Path, given_name: str, replace_existing: bool, taken: set[str]) -> str:
        """The safe name an upload will have in the corpus folder; UploadRefused with one line otherwise."""
        name = safe_name(given_name)
        shown = _shown(given_name)
        if name in taken:
            raise UploadRefused(f"'{shown}': another file in this upload has the same name — rename one of them")
        try:
            size = Path(path).stat().st_size
        except OSError as err:
            raise UploadRefused(f"'{shown}': the upload cannot be read ({err.strerror}) — upload it again") from None
        if size > self.max_file_mb * 1024 * 1024:
            raise UploadRefused(
                f"'{shown}': {size / 1024 / 1024:.1f} MB is over the {self.max_file_mb:g} MB limit — split the file"
            )
        target = self.corpus_dir / name
        if (target.exists() or target.is_symlink()) and not replace_existing:
            raise UploadRefused(
                f"'{name}' is already in the corpus folder — tick “Replace files with the same name” to replace it"
            )
        if target.is_dir():
            raise UploadRefused(f"'{name}' is a folder in the corpus folder — rename the file")
        return name

    def _run_add(self, pending: _Pending) -> None:
        from ingest.errors import LoadError
        from ingest.load import load_file

        job_id = pending.job.id
        self._update(job_id, phase="checking")
        self.corpus_dir.mkdir(parents=True, exist_ok=True)
        problems: list[str] = []
        staged: list[tuple[Path, Path]] = []  # (hidden copy in the corpus folder, final path)
        taken: set[str] = set()
        try:
            for path, given in pending.files:
                try:
                    name = self.check_upload(path, given, pending.replace, taken)
                except UploadRefused as err:
                    problems.append(str(err))
                    continue
                # a hidden copy beside its final place (the ingest walk skips hidden files)
                tmp = self.corpus_dir / f".upload-{uuid.uuid4().hex[:12]}{Path(name).suffix}"
                shutil.copyfile(path, tmp)
                try:
                    load_file(tmp, self._source_of(name), self.max_file_mb)
                except LoadError as err:
                    tmp.unlink(missing_ok=True)
                    problems.append(f"'{name}': {err}")
                    continue
                taken.add(name)
                staged.append((tmp, self.corpus_dir / name))
            if not staged:
                self._update(job_id, phase="failed", finished=True, problems=tuple(problems),
                             summary="nothing was added")
                return
            moved = self._swap_in(staged)
        except BaseException:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            raise
        sources = [self._source_of(final.name) for _, final in staged]
        self._ingest(job_id, moved, sources, problems)

    def _swap_in(self, staged: list[tuple[Path, Path]]) -> list[tuple[Path, Path | None]]:
        """Move staged copies to their places; returns (final path, backup of the file it replaced)."""
        moved = []
        for tmp, final in staged:
            backup = None
            if final.exists() or final.is_symlink():
                backup = final.with_name(f".replaced-{uuid.uuid4().hex[:12]}-{final.name}")
                os.replace(final, backup)
            os.replace(tmp, final)
            moved.append((final, backup))
        return moved

    @staticmethod
    def _put_back(moved: list[tuple[Path, Path | None]]) -> None:
        for final, backup in moved:
            if backup is not None:
                os.replace(backup, final)
            else:
                final.unlink(missing_ok=True)

    def _ingest(self, job_id: int, moved, sources: list[str], problems: list[str], removing: bool = False) -> None:
        """Run the incremental ingest; on failure put the corpus folder back as it was."""
        from ingest.errors import IngestError
        from ingest.pipeline import run_ingest

        from . import render

        self._update(job_id, phase="reading")

        def progress(done: int, total: int) -> None:
            self._update(job_id, phase="embedding", done=done, total=total)

        before = self._fingerprint()
        try:
            summary = run_ingest(self.ingest_settings(), self.assistant.embedder, log=lambda line: None,
                                 on_progress=progress)
        except IngestError as err:
            self._put_back(moved)
            self._update(job_id, phase="failed", finished=True, problems=tuple(problems),
                         summary=render.public_message(f"{err}; the corpus folder was left as it was"))
            return
        except BaseException:
            self._put_back(moved)
            raise
        failed = [line for line in summary.problems if any(line.startswith(f"{s}: ") for s in sources)]
        if failed and not removing:  # loaded in the check but not in the ingest: take it out again
            for line in failed:
                problems.append(line)
            self._put_back([m for m, s in zip(moved, sources) if any(line.startswith(f"{s}: ") for line in failed)])
        for _, backup in moved:
            if backup is not None:
                Path(backup).unlink(missing_ok=True)
        when = _now()
        for s in sources:
            if removing:
                self._ingested.pop(s, None)
            elif not any(line.startswith(f"{s}: ") for line in failed):
                self._ingested[s] = when
        self._update(job_id, phase="finishing", done=summary.embedded, total=summary.embedded)
        self._refresh(before)
        with self._lock:
            self.generation += 1
        self._update(job_id, phase="done", finished=True, ok=not failed, problems=tuple(problems),
                     summary=render.public_message(summary.line()))

    def _fingerprint(self) -> str:
        """The fingerprint of the state the Retriever serves ('' when it has none)."""
        try:
            return str(getattr(self.assistant.retriever.index(), "fingerprint", ""))
        except Exception:  # noqa: BLE001 - no usable collection yet: any new state is a change
            return ""

    def _refresh(self, before: str, timeout: float = 5.0) -> None:
        """Have the Retriever load the new state now (here, not on the next question)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._fingerprint() != before:
                return
            time.sleep(0.2)

    # -- remove -------------------------------------------------------------------------------------------
    def _run_remove(self, pending: _Pending) -> None:
        from assistant.cite import confined_path
        from assistant.errors import CiteError

        job_id, source = pending.job.id, pending.source
        self._update(job_id, phase="checking")
        try:
            held = {row.source for row in self.documents()}
        except Exception as err:  # noqa: BLE001 - StoreError and the like: one line
            from .errors import error_line

            self._update(job_id, phase="failed", finished=True, summary=error_line(err, "remove"))
            return
        if source not in held:
            self._update(job_id, phase="failed", finished=True,
                         summary=f"'{_shown(source)}' is not in the collection — pick one of the listed documents")
            return
        if len(held) == 1:
            self._update(job_id, phase="failed", finished=True,
                         summary=f"'{_shown(source)}' is the only document — add another before removing it")
            return
        moved = []
        try:
            path = confined_path(self.settings.corpus_dirs, source)
        except CiteError:
            path = None  # already gone from the folder: the ingest drops its chunks
        if path is not None:
            trash = path.with_name(f".removed-{uuid.uuid4().hex[:12]}-{path.name}")
            os.replace(path, trash)
            moved = [(path, trash)]  # put back = move the file back

        self._ingest(job_id, [(p, t) for p, t in moved], [source], [], removing=True)
        job = self.job(job_id)
        if job is not None and not job.finished:  # pragma: no cover - _ingest always finishes the job
            self._update(job_id, finished=True)


def top_headings(sections: list[tuple[str, ...]], limit: int = 12) -> tuple[str, ...]:
    """A document's top-level headings, in order; under its title when it has a single one."""
    firsts = list(dict.fromkeys(s[0] for s in sections if s))
    if len(firsts) == 1:
        seconds = list(dict.fromkeys(s[1] for s in sections if len(s) > 1 and s[0] == firsts[0]))
        if seconds:
            return tuple(seconds[:limit])
    return tuple(firsts[:limit])


def first_heading(sections: list[tuple[str, ...]]) -> str:
    return next((s[0] for s in sections if s), "")


def corpus_title(library: DocumentLibrary) -> str:
    """A title for the page from the corpus: one document's first heading, else the folder's name."""
    folder = library.corpus_dir.name.replace("_", " ").replace("-", " ").strip() or "Documents"
    try:
        sections = library.sections()
    except Exception:  # noqa: BLE001 - no collection yet: the folder's name will do
        sections = {}
    if len(sections) == 1:
        (source, trails), = sections.items()
        heading = library.document_title(source) or first_heading(trails)
        if heading:
            return heading
        return Path(source).stem.replace("_", " ").replace("-", " ").strip().title() or folder.title()
    return folder.title()


def example_questions(library: DocumentLibrary, limit: int = 3) -> tuple[str, ...]:
    """Questions made from the corpus's own headings (none when it has no usable heading)."""
    try:
        sections = library.sections()
    except Exception:  # noqa: BLE001 - no collection: no examples
        return ()
    picked: list[str] = []
    per_doc = [list(top_headings(trails)) for trails in sections.values()]
    for round_ in range(max((len(h) for h in per_doc), default=0)):  # one per document in turn
        for headings in per_doc:
            if round_ < len(headings) and len(picked) < limit:
                h = headings[round_]
                words = _words(h)
                if not 1 <= len(words) <= 6 or len(h) > 48 or any(ch in h for ch in ":?!()[]"):
                    continue
                if h.lower().strip() in _GENERIC_HEADINGS or re.match(r"^\d", h) or h in picked:
                    continue
                picked.append(h)
    return tuple(_question(h) for h in picked)


def _question(heading: str) -> str:
    words = heading.split()
    first = words[0]
    if first[:1].isupper() and first[1:].islower() and len(words) > 1:  # 'Version timeline' -> 'version timeline'
        heading = first.lower() + heading[len(first):]
    return f"What does the document say about {heading}?"
