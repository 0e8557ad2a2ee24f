"""Read files and folders into Documents; every problem becomes one line naming the fix.

A Document's text is what every offset refers to, so it must be reproducible from the file:
`load_file(path, source)` is the one way to read a file, at ingest and when a citation is
shown again. A PDF's text is its pages' texts (pypdf `extract_text`, stripped) joined by a
blank line, and `Document.page_starts` maps it back to the pages: for a source and an offset
range, `doc = load_file(path, source)`, then `doc.page_range(start, end) -> (first, last)` and
`doc.page_span(page) -> (start, end)` of that page's text (see `ingest.records`). Ligature
glyphs are their letters ('ﬁ' is 'fi'), and the fonts of each line mark what a PDF's text cannot
say (`Document.layout`): a line set larger than the body is a heading; a line with more space
above it than a paragraph's lines have, or set wholly in another font than the one before, starts
a paragraph. A PDF's `sha` also names the pypdf version and PDF_READING, so a pypdf that extracts
differently, or a new reading, re-ingests it.

HTML becomes Markdown-like text: headings, paragraphs, list items, pipe tables, fenced
`<pre>`. Inline elements (`<a>`, `<code>`, `<em>`, …) join their neighbours as the browser
shows them, without invented spaces; block elements are separated; `<br>` ends a line.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LoadError
from .records import PAGE_SEP, Document

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
    page_starts: tuple[int, ...] = ()
    layout: tuple[tuple[int, str], ...] = ()
    if kind == "pdf":
        text, page_starts, extractor, layout = _pdf_text(data)
        sha = hashlib.sha1(data + b"\x00" + extractor.encode()).hexdigest()
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
    return Document(source=source, text=text, kind=kind, sha=sha, page_starts=page_starts, layout=layout)


RUNNING_SHARE = 0.5  # a first or last line found on this share of the pages (3 at least) is a running header or footer


def _without_running_lines(pages: list[str]) -> list[str]:
    """The pages without their running headers and footers: a first or last line that recurs on
    at least half of the pages (digits aside, so 'Page 3 of 17' and a bare '3' count as one), or
    that carries the page's number where at least half of the pages carry theirs (_page_numbering).
    The first page keeps its first line: a running header there is usually the title."""
    def key(line: str) -> str:
        return re.sub(r"\d+", "#", " ".join(line.split()))

    counts: dict[tuple[str, str], int] = {}
    for page in pages:
        lines = [ln for ln in page.split("\n") if ln.strip()]
        for where, got in (("first", lines[:1]), ("last", lines[-1:])):
            if got:
                counts[(where, key(got[0]))] = counts.get((where, key(got[0])), 0) + 1
    need = max(3, RUNNING_SHARE * len(pages))
    running = {k for k, n in counts.items() if n >= need}
    numbered = _page_numbering(pages, need)
    if not running and not numbered:
        return pages

    def runs(where: str, line: str, n: int) -> bool:
        return (where, key(line)) in running or (where, _page_number(line), n) in numbered

    out = []
    for n, page in enumerate(pages):
        lines = page.split("\n")
        filled = [i for i, ln in enumerate(lines) if ln.strip()]
        drop = set()
        if n and filled and runs("first", lines[filled[0]], n):  # page 1's is its title
            drop.add(filled[0])
        if filled and runs("last", lines[filled[-1]], n):
            drop.add(filled[-1])
        out.append("\n".join(ln for i, ln in enumerate(lines) if i not in drop))
    return out


_BROKEN_WORD = re.compile(r"\b([A-Za-z]*[a-z])-\n([a-z]+)\b")


def _joined_hyphenation(pages: list[str]) -> list[str]:
    """Words hyphenated at a line's end made whole again ('manip-' + 'ulation' is 'manipulation')
    when the document writes the whole word elsewhere; 'self-' + 'contained' stays as it is."""
    known = {w.lower() for page in pages for w in re.findall(r"[A-Za-z]+", page)}

    def join(m: re.Match) -> str:
        word = m.group(1) + m.group(2)
        return word if word.lower() in known else m.group(0)

    return [_BROKEN_WORD.sub(join, page) for page in pages]


def _page_number(line: str) -> int | None:
    """The number a line ends with ('Chapter 3: Utilities 6'), or else starts with ('12 Methods')."""
    m = re.search(r"(?<![\d.,])(\d{1,4})\s*$", line) or re.match(r"^\s*(\d{1,4})(?![\d.,])", line)
    return int(m.group(1)) if m else None


def _page_numbering(pages: list[str], need: float) -> set[tuple[str, int | None, int]]:
    """(first or last, number, page index) of the lines that carry the page's number: a running
    header whose words change from chapter to chapter ('Chapter 2: Structures 4', 'Chapter 3:
    Utilities 6') still ends with the page number, which runs with the page index."""
    offsets: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for n, page in enumerate(pages):
        lines = [ln for ln in page.split("\n") if ln.strip()]
        for where, got in (("first", lines[:1]), ("last", lines[-1:])):
            number = _page_number(got[0]) if got else None
            if number is not None:
                offsets.setdefault((where, number - n), []).append((number, n))
    return {(where, number, n) for (where, _), seen in offsets.items() if len(seen) >= need for number, n in seen}


PDF_READING = "fonts5"  # our own reading of a PDF's fonts (below): part of its sha, so a change re-ingests
HEADING_SIZE = 1.15  # a line whose letters are all at least this times the body size is a heading
MAX_HEADING_WORDS = 15
PARA_GAP = 1.4  # a line this many times further below the one before than usual starts a paragraph
# ligatures a PDF font may map a glyph to: the letters, so that 'ﬁnd' is 'find' to search and to read
_LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st", "\ufb06": "st"})


def _scale(m) -> float:
    return abs(float(m[0]) * float(m[3]) - float(m[1]) * float(m[2])) ** 0.5 if m else 1.0


def _page_lines(page) -> tuple[str, list[tuple[str, dict[tuple[str, float], int], float | None]]]:
    """A page's text (pypdf extract_text, its lines in reading order: _reading_order) and, for each
    of its lines, how many letters each (font, size) draws in it and the height on the page where its
    first letters are drawn; no lines when the pieces pypdf reports do not add up to its text."""
    pieces: list[tuple[str, str, float, float, float]] = []

    def visit(text, cm, tm, font, size) -> None:
        name = str((font or {}).get("/BaseFont", "")).lstrip("/")
        y = float(tm[4]) * float(cm[1]) + float(tm[5]) * float(cm[3]) + float(cm[5]) if tm and cm else 0.0
        x = float(tm[4]) * float(cm[0]) + float(tm[5]) * float(cm[2]) + float(cm[4]) if tm and cm else 0.0
        pieces.append((text, name.split("+", 1)[-1], round(float(size or 0) * _scale(tm) * _scale(cm), 1), y, x))

    text = page.extract_text(visitor_text=visit) or ""
    if "".join(p[0] for p in pieces) != text:
        return text, []
    lines: list[tuple[str, dict[tuple[str, float], int], float | None]] = []
    lefts: list[float | None] = []
    buf: list[str] = []
    styles: dict[tuple[str, float], int] = {}
    top: float | None = None
    left: float | None = None
    for piece, font, size, y, x in pieces:
        for k, part in enumerate(piece.split("\n")):
            if k:
                lines.append(("".join(buf), styles, top))
                lefts.append(left)
                buf, styles, top, left = [], {}, None, None
            buf.append(part)
            letters = sum(not c.isspace() for c in part)
            if letters:
                styles[(font, size)] = styles.get((font, size), 0) + letters
                top = y if top is None else top
                left = x if left is None else left
    lines.append(("".join(buf), styles, top))
    lefts.append(left)
    order = _reading_order(lines, lefts)
    if order != list(range(len(lines))):
        lines = [lines[i] for i in order]
        text = "\n".join(line for line, _, _ in lines)
    return text, lines


STRAY_SHARE = 0.25  # at most this share of a page's lines are put back in their place
COLUMN_SLACK = 36.0  # points (half an inch) right of the text's usual left edge: still the same column


def _reading_order(lines: list[tuple[str, dict, float | None]], lefts: list[float | None]) -> list[int]:
    """The order to read a page's lines in. A browser's PDF draws some lines after the rest of the
    page (the headings of a page printed by Chromium come at the end of its text): such a line, one
    that goes back up the page out of the page's downward run, is put back where its height places
    it, when it stands in the same column as that run and few lines do so (several columns read
    column by column are left as they are). A line with no letters goes with the line before it."""
    groups: list[list[int]] = []
    for i, (line, _, top) in enumerate(lines):
        if top is None or not line.strip() or not groups:
            if groups:
                groups[-1].append(i)
            else:
                groups.append([i])
            continue
        groups.append([i])
    heads = [(g, lines[g[0]][2]) for g in groups if lines[g[0]][2] is not None and lines[g[0]][0].strip()]
    if len(heads) < 3:
        return list(range(len(lines)))
    # the longest run down the page (heights not rising), by dynamic programming
    n = len(heads)
    best, prev = [1] * n, [-1] * n
    for j in range(n):
        for k in range(j):
            if heads[k][1] >= heads[j][1] - 0.5 and best[k] + 1 > best[j]:
                best[j], prev[j] = best[k] + 1, k
    j = max(range(n), key=lambda k: best[k])
    run: set[int] = set()
    while j >= 0:
        run.add(j)
        j = prev[j]
    edges = sorted(x for k in run if (x := lefts[heads[k][0][0]]) is not None)
    edge = edges[len(edges) // 4] if edges else 0.0
    # lines out of the run in its column are put back; others (another column, a button drawn at the
    # page's edge) stay where they are
    strays = [k for k in range(n) if k not in run and (lefts[heads[k][0][0]] or 0.0) <= edge + COLUMN_SLACK]
    if not strays or len(strays) > STRAY_SHARE * n:
        return list(range(len(lines)))
    kept = sorted(set(range(n)) - set(strays))
    placed = [(heads[k][0], heads[k][1], k in run) for k in kept]
    for k in strays:
        group, y = heads[k]
        at = next((p for p, (_, below, ran) in enumerate(placed) if ran and below < y), len(placed))
        placed.insert(at, (group, y, True))
    order = [i for group, _, _ in placed for i in group]
    taken = set(order)
    return [i for i in range(len(lines)) if i not in taken] + order


def _paragraph_starts(lines: list[tuple[str, dict, float | None]]) -> set[int]:
    """The lines of a page that start a paragraph by the space above them: a gap down from the line
    before more than PARA_GAP times the page's usual one, or a step back up the page (a new column,
    or a block drawn out of order)."""
    tops = [(i, y) for i, (line, _, y) in enumerate(lines) if line.strip() and y is not None]
    gaps = [(i, prev - y) for (_, prev), (i, y) in zip(tops, tops[1:])]
    down = sorted(g for _, g in gaps if g > 0.5)
    if len(down) < 3:
        return set()
    usual = down[len(down) // 4]  # a line's gap: most gaps are, and a paragraph's are longer
    return {i for i, g in gaps if g > PARA_GAP * usual or g < -usual}


HEADING_RUN = 3  # this many large lines in a row are a figure's labels or a title page, not headings


def _headings(lines: list[tuple[str, dict, float | None]], heading_size) -> dict[int, float]:
    """Line index -> size of the lines of a page set large enough to be headings, but for runs of
    HEADING_RUN or more such lines in a row (the labels of a diagram: 'ptr', 'len 5', 'capacity 5')."""
    found = {i: h for i, (line, styles, _) in enumerate(lines) if line.strip() and (h := heading_size(line, styles))}
    filled = [i for i, (line, _, _) in enumerate(lines) if line.strip()]
    out: dict[int, float] = {}
    run: list[int] = []
    for i in filled + [None]:
        if i is not None and i in found:
            run.append(i)
            continue
        if 0 < len(run) < HEADING_RUN:
            out.update((j, found[j]) for j in run)
        run = []
    return out


def _layout_marks(pages: list[list[tuple[str, dict, float | None]]]) -> list[dict[str, str]]:
    """For each page, its lines' marks by their text: 'heading:N' for a line set larger than the
    body text (N counts the sizes of such lines down from the largest); 'para' for a line with more
    space above it than between the lines of a paragraph (_paragraph_starts), or set wholly in
    another font than the line before it, also wholly in one ('Listing 16-1: Creating a new thread'
    in italics, then the body).

    Lines set wholly in a monospaced font were tried as code blocks and left out: a program's help
    output quoted in a manual became one long unit that outscored the sentences (docs set 0.746 →
    0.737)."""
    sizes: dict[float, int] = {}
    for lines in pages:
        for _, styles, _ in lines:
            for (_, size), n in styles.items():
                sizes[size] = sizes.get(size, 0) + n
    if not sizes:
        return [{} for _ in pages]
    body = max(sizes, key=lambda k: sizes[k])

    def heading_size(line: str, styles: dict) -> float | None:
        if not styles or not re.search(r"[A-Za-z]", line) or len(line.split()) > MAX_HEADING_WORDS:
            return None
        smallest = min(size for _, size in styles)
        return smallest if smallest >= HEADING_SIZE * body else None

    sized = [_headings(lines, heading_size) for lines in pages]
    levels = sorted({h for page in sized for h in page.values()}, reverse=True)
    out = []
    for lines, headings in zip(pages, sized):
        marks: dict[str, str] = {}
        spaced = _paragraph_starts(lines)
        before = None
        for i, (line, styles, _) in enumerate(lines):
            key = line.strip()
            if not key:
                continue
            h = headings.get(i)
            only = next(iter(styles)) if len(styles) == 1 else None
            if h is not None:
                marks.setdefault(key, f"heading:{min(levels.index(h) + 1, 6)}")
            elif i in spaced or (only is not None and before is not None and only != before):
                marks.setdefault(key, "para")
            before = only
        out.append(marks)
    return out


def _pdf_text(data: bytes) -> tuple[str, tuple[int, ...], str, tuple[tuple[int, str], ...]]:
    """The PDF's text, where each page starts in it, the extractor that read it, and the marks of
    its lines (offset of the line's start, 'heading:N' or 'para'; see _layout_marks)."""
    import io
    import logging

    import pypdf
    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise LoadError("the PDF is encrypted — save an unencrypted copy")
        read = [_page_lines(page) for page in reader.pages]
    except LoadError:
        raise
    except Exception as err:
        raise LoadError(
            f"broken or unreadable PDF ({type(err).__name__}) — check that it opens in a PDF viewer, or export it again"
        ) from None
    marks = _layout_marks([lines for _, lines in read])
    pages = [text.translate(_LIGATURES) for text, _ in read]
    marks = [{k.translate(_LIGATURES): v for k, v in m.items()} for m in marks]
    pages = _without_running_lines(pages)
    pages = _joined_hyphenation(pages)
    parts: list[str] = []
    starts: list[int] = []
    layout: list[tuple[int, str]] = []
    pos = 0
    for page, page_marks in zip(pages, marks):
        page = page.strip()
        if page and parts:
            pos += len(PAGE_SEP)
        starts.append(pos)  # an empty page starts (and ends) where the text so far ends
        if page:
            offset = pos
            for line in page.split("\n"):
                mark = page_marks.get(line.strip())
                if mark:
                    layout.append((offset, mark))
                offset += len(line) + 1
            parts.append(page)
            pos += len(page)
    return PAGE_SEP.join(parts), tuple(starts), f"pypdf {pypdf.__version__} {PDF_READING}", tuple(layout)


_BLOCKS = {"h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "table", "pre", "blockquote", "dt", "dd", "figcaption", "caption"}
# containers that hold blocks: their text is a paragraph of its own when it holds no block tag
_CONTAINERS = {"div", "section", "article", "main", "header", "footer", "aside", "ul", "ol", "dl", "figure", "form",
               "fieldset", "address", "details", "summary", "hgroup", "menu", "center"}
# everything a browser lays out on lines of its own; any other tag is inline and adds no space
_BREAKING = _BLOCKS | _CONTAINERS | {"tr", "td", "th", "thead", "tbody", "tfoot", "hr", "body", "html", "option"}
_SKIP = {"script", "style", "noscript", "template", "head", "nav", "svg", "iframe", "object"}
# blocks read block by block when they hold blocks: a definition, a quotation, and a paragraph left
# open ('<p>Text … <pre>code</pre> more text', which a browser closes at the <pre>)
_WALKED = {"p", "dd", "blockquote", "figcaption", "caption"}
_BR = "\x00"  # stands for <br> until the lines are cleaned (a loaded text has no NUL)


def _flat_text(node, pre: bool = False) -> str:
    """The text of a node as laid out inline: strings as they are, a space around each
    block-level descendant, _BR (or a newline inside <pre>) for <br>. Iterative: any depth."""
    from bs4 import NavigableString, Tag

    out: list[str] = []
    stack = [(iter(node.children), "")]
    while stack:
        children, closing = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            out.append(closing)
        elif type(child) is NavigableString:  # not comments, doctypes or CDATA
            out.append(str(child))
        elif isinstance(child, Tag):
            if child.name == "br":
                out.append("\n" if pre else _BR)
                continue
            sep = " " if child.name in _BREAKING and not pre else ""
            out.append(sep)
            stack.append((iter(child.children), sep))
    return "".join(out)


def _clean(s: str, lines: bool = False) -> str:
    """Whitespace collapsed; with `lines`, each <br> ends a line (empty lines dropped)."""
    if not lines:
        return " ".join(s.replace(_BR, " ").split()).replace("|", "/")
    kept = (" ".join(line.split()).replace("|", "/") for line in s.split(_BR))
    return "\n".join(line for line in kept if line)


def _fence(body: str) -> str:
    """A backtick fence longer than any backtick run that starts a line of the body."""
    import re

    runs = [len(m.group(1)) for m in re.finditer(r"^[ \t]*(`{3,})", body, re.M)]
    return "`" * max([3] + [n + 1 for n in runs])


_CHROME_ROLES = {"menu", "menubar", "navigation", "search", "toolbar", "dialog", "tablist"}


def _chrome(tag) -> bool:
    """An element a reader does not read as the page's text: a control, a menu (a theme picker's
    'Auto Light Rust Coal'), or hidden from everyone."""
    if tag.name in ("button", "select", "input"):
        return True
    attrs = tag.attrs or {}
    if "hidden" in attrs or str(attrs.get("aria-hidden", "")).lower() == "true":
        return True
    return str(attrs.get("role", "")).lower() in _CHROME_ROLES


# links that move between the pages of a manual ('Next: Memory Usage, Previous: …, Up: libffi [Index]')
_NAV_RELS = {"next", "prev", "previous", "up", "index", "contents", "toc", "start", "first", "last", "home"}
_NUMBERING = re.compile(r"^\s*\d+(?:\.\d+)*\.?\s*$")  # '2.1. ' before a contents entry's link
NAV_TEXT = 40  # characters of a navigation block's text outside its links ('Next: , Previous: , Up: []')


def _link_text(tag) -> str:
    return "".join(a.get_text() for a in tag.find_all("a"))


def _navigation(tag) -> bool:
    """A block that only moves the reader elsewhere: a bar of next/previous/up links (by their
    `rel`, as makeinfo writes them), or a list of links and nothing else but numbering and one
    short title (a table of contents: 'Table of Contents', '1. Introduction', '2.1. root'). Read as
    text it says only other pages' titles."""
    if tag.name in ("ul", "ol", "dl"):
        if len(tag.find_all("a", href=True)) < 2:
            return False
        others = [t for t in tag.find_all(string=True)
                  if re.search(r"\w", t) and not _NUMBERING.match(t) and not t.find_parent("a")]
        return len(others) == 0 or (len(others) == 1 and len(others[0].split()) <= 3)
    if tag.name not in ("p", "div") or tag.find(("h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "table", "pre")):
        return False
    links = tag.find_all("a")
    if not links or not all(set(a.get("rel") or ()) & _NAV_RELS or a.get("accesskey") for a in links):
        return False
    return len(tag.get_text()) - len(_link_text(tag)) <= NAV_TEXT


KEY_WORDS, VALUE_WORDS = 3, 20


def _keyed_pairs(dl) -> list[tuple[str, str]]:
    """A definition list of short keys, each with a short value ('0' / 'No error (normal
    operation)', '7' / 'Unsupported xsl:output method'): its (key, value) pairs, to be read as list
    items 'key: value', as a table's rows are; [] for any other list, whose terms head their
    definitions."""
    terms, values = dl.find_all("dt"), dl.find_all("dd")
    if len(terms) < 2 or len(terms) != len(values) or dl.find("dl"):
        return []
    pairs = []
    for dt, dd in zip(terms, values):
        key, value = _clean(_flat_text(dt)), _clean(_flat_text(dd))
        if (
            not key or not value or len(key.split()) > KEY_WORDS or len(value.split()) > VALUE_WORDS
            or len(blocks := dd.find_all(list(_BLOCKS | _CONTAINERS))) > 1
            or (blocks and blocks[0].name != "p")  # a definition of one paragraph at most
        ):
            return []
        pairs.append((key, value))
    return pairs


def html_to_text(html: str) -> str:
    """Readable text with Markdown structure: headings, paragraphs, list items, pipe tables.

    Text outside the usual block tags (in a <div>, a <section>, or bare in <body>) is kept as
    paragraphs too: nothing on the page is dropped but scripts, styles, navigation (<nav>, bars of
    next/previous/up links, tables of contents made only of links) and chrome (controls, menus,
    elements hidden by `hidden` or `aria-hidden`). A definition list's term (<dt>) is a heading one
    level below the page's last, its definition (<dd>) the text under it.
    Inline elements join their neighbours without added spaces (`Run <code>rustdoc</code>.`
    is `Run rustdoc.`); `<br>` ends a line of a paragraph (a space in headings, items and
    cells); `<pre>` keeps its lines, fenced as code.
    """
    import re

    from bs4 import BeautifulSoup, NavigableString, Tag

    soup = BeautifulSoup(html.replace("\x00", ""), "html.parser")
    for tag in soup(list(_SKIP)):
        tag.decompose()
    for tag in soup.find_all(_chrome):  # menus, buttons and hidden elements are page chrome
        if not tag.decomposed:
            tag.decompose()
    for tag in soup.find_all(("ul", "ol", "dl", "p", "div")):
        if not tag.decomposed and _navigation(tag):
            tag.decompose()
    for dl in soup.find_all("dl"):
        if not dl.decomposed and (pairs := _keyed_pairs(dl)):
            ul = soup.new_tag("ul")
            for key, value in pairs:
                li = soup.new_tag("li")
                li.string = f"{key}: {value}"
                ul.append(li)
            dl.replace_with(ul)
    out: list[str] = []
    level = [0]  # the level of the last heading written

    def emit(el: Tag) -> None:
        name = el.name
        if name[0] == "h" and name[1:].isdigit():
            text = _clean(_flat_text(el))
            if text:
                level[0] = int(name[1])
                out.append("#" * level[0] + " " + text)
        elif name == "dt":
            # a term of a definition list names what its <dd> says: a heading one level below the
            # page's last (deeper in a nested list), so the definition's sentences sit under it
            text = _clean(_flat_text(el))
            if text:
                depth = min(6, level[0] + len(el.find_parents("dl")))
                out.append("#" * max(depth, 1) + " " + text)
        elif name == "table":
            rows = []
            for tr in el.find_all("tr"):
                cells = [_clean(_flat_text(c)) for c in tr.find_all(["th", "td"])]
                if cells:
                    rows.append("| " + " | ".join(cells) + " |")
            if rows:
                # a header row only when the table marks one (a <thead>, or a first row all <th>): a
                # list laid out as a table ('query' / 'dump the inputs …') has none
                first = el.find("tr")
                filled = [c for c in first.find_all(["th", "td"]) if c.get_text(strip=True)] if first else []
                if el.find("thead") or (filled and all(c.name == "th" for c in filled)):
                    width = rows[0].count("|") - 1
                    rows.insert(1, "|" + "---|" * width)
                out.append("\n".join(rows))
        elif name == "li":
            text = _clean(_flat_text(el))
            if text:
                out.append("- " + text)
        elif name == "pre":
            # the browser drops one newline right after <pre>; blank edges carry nothing
            body = re.sub(r"\A(?:[ \t]*\r?\n)+", "", _flat_text(el, pre=True)).rstrip()
            if body:
                fence = _fence(body)
                out.append(f"{fence}\n{body}\n{fence}")
        else:
            text = _clean(_flat_text(el), lines=True)
            if text:
                out.append(text)

    def walk(node: Tag) -> None:
        loose: list[str] = []  # inline text between blocks becomes a paragraph

        def flush() -> None:
            text = _clean("".join(loose), lines=True)
            if text:
                out.append(text)
            loose.clear()

        for child in node.children:
            if isinstance(child, NavigableString):
                if type(child) is NavigableString:  # not comments, doctypes or CDATA
                    loose.append(str(child))
            elif isinstance(child, Tag):
                if child.name == "br":
                    loose.append(_BR)
                elif child.name in _BLOCKS and not (child.name in _WALKED and child.find(list(_BLOCKS | _CONTAINERS))):
                    flush()
                    emit(child)
                elif child.find(list(_BLOCKS | _CONTAINERS)):
                    flush()
                    walk(child)
                elif child.name in _BREAKING:
                    flush()
                    loose.append(_flat_text(child))
                    flush()
                else:  # inline: part of the running paragraph
                    loose.append(_flat_text(child))
        flush()

    walk(soup)
    return "\n\n".join(out) + ("\n" if out else "")
