"""Parsing and chunking without a store: the raw web-page seed, the Markdown corpus,
synthetic long sections and tables, HTML loading. Offsets are checked exactly."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from ingest.chunk import chunk_document
from ingest.load import html_to_text, load_file, load_paths
from ingest.records import Document
from ingest.sentences import sentence_spans
from ingest.structure import parse_blocks, sections

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "tests" / "data" / "rsp_seed.txt"
CORPUS_MD = REPO / "corpus" / "anthropic-rsp-review.md"
ARTEFACT = "Section titled “"
TARGET = 160
OVERLAP = 32


def words(s: str) -> int:
    """A stand-in token counter where the real tokenizer is not the point."""
    return len(s.split())


@pytest.fixture(scope="module")
def seed_doc() -> Document:
    doc = load_file(SEED, "rsp_seed.txt")
    assert doc.kind == "text"
    return doc


@pytest.fixture(scope="module")
def md_doc() -> Document:
    doc = load_file(CORPUS_MD, "anthropic-rsp-review.md")
    assert doc.kind == "markdown"
    return doc


@pytest.fixture(scope="module")
def seed_chunked(seed_doc):
    return chunk_document(seed_doc, words, TARGET, OVERLAP)


@pytest.fixture(scope="module")
def md_chunked(md_doc, embedder):
    return chunk_document(md_doc, embedder.count_tokens, TARGET, OVERLAP)


def _expected_seed_headings(raw: str) -> tuple[list[str], list[str]]:
    """Headings of the raw seed, found independently of the parser.

    A heading is the line before a `Section titled “<heading>”` line; after the closing
    quote the same line goes on with the next paragraph or the next heading (returned as
    `rests`, in order, for the artefacts that have one).
    """
    titles, rests = [], []
    prev = None
    for line in raw.splitlines():
        if prev is not None and prev.strip():
            marker = f"{ARTEFACT}{prev.strip()}”"
            if line.startswith(marker):
                titles.append(prev.strip())
                line = line[len(marker):]
                if line.strip():
                    rests.append(line)
        prev = line
    return titles, rests


def _table_rows(text: str, block) -> list[tuple[int, int]]:
    rows, pos = [], block.start
    for line in text[block.start : block.end].split("\n"):
        if line.strip():
            rows.append((pos, pos + len(line)))
        pos += len(line) + 1
    return rows


def _long_section_text() -> tuple[str, list[str]]:
    """One section of 40 sentences of varied prose, in a single paragraph."""
    subjects = [
        "The harbour authority", "An independent auditor", "The city council", "Our field team",
        "A small laboratory in the valley", "The regional water board", "Each of the reviewers", "The ferry operator",
    ]
    verbs = [
        "published a detailed report on", "raised fresh concerns about", "spent three months studying",
        "quietly changed its position on", "asked the ministry for more evidence about", "built a prototype to measure",
        "held public meetings on",
    ]
    objects = [
        "the flooding of the northern valley", "the cost of replacing the old stone bridges",
        "how migrating birds find their way home", "the safety of autonomous ferries at night",
        "the quality of drinking water in rural towns", "the long-term effects of night shifts on nurses",
        "why the spring tides arrived early", "the noise from the new container terminal", "erosion along the dunes",
    ]
    tails = [
        "", " after a difficult winter", " despite strong objections from local farmers",
        " with help from two universities", " for the third year in a row", " before the budget vote in May",
    ]
    sentences = [
        f"{subjects[i % 8]} {verbs[(i * 3) % 7]} {objects[(i * 5) % 9]}{tails[(i * 7) % 6]}." for i in range(40)
    ]
    return "# Harbour notes\n\n## Findings of the year\n\n" + " ".join(sentences) + "\n", sentences


def _table_text(n_rows: int = 60) -> tuple[str, str, list[str]]:
    header = "| Station | Date | Reading | Observer note |\n|---|---|---|---|"
    rows = [
        f"| S-{i:02d} | 2024-{1 + i % 12:02d}-{1 + i % 28:02d} | {i * 3.7:.1f} mm | "
        f"{'dry spell, gauge clear' if i % 3 else 'heavy rain after noon, gutter overflowed'} |"
        for i in range(n_rows)
    ]
    text = (
        "# Gauges\n\n## Rainfall by station\n\nThe table lists the daily readings of every gauge.\n\n"
        + header + "\n" + "\n".join(rows)
        + "\n\nAfter the table comes a short closing remark about the readings.\n"
    )
    return text, header, rows


# -- the raw web-page seed ---------------------------------------------------------


def test_seed_every_section_titled_heading_is_a_heading_block(seed_doc):
    titles, _ = _expected_seed_headings(seed_doc.text)
    # every artefact in the file belongs to a heading found above
    assert len(titles) == seed_doc.text.count(ARTEFACT) >= 25
    headings = [b for b in parse_blocks(seed_doc.text, "text") if b.kind == "heading"]
    # the first line is the page title; all others are the Section-titled headings, in order
    assert headings[0].title == "Safety Framework" and headings[0].level == 1
    assert [h.title for h in headings[1:]] == titles
    for h in headings:
        assert seed_doc.text[h.start : h.end].strip() == h.title
    # numbered sub-headings sit below their parent
    levels = {h.title: h.level for h in headings}
    assert levels["Capability thresholds: four risk categories"] == 2
    assert levels["2. Cybersecurity"] == 3
    assert levels["RSP v3: the structural turn"] == 2
    assert levels["2. The pause commitment is rescinded"] == 3


def test_seed_artefact_never_reaches_blocks_chunks_or_units(seed_doc, seed_chunked):
    chunks, units = seed_chunked
    assert chunks and units
    for _, block in sections(parse_blocks(seed_doc.text, "text")):
        assert "Section titled" not in seed_doc.text[block.start : block.end]
    for c in chunks:
        assert "Section titled" not in c.text
        assert "Section titled" not in c.embed_text()
    for u in units:
        assert "Section titled" not in u.text


def test_seed_text_after_the_artefact_starts_a_block_with_its_real_first_words(seed_doc, seed_chunked):
    text = seed_doc.text
    blocks = parse_blocks(text, "text")
    _, rests = _expected_seed_headings(text)
    assert len(rests) >= 20
    for rest in rests:
        starts = [b for b in blocks if text[b.start : b.end].startswith(rest.strip()[:40])]
        titles = [b for b in blocks if b.kind == "heading" and b.title == rest.strip()]
        assert starts or titles, f"no block starts with {rest[:60]!r}"
    chunks, units = seed_chunked
    first = "When Anthropic first published"
    assert any(c.text.startswith(first) for c in chunks)
    assert any(u.text.startswith(first) for u in units)
    for opening in ("RSP v3 specifies thresholds", "ASL-3 trigger: providing materially", "Core change: commitments"):
        assert any(c.text.startswith(opening) for c in chunks), opening
    # a table that starts right after an artefact is still a table, header and all
    tables = [b for b in blocks if b.kind == "table"]
    assert any(text[b.start : b.end].startswith("| Level | Corresponding capability") for b in tables)
    assert all(b.header_end > b.start for b in tables)


def test_seed_heading_trails(seed_chunked):
    chunks, _ = seed_chunked
    by_section: dict[tuple[str, ...], list[str]] = {}
    for c in chunks:
        by_section.setdefault(c.section, []).append(c.text)
    cyber = by_section[("Capability thresholds: four risk categories", "2. Cybersecurity")]
    assert cyber[0].startswith("ASL-3 trigger: providing materially elevated uplift")
    assert "Claude 4.x lies close" in " ".join(cyber)
    assert ("RSP v3: the structural turn", "2. The pause commitment is rescinded") in by_section
    assert by_section[("ASL definitions",)][0].startswith("| Level |")
    # the page title is not repeated in every trail
    assert all(not s or s[0] != "Safety Framework" for s in by_section)


# -- the Markdown corpus ---------------------------------------------------------------


def test_markdown_heading_trails(md_chunked):
    chunks, units = md_chunked
    sections_seen = [c.section for c in chunks]
    cyber = [c for c in chunks if c.section == ("Capability thresholds: four risk categories", "2. Cybersecurity")]
    assert len(cyber) == 1 and cyber[0].text.startswith("ASL-3 trigger: providing materially elevated uplift")
    assert ("Academic critique", "Bengio: minimum requirements for effective commitments") in sections_seen
    assert ("Industry-practice observations", "SB 53 Frontier Compliance Framework") in sections_seen
    assert ("Version timeline",) in sections_seen
    assert all(not s or s[0] != "Safety Framework" for s in sections_seen)
    for u in units:
        owner = next(c for c in chunks if c.id == u.chunk_id)
        assert u.section == owner.section


def test_markdown_table_rows_each_wholly_inside_exactly_one_chunk(md_doc, md_chunked):
    chunks, _ = md_chunked
    tables = [b for b in parse_blocks(md_doc.text, "markdown") if b.kind == "table"]
    assert len(tables) == 4
    for table in tables:
        for a, b in _table_rows(md_doc.text, table):
            holders = [c for c in chunks if c.start <= a and b <= c.end]
            assert len(holders) == 1, md_doc.text[a:b]
            cut = [c for c in chunks if c.start < b and a < c.end and not (c.start <= a and b <= c.end)]
            assert not cut, f"row split by a chunk: {md_doc.text[a:b][:60]!r}"


def test_markdown_table_continuations_carry_the_header(md_doc, md_chunked):
    chunks, _ = md_chunked
    text = md_doc.text
    continued = 0
    for table in (b for b in parse_blocks(text, "markdown") if b.kind == "table"):
        header = text[table.start : table.header_end]
        assert header.count("\n") == 1 and header.splitlines()[1].startswith("|---")
        body = [r for r in _table_rows(text, table) if r[0] > table.header_end]
        for c in chunks:
            holds_rows = any(c.start <= a and b <= c.end for a, b in body)
            if not holds_rows:
                continue
            if c.start <= table.start and table.header_end <= c.end:
                assert c.header == ""
            else:
                continued += 1
                assert c.header == header
                assert c.embed_text().startswith(" › ".join(c.section) + "\n" + header + "\n")
    assert continued >= 3  # the corpus has tables long enough to be cut


def test_markdown_paragraphs_whole_when_they_fit(md_doc, md_chunked, embedder):
    chunks, _ = md_chunked
    checked = 0
    for _, block in sections(parse_blocks(md_doc.text, "markdown")):
        if block.kind not in ("paragraph", "item"):
            continue
        if embedder.count_tokens(md_doc.text[block.start : block.end]) > TARGET:
            continue
        checked += 1
        assert any(c.start <= block.start and block.end <= c.end for c in chunks), md_doc.text[block.start : block.end][:80]
    assert checked > 40


def _single_unit(text: str, c) -> bool:
    """A chunk that is one sentence or one table row: allowed to exceed the target."""
    is_row = c.text.startswith("|") and "\n" not in c.text
    return is_row or len(sentence_spans(text, c.start, c.end)) == 1


@pytest.mark.parametrize("which", ["markdown", "seed"])
def test_chunk_tokens_within_target(which, md_doc, seed_doc, embedder):
    doc = md_doc if which == "markdown" else seed_doc
    chunks, _ = chunk_document(doc, embedder.count_tokens, TARGET, OVERLAP)
    for c in chunks:
        n = embedder.count_tokens(c.text)
        assert n <= TARGET or _single_unit(doc.text, c), (n, c.text[:80])


def test_continued_table_chunk_with_its_header_stays_within_target(md_doc, md_chunked, embedder):
    chunks, _ = md_chunked
    continued = [c for c in chunks if c.header]
    assert continued
    for c in continued:
        assert embedder.count_tokens(c.header + "\n" + c.text) <= TARGET, c.text[:80]


# -- synthetic sections and tables ----------------------------------------------------------


def test_long_section_is_split_with_a_one_sentence_overlap(embedder):
    text, sentences = _long_section_text()
    doc = Document("long.md", text, "markdown", "sha")
    chunks, units = chunk_document(doc, embedder.count_tokens, TARGET, OVERLAP)
    assert len(chunks) >= 3
    assert all(c.section == ("Findings of the year",) for c in chunks)
    # every sentence is whole in some chunk, and a unit of its own
    for s in sentences:
        a = text.index(s)
        assert any(c.start <= a and a + len(s) <= c.end for c in chunks), s
    assert sorted(u.text for u in units) == sorted(sentences)
    overlaps = 0
    for prev, nxt in zip(chunks, chunks[1:]):
        assert nxt.start > prev.start and nxt.end > prev.end
        assert nxt.start - prev.end <= 1  # no text falls between two chunks
        if nxt.start < prev.end:
            shared = text[nxt.start : prev.end]
            assert shared in sentences, f"overlap is not one whole sentence: {shared!r}"
            assert embedder.count_tokens(shared) <= OVERLAP
            overlaps += 1
    assert overlaps >= 1


def test_long_section_chunks_stay_within_target(embedder):
    text, _ = _long_section_text()
    doc = Document("long.md", text, "markdown", "sha")
    chunks, _ = chunk_document(doc, embedder.count_tokens, TARGET, OVERLAP)
    assert len(chunks) >= 3
    assert max(embedder.count_tokens(c.text) for c in chunks) <= TARGET


@pytest.mark.parametrize("counter", ["words", "tokenizer"])
def test_long_table_is_split_with_its_header_and_no_row_split(counter, embedder):
    count = words if counter == "words" else embedder.count_tokens
    text, header, rows = _table_text(60)
    doc = Document("table.md", text, "markdown", "sha")
    chunks, units = chunk_document(doc, count, TARGET, OVERLAP)
    table_chunks = [c for c in chunks if any(r in c.text for r in rows)]
    assert len(table_chunks) >= 3
    for r in rows:
        a = text.index(r)
        assert sum(c.start <= a and a + len(r) <= c.end for c in chunks) == 1, r
        assert not any(c.start < a + len(r) and a < c.end and not (c.start <= a and a + len(r) <= c.end) for c in chunks)
    first, *rest = table_chunks
    assert header in first.text and first.header == ""
    for c in rest:
        assert c.header == header and header not in c.text
        assert c.text.startswith("| S-")
        assert count(c.header + "\n" + c.text) <= TARGET
    assert "closing remark" in chunks[-1].text
    rows_units = [u for u in units if u.kind == "row"]
    assert [u.text for u in rows_units] == rows
    assert all(u.header == header.splitlines()[0] for u in rows_units)
    assert rows_units[0].embed_text() == (
        "Rainfall by station: Station: S-00; Date: 2024-01-01; Reading: 0.0 mm; "
        "Observer note: heavy rain after noon, gutter overflowed"
    )


def _html_table_text(n_rows: int) -> tuple[str, list[str]]:
    rows = [
        f"  <tr>\n    <td><kbd>Ctrl</kbd>+<kbd>{chr(65 + i % 26)}{i}</kbd></td>\n    <td>Action number {i}</td>\n  </tr>"
        for i in range(n_rows)
    ]
    text = (
        "# Keys\n\n## Bindings\n\nThe keys below work in the terminal.\n\n<table>\n"
        "  <tr>\n    <th>Keybindings</th>\n    <th>Description</th>\n  </tr>\n"
        + "\n".join(rows) + "\n</table>\n\nA closing remark follows the table.\n"
    )
    return text, rows


@pytest.mark.parametrize("n_rows", [3, 60])
def test_an_html_table_in_markdown_is_a_table_of_rows(n_rows, embedder):
    text, rows = _html_table_text(n_rows)
    tables = [b for b in parse_blocks(text) if b.kind == "table"]
    assert len(tables) == 1 and text[tables[0].start :].startswith("<table>")
    assert text[: tables[0].end].endswith("</table>")
    doc = Document("keys.md", text, "markdown", "sha")
    chunks, units = chunk_document(doc, embedder.count_tokens, TARGET, OVERLAP)
    row_units = [u for u in units if u.kind == "row"]
    assert [u.text for u in row_units] == [r.strip() for r in rows]  # one unit per <tr>, the header apart
    for u in row_units:
        assert text[u.start : u.end] == u.text
        assert sum(c.start <= u.start and u.end <= c.end for c in chunks) == 1
        assert "<th>Keybindings</th>" in u.header
    assert row_units[1].embed_text() == "Bindings: Keybindings: Ctrl+B1; Description: Action number 1"
    assert "closing remark" in chunks[-1].text
    if n_rows == 60:  # cut into several chunks, each continuation carrying the header row
        continued = [c for c in chunks if c.header]
        assert continued and all("<th>Description</th>" in c.header for c in continued)


def test_an_html_table_without_header_row_keeps_its_caption_and_every_row(embedder):
    rows = [f"<tr><td>Gauge {i}</td><td>{i} mm &amp; dry</td></tr>" for i in range(60)]
    text = "# Gauges\n\n<table>\n<caption>Daily readings</caption>\n" + "\n".join(rows) + "\n</table>\n"
    doc = Document("gauges.md", text, "markdown", "sha")
    chunks, units = chunk_document(doc, embedder.count_tokens, TARGET, OVERLAP)
    assert len(chunks) >= 2
    start, end = text.index("<table>"), text.index("</table>") + len("</table>")
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    assert all(i in covered for i in range(start, end) if not text[i].isspace())  # caption and </table> too
    row_units = [u for u in units if u.kind == "row"]
    assert [u.text for u in row_units] == rows and all(u.header == "" for u in row_units)
    assert row_units[3].embed_text().endswith("Gauge 3; 3 mm & dry")  # cells without tags, entities decoded


def test_an_html_table_that_never_closes_or_has_no_rows_is_read_as_text():
    for text in ("<table>\nnot a row here\n</table>\n", "<table>\n<tr><td>a</td></tr>\n"):
        assert [b.kind for b in parse_blocks(text)] == ["paragraph"]


def test_an_html_comment_in_markdown_is_one_verbatim_unit(embedder):
    """API docs keep version metadata in comments ('<!-- YAML added: v7.7.0 -->'); cut into sentences
    and items they gave units such as '-->' and 'v7.7.0', quoted as answers."""
    comment = "<!-- YAML\nadded:\n  - v7.7.0\n  - v6.13.0\n-->"
    text = f"# URL\n\n## `params.sort()`\n\n{comment}\n\nSort all pairs in place by their names.\n\n<!-- one line -->\n"
    assert [b.kind for b in parse_blocks(text)] == ["heading", "heading", "code", "paragraph", "code"]
    doc = Document("url.md", text, "markdown", "sha")
    _, units = chunk_document(doc, embedder.count_tokens, TARGET, OVERLAP)
    assert [u.text for u in units] == [comment, "Sort all pairs in place by their names.", "<!-- one line -->"]
    assert [b.kind for b in parse_blocks("<!-- never closed\n\nText.\n")] == ["paragraph", "paragraph"]


@pytest.mark.parametrize("kind", ["pdf", "text", "markdown"])
def test_a_list_item_goes_on_over_wrapped_lines_while_its_sentence_is_open(kind):
    """A PDF's text wraps an item's lines without indenting them: the item goes on while the line
    before leaves its sentence open, and stops at a line that ends one."""
    text = (
        "Each element may contain:\n"
        "• glob elements have a pattern attribute. Any file whose name matches will be given this\n"
        "MIME type. The default weight is\n"
        "50.\n"
        "Applications install one file each.\n"
    )
    blocks = [b for b in parse_blocks(text, kind) if b.kind != "heading"]
    item = next(b for b in blocks if b.kind == "item")
    assert text[item.start : item.end].endswith("The default weight is\n50.")
    assert text[blocks[-1].start : blocks[-1].end] == "Applications install one file each."


def test_a_sentence_is_not_cut_inside_inline_code():
    text = "If the joined path is empty then `'.'` will be returned, meaning the current\ndirectory. Call `a.b()` next."
    assert [text[a:b] for a, b in sentence_spans(text, 0, len(text))] == [
        "If the joined path is empty then `'.'` will be returned, meaning the current\ndirectory.",
        "Call `a.b()` next.",
    ]


def test_a_sentence_is_not_cut_after_et_al():
    text = "Anderljung et al. (Frontier AI Regulation, 2023) propose three pillars. The RSP advances one."
    assert [text[a:b] for a, b in sentence_spans(text, 0, len(text))] == [
        "Anderljung et al. (Frontier AI Regulation, 2023) propose three pillars.",
        "The RSP advances one.",
    ]


def test_each_option_of_a_usage_text_is_a_unit():
    """A usage text has no sentence stops: each option's line is a unit of its own, its description
    wrapped in lower case goes with it, and the lines after the last option are not about it."""
    text = ("Usage: gauge [OPTION] FILE\nReads FILE and prints the tide levels in it.\n-s, --strict reject a\n"
            "level out of range\n--output=FILE output file\n-v, --version print the version and exit\n"
            "Report bugs to: harbour@example.org")
    assert [text[a:b] for a, b in sentence_spans(text, 0, len(text))] == [
        "Usage: gauge [OPTION] FILE\nReads FILE and prints the tide levels in it.",
        "-s, --strict reject a\nlevel out of range",
        "--output=FILE output file",
        "-v, --version print the version and exit",
        "Report bugs to: harbour@example.org",
    ]
    prose = "Tools should not call gauge\n--strict on a level out of range, or similar\napproaches. It fails."
    assert [prose[a:b] for a, b in sentence_spans(prose, 0, len(prose))] == [prose[:-10], "It fails."]


def test_every_sentence_of_a_long_list_item_is_a_unit(embedder):
    readings = ", ".join(f"{i * 1.7:.1f}" for i in range(35))
    item = f"- Readings in March: {readings}. Readings in April: {readings}."
    text = "# Gauges\n\n## Data\n\n" + item + "\n- Short item.\n"
    assert len(item) < 600 and embedder.count_tokens(item) > TARGET
    doc = Document("items.md", text, "markdown", "sha")
    chunks, units = chunk_document(doc, embedder.count_tokens, TARGET, OVERLAP)
    assert len(chunks) >= 2
    assert any(u.text.startswith("Readings in March") for u in units)
    assert any(u.text.startswith("Readings in April") for u in units)


# -- offsets and ids ----------------------------------------------------------------


@pytest.mark.parametrize("which", ["markdown", "seed"])
def test_every_chunk_and_unit_is_an_exact_span(which, md_doc, seed_doc, embedder):
    doc = md_doc if which == "markdown" else seed_doc
    chunks, units = chunk_document(doc, embedder.count_tokens, TARGET, OVERLAP)
    assert len(chunks) > 20 and len(units) > 80
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text and c.text.strip() == c.text
        assert c.source == doc.source
    ids = {c.id for c in chunks}
    for u in units:
        assert doc.text[u.start : u.end] == u.text and u.text
        assert u.chunk_id in ids
        owner = next(c for c in chunks if c.id == u.chunk_id)
        assert owner.start <= u.start and u.end <= owner.end
    # the units cover every sentence, item and table row (table header rows excepted)
    covered = bytearray(len(doc.text))
    for u in units:
        covered[u.start : u.end] = b"\x01" * (u.end - u.start)
    headers = [(b.start, b.header_end) for b in parse_blocks(doc.text, doc.kind) if b.kind == "table"]
    for _, block in sections(parse_blocks(doc.text, doc.kind)):
        left = "".join(
            ch for i, ch in enumerate(doc.text[block.start : block.end], block.start)
            if not covered[i] and not any(a <= i < b for a, b in headers)
        )
        assert not re.sub(r"[\s|\-:•*]+", "", left), f"not in any unit: {left[:80]!r}"


@pytest.mark.parametrize("which", ["markdown", "seed"])
def test_ids_are_deterministic_and_unique(which, md_doc, seed_doc, embedder):
    doc = md_doc if which == "markdown" else seed_doc
    path = CORPUS_MD if which == "markdown" else SEED
    c1, u1 = chunk_document(doc, embedder.count_tokens, TARGET, OVERLAP)
    again = load_file(path, doc.source)  # loaded afresh
    c2, u2 = chunk_document(again, embedder.count_tokens, TARGET, OVERLAP)
    assert [c.id for c in c1] == [c.id for c in c2]
    assert [u.id for u in u1] == [u.id for u in u2]
    assert len({c.id for c in c1}) == len(c1)
    assert len({u.id for u in u1}) == len(u1)
    assert not {c.id for c in c1} & {u.id for u in u1}
    # ids depend on the source: the same text under another name gets other ids
    other = Document("elsewhere/" + doc.source, doc.text, doc.kind, doc.sha)
    c3, _ = chunk_document(other, embedder.count_tokens, TARGET, OVERLAP)
    assert not {c.id for c in c1} & {c.id for c in c3}


# -- HTML and other loading ------------------------------------------------------------------------

HTML = """<!doctype html>
<html><head><title>Page title</title>
<script>var secret = "SCRIPT_SECRET";</script><style>.note { color: red }</style></head>
<body>
<h1>Harbour gauges</h1>
<p>The gauges were read <b>every</b> morning
   by the harbour master.</p>
