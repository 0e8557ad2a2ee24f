"""Small frozen records that cross module boundaries."""
from __future__ import annotations

from dataclasses import dataclass

SECTION_SEP = " › "


@dataclass(frozen=True)
class Document:
    """One loaded file: `text` is the source text every offset refers to."""

    source: str  # path relative to the corpus root, with forward slashes
    text: str
    kind: str  # "markdown", "text", "html", "pdf"
    sha: str  # hash of the file's bytes


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
    """A quotable piece of a chunk: a sentence, a list item or a table row."""

    id: str
    chunk_id: str
    source: str
    section: tuple[str, ...]
    kind: str  # "sentence", "item", "row"
    start: int
    end: int
    text: str
    header: str = ""  # rows: the table's header row

    def embed_text(self) -> str:
        head = self.section[-1] + ": " if self.section else ""
        return head + (labelled_row(self.header, self.text) if self.kind == "row" else self.text)


def split_row(row: str) -> list[str]:
    """Cells of a pipe-table row, stripped."""
    row = row.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|"):
        row = row[:-1]
    return [cell.strip() for cell in row.split("|")]


def labelled_row(header: str, row: str) -> str:
    """'Col: cell; Col: cell' for a table row, using the first header line."""
    names = split_row(header.splitlines()[0]) if header else []
    cells = split_row(row)
    if len(names) != len(cells):
        return "; ".join(cells)
    return "; ".join(f"{n}: {c}" for n, c in zip(names, cells))
