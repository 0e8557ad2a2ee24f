"""Find the structure of a document's text: headings, paragraphs, list items, tables, code.

Works on Markdown and on plain text exported from web pages, where each heading line is
followed by a `Section titled “…”` line that repeats it (and the next paragraph, or the next
heading, often starts right after the closing quote). Every block keeps exact offsets.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .records import Block, html_cells
from .sentences import SENTENCE_END

_MD_HEADING = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t#]*$")
# '- x', '• x', '1. x', '2) x', and the lettered or roman clauses of a licence: '(a) x', 'b) x', '(iv) x'
_ITEM = re.compile(r"^[ \t]*(?:[-*+•]|\d{1,3}[.)]|\([a-z]\)|[a-z]\)|\((?:i|ii|iii|iv|v|vi|vii|viii|ix|x)\))[ \t]+\S")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_FENCE = re.compile(r"^[ \t]*(`{3,}(?!.*`)|~{3,})")  # a backtick fence's info string has no backtick
_CLOSING_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*$")
_NUMBERED = re.compile(r"^\d{1,2}[.)]\s")
_ARTEFACT = "Section titled “"
_HTML_TABLE = re.compile(r"^\s*<table\b", re.IGNORECASE)
_HTML_TABLE_END = re.compile(r"</table\s*>", re.IGNORECASE)
_HTML_ROW = re.compile(r"<tr\b.*?</tr\s*>", re.IGNORECASE | re.DOTALL)


@dataclass
class _Line:
    start: int
    end: int  # without the newline
    text: str


def _lines(text: str, offset: int = 0) -> list[_Line]:
    out = []
    pos = offset
    for raw in text[offset:].splitlines(keepends=True):
        body = raw.rstrip("\r\n")
        out.append(_Line(pos, pos + len(body), body))
        pos += len(raw)
    return out


def _artefact_rest(lines: list[_Line], i: int) -> int | None:
    """If line i is a web-page heading (repeated on the next line), the offset where the repeat ends."""
    line = lines[i]
    title = line.text.strip()
    if not title or len(title) > 200 or i + 1 >= len(lines):
        return None
    nxt = lines[i + 1]
    marker = _ARTEFACT + title + "”"
    if nxt.text.startswith(marker):
        return nxt.start + len(marker)
    return None


def _split_line(lines: list[_Line], i: int, at: int) -> None:
    """Replace line i by its remainder from offset `at` (the text after an artefact)."""
    line = lines[i]
    cut = at - line.start
    lines[i] = _Line(at, line.end, line.text[cut:])


# a PDF's numbered section heading: '1. Introduction', '2.1. The source XML files', '1.2. What is this spec?'
# ('1.13. "Source Code Form"' too: a numbered definition in a plain-text licence)
_PDF_NUMBERED = re.compile(r"^[ \t]*(\d{1,2}(?:\.\d{1,2}){0,4})\.?[ \t]+([\"“']?[A-Z][^.;:,!]{0,80}?[?]?)[ \t]*$")
# a heading underlined on the next line (Markdown's setext headings, and plain text written the same way)
_UNDERLINE = re.compile(r"^[ \t]{0,3}(={3,}|-{3,}|~{3,})[ \t]*$")
_UNDERLINE_LEVEL = {"=": 1, "-": 2, "~": 3}
MAX_HEADING_WORDS = 12


TOC_RUN = 3  # this many numbered titles in a row, with no text between, are a table of contents


def _pdf_headings(lines: list[_Line]) -> dict[int, int]:
    """Line index -> level of the numbered section headings of a PDF's text. '2.1. Title' is one
    (level 2) within chapter 2; '2. Title' (level 1) only when the next numbered line is its first
    section and the chapters number up, so that a numbered list ('1. Close the valve') stays a list."""
    found: dict[int, tuple[int, ...]] = {}
    for i, line in enumerate(lines):
        m = _PDF_NUMBERED.match(line.text)
        title = m.group(2) if m else ""
        # a title in words: mixed case or all capitals ('2 CARD16 MAJOR_VERSION 1' is a table line)
        if m and len(title.split()) <= MAX_HEADING_WORDS and (re.search(r"[a-z]", title) or re.fullmatch(r"[A-Z][A-Z &-]+", title)):
            found[i] = tuple(int(n) for n in m.group(1).split("."))
    # a table of contents: TOC_RUN or more numbered titles on consecutive lines, no text between
    run: list[int] = []
    for i in sorted(found) + [-2]:
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if len(run) >= TOC_RUN:
            for j in run:
                del found[j]
        run = [i]
    order = sorted(found.items())
    out: dict[int, int] = {}
    top = None  # the chapter number in force
    for k, (i, num) in enumerate(order):
        if len(num) == 1:
            nxt = order[k + 1][1] if k + 1 < len(order) else ()
            # a chapter heading is followed by its first section and numbers up ('1. Close the
            # valve' under '2. Installation' is a list item)
            if nxt[:1] == num and len(nxt) > 1 and (top is None or num[0] > top):
                out[i], top = 1, num[0]
        elif top is None or num[0] == top:
            out[i] = len(num)
    return out


def _underlined(lines: list[_Line], i: int, kind: str) -> int | None:
    """The level of line i when it is a heading underlined on the next line ('Introduction' over
    '------------'; '=' is level 1, '-' 2, '~' 3): a short line of its own, with a blank line or
    nothing before it and an underline at least half as long. In Markdown a list item or a table
    line is never one."""
    if kind not in ("markdown", "text") or i + 1 >= len(lines) or (i and lines[i - 1].text.strip()):
        return None
    title = lines[i].text.strip()
    m = _UNDERLINE.match(lines[i + 1].text)
    if not m or not title or len(m.group(1)) < len(title) / 2 or len(title.split()) > MAX_HEADING_WORDS:
        return None
    if kind == "markdown" and (_ITEM.match(lines[i].text) or title.startswith(("|", "<", "#"))):
        return None
    return _UNDERLINE_LEVEL[m.group(1)[0]]


# a plain text's rule between sections ('=====…' in Vim's help files)
_RULE = re.compile(r"^[ \t]*(?:={10,}|-{10,}|\*{10,})[ \t]*$")
# a plain text's numbered section title: '  0. Definitions.', '1. Undo and redo commands  *undo-commands*'
_TEXT_NUMBERED = re.compile(r"^[ \t]*(\d{1,2})\.[ \t]+[\"“']?[A-Z]")
_TAB = 8
# a title in capitals at the line's start ('MANUAL', 'SEE ALSO'), and the tags Vim's help puts after a
# title ('*fold-manual*')
_CAPS_TITLE = re.compile(r"[A-Z][A-Z0-9 &/-]*[A-Z0-9]")
_TAGS = re.compile(r"(?:\s+\*[^*\s]+\*)+\s*$")


def _plain_headings(lines: list[_Line]) -> dict[int, str]:
    """Line index -> 'centred', 'numbered' or 'capitals' for the headings a plain text marks by place
    alone: a short line standing alone and set in the middle of the page ('TERMS AND CONDITIONS',
    'Preamble'); numbered titles standing alone that number up one by one, with text between them
    ('0. Definitions.' … '17. Interpretation of Sections 15 and 16.'), not a list's items; and a few
    words in capitals standing alone at the start of the line ('MANUAL  *fold-manual*')."""
    def blankish(j: int) -> bool:
        return j < 0 or j >= len(lines) or not lines[j].text.strip() or bool(_RULE.match(lines[j].text))

    widths = sorted(len(line.text.expandtabs(_TAB).rstrip()) for line in lines if line.text.strip())
    if not widths:
        return {}
    width = widths[int(0.9 * (len(widths) - 1))]
    out: dict[int, str] = {}
    numbered: list[tuple[int, int]] = []
    for i, line in enumerate(lines):
        text = line.text.expandtabs(_TAB).rstrip()
        title = text.strip()
        if not title or _RULE.match(text) or not (blankish(i - 1) and blankish(i + 1)):
            continue
        indent = len(text) - len(title)
        words = len(title.split())
        bare = _TAGS.sub("", title)
        if (words <= MAX_HEADING_WORDS and indent >= 8 and title[-1] not in ".,;:"
                and abs(2 * indent + len(title) - width) <= 0.25 * width):
            out[i] = "centred"
        elif indent == 0 and _CAPS_TITLE.fullmatch(bare) and len(bare.split()) <= 6 and bare.upper() == bare:
            out[i] = "capitals"
        elif (m := _TEXT_NUMBERED.match(text)) and words <= 10:
            numbered.append((i, int(m.group(1))))
    # the numbered titles: a run numbering up by one, each followed by text before the next
    run: list[int] = []
    best: list[int] = []
    for k, (i, n) in enumerate(numbered):
        prev = numbered[k - 1] if k else None
        if prev and n == prev[1] + 1 and any(lines[j].text.strip() and not _RULE.match(lines[j].text) for j in range(prev[0] + 1, i)):
            run.append(i)
        else:
            run = [i]
        if len(run) > len(best):
            best = list(run)
    if len(best) >= 3:
        out.update({i: "numbered" for i in best})
    return out


def _stands_alone(lines: list[_Line], i: int) -> bool:
    """Line i of a plain text is followed by a blank line, by nothing, or by lines indented deeper."""
    if i + 1 >= len(lines) or not lines[i + 1].text.strip():
        return True
    def indent(line: _Line) -> int:
        return len(line.text) - len(line.text.lstrip())
    return indent(lines[i + 1]) > indent(lines[i])


def _section_number(title: str) -> tuple[int, ...]:
    m = re.match(r"(\d{1,2}(?:\.\d{1,2}){0,4})\.?\s", title)
    return tuple(int(n) for n in m.group(1).split(".")) if m else ()


def parse_blocks(text: str, kind: str = "markdown", marks: Mapping[int, str] | None = None) -> list[Block]:
    """Blocks in document order; heading blocks carry level and title. `marks` (a PDF's
    Document.layout, by the offset of a line's start): 'heading:N' makes the line a heading of
    level N, 'para' starts a paragraph there."""
    marks = marks or {}
    lines = _lines(text)
    blocks: list[Block] = []
    i = 0
    para: list[_Line] = []
    seen_numbered_parent = False
    numbered = _pdf_headings(lines) if kind in ("pdf", "text") else {}
    if kind == "text":  # a line of its own there: '5.1. The rights granted … automatically' runs on
        numbered = {i: n for i, n in numbered.items() if _stands_alone(lines, i)}
    # the level of each numbered heading so far, by number: '1.1. …' under an underlined
    # '1. Definitions' of level 2 is level 3
    levels: dict[tuple[int, ...], int] = {}
    plain = {i: k for i, k in _plain_headings(lines).items() if i not in numbered} if kind == "text" else {}
    above = 0  # the level of the last heading a plain text marked by place: its numbered titles go under it
    numbered_level = 0  # the level of the last numbered title under it: titles in capitals go under that

    def flush_para() -> None:
        if para:
            blocks.append(Block("paragraph", para[0].start, para[-1].end))
            para.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.text.strip()
        if not stripped:
            flush_para()
            i += 1
            continue
        mark = marks.get(line.start)
        if mark and mark.startswith("heading:"):
            flush_para()
            blocks.append(Block("heading", line.start, line.end, int(mark.split(":")[1]), stripped))
            i += 1
            continue
        if mark == "para":
            flush_para()
        level = _underlined(lines, i, kind)
        if level is not None:
            flush_para()
            blocks.append(Block("heading", line.start, line.end, level, stripped))
            levels[_section_number(stripped)] = level
            i += 2
            continue
        if kind in ("markdown", "text", "html", "pdf"):
            m = _MD_HEADING.match(line.text)
            if m and kind != "pdf":
                flush_para()
                blocks.append(Block("heading", line.start, line.end, len(m.group(1)), m.group(2).strip()))
                i += 1
                continue
        if i in numbered:
            flush_para()
            number = _section_number(stripped)
            parent = next((number[:k] for k in range(len(number) - 1, 0, -1) if number[:k] in levels), None)
            level = levels[parent] + len(number) - len(parent) if parent else numbered[i]
            levels[number] = level
            blocks.append(Block("heading", line.start, line.end, level, stripped))
            i += 1
            continue
        if i in plain and not (i == 0 and not blocks and plain[i] == "centred"):
            flush_para()
            if plain[i] == "centred":
                level = 2 if any(b.kind == "heading" for b in blocks) else 1
                above, numbered_level = level, 0
            elif plain[i] == "numbered":
                level = numbered_level = above + 1
            else:  # capitals: under the numbered title before them, if any
                level = (numbered_level or above) + 1
            blocks.append(Block("heading", line.start, line.end, level, stripped))
            i += 1
            continue
        if kind == "text" and _RULE.match(line.text):
            flush_para()  # a rule between sections says nothing
            i += 1
            continue
        rest = _artefact_rest(lines, i)
        if rest is not None:
            flush_para()
            level = 3 if (_NUMBERED.match(stripped) and seen_numbered_parent) else 2
            if level == 2:
                seen_numbered_parent = not _NUMBERED.match(stripped)
            blocks.append(Block("heading", line.start, line.end, level, stripped))
            nxt = lines[i + 1]
            if rest < nxt.end:
                _split_line(lines, i + 1, rest)
                i += 1
            else:
                i += 2
            continue
        if kind == "text" and i == 0 and not blocks and _looks_like_title(stripped, lines):
            blocks.append(Block("heading", line.start, line.end, 1, stripped))
            i += 1
            continue
        if kind == "markdown" and stripped.startswith("<!--"):
            # an HTML comment (hidden when rendered; API docs keep version metadata there) is one
            # verbatim block, never cut into sentences or items
            j = i
            while j < len(lines) and "-->" not in lines[j].text:
                j += 1
            if j < len(lines):
                flush_para()
                blocks.append(Block("code", line.start, lines[j].end))
                i = j + 1
                continue
        fence = _FENCE.match(line.text)
        if fence:
            flush_para()
            j = i + 1
            while j < len(lines) and not _closes(lines[j].text, fence.group(1)):
                j += 1
            end = lines[min(j, len(lines) - 1)].end
            blocks.append(Block("code", line.start, end))
            i = j + 1
            continue
        if kind == "markdown" and _HTML_TABLE.match(line.text):
            # a table written in HTML inside Markdown: a row is a <tr> element, however many lines
            j = i
            while j < len(lines) and not _HTML_TABLE_END.search(lines[j].text):
                j += 1
            rows = html_row_spans(text, line.start, lines[j].end) if j < len(lines) else []
            if rows:  # otherwise its lines are read as paragraphs
                flush_para()
                header_end = rows[0][1] if html_cells(text[rows[0][0] : rows[0][1]])[0] else -1
                blocks.append(Block("table", line.start, lines[j].end, header_end=header_end))
                i = j + 1
                continue
        if stripped.startswith("|"):
            flush_para()
            j = i
            while j < len(lines) and lines[j].text.strip().startswith("|"):
                j += 1
            header_end = -1
            if j - i >= 2 and _TABLE_SEP.match(lines[i + 1].text):
                header_end = lines[i + 1].end
            blocks.append(Block("table", line.start, lines[j - 1].end, header_end=header_end))
            i = j
            continue
        if _ITEM.match(line.text):
            flush_para()
            j = i + 1
            indent = len(line.text) - len(line.text.lstrip())
            # continuation lines: not themselves items, tables, headings or fences; indented deeper, or
            # continuing a sentence the line before left open (a PDF's wrapped lines, CommonMark's lazy
            # continuation: '• glob elements … will be given this' / 'MIME type (subject to …).')
            while (
                j < len(lines)
                and lines[j].text.strip()
                and not _ITEM.match(lines[j].text)
                and not lines[j].text.strip().startswith(("|", "<"))
                and not _MD_HEADING.match(lines[j].text)
                and not _FENCE.match(lines[j].text)
                and _artefact_rest(lines, j) is None
                and j not in numbered
                and lines[j].start not in marks
                and (
                    (len(lines[j].text) - len(lines[j].text.lstrip())) > indent
                    or not SENTENCE_END.search(lines[j - 1].text)
                )
            ):
                j += 1
            blocks.append(Block("item", line.start, lines[j - 1].end))
            i = j
            continue
        para.append(line)
        i += 1
    flush_para()
    return _drawn_lists(text, blocks) if marks else blocks


def _drawn_lists(text: str, blocks: list[Block]) -> list[Block]:
    """A PDF that drew its bullets as shapes leaves its list as a paragraph of lines after a lead-in
    ('…such as:' over 'Race conditions, in which …' / 'Deadlocks, in which …, preventing both
    threads from' / 'continuing'): when no line but the last ends a sentence, or every line does
    ('All the integer types, such as u32.' / 'The Boolean type, bool.'), each line that starts with a
    capital (or a digit) starts an item, and a line in lower case goes on with the one before."""
    out: list[Block] = []
    for k, block in enumerate(blocks):
        lines = line_spans(text, block.start, block.end) if block.kind == "paragraph" else []
        lead = k > 0 and text[blocks[k - 1].start : blocks[k - 1].end].rstrip().endswith(":")
        ends = [bool(SENTENCE_END.search(text[a:b].rstrip())) for a, b in lines]
        # items that wrap and end nowhere but at the end, or items that each fill one line and end it
        if not lead or len(lines) < 2 or not text[lines[0][0]].isupper() or (any(ends[:-1]) and not all(ends)):
            out.append(block)
            continue
        start = lines[0][0]
        for (a, b), (c, _) in zip(lines, lines[1:]):
            if text[c].isupper() or text[c].isdigit():
                out.append(Block("item", start, b))
                start = c
        out.append(Block("item", start, lines[-1][1]))
    return out


def html_row_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """(start, end) of every <tr> element of an HTML table in text[start:end]."""
    return [(start + m.start(), start + m.end()) for m in _HTML_ROW.finditer(text[start:end])]


def table_row_spans(text: str, block: Block) -> list[tuple[int, int]]:
    """The rows of a table block: its lines, or the <tr> elements of an HTML table."""
    if _HTML_TABLE.match(text[block.start : block.end]):
        return html_row_spans(text, block.start, block.end)
    return line_spans(text, block.start, block.end)


def line_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """(start, end) of every non-blank line of text[start:end], without its line break."""
    spans, pos = [], start
    for line in text[start:end].split("\n"):
        if line.strip():
            spans.append((pos, pos + len(line.rstrip("\r"))))
        pos += len(line) + 1
    return spans


def _closes(line: str, fence: str) -> bool:
    """A closing fence: the opening fence's character, at least as many, nothing after."""
    m = _CLOSING_FENCE.match(line)
    return bool(m) and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence)


def code_body(text: str, block: Block) -> tuple[int, int]:
    """The span of a code block's lines without its fence lines (an unclosed fence runs to
    the end), blank lines at either end and trailing spaces dropped; the first line keeps
    its indentation. (a, a) when the block holds no code."""
    start, end = block.start, block.end
    first_nl = text.find("\n", start, end)
    opening = text[start : first_nl if first_nl >= 0 else end]
    fence = _FENCE.match(opening)
    if fence:
        if first_nl < 0:
            return end, end
        start = first_nl + 1
        last_nl = text.rfind("\n", start, end)
        last_start = last_nl + 1 if last_nl >= 0 else start
        if _closes(text[last_start:end].rstrip("\r"), fence.group(1)):
            end = last_start
    return trim_lines(text, start, end)


def trim_lines(text: str, start: int, end: int) -> tuple[int, int]:
    """text[start:end] without its blank first lines and trailing whitespace (the first
    line keeps its indentation); (start, start) when nothing is left."""
    while start < end:
        nl = text.find("\n", start, end)
        if nl < 0 or text[start:nl].strip():
            break
        start = nl + 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if text[start:end].strip() else (start, start)


def _looks_like_title(stripped: str, lines: list[_Line]) -> bool:
    return (
        len(lines) > 1
        and len(stripped.split()) <= 10
        and stripped[-1] not in ".:;,!?"
        and not stripped.startswith(("|", "-", "*"))
    )


def sections(blocks: list[Block]) -> list[tuple[tuple[str, ...], Block]]:
    """Each non-heading block with its heading trail.

    A lone document title (the first block, the only level-1 heading) is left out of the
    trails: every passage would repeat it, and the source path already names the document.
    """
    trail: list[tuple[int, str]] = []
    out = []
    level1 = [b for b in blocks if b.kind == "heading" and b.level == 1]
    skip = blocks[0] if blocks and len(level1) == 1 and blocks[0] is level1[0] else None
    for block in blocks:
        if block is skip:
            continue
        if block.kind == "heading":
            while trail and trail[-1][0] >= block.level:
                trail.pop()
            trail.append((block.level, block.title))
            continue
        out.append((tuple(t for _, t in trail), block))
    return out
