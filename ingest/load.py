"""Read files and folders into Documents; every problem becomes one line naming the fix."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LoadError
from .records import Document

SUPPORTED = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".html": "html", ".htm": "html", ".pdf": "pdf"}


@dataclass
class LoadResult:
    documents: list[Document] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line each
    failed_sources: set[str] = field(default_factory=set)  # present but unreadable: keep what the store has


def load_paths(paths: list[Path], max_file_mb: float = 64.0) -> LoadResult:
    """Load every supported file under the given files and folders."""
    result = LoadResult()
    for path in paths:
        path = Path(path)
        if not path.exists():
            result.problems.append(f"{path}: no such file or folder — check the path")
            continue
        root = path.resolve() if path.is_dir() else path.resolve().parent
        files = _walk(path, root, result) if path.is_dir() else [path]
        if path.is_dir() and not files:
            result.problems.append(
                f"{path}: no documents to ingest — add {', '.join(sorted(SUPPORTED))} files to it"
            )
        for file in files:
            source = _relative(file, root)
            try:
                result.documents.append(load_file(file, source, max_file_mb))
            except LoadError as err:
                result.problems.append(f"{source}: {err}")
                result.failed_sources.add(source)
    return result


def _relative(file: Path, root: Path) -> str:
    try:
        return file.absolute().relative_to(root).as_posix()
    except ValueError:
        return file.name


def _walk(folder: Path, root: Path, result: LoadResult) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for d in list(dirnames):
            full = Path(dirpath) / d
            if full.is_symlink():
                dirnames.remove(d)
                _report_link(full, root, result)
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            full = Path(dirpath) / name
            if full.is_symlink():
                target = full.resolve()
                if not target.is_relative_to(root):
                    _report_link(full, root, result)
                    continue
            if full.suffix.lower() not in SUPPORTED:
                result.problems.append(
                    f"{_relative(full, root)}: unsupported file type '{full.suffix or name}' — "
                    f"convert it to one of {', '.join(sorted(SUPPORTED))}"
                )
                continue
            files.append(full)
    return files


def _report_link(link: Path, root: Path, result: LoadResult) -> None:
    result.problems.append(
        f"{_relative(link, root)}: symbolic link to {'a folder' if link.is_dir() else 'a file'} outside the corpus "
        "folder, not followed — copy the file into the corpus folder instead"
    )


def load_file(path: Path, source: str, max_file_mb: float = 64.0) -> Document:
    kind = SUPPORTED.get(path.suffix.lower())
    if kind is None:
        raise LoadError(f"unsupported file type '{path.suffix}' — convert it to one of {', '.join(sorted(SUPPORTED))}")
    try:
        size = path.stat().st_size
        if size > max_file_mb * 1024 * 1024:
            raise LoadError(
                f"file is {size / 1024 / 1024:.0f} MB, over the {max_file_mb:g} MB limit — split it, "
                "or raise the limit with --max-file-mb"
            )
        data = path.read_bytes()
    except PermissionError:
        raise LoadError("permission denied — make the file readable") from None
    except OSError as err:
        raise LoadError(f"cannot read ({err.strerror}) — check the file") from None
    sha = hashlib.sha1(data).hexdigest()
    if kind == "pdf":
        text = _pdf_text(data)
    else:
        try:
            text = data.decode("utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8")
        except UnicodeDecodeError as err:
            raise LoadError(
                f"not valid UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start}) — re-save it as UTF-8"
            ) from None
        if "\x00" in text:
            raise LoadError("contains NUL bytes, so it is not a text file — convert it to text")
        if kind == "html":
            text = html_to_text(text)
    if not text.strip():
        raise LoadError("no text in it — is it empty, or a scanned PDF that needs OCR first?")
    return Document(source=source, text=text, kind=kind, sha=sha)


def _pdf_text(data: bytes) -> str:
    import io
    import logging

    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise LoadError("the PDF is encrypted — save an unencrypted copy")
        pages = [page.extract_text() or "" for page in reader.pages]
    except LoadError:
        raise
    except Exception as err:
        raise LoadError(
            f"broken or unreadable PDF ({type(err).__name__}) — check that it opens in a PDF viewer, or export it again"
        ) from None
    return "\n\n".join(p.strip() for p in pages if p.strip())


def html_to_text(html: str) -> str:
    """Readable text with Markdown structure: headings, paragraphs, list items, pipe tables."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "head", "nav", "svg"]):
        tag.decompose()
    out: list[str] = []

    def clean(s: str) -> str:
        return " ".join(s.split()).replace("|", "/")

    blocks = soup.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "table", "pre", "blockquote"])
    done: set[int] = set()
    for el in blocks:
        if any(id(p) in done for p in el.parents):
            continue
        done.add(id(el))
        name = el.name
        if name[0] == "h" and name[1:].isdigit():
            text = clean(el.get_text(" "))
            if text:
                out.append("#" * int(name[1]) + " " + text)
        elif name == "table":
            rows = []
            for tr in el.find_all("tr"):
                cells = [clean(c.get_text(" ")) for c in tr.find_all(["th", "td"])]
                if cells:
                    rows.append("| " + " | ".join(cells) + " |")
            if rows:
                width = rows[0].count("|") - 1
                rows.insert(1, "|" + "---|" * width)
                out.append("\n".join(rows))
        elif name == "li":
            text = clean(el.get_text(" "))
            if text:
                out.append("- " + text)
        elif name == "pre":
            out.append("```\n" + el.get_text() + "\n```")
        else:
            text = clean(el.get_text(" "))
            if text:
                out.append(text)
    if not out:
        text = clean(soup.get_text(" "))
        out = [text] if text else []
    return "\n\n".join(out) + ("\n" if out else "")
