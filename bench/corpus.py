"""Build the benchmark corpora at run time from real English prose already on this machine.

Sources, in order (deterministic, so a rerun on the same machine builds the same corpus):

1. Python's own reference manual text (``pydoc_data.topics``), one file per topic;
2. the long descriptions of the packages installed in this interpreter's environment
   (the body of each ``*.dist-info/METADATA`` — usually the project's README);
3. documentation files shipped inside those packages (``.md``, ``.rst``, ``.txt``, README, CHANGES…);
4. ``/usr/share/doc`` (READMEs, NEWS, ``.md``/``.txt``, gzipped or not), to top up if needed.

Nothing is generated: every file is a real document, cleaned to UTF-8 text, with
prose-only filtering (data tables, word lists and license boilerplate are skipped) and
paragraph-level de-duplication across the whole corpus. The output lives in
``bench/corpus_cache/`` (git-ignored) and is rebuilt only when missing or of another size.
"""
from __future__ import annotations

import email.parser
import gzip
import hashlib
import json
import re
import sys
import sysconfig
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / "corpus_cache"
MANIFEST = "manifest.json"
BUILDER_VERSION = "1"

MAX_FILE_BYTES = 160_000  # one very long CHANGELOG should not be a third of the corpus
MIN_FILE_BYTES = 600
_STOPWORDS = frozenset(
    "the a an and or of to in is are was were be been it this that for with as on by at from not "
    "can will you your we our they their which when if but have has do does".split()
)
_DOC_SUFFIXES = {".md", ".rst", ".txt", ".markdown", ""}
_DOC_NAMES = re.compile(r"^(readme|changes|changelog|history|news|authors|contributing|faq|usage|notes|todo)", re.I)
_SKIP_NAMES = re.compile(
    r"(licen[cs]e|copying|notice|copyright|third.?party|requirements|entry_points|top_level|record|"
    r"installer|wheel|sources|dependency_links|vocab|merges|not-zip-safe|py\.typed)",
    re.I,
)
_SKIP_DIRS = {"tests", "test", "testing", "data", "__pycache__", "node_modules", "fixtures", "locale", "locales"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\u2028-\u202e\ufeff]")


@dataclass
class _Builder:
    out: Path
    target: int
    total: int = 0
    files: int = 0
    seen_files: set = field(default_factory=set)
    seen_paras: set = field(default_factory=set)
    by_source: dict = field(default_factory=dict)
    names: set = field(default_factory=set)

    @property
    def full(self) -> bool:
        return self.total >= self.target

    def add(self, origin: str, name: str, text: str, suffix: str) -> None:
        if self.full:
            return
        text = clean_text(text)
        if not text or not is_prose(text):
            return
        digest = hashlib.sha1(text.encode()).hexdigest()
        if digest in self.seen_files:
            return
        self.seen_files.add(digest)
        text = self._dedupe_paragraphs(text)
        text = _cap(text, min(MAX_FILE_BYTES, max(self.target - self.total, MIN_FILE_BYTES)))
        data = text.encode("utf-8")
        if len(data) < MIN_FILE_BYTES or not is_prose(text):
            return
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:80] or "doc"
        fname = f"{origin}__{stem}{suffix}"
        n = 2
        while fname in self.names:
            fname = f"{origin}__{stem}_{n}{suffix}"
            n += 1
        self.names.add(fname)
        (self.out / fname).write_bytes(data)
        self.total += len(data)
        self.files += 1
        self.by_source[origin] = self.by_source.get(origin, 0) + len(data)

    def _dedupe_paragraphs(self, text: str) -> str:
        kept = []
        for para in re.split(r"\n[ \t]*\n", text):
            key = " ".join(para.split()).lower()
            if len(key) >= 60:
                if key in self.seen_paras:
                    continue
                self.seen_paras.add(key)
            kept.append(para)
        return "\n\n".join(kept).strip() + "\n"


def clean_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFC", _CONTROL.sub("", text))
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip() + "\n" if text.strip() else ""


def is_prose(text: str) -> bool:
    """English running text, not data: enough letters and enough common function words."""
    sample = text[:200_000]
    visible = [c for c in sample if not c.isspace()]
    if len(visible) < 300:
        return False
    letters = sum(c.isalpha() for c in visible) / len(visible)
    words = re.findall(r"[A-Za-z']+", sample.lower())
    if len(words) < 80 or letters < 0.6:
        return False
    stop = sum(w in _STOPWORDS for w in words) / len(words)
    non_ascii = sum(ord(c) > 127 for c in visible) / len(visible)
    return stop >= 0.12 and non_ascii < 0.05


