"""Look up cited passages by chunk id or SOURCE:START-END, confined to the corpus folders."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ingest.errors import LoadError
from ingest.load import load_file
from ingest.records import Document, page_range, page_span

from .errors import CiteError

_REF = re.compile(r"^(?P<source>.+):(?P<start>\d+)-(?P<end>\d+)$")


@dataclass(frozen=True)
class Passage:
    source: str
    start: int
    end: int
    quote: str
    paragraph_start: int
    paragraph: str  # the surrounding paragraph (or table, or list item); in a PDF, the cited page(s)
    pages: tuple[int, ...] = ()  # (first, last) page of a PDF holding the span; () for other documents


def confined_path(corpus_dirs, source: str) -> Path:
    """The file for a source path, refused if it would leave the corpus folders."""
    if not source or source.startswith(("/", "\\")) or "\x00" in source:
        raise CiteError(f"'{source[:80]}' is not a corpus path — use a path relative to the corpus folder")
    for root in corpus_dirs:
        root = Path(root).resolve()
        places = [root / source]
        head, _, rest = source.partition("/")
        if head == root.name and rest:  # ingested with several folders: 'folder/file.md'
            places.append(root / rest)
        for place in places:
            candidate = place.resolve()
            if not candidate.is_relative_to(root):
                raise CiteError(f"'{source[:80]}' is outside the corpus folder — only corpus files can be cited")
            if candidate.is_file():
                return candidate
    raise CiteError(f"no corpus file '{source[:80]}' — check the source path (see `python -m assistant ask --json`)")


def source_document(corpus_dirs, source: str) -> Document:
    """The corpus file re-loaded exactly as it was ingested (text, and a PDF's page map)."""
    path = confined_path(corpus_dirs, source)
    try:
        return load_file(path, source, max_file_mb=1024)
    except LoadError as err:
        raise CiteError(f"{source}: {err}") from None


def source_text(corpus_dirs, source: str) -> str:
    return source_document(corpus_dirs, source).text


def parse_ref(ref: str) -> tuple[str, int, int] | None:
    m = _REF.match(ref.strip())
    if not m:
        return None
    return m["source"], int(m["start"]), int(m["end"])


def passage(corpus_dirs, source: str, start: int, end: int) -> Passage:
    """The span in its paragraph; in a PDF, in the text of its page(s) (`ingest.records.page_span`)."""
    doc = source_document(corpus_dirs, source)
    text = doc.text
    if not (0 <= start < end <= len(text)):
        raise CiteError(f"{source}:{start}-{end} is outside the file (it has {len(text)} characters)")
    if doc.page_starts:
        first, last = page_range(doc.page_starts, start, end)
        page_start = min(start, page_span(text, doc.page_starts, first)[0])
        page_end = max(end, page_span(text, doc.page_starts, last)[1])
        return Passage(source, start, end, text[start:end], page_start, text[page_start:page_end], (first, last))
    para_start = text.rfind("\n\n", 0, start)
    para_start = 0 if para_start < 0 else para_start + 2
    para_end = text.find("\n\n", end)
    para_end = len(text) if para_end < 0 else para_end
    return Passage(source, start, end, text[start:end], para_start, text[para_start:para_end])