<h2>Stations</h2>
<ul><li>North ridge</li><li>South pier</li></ul>
<table>
  <thead><tr><th>Station</th><th>Reading</th></tr></thead>
  <tbody><tr><td>North ridge</td><td>12 mm</td></tr><tr><td>South pier</td><td>7 mm</td></tr></tbody>
</table>
<script>document.write("INLINE_SCRIPT")</script>
<p>Closing words.</p>
</body></html>
"""


def test_html_loading_keeps_structure_and_drops_scripts(tmp_path):
    path = tmp_path / "gauges.html"
    path.write_text(HTML, encoding="utf-8")
    doc = load_file(path, "gauges.html")
    assert doc.kind == "html"
    assert doc.text == html_to_text(HTML)
    assert "SCRIPT_SECRET" not in doc.text and "INLINE_SCRIPT" not in doc.text and "color" not in doc.text
    blocks = parse_blocks(doc.text, "html")
    heads = [(b.level, b.title) for b in blocks if b.kind == "heading"]
    assert heads == [(1, "Harbour gauges"), (2, "Stations")]
    paras = [doc.text[b.start : b.end] for b in blocks if b.kind == "paragraph"]
    assert paras == ["The gauges were read every morning by the harbour master.", "Closing words."]
    items = [doc.text[b.start : b.end] for b in blocks if b.kind == "item"]
    assert items == ["- North ridge", "- South pier"]
    tables = [b for b in blocks if b.kind == "table"]
    assert len(tables) == 1
    table = tables[0]
    assert doc.text[table.start : table.header_end].splitlines()[0] == "| Station | Reading |"
    assert doc.text[table.start : table.end].splitlines()[2:] == ["| North ridge | 12 mm |", "| South pier | 7 mm |"]
    chunks, units = chunk_document(doc, words, TARGET, OVERLAP)
    assert {c.section for c in chunks} == {(), ("Stations",)}  # the lone h1 is the document title
    rows = [u for u in units if u.kind == "row"]
    assert [u.embed_text() for u in rows] == [
        "Stations: Station: North ridge; Reading: 12 mm",
        "Stations: Station: South pier; Reading: 7 mm",
    ]


def test_html_text_outside_paragraph_tags_is_kept():
    html = "<html><body><h1>Report</h1><div>The gauges overflowed twice in March.</div></body></html>"
    assert "The gauges overflowed twice in March." in html_to_text(html)


def test_corpus_folder_reached_through_a_symlink_keeps_relative_sources(tmp_path):
    real = tmp_path / "real"
    for sub, words_ in (("sub1", "Rivers rose after the storm."), ("sub2", "Mountains kept their snow.")):
        (real / sub).mkdir(parents=True)
        (real / sub / "a.md").write_text(f"# Note\n\n{words_}\n", encoding="utf-8")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert sorted(d.source for d in load_paths([real]).documents) == ["sub1/a.md", "sub2/a.md"]
    assert sorted(d.source for d in load_paths([link]).documents) == ["sub1/a.md", "sub2/a.md"]


def test_text_loading_rejects_bad_bytes_with_one_line(tmp_path):
    from ingest.errors import LoadError

    bad = tmp_path / "menu.txt"
    bad.write_bytes(b"caf\xe9 au lait\n")
    with pytest.raises(LoadError) as err:
        load_file(bad, "menu.txt")
    assert "UTF-8" in str(err.value) and "\n" not in str(err.value)
    bom = tmp_path / "bom.md"
    bom.write_bytes("\ufeff# Title\n\nBody text here.\n".encode("utf-8"))
    assert load_file(bom, "bom.md").text.startswith("# Title")


# -- HTML inline and block elements ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "html, text",
    [
        ("<p>Run <code>rustdoc</code>.</p>", "Run rustdoc."),
        ("<p>See <a href='#x'>the guide</a>, <em>then</em> <strong>stop</strong>!</p>", "See the guide, then stop!"),
        # nested inline elements, and a word made of several
        ("<p>See <a href='#x'>the <em>new <code>cargo</code></em> guide</a>.</p>", "See the new cargo guide."),
        ("<p>un<b>break</b><i>able</i> (<span>really</span>)</p>", "unbreakable (really)"),
        # inline elements at line ends of the source: the newline is a space
        ("<p>Read the\n  <a href='#x'>guide</a>\n</p>", "Read the guide"),
        ("<p><em>one</em>\n<em>two</em></p>", "one two"),
        # inline text bare in the body, around a block
        ("<body>Run <code>rustdoc</code>.<div>Block <b>text</b>.</div>Tail <i>end</i>.</body>",
         "Run rustdoc.\n\nBlock text.\n\nTail end."),
        ("<div>Hello <b>world</b><p>Para <code>x</code>.</p> tail</div>", "Hello world\n\nPara x.\n\ntail"),
        # blocks still separate, inside items and cells too
        ("<div>one</div><div>two</div>", "one\n\ntwo"),
        ("<ul><li>Use <code>ls</code>.</li><li><p>First.</p><p>Second.</p></li></ul>", "- Use ls.\n\n- First. Second."),
        ("<table><tr><th>Tool</th><th>Use</th></tr><tr><td><code>cargo</code>s</td><td>build <em>it</em></td></tr></table>",
         "| Tool | Use |\n|---|---|\n| cargos | build it |"),
        ("<h2>The <code>rustdoc</code> book</h2>", "## The rustdoc book"),
        # <br> ends a line of a paragraph; a space in headings, items and cells
        ("<p>Harbour Office<br>12 Quay <b>Street</b><br/>Portsmouth</p>", "Harbour Office\n12 Quay Street\nPortsmouth"),
        ("<h3>One<br>two</h3><ul><li>a<br>b</li></ul>", "### One two\n\n- a b"),
        ("<body>Line one<br>Line <a>two</a></body>", "Line one\nLine two"),
        # <pre> keeps its lines and indentation, fenced as code
        ("<pre>\nfn main() {\n    println!(\"hi\");\n}\n</pre>", "```\nfn main() {\n    println!(\"hi\");\n}\n```"),
        ("<pre><code>let a = 1;<br>let  b = <b>2</b>;</code></pre>", "```\nlet a = 1;\nlet  b = 2;\n```"),
        ("<pre>a\n```\nb</pre>", "````\na\n```\nb\n````"),
        # page chrome is not text: controls, menus, hidden elements
        ('<ul role="menu"><li><button>Auto</button></li><li>Light</li></ul><p>Lints help.</p>', "Lints help."),
        ('<p>Kept<span aria-hidden="true"> #</span>.</p><div hidden>Search results</div>', "Kept."),
        ("<p>Press <button>Copy</button> the code.</p>", "Press the code."),
        # navigation is not text: a bar of next/previous/up links, a list of links and nothing else
        ('<div class="header"><p>Next: <a href="b.html" rel="next">Types</a>, Up: <a href="i.html" rel="up">Top</a></p>'
         "</div><h2>2 Use</h2>", "## 2 Use"),
        ('<ul><li><a href="a.html">Basics</a></li><li><a href="b.html">Types</a></li></ul><p>Text.</p>', "Text."),
        ('<dl><dt><b>Contents</b></dt><dt>1. <a href="#a">Intro</a></dt><dt>2. <a href="#b">Groups</a></dt></dl>', ""),
        # a list with words beside its links, and a single 'next' link inside a sentence, are text
        ('<ul><li><a href="a.pdf">Tides</a>, 2019.</li><li><a href="b.pdf">Gauges</a>, 2021.</li></ul>',
         "- Tides, 2019.\n\n- Gauges, 2021."),
        ('<p>Read <a href="b.html" rel="next">the next chapter</a> once the gauges are installed and tested.</p>',
         "Read the next chapter once the gauges are installed and tested."),
        # a definition list: each term is a heading one level below the page's, its definition under it
        ("<h2>Groups</h2><dl><dt>staff</dt><dd><p>Edits /usr/local.</p><dl><dt>src</dt><dd>Owns sources.</dd></dl></dd>"
         "</dl>", "## Groups\n\n### staff\n\nEdits /usr/local.\n\n#### src\n\nOwns sources."),
        ("<dl><dt>term</dt><dd>Its meaning.</dd></dl>", "# term\n\nIts meaning."),
        # a paragraph left open runs into a <pre>: the browser closes it there, and so does the reader
        ("<p>Intro <b>text</b>.<pre>code()</pre>After the code.<p>Next.", "Intro text.\n\n```\ncode()\n```\n\nAfter the code.\n\nNext."),
        ("<blockquote><p>One.</p><p>Two.</p></blockquote>", "One.\n\nTwo."),
    ],
)
def test_html_inline_elements_join_and_blocks_separate(html, text):
    assert html_to_text(html) == (text + "\n" if text else "")


def test_html_inline_code_is_quoted_without_invented_spaces():
    html = (
        "<h1>Docs</h1><h2>Building</h2><p>Run <code>rustdoc</code> on the crate. "
        "It writes <em>HTML</em> into <code>target/doc</code>.</p>"
    )
    doc = Document("docs.html", html_to_text(html), "html", "sha")
    _, units = chunk_document(doc, words, TARGET, OVERLAP)
    assert [u.text for u in units] == ["Run rustdoc on the crate.", "It writes HTML into target/doc."]


def test_deeply_nested_html_is_read():
    html = "<p>" + "<span>" * 5000 + "deep text" + "</span>" * 5000 + "</p>"
    assert html_to_text(html) == "deep text\n"


# -- code blocks as units -------------------------------------------------------------------------------------

CODE = 'def gauge(level):\n    """Read it. Then log it."""\n    if level > 3:\n        return "high. alert!"\n    return "ok"'


def test_fenced_code_block_is_one_code_unit(embedder):
    text = f"# Gauges\n\n## Reading\n\nCall it like this. It logs.\n\n```python\n{CODE}\n```\n\nThat is all.\n"
    doc = Document("g.md", text, "markdown", "sha")
    chunks, units = chunk_document(doc, embedder.count_tokens, TARGET, OVERLAP)
    code = [u for u in units if u.kind == "code"]
    assert [u.text for u in code] == [CODE]
    assert code[0].start == text.index(CODE) and text[code[0].start : code[0].end] == CODE
    assert not any(u.kind != "code" and ("gauge" in u.text or "return" in u.text) for u in units)
    assert [u.text for u in units if u.kind == "sentence"] == ["Call it like this.", "It logs.", "That is all."]
    owner = next(c for c in chunks if c.id == code[0].chunk_id)
    assert "```python\n" + CODE + "\n```" in owner.text


def test_html_pre_block_is_one_code_unit(embedder):
    html = "<h1>T</h1><p>Example. See below.</p><pre>\n" + CODE.replace("<", "&lt;").replace(">", "&gt;") + "\n</pre>"
    doc = Document("g.html", html_to_text(html), "html", "sha")
    _, units = chunk_document(doc, embedder.count_tokens, TARGET, OVERLAP)
    assert [u.text for u in units if u.kind == "code"] == [CODE]
    assert [u.text for u in units if u.kind == "sentence"] == ["Example.", "See below."]


def _long_code(n: int = 90) -> str:
    return "\n".join(
        f"    reading_{i} = gauge.read(station={i}, unit='mm')  # step {i}. check it." if i % 7 else f"def block_{i}():"
        for i in range(n)
    )


def test_long_code_block_is_cut_at_line_ends_into_code_units(embedder):
    body = _long_code()
    text = f"# Code\n\n## Loop\n\nThe loop below reads every gauge.\n\n~~~\n{body}\n~~~\n\nAfter the code.\n"
    doc = Document("loop.md", text, "markdown", "sha")
    assert embedder.count_tokens(body) > 3 * TARGET
    chunks, units = chunk_document(doc, embedder.count_tokens, TARGET, OVERLAP)
    code = [u for u in units if u.kind == "code"]
    assert len(code) >= 4
    body_start = text.index(body)
    lines = body.split("\n")
    line_starts = {body_start + sum(len(x) + 1 for x in lines[:i]) for i in range(len(lines))}
    line_ends = {a + len(x) for a, x in zip(sorted(line_starts), lines)}
    for u in code:
        assert text[u.start : u.end] == u.text and "~~~" not in u.text
        assert u.start in line_starts and u.end in line_ends, "a code unit starts or ends inside a line"
        assert embedder.count_tokens(u.text) <= TARGET
        owner = next(c for c in chunks if c.id == u.chunk_id)
        assert owner.start <= u.start and u.end <= owner.end
    # together the code units are the code, each line once, in order
    assert "\n".join(u.text for u in code) == body
    assert all(embedder.count_tokens(c.text) <= TARGET for c in chunks)
    assert not any(u.kind == "sentence" and "gauge.read" in u.text for u in units)


def test_a_code_line_longer_than_a_chunk_is_cut_at_spaces(embedder):
    line = " ".join(f"value_{i}=read({i})" for i in range(120))
    text = f"# Code\n\n```\n{line}\nshort_line()\n```\n"
    doc = Document("wide.md", text, "markdown", "sha")
    assert embedder.count_tokens(line) > TARGET
    chunks, units = chunk_document(doc, embedder.count_tokens, TARGET, OVERLAP)
    code = [u for u in units if u.kind == "code"]
    assert len(code) >= 2 and " ".join(u.text for u in code).replace("\n", " ") == line + " short_line()"
    for u in code:
        assert text[u.start : u.end] == u.text and embedder.count_tokens(u.text) <= TARGET


def test_code_fence_closes_only_on_a_matching_fence():
    text = "````md\n```\ninner\n```\n````\n\nAfter.\n\n```js`x\nnot a fence\n"
    blocks = parse_blocks(text, "markdown")
    assert [(b.kind, text[b.start : b.end]) for b in blocks] == [
        ("code", "````md\n```\ninner\n```\n````"),
        ("paragraph", "After."),
        ("paragraph", "```js`x\nnot a fence"),
    ]


@pytest.mark.parametrize(
    "table, header",
    [
        ("<tr><th>Station</th><th>Reading</th></tr><tr><td>North</td><td>12 mm</td></tr>", True),
        ("<thead><tr><td>Station</td><td>Reading</td></tr></thead><tr><td>North</td><td>12 mm</td></tr>", True),
        ("<tr><td></td><th>Entry</th><td> </td><th>Section</th></tr><tr><td></td><td>a</td><td></td><td>1</td></tr>", True),
        # a list laid out as a table (AsciiDoc's horizontal lists): no row heads the others
        ("<tr><td><code>query</code></td><td>dump a target</td></tr><tr><td><code>browse</code></td><td>browse the graph</td></tr>", False),
    ],
)
def test_an_html_tables_first_row_is_its_header_only_when_marked(table, header):
    text = html_to_text(f"<html><body><p>The tools are:</p><table>{table}</table></body></html>")
    blocks = [b for b in parse_blocks(text, "html") if b.kind == "table"]
    assert len(blocks) == 1
    assert (blocks[0].header_end > 0) is header, text