def _cap(text: str, limit: int) -> str:
    """At most `limit` UTF-8 bytes, cut at a paragraph boundary."""
    if len(text.encode("utf-8")) <= limit:
        return text
    cut = text.encode("utf-8")[:limit].decode("utf-8", "ignore")
    at = cut.rfind("\n\n")
    return (cut[:at] if at > limit // 3 else cut).rstrip() + "\n"


def _decode(data: bytes) -> str | None:
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8")
    except UnicodeDecodeError:
        return None


# --------------------------------------------------------------------------- sources


def _pydoc_topics(b: _Builder) -> None:
    try:
        from pydoc_data.topics import topics
    except ImportError:
        return
    for key in sorted(topics):
        b.add("pydoc", key, topics[key], ".txt")


def _site_packages() -> list[Path]:
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    return sorted(Path(p) for p in paths if Path(p).is_dir())


def _metadata_body(raw: str) -> tuple[str, str]:
    msg = email.parser.Parser().parsestr(raw)
    body = msg.get_payload()
    if not isinstance(body, str) or not body.strip():
        desc = msg.get("Description", "") or ""
        body = re.sub(r"\n {8}\|?", "\n", desc)  # old-style folded Description header
    ctype = (msg.get("Description-Content-Type") or "").lower()
    suffix = ".md" if "markdown" in ctype else ".txt"
    return body, suffix


def _package_metadata(b: _Builder) -> None:
    for sp in _site_packages():
        for meta in sorted(sp.glob("*.dist-info/METADATA")) + sorted(sp.glob("*.egg-info/PKG-INFO")):
            if b.full:
                return
            raw = _decode(meta.read_bytes())
            if raw is None:
                continue
            body, suffix = _metadata_body(raw)
            b.add("pkg", meta.parent.name.split("-")[0], body, suffix)


def _package_docs(b: _Builder) -> None:
    for sp in _site_packages():
        for path in sorted(sp.rglob("*")):
            if b.full:
                return
            rel = path.relative_to(sp)
            if any(part.lower() in _SKIP_DIRS or part.endswith((".dist-info", ".egg-info")) for part in rel.parts[:-1]):
                continue
            if not path.is_file() or path.is_symlink() or _SKIP_NAMES.search(path.name):
                continue
            suffix = path.suffix.lower()
            if suffix not in _DOC_SUFFIXES or (suffix == "" and not _DOC_NAMES.match(path.name)):
                continue
            if path.stat().st_size > 4_000_000:
                continue
            text = _decode(path.read_bytes())
            if text is None:
                continue
            b.add("pkgdoc", "_".join((*rel.parts[-3:-1], path.stem)), text, ".md" if suffix in (".md", ".markdown") else ".txt")


def _usr_share_doc(b: _Builder) -> None:
    root = Path("/usr/share/doc")
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if b.full:
            return
        if not path.is_file() or path.is_symlink():
            continue
        name = path.name[:-3] if path.name.endswith(".gz") else path.name
        stem_suffix = Path(name).suffix.lower()
        if _SKIP_NAMES.search(name) or "changelog" in name.lower():
            continue
        if stem_suffix not in (".md", ".txt", ".rst", "") or (stem_suffix == "" and not _DOC_NAMES.match(name)):
            continue
        try:
            if path.stat().st_size > 4_000_000:
                continue
            data = gzip.open(path).read(8_000_000) if path.name.endswith(".gz") else path.read_bytes()
        except (OSError, EOFError):
            continue
        text = _decode(data)
        if text is None:
            continue
        rel = path.relative_to(root)
        b.add("doc", "_".join((*rel.parts[-2:-1], Path(name).stem)), text, ".md" if stem_suffix == ".md" else ".txt")


SOURCES = (_pydoc_topics, _package_metadata, _package_docs, _usr_share_doc)


# --------------------------------------------------------------------------- public


def corpus_stats(folder: Path) -> dict:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".md", ".txt"))
    total = sum(p.stat().st_size for p in files)
    return {"files": len(files), "bytes": total, "mb": round(total / 1_000_000, 3)}


def build_large(target_bytes: int, cache_dir: Path = CACHE_DIR, log=print) -> tuple[Path, dict]:
    """The large corpus folder (built once, reused while its recipe and size match) and its stats."""
    folder = cache_dir / f"large_{target_bytes}"
    stamp = folder / MANIFEST
    recipe = {"version": BUILDER_VERSION, "target_bytes": target_bytes, "python": sys.version.split()[0]}
    if stamp.is_file():
        try:
            meta = json.loads(stamp.read_text())
            if meta.get("recipe") == recipe:
                return folder / "docs", meta["stats"]
        except (OSError, ValueError, KeyError):
            pass
    import shutil

    if folder.exists():
        shutil.rmtree(folder)
    docs = folder / "docs"
    docs.mkdir(parents=True)
    b = _Builder(docs, target_bytes)
    for source in SOURCES:
        source(b)
        if b.full:
            break
    stats = corpus_stats(docs) | {"bytes_by_source": b.by_source, "target_bytes": target_bytes}
    if not b.full:
        log(f"note: only {b.total / 1e6:.2f} MB of prose found on this machine (asked for {target_bytes / 1e6:.2f} MB)")
    stamp.write_text(json.dumps({"recipe": recipe, "stats": stats}, indent=1))
    return docs, stats


def build_subset(source: Path, dest: Path, target_bytes: int) -> dict:
    """The first files of `source` (sorted), the last one cut at a paragraph, up to target_bytes."""
    import shutil

    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    total = 0
    files = [p for p in source.iterdir() if p.suffix in (".md", ".txt")]
    # a spread over every origin, not the alphabetically first ones
    for path in sorted(files, key=lambda p: hashlib.sha1(p.name.encode()).hexdigest()):
        if total >= target_bytes:
            break
        text = path.read_text(encoding="utf-8")
        room = target_bytes - total
        if len(text.encode("utf-8")) > room:
            text = _cap(text, max(room, MIN_FILE_BYTES))
        data = text.encode("utf-8")
        (dest / path.name).write_bytes(data)
        total += len(data)
    return corpus_stats(dest)
