"""Small frozen records that cross module boundaries, and the page map of paged documents.

Pages (PDFs). A loaded PDF's `Document.page_starts[i]` is the offset in `Document.text` where
page i + 1 starts (one entry per page of the file, empty pages included: their text is empty).
Pages are 1-based everywhere. `Chunk.pages` and `Unit.pages` are `(first, last)`, or `()` for a
document without pages. For any offset range and page:

    page_range(doc.page_starts, start, end) -> (first, last)   # also doc.page_range(start, end)
    page_span(doc.text, doc.page_starts, page) -> (start, end) # also doc.page_span(page)
    format_pages((3, 4)) -> "pp. 3–4"; format_pages((12, 12)) -> "p. 12"; format_pages(()) -> ""

`page_span` is the page's own text, `doc.text[start:end]`, without the blank line that separates
it from the next page; a cited span `a:b` on page p is highlighted at `a - start : b - start`.
"""
from __future__ import annotations

import html
import re
from bisect import bisect_right
from dataclasses import dataclass

SECTION_SEP = " › "
PAGE_SEP = "\n\n"  # between the texts of two pages of a PDF


@dataclass(frozen=True)
class Document:
    """One loaded file: `text` is the source text every offset refers to."""

    source: str  # path relative to the corpus root, with forward slashes
    text: str
    kind: str  # "markdown", "text", "html", "pdf"
    sha: str  # hash of the file's bytes (a PDF's together with its text extractor's version)
    page_starts: tuple[int, ...] = ()  # PDFs: where each page starts in `text` (see the module doc)
    # PDFs: (offset of a line's start, 'heading:N' | 'para') as its fonts show (ingest.load)
    layout: tuple[tuple[int, str], ...] = ()

    def page_range(self, start: int, end: int) -> tuple[int, ...]:
        return page_range(self.page_starts, start, end)

    def page_span(self, page: int) -> tuple[int, int]:
        return page_span(self.text, self.page_starts, page)


@dataclass(frozen=True)
class Block:
    """A structural unit of a document: heading, paragraph, item, table or code."""

    kind: str
    start: int
    end: int
    level: int = 0  # heading level
    title: str = ""  # heading text
    header_end: int = -1  # tables: end offset of the header rows (incl. separator)


@dataclass(frozen=True)
class Chunk:
    """A retrievable passage: `text == document.text[start:end]`."""

    id: str
    source: str
    section: tuple[str, ...]
    start: int
    end: int
    text: str
    header: str = ""  # table header rows, when the chunk continues a table without them
    pages: tuple[int, ...] = ()  # (first, last) 1-based page of a PDF; () without pages

    @property
    def section_label(self) -> str:
        return SECTION_SEP.join(self.section)

    def embed_text(self) -> str:
        parts = [self.section_label] if self.section else []
        if self.header:
            parts.append(self.header)
        parts.append(self.text)
        return "\n".join(parts)


@dataclass(frozen=True)
class Unit:
    """A quotable piece of a chunk: a sentence, a list item, a table row or a code block
    (a code block longer than a chunk is cut at line ends into several code units)."""

    id: str
    chunk_id: str
    source: str
    section: tuple[str, ...]
    kind: str  # "sentence", "item", "row", "code"
    start: int
    end: int
    text: str
    header: str = ""  # rows: the table's header row
    pages: tuple[int, ...] = ()  # (first, last) 1-based page of a PDF; () without pages

    def embed_text(self) -> str:
        head = self.section[-1] + ": " if self.section else ""
        return head + (labelled_row(self.header, self.text) if self.kind == "row" else self.text)


_HTML_CELL = re.compile(r"<t([dh])\b[^>]*>(.*?)</t[dh]\s*>", re.IGNORECASE | re.DOTALL)
_HTML_TAG = re.compile(r"<[^>]+>")


def html_cells(row: str) -> tuple[bool, list[str]]:
    """(whether every cell is a <th>, the cells' text without tags) of one <tr> element."""
    cells = _HTML_CELL.findall(row)
    plain = [" ".join(html.unescape(_HTML_TAG.sub("", body)).split()) for _, body in cells]
    return bool(cells) and all(tag.lower() == "h" for tag, _ in cells), plain


def split_row(row: str) -> list[str]:
    """Cells of a table row, stripped: a pipe-table line or an HTML <tr> element."""
    row = row.strip()
    if row[:3].lower() == "<tr":
        return html_cells(row)[1]
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|"):
        row = row[:-1]
    return [cell.strip() for cell in row.split("|")]


def labelled_row(header: str, row: str) -> str:
    """'Col: cell; Col: cell' for a table row, using the first header line."""
    if header.lstrip()[:3].lower() == "<tr":
        names = split_row(header)
    else:
        names = split_row(header.splitlines()[0]) if header else []
    cells = split_row(row)
    if len(names) != len(cells):
        return "; ".join(cells)
    return "; ".join(f"{n}: {c}" for n, c in zip(names, cells))


def page_range(page_starts: tuple[int, ...], start: int, end: int) -> tuple[int, ...]:
    """(first, last) 1-based page holding text[start:end]; () when there are no pages."""
    if not page_starts:
        return ()
    first = max(1, bisect_right(page_starts, start))
    last = max(first, bisect_right(page_starts, max(start, end - 1)))
    return (first, last)


def page_span(text: str, page_starts: tuple[int, ...], page: int) -> tuple[int, int]:
    """(start, end) of one page's text in the document text; (p, p) for an empty page."""
    if not 1 <= page <= len(page_starts):
        raise ValueError(f"no page {page}: the document has {len(page_starts)} pages")
    start = page_starts[page - 1]
    nxt = page_starts[page] if page < len(page_starts) else len(text)
    return start, start + len(text[start:nxt].rstrip())


def format_pages(pages: tuple[int, ...]) -> str:
    """'p. 12', 'pp. 3–4', or '' without pages."""
    if not pages:
        return ""
    first, last = pages
    return f"p. {first}" if first == last else f"pp. {first}–{last}"
