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


def load_paths(paths: list[Path], max_file_mb: float = 10.0) -> LoadResult:
    """Load every supported file under the given files and folders.

    Sources are paths relative to their folder; with several folders, each source starts
    with its folder's name (`a/notes.md`, `b/notes.md`), so equal names never collide.
    """
    result = LoadResult()
    found: list[tuple[Path, Path, list[Path]]] = []
    for path in paths:
        path = Path(path)
        if not path.exists():
            result.problems.append(f"{path}: no such file or folder — check the path")
            continue
        # the folder as given (it may be reached through a symbolic link); links inside it
        # may only point within its real location
        root = path.absolute() if path.is_dir() else path.absolute().parent
        files = _walk(root, root, path.resolve(), result) if path.is_dir() else [path.absolute()]
        if path.is_dir() and not files:
            result.problems.append(
                f"{path}: no documents to ingest — add {', '.join(sorted(SUPPORTED))} files to it"
            )
        found.append((path, root, files))
    prefixed = sum(1 for path, _, files in found if path.is_dir() and files) > 1
    seen: dict[str, Path] = {}
    for path, root, files in found:
        for file in files:
            source = _relative(file, root)
            if prefixed and path.is_dir():
                source = f"{root.name}/{source}"
            if source in seen and seen[source] != file:
                result.problems.append(
                    f"{source}: two files have this name ({seen[source]} and {file}) — rename one of them"
                )
                continue
            seen[source] = file
            try:
                result.documents.append(load_file(file, source, max_file_mb))
            except LoadError as err:
                result.problems.append(f"{source}: {err}")
                result.failed_sources.add(source)
    return result


def _relative(file: Path, root: Path) -> str:
    try:
        return file.relative_to(root).as_posix()
    except ValueError:
        return file.name


def _walk(folder: Path, root: Path, real_root: Path, result: LoadResult) -> list[Path]:
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
                try:
                    target = full.resolve(strict=True)
                except (RuntimeError, OSError):  # a loop, or a link to nothing
                    result.problems.append(
                        f"{_relative(full, root)}: broken or looping symbolic link, not followed — "
                        "replace it with the file itself"
                    )
                    continue
                if not target.is_relative_to(real_root):
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


def load_file(path: Path, source: str, max_file_mb: float = 10.0) -> Document:
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


_BLOCKS = {"h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "table", "pre", "blockquote", "dt", "dd", "figcaption", "caption"}
_SKIP = {"script", "style", "noscript", "template", "head", "nav", "svg", "iframe", "object"}


def html_to_text(html: str) -> str:
    """Readable text with Markdown structure: headings, paragraphs, list items, pipe tables.

    Text outside the usual block tags (in a <div>, a <section>, or bare in <body>) is kept as
    paragraphs too: nothing on the page is dropped but scripts, styles and navigation.
    """
    from bs4 import BeautifulSoup, NavigableString, Tag

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(list(_SKIP)):
        tag.decompose()
    out: list[str] = []

    def clean(s: str) -> str:
        return " ".join(s.split()).replace("|", "/")

    def emit(el: Tag) -> None:
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

    def walk(node: Tag) -> None:
        loose: list[str] = []  # inline text between blocks becomes a paragraph

        def flush() -> None:
            text = clean(" ".join(loose))
            if text:
                out.append(text)
            loose.clear()

        for child in node.children:
            if isinstance(child, NavigableString):
                if type(child) is NavigableString:  # not comments, doctypes or CDATA
                    loose.append(str(child))
            elif isinstance(child, Tag):
                if child.name in _BLOCKS:
                    flush()
                    emit(child)
                elif child.find(list(_BLOCKS) + ["div", "section", "article", "main", "br", "ul", "ol"]):
                    flush()
                    walk(child)
                elif child.name in ("div", "section", "article", "main", "header", "footer", "aside", "ul", "ol"):
                    flush()
                    loose.append(child.get_text(" "))
                    flush()
                else:
                    loose.append(child.get_text(" "))
        flush()

    walk(soup)
    return "\n\n".join(out) + ("\n" if out else "")
