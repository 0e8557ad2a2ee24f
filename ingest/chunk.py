"""Cut documents into passages along their structure, and passages into quotable units.

Sections are cut at headings; paragraphs, list items and table rows are never split while
they fit; a table that has to be cut carries its header row with every part; a long
section overlaps its chunks by one short sentence. Every chunk and unit is an exact span
of the document text.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable

from .records import Block, Chunk, Document, Unit
from .sentences import sentence_spans
from .structure import parse_blocks, sections

CHUNKER_VERSION = "5"
_BULLET = re.compile(r"^[ \t]*(?:[-*+•]|\d{1,3}[.)])[ \t]+")

TokenCounter = Callable[[str], int]


@dataclass
class _Piece:
    start: int
    end: int
    tokens: int
    kind: str  # block kind, or "part" for a piece of a split paragraph
    header: str = ""  # table pieces that lack their header rows


def stable_id(*parts: object) -> str:
    return hashlib.sha1("\x1f".join(map(str, parts)).encode("utf-8")).hexdigest()[:24]


def chunk_document(
    doc: Document, count_tokens: TokenCounter, target: int = 160, overlap: int = 32
) -> tuple[list[Chunk], list[Unit]]:
    """Chunks and units of one document."""
    text = doc.text
    chunks: list[Chunk] = []
    for trail, blocks in _group_by_section(sections(parse_blocks(text, doc.kind))):
        pieces = [p for b in blocks for p in _pieces(text, b, count_tokens, target)]
        for start, end, header in _pack(text, pieces, count_tokens, target, overlap):
            chunks.append(
                Chunk(stable_id(doc.source, start, end), doc.source, trail, start, end, text[start:end], header)
            )
    units = _units(doc, chunks)
    return chunks, units


def _group_by_section(items):
    groups: list[tuple[tuple[str, ...], list[Block]]] = []
    for trail, block in items:
        if groups and groups[-1][0] == trail:
            groups[-1][1].append(block)
        else:
            groups.append((trail, [block]))
    return groups


def _pieces(text: str, block: Block, count: TokenCounter, target: int) -> list[_Piece]:
    tokens = count(text[block.start : block.end])
    if tokens <= target:
        return [_Piece(block.start, block.end, tokens, block.kind)]
    if block.kind == "table":
        return _table_pieces(text, block, count, target)
    # a long paragraph, item or code block: whole sentences, packed up to the target
    out: list[_Piece] = []
    for a, b in sentence_spans(text, block.start, block.end):
        t = count(text[a:b])
        if out and out[-1].tokens + t <= target:
            out[-1] = _Piece(out[-1].start, b, out[-1].tokens + t, "part")
        else:
            out.append(_Piece(a, b, t, "part"))
    return out


def _table_pieces(text: str, block: Block, count: TokenCounter, target: int) -> list[_Piece]:
    rows = _row_spans(text, block.start, block.end)
    if block.header_end > 0:
        header = text[block.start : block.header_end]
        body = [r for r in rows if r[0] > block.header_end]
        first = (block.start, block.header_end)
    else:
        header, body, first = "", rows[1:], rows[0]
    head_tokens = count(header) if header else 0
    out = [_Piece(first[0], first[1], count(text[first[0] : first[1]]), "table")]
    for a, b in body:
        t = count(text[a:b])
        last = out[-1]
        if last.tokens + t + (head_tokens if last.header else 0) <= target or last.end == first[1]:
            out[-1] = _Piece(last.start, b, last.tokens + t, "table", last.header)
        else:
            out.append(_Piece(a, b, t, "table", header))
    return out


def _row_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans, pos = [], start
    for line in text[start:end].split("\n"):
        if line.strip():
            spans.append((pos, pos + len(line.rstrip("\r"))))
        pos += len(line) + 1
    return spans


def _pack(text: str, pieces: list[_Piece], count: TokenCounter, target: int, overlap: int):
    """Group pieces into chunk spans (start, end, header); a chunk's tokens, header included,
    stay within the target unless one piece alone is larger."""
    out: list[tuple[int, int, str]] = []
    cur: list[_Piece] = []
    tokens = 0
    for piece in pieces:
        if cur and (tokens + piece.tokens > target or piece.header):
            out.append((cur[0].start, cur[-1].end, cur[0].header))
            carry = _overlap_piece(text, cur[-1], count, overlap) if piece.kind in ("part", "paragraph") else None
            if carry and carry.tokens + piece.tokens <= target:
                cur, tokens = [carry], carry.tokens
            else:
                cur, tokens = [], 0
        if not cur and piece.header:
            tokens += count(piece.header)
        cur.append(piece)
        tokens += piece.tokens
    if cur:
        out.append((cur[0].start, cur[-1].end, cur[0].header))
    return out


def _overlap_piece(text: str, last: _Piece, count: TokenCounter, overlap: int) -> _Piece | None:
    """The last sentence of a prose piece, if it is short enough to repeat."""
    if last.kind not in ("part", "paragraph"):
        return None
    spans = sentence_spans(text, last.start, last.end)
    if len(spans) < 2:
        return None
    a, b = spans[-1]
    t = count(text[a:b])
    return _Piece(a, b, t, "overlap") if t <= overlap else None


def _units(doc: Document, chunks: list[Chunk]) -> list[Unit]:
    """Sentences, list items and table rows, each assigned to the first chunk that holds it."""
    text = doc.text
    units: list[Unit] = []
    seen: set[tuple[int, int]] = set()
    blocks = [b for _, b in sections(parse_blocks(text, doc.kind))]
    spans: list[tuple[str, int, int, str]] = []
    for block in blocks:
        if block.kind == "table":
            rows = _row_spans(text, block.start, block.end)
            if block.header_end > 0:
                header = text[block.start : block.header_end].split("\n")[0]
                spans += [("row", a, b, header) for a, b in rows if a > block.header_end]
            else:
                spans += [("row", a, b, "") for a, b in rows]
        elif block.kind == "item":
            m = _BULLET.match(text[block.start : block.end])
            a = block.start + (m.end() if m else 0)
            whole = any(c.start <= a and block.end <= c.end for c in chunks)
            # an item cut across chunks is quoted sentence by sentence
            for s, e in [(a, block.end)] if whole else sentence_spans(text, a, block.end):
                spans.append(("item", s, e, ""))
        elif block.kind in ("paragraph", "code"):
            spans += [("sentence", a, b, "") for a, b in sentence_spans(text, block.start, block.end)]
    for kind, a, b, header in spans:
        if (a, b) in seen:
            continue
        owner = next((c for c in chunks if c.start <= a and b <= c.end), None)
        if owner is None:
            continue
        seen.add((a, b))
        units.append(
            Unit(stable_id(doc.source, a, b, "u"), owner.id, doc.source, owner.section, kind, a, b, text[a:b], header)
        )
    return units
