"""Cut documents into passages along their structure, and passages into quotable units.

Sections are cut at headings; paragraphs, list items, table rows and code blocks are never
split while they fit; a table that has to be cut carries its header row with every part; a
code block that has to be cut is cut at line ends (a line longer than a chunk, at spaces);
a long section overlaps its chunks by one short sentence. Every chunk and unit is an exact
span of the document text.

Units are sentences, list items, table rows and code: a code block (its lines without the
fence lines) is one unit of kind "code", never cut into sentences; a code block cut across
chunks gives one code unit per part. A PDF's chunks and units carry their (first, last) page.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable

from .records import Block, Chunk, Document, Unit, page_range
from .sentences import sentence_spans
from .structure import code_body, line_spans, parse_blocks, sections, table_row_spans, trim_lines

# v6: code units, page ranges of PDFs, HTML text without spaces around inline elements
# v7: a chunk's vector is the mean of its units' vectors (ingest.pipeline.chunk_vectors)
# v8: unit records without metadata, their spans listed by the chunk record (7be0f50)
# v9: a chunk record carries its units' spans and vectors; no unit collection (ingest.store)
# v10: an HTML <table> inside Markdown is a table: a unit per <tr> row, with its <th> header row
# v11: an HTML table's first piece starts at <table> (a caption before the first row is kept) and
#      its last piece ends at </table>
# v12: an HTML comment in Markdown ('<!-- YAML added: v7.7.0 -->') is one verbatim unit, not
#      sentences and list items ('-->', 'v7.7.0')
# v13: a sentence is never cut inside inline code ("then `'.'` will be returned")
# v14: HTML pages lose their chrome: buttons, menus and elements marked hidden (ingest.load)
# v15: a list item goes on over unindented lines while its sentence is open (a PDF's wrapped lines)
# v16: PDFs: running headers and footers dropped (ingest.load), numbered section headings
#      ('2.1. The source XML files') are headings
# v17: no sentence cut after 'et al.' (punkt's abbreviations are single words: 'al', not 'et al')
# v18: HTML: a definition list's <dt> is a heading over its <dd>; navigation bars (next/previous/up
#      links) and tables of contents (lists of links and nothing else) are dropped (ingest.load)
# v19: PDFs: a running line carrying the page number is dropped though its words change with the
#      chapter ('Chapter 3: Utilities 6'); a word hyphenated at a line's end is whole again when the
#      document writes it whole elsewhere (ingest.load)
# v20: a line starting with a command-line option ('-s, --strict …') starts a unit of its own
# v21: … only when the unit starts with it: hard-wrapped prose may start a line with an option
# v22: HTML: a paragraph left open (or a definition, a quotation) that holds blocks is read block by
#      block: '<p>Text … <pre>code</pre> more text' gives a paragraph, a code block and a paragraph
# v23: headings underlined on the next line ('Introduction' over '-----'), in Markdown and plain
#      text; a plain text's numbered section lines on their own ('2.1. Grants', '1.13. "Source Code
#      Form"' over its indented definition) are headings, nested under an underlined '1. Definitions'
# v24: a PDF's fonts: a line set larger than the body text is a heading, a line set wholly in
#      another font than the one before starts a paragraph
# v25: lettered and roman clauses are list items ('(a) You must give …', '(iv) …')
# v26: a PDF's paragraphs by the space above their first line; a paragraph of lines after a lead-in,
#      none ending a sentence, is a list whose bullets the PDF drew (an item per capitalised line)
# v27: HTML: a definition list of short keys with short values ('7' / 'Unsupported xsl:output
#      method') is read as list items '7: Unsupported xsl:output method'
# v28: a PDF's drawn list may also be lines that each end a sentence ('All the integer types, such as u32.')
# v29: plain text: a short line standing alone in the middle of the page is a heading ('TERMS AND
#      CONDITIONS'), and so are numbered titles standing alone that number up one by one with text
#      between them ('0. Definitions.'), under it; a rule line ('=====') between sections is dropped
# v30: plain text: a few words in capitals standing alone at the start of a line are a heading
#      (Vim's 'MANUAL  *fold-manual*'), under the numbered title before them
# v31: HTML: a table's first row is its header only when the table marks it (<thead>, or all <th>)
# v32: three or more numbered titles on consecutive lines are a table of contents, not headings
CHUNKER_VERSION = "32"
_BULLET = re.compile(r"^[ \t]*(?:[-*+•]|\d{1,3}[.)])[ \t]+")

TokenCounter = Callable[[str], int]


@dataclass
class _Piece:
    start: int
    end: int
    tokens: int
    kind: str  # block kind ("code" also for a part of a cut code block), or "part" for a piece of a split paragraph
    header: str = ""  # table pieces that lack their header rows


def stable_id(*parts: object) -> str:
    return hashlib.sha1("\x1f".join(map(str, parts)).encode("utf-8")).hexdigest()[:24]


def chunk_document(
    doc: Document, count_tokens: TokenCounter, target: int = 160, overlap: int = 32
) -> tuple[list[Chunk], list[Unit]]:
    """Chunks and units of one document."""
    text = doc.text
    chunks: list[Chunk] = []
    items = sections(parse_blocks(text, doc.kind, dict(doc.layout)))
    code_parts: dict[int, list[tuple[int, int]]] = {}  # a code block's start: its pieces
    for trail, blocks in _group_by_section(items):
        pieces: list[_Piece] = []
        for block in blocks:
            parts = _pieces(text, block, count_tokens, target)
            if block.kind == "code":
                code_parts[block.start] = [(p.start, p.end) for p in parts]
            pieces += parts
        for start, end, header in _pack(text, pieces, count_tokens, target, overlap):
            chunks.append(
                Chunk(
                    stable_id(doc.source, start, end), doc.source, trail, start, end, text[start:end], header,
                    page_range(doc.page_starts, start, end),
                )
            )
    units = _units(doc, chunks, [b for _, b in items], code_parts)
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
    if block.kind == "code":
        return _code_pieces(text, block, count, target)
    # a long paragraph or item: whole sentences, packed up to the target
    # (a 'sentence' over the target, such as lines with no punctuation, is cut at spaces)
    return _packed(text, sentence_spans(text, block.start, block.end), count, target, "part")


def _table_pieces(text: str, block: Block, count: TokenCounter, target: int) -> list[_Piece]:
    rows = table_row_spans(text, block)
    if block.header_end > 0:
        header = text[block.start : block.header_end]
        body = [r for r in rows if r[0] > block.header_end]
        first = (block.start, block.header_end)
    else:  # from the block's start: an HTML table's <table> (and caption) stand before its first row
        header, body, first = "", rows[1:], (block.start, rows[0][1])
    head_tokens = count(header) if header else 0
    out = [_Piece(first[0], first[1], count(text[first[0] : first[1]]), "table")]
    for a, b in body:
        t = count(text[a:b])
        last = out[-1]
        if last.tokens + t + (head_tokens if last.header else 0) <= target or last.end == first[1]:
            out[-1] = _Piece(last.start, b, last.tokens + t, "table", last.header)
        else:
            out.append(_Piece(a, b, t, "table", header))
    last = out[-1]  # to the block's end: an HTML table's </table> follows its last row
    out[-1] = _Piece(last.start, block.end, last.tokens, "table", last.header)
    return out


def _code_pieces(text: str, block: Block, count: TokenCounter, target: int) -> list[_Piece]:
    """Whole lines (fence lines included), packed up to the target; a line over the target
    alone is cut at spaces."""
    return _packed(text, line_spans(text, block.start, block.end), count, target, "code")


def _packed(text: str, spans, count: TokenCounter, target: int, kind: str) -> list[_Piece]:
    """Consecutive spans packed into pieces of at most `target` tokens; a span over the target
    is first cut at spaces."""
    out: list[_Piece] = []
    for a, b in spans:
        t = count(text[a:b])
        for a2, b2, t2 in _word_parts(text, a, b, count, target) if t > target else [(a, b, t)]:
            if out and out[-1].tokens + t2 <= target:
                out[-1] = _Piece(out[-1].start, b2, out[-1].tokens + t2, kind)
            else:
                out.append(_Piece(a2, b2, t2, kind))
    return out


def _word_parts(text: str, a: int, b: int, count: TokenCounter, target: int) -> list[tuple[int, int, int]]:
    """A line cut at spaces into parts of at most `target` tokens (a single longer word stays whole)."""
    out: list[tuple[int, int, int]] = []
    for m in re.finditer(r"\S+", text[a:b]):
        s, e, t = a + m.start(), a + m.end(), count(m.group())
        if out and out[-1][2] + t <= target:
            out[-1] = (out[-1][0], e, out[-1][2] + t)
        else:
            out.append((s, e, t))
    return out


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


def _units(
    doc: Document, chunks: list[Chunk], blocks: list[Block], code_parts: dict[int, list[tuple[int, int]]]
) -> list[Unit]:
    """Sentences, list items, table rows and code, each assigned to the first chunk that holds it."""
    text = doc.text
    units: list[Unit] = []
    seen: set[tuple[int, int]] = set()
    spans: list[tuple[str, int, int, str]] = []
    for block in blocks:
        if block.kind == "table":
            rows = table_row_spans(text, block)
            if block.header_end > 0:
                if rows[0][1] == block.header_end:  # an HTML table: its <th> row
                    header = text[rows[0][0] : rows[0][1]]
                else:  # a pipe table: the line of column names above the separator
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
        elif block.kind == "code":
            body_start, body_end = code_body(text, block)
            for a, b in code_parts.get(block.start, [(block.start, block.end)]):
                s, e = trim_lines(text, max(a, body_start), min(b, body_end))
                if e > s:
                    spans.append(("code", s, e, ""))
        elif block.kind == "paragraph":
            spans += [("sentence", a, b, "") for a, b in sentence_spans(text, block.start, block.end)]
    for kind, a, b, header in spans:
        if (a, b) in seen:
            continue
        owner = next((c for c in chunks if c.start <= a and b <= c.end), None)
        if owner is None:
            continue
        seen.add((a, b))
        units.append(
            Unit(
                stable_id(doc.source, a, b, "u"), owner.id, doc.source, owner.section, kind, a, b, text[a:b], header,
                page_range(doc.page_starts, a, b),
            )
        )
    return units
