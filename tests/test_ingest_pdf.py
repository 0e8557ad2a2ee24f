"""PDF pages: multi-page PDFs written here with fpdf2 (a heading, prose flowing over a page
break, a table, an empty page), loaded with pypdf; the page map, the page range of every chunk
and unit, the page span function, and a real ingest into a real Chroma read back."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from conftest import ingest_into, texts_embedded
from ingest.chunk import CHUNKER_VERSION, chunk_document
from ingest.embed import MODEL_ID
from ingest.errors import StoreError
from ingest.load import PDF_READING, load_file
from ingest.records import format_pages, page_range, page_span
from ingest.settings import StoreSettings
from ingest.store import CollectionInfo, Store

TARGET = 160
OVERLAP = 32

FLOOD = (
    "The harbour authority published a detailed report on the flooding of the northern valley. "
    "An independent auditor raised fresh concerns about the cost of replacing the old stone bridges. "
    "The regional water board spent three months studying the quality of drinking water in rural towns. "
    "Our field team held public meetings on the noise from the new container terminal. "
)
PAGES = [
    [
        ("heading", "Harbour gauges"),
        ("text", "The tide gauges in the harbour were read at six every morning. "
                 "The readings went to the port office before noon. A copy was kept in the gauge house."),
    ],
    [
        ("heading", "Stations"),
        ("text", "Two stations report every day. Their readings for the first week of March follow."),
        ("table", [("Station", "Reading", "Observer"), ("North ridge", "12 mm", "Ada Lund"),
                   ("South pier", "7 mm", "Ben Okafor"), ("East mole", "9 mm", "Cai Wren")]),
    ],
    [],  # an empty page
    [
        ("heading", "Bridges"),
        # long enough to flow over the page break onto an extra page
        ("text", "The old stone bridges were repaired in March. " + FLOOD * 14 + "The last bridge reopened in June."),
    ],
]


def write_pdf(path: Path, pages=PAGES) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_auto_page_break(True, margin=20)
    for page in pages:
        pdf.add_page()
        for kind, content in page:
            if kind == "heading":
                pdf.set_font("Helvetica", "B", 16)
                pdf.multi_cell(0, 9, content, new_x="LMARGIN", new_y="NEXT")
            elif kind == "text":
                pdf.set_font("Helvetica", size=11)
                pdf.multi_cell(0, 6, content, new_x="LMARGIN", new_y="NEXT")
                pdf.ln(4)
            elif kind == "table":
                pdf.set_font("Helvetica", size=11)
                with pdf.table() as table:
                    for row in content:
                        cells = table.row()
                        for cell in row:
                            cells.cell(cell)
    pdf.output(str(path))
    return path


def page_texts(path: Path) -> list[str]:
    """Each page's text read straight from pypdf, independently of ingest.load."""
    from pypdf import PdfReader

    return [(p.extract_text() or "").strip() for p in PdfReader(str(path)).pages]


def independent_spans(text: str, pages: list[str]) -> list[tuple[int, int] | None]:
    """Where each page's text lies in the document text, found by searching (None: empty page)."""
    spans, cursor = [], 0
    for page in pages:
        if not page:
            spans.append(None)
            continue
        a = text.index(page, cursor)
        spans.append((a, a + len(page)))
        cursor = a + len(page)
    return spans


def expected_pages(spans, a: int, b: int) -> tuple[int, int]:
    hit = [n for n, s in enumerate(spans, 1) if s and s[0] < b and a < s[1]]
    assert hit, (a, b)
    return (min(hit), max(hit))


@pytest.fixture(scope="module")
def pdf_path(tmp_path_factory) -> Path:
    return write_pdf(tmp_path_factory.mktemp("pdf") / "report.pdf")


@pytest.fixture(scope="module")
def pdf_doc(pdf_path):
    return load_file(pdf_path, "report.pdf")


# -- the page map --------------------------------------------------------------------------------


def test_page_map_has_every_page_and_each_page_span_is_that_pages_text(pdf_path, pdf_doc):
    pages = page_texts(pdf_path)
    assert len(pages) == 5 and pages[2] == "" and all(p for i, p in enumerate(pages) if i != 2)
    assert pdf_doc.kind == "pdf" and len(pdf_doc.page_starts) == len(pages)
    spans = independent_spans(pdf_doc.text, pages)
    for n, (page, span) in enumerate(zip(pages, spans), 1):
        a, b = page_span(pdf_doc.text, pdf_doc.page_starts, n)
        assert (a, b) == pdf_doc.page_span(n)
        assert pdf_doc.text[a:b] == page
        if span:
            assert (a, b) == span and pdf_doc.page_range(a, b) == (n, n)
        else:
            assert a == b  # the empty page has an empty span
    assert pdf_doc.text.startswith("Harbour gauges")
    assert pdf_doc.page_span(5)[1] == len(pdf_doc.text)
    with pytest.raises(ValueError):
        pdf_doc.page_span(6)
    with pytest.raises(ValueError):
        pdf_doc.page_span(0)


def test_page_range_and_labels():
    starts = (0, 0, 10, 22, 22)  # page 1 empty, then pages 2, 3, an empty 4, page 5
    assert page_range(starts, 0, 8) == (2, 2)
    assert page_range(starts, 12, 20) == (3, 3)
    assert page_range(starts, 5, 15) == (2, 3)
    assert page_range(starts, 24, 30) == (5, 5)
    assert page_range((), 0, 5) == ()
    assert format_pages((12, 12)) == "p. 12" and format_pages((3, 4)) == "pp. 3–4" and format_pages(()) == ""


def test_pdf_is_reproducible_and_its_hash_names_the_extractor(pdf_path, pdf_doc):
    import pypdf

    again = load_file(pdf_path, "report.pdf")  # what a citation re-reads
    assert (again.text, again.page_starts, again.sha) == (pdf_doc.text, pdf_doc.page_starts, pdf_doc.sha)
    data = pdf_path.read_bytes()
    assert pdf_doc.sha != hashlib.sha1(data).hexdigest()
    reading = f"pypdf {pypdf.__version__} {PDF_READING}"  # a change to either re-ingests the file
    assert pdf_doc.sha == hashlib.sha1(data + b"\x00" + reading.encode()).hexdigest()


def test_non_pdf_documents_have_no_pages(tmp_path, embedder):
    md = tmp_path / "notes.md"
    md.write_text("# Notes\n\nThe ferry left at noon. It came back at six.\n", encoding="utf-8")
    doc = load_file(md, "notes.md")
    assert doc.page_starts == ()
    chunks, units = chunk_document(doc, embedder.count_tokens, TARGET, OVERLAP)
    assert chunks and units and all(c.pages == () for c in chunks) and all(u.pages == () for u in units)


# -- chunks and units ----------------------------------------------------------------------------------


def test_every_chunk_and_unit_carries_its_pages(pdf_path, pdf_doc, embedder):
    spans = independent_spans(pdf_doc.text, page_texts(pdf_path))
    chunks, units = chunk_document(pdf_doc, embedder.count_tokens, TARGET, OVERLAP)
    assert len(chunks) >= 5 and len(units) >= 20
    for c in chunks:
        assert pdf_doc.text[c.start : c.end] == c.text
        assert c.pages == expected_pages(spans, c.start, c.end), c.text[:60]
    assert any(c.pages[0] < c.pages[1] for c in chunks), "no chunk spans a page break"
    assert {c.pages[0] for c in chunks} | {c.pages[1] for c in chunks} == {1, 2, 4, 5}
    for u in units:
        assert pdf_doc.text[u.start : u.end] == u.text
        assert u.pages == expected_pages(spans, u.start, u.end), u.text[:60]
        first, last = u.pages
        assert first == last, f"a quote crosses a page break: {u.text[:60]!r}"
        owner = next(c for c in chunks if c.id == u.chunk_id)
        assert owner.pages[0] <= first <= owner.pages[1]
        # the UI's side panel: the page's text with the quote highlighted at the same offsets
        a, b = pdf_doc.page_span(first)
        assert a <= u.start and u.end <= b
        assert pdf_doc.text[a:b][u.start - a : u.end - a] == u.text


def test_heading_table_and_flowing_prose_are_on_their_pages(pdf_doc, embedder):
    _, units = chunk_document(pdf_doc, embedder.count_tokens, TARGET, OVERLAP)

    def pages_of(words: str) -> set[tuple[int, int]]:
        found = {u.pages for u in units if words in u.text}
        assert found, words
        return found

    assert pages_of("read at six every morning") == {(1, 1)}
    assert pages_of("Two stations report every day.") == {(2, 2)}
    assert pages_of("South pier") == {(2, 2)} and pages_of("Cai Wren") == {(2, 2)}
    assert pages_of("repaired in March") == {(4, 4)}
    assert pages_of("The last bridge reopened in June.") == {(5, 5)}
    # the long paragraph flows from page 4 onto page 5
    assert pages_of("flooding of the northern valley") == {(4, 4), (5, 5)}


def test_lines_set_larger_than_the_body_are_headings(pdf_doc, embedder):
    """The fixture's headings are 16-point bold over 11-point text, and carry no numbers."""
    _, units = chunk_document(pdf_doc, embedder.count_tokens, TARGET, OVERLAP)
    sections = {u.section for u in units}
    assert not any("Harbour gauges" in u.text or "Stations" == u.text.strip() for u in units)
    assert {u.section for u in units if "read at six every morning" in u.text} == {("Harbour gauges",)}
    assert {u.section for u in units if "South pier" in u.text} == {("Stations",)}
    assert {u.section for u in units if "The last bridge reopened in June." in u.text} == {("Bridges",)}
    assert len(sections) == 3


def test_a_line_in_another_font_starts_a_paragraph_and_ligatures_are_letters(tmp_path, embedder):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.add_font("Sans", "", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    pdf.add_font("Sans", "I", "/usr/share/fonts/truetype/dejavu/DejaVuSans-Oblique.ttf")
    pdf.set_font("Sans", size=11)
    pdf.multi_cell(0, 6, "The gauge house keeps a copy of every reading.", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Sans", "I", 11)
    pdf.multi_cell(0, 6, "Figure 3: The gauge house in winter", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Sans", size=11)
    pdf.multi_cell(0, 6, "Readers \ufb01nd the \ufb02ood records in the o\ufb03ce.", new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(tmp_path / "gauge.pdf"))
    doc = load_file(tmp_path / "gauge.pdf", "gauge.pdf")
    assert "Readers find the flood records in the office." in doc.text
    _, units = chunk_document(doc, embedder.count_tokens, TARGET, OVERLAP)
    texts = [u.text.strip() for u in units]
    # the caption has no full stop, but it does not run on into the next sentence
    assert "Figure 3: The gauge house in winter" in texts
    assert "Readers find the flood records in the office." in texts


# -- a real ingest into a real Chroma --------------------------------------------------------------------


def test_ingest_stores_pages_and_reads_them_back(tmp_path, pdf_path, embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "report.pdf").write_bytes(pdf_path.read_bytes())
    (corpus / "notes.md").write_text("# Notes\n\nThe ferry left at noon. It came back at six.\n", encoding="utf-8")
    settings, summary = ingest_into(tmp_path / "store", [corpus], embedder)
    assert summary.files == 2 and not summary.problems
    doc = load_file(corpus / "report.pdf", "report.pdf")
    want_chunks, want_units = chunk_document(doc, embedder.count_tokens, TARGET, OVERLAP)
    store = Store(settings.store)
    try:
        chunks = {c.id: c for c in store.all_chunks()}
        units = {u.id: u for u in store.all_units()[0]}
        raw = store.chunks.get(include=["metadatas"])["metadatas"]
    finally:
        store.client.close()
    for want in want_chunks:
        assert chunks[want.id] == want  # pages included
    for want in want_units:
        assert units[want.id] == want
    assert {c.pages for c in chunks.values() if c.source == "notes.md"} == {()}
    assert {u.pages for u in units.values() if u.source == "report.pdf"} >= {(1, 1), (2, 2), (4, 4), (5, 5)}
    assert all(set(m) >= {"units", "unit_vectors"} for m in raw if m["file_units"])  # the units ride in their chunks
    # what a citation shows: the stored span in the text loaded again, on its page
    again = load_file(corpus / "report.pdf", "report.pdf")
    for u in units.values():
        if u.source == "report.pdf":
            a, b = again.page_span(u.pages[0])
            assert again.text[u.start : u.end] == u.text and a <= u.start and u.end <= b


def test_a_store_written_before_pages_still_reads_and_is_rebuilt(tmp_path, pdf_path, embedder):
    """Records without page metadata (chunker v5): chunks read back with pages == () and no units; the store is
    refused with a one-line message until the next ingest rebuilds it with pages."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "report.pdf").write_bytes(pdf_path.read_bytes())
    doc = load_file(corpus / "report.pdf", "report.pdf")
    chunks, units = chunk_document(doc, embedder.count_tokens, TARGET, OVERLAP)
    settings = StoreSettings(path=tmp_path / "store", collection="corpus")
    old = Store(settings, create=True)
    file_meta = {"file_sha": doc.sha, "file_chunks": len(chunks), "file_units": len(units)}
    rng = np.random.default_rng(0)
    old.chunks.upsert(
        ids=[c.id for c in chunks],
        embeddings=rng.normal(size=(len(chunks), 384)).astype(np.float32),
        documents=[c.text for c in chunks],
        metadatas=[{"source": c.source, "section": "", "start": c.start, "end": c.end, "header": c.header, **file_meta}
                   for c in chunks],
    )
    old.client.get_or_create_collection("corpus__units", embedding_function=None).upsert(
        ids=[u.id for u in units],
        embeddings=rng.normal(size=(len(units), 384)).astype(np.float32),
        documents=[u.text for u in units],
        metadatas=[{"chunk_id": u.chunk_id, "source": u.source, "section": "", "kind": u.kind, "start": u.start,
                    "end": u.end, "header": u.header, **file_meta} for u in units],
    )
    old.set_info(CollectionInfo(MODEL_ID, "5", "x", "2025-01-01T00:00:00+00:00", 1, len(chunks)))
    old.client.close()

    store = Store(settings)
    try:
        assert {c.pages for c in store.all_chunks()} == {()}
        assert store.all_units()[0] == []  # its chunk records list no units (since v8 they do)
        assert {c.pages for c in store.get_chunks([chunks[0].id])} == {()}
        with pytest.raises(StoreError, match=r"older chunker \(v5\).*(python -m ingest|make ingest)") as err:
            store.check_compatible(MODEL_ID, CHUNKER_VERSION)
        assert "\n" not in str(err.value)
    finally:
        store.client.close()

    _, summary = ingest_into(tmp_path / "store", [corpus], embedder)
    assert "chunker v5" in summary.rebuilt and summary.embedded == texts_embedded(chunks, units)
    store = Store(settings)
    try:
        store.check_compatible(MODEL_ID, CHUNKER_VERSION)
        assert {c.id: c.pages for c in store.all_chunks()} == {c.id: c.pages for c in chunks}
        assert [c.name for c in store.client.list_collections() if c.name.endswith("__units")] == []  # the old units went
    finally:
        store.client.close()


def test_running_headers_and_footers_are_dropped_but_the_first_page_keeps_its_title():
    from ingest.load import _without_running_lines

    pages = [f"Field Manual\nSection text number {i}.\nMore text.\nPage {i + 1} of 5" for i in range(5)]
    pages[2] = "Field Manual\nA page whose last line is its own.\nThe end of it."
    out = _without_running_lines(pages)
    assert out[0].startswith("Field Manual\nSection text number 0.")  # the title stays on page 1
    assert all("Field Manual" not in p for p in out[1:])
    assert all("Page" not in p for p in out) and out[2].endswith("The end of it.")
    assert _without_running_lines(pages[:2]) == pages[:2]  # two pages: nothing recurs enough


def test_numbered_section_headings_of_a_pdf_are_headings_and_a_numbered_list_stays_a_list():
    from ingest.structure import parse_blocks

    text = (
        "1. Introduction\n1.1. Scope\nThis guide covers the pumps.\n2. Installation\n2.1. Before you start\n"
        "Do these steps:\n1. Close the valve.\n2. Drain the tank.\n3 CARD16 MAJOR_VERSION 1\n"
    )
    blocks = parse_blocks(text, "pdf")
    headings = [(b.level, b.title) for b in blocks if b.kind == "heading"]
    assert headings == [(1, "1. Introduction"), (2, "1.1. Scope"), (1, "2. Installation"), (2, "2.1. Before you start")]
    items = [text[b.start : b.end] for b in blocks if b.kind == "item"]
    assert items[:2] == ["1. Close the valve.", "2. Drain the tank."]


def test_a_table_of_contents_is_not_read_as_headings():
    from ingest.structure import parse_blocks

    text = (
        "Table of Contents\n1 Pumps\n1.1 Scope\n1.2 Installation\n2 Reporting bugs\nNext: Pumps, Up: Top\n"
        "1 Pumps\nThe pumps move water.\n1.1 Scope\nThis guide covers the pumps.\n1.2 Installation\n"
        "Close the valve first.\n2 Reporting bugs\nMail the office.\n"
    )
    headings = [(b.level, b.start) for b in parse_blocks(text, "pdf") if b.kind == "heading"]
    toc_end = text.index("The pumps")
    # '2 Reporting bugs' has no section under it: a numbered line like a list's, as before
    assert [level for level, _ in headings] == [1, 2, 2], headings
    assert all(start >= toc_end - len("1 Pumps\n") for _, start in headings), headings


def test_a_running_header_with_the_page_number_is_dropped_though_its_chapter_changes():
    from ingest.load import _without_running_lines

    chapters = ["Chapter 1: Gauges", "Chapter 1: Gauges", "Chapter 2: Tides", "Chapter 2: Tides", "Chapter 3: Moorings"]
    words = ["dawn", "noon", "dusk", "night", "low water"]
    pages = ["Harbour manual\nContents."] + [f"{c} {n + 1}\nThe gauges are read at {w}." for n, (c, w) in
                                            enumerate(zip(chapters, words), 1)]
    pages[3] = "12 moorings are free.\nThe tide turns at noon."  # a chapter's first page has no header
    out = _without_running_lines(pages)
    assert all("Chapter" not in p for p in out)
    assert out[3] == "12 moorings are free.\nThe tide turns at noon."  # 12 is not the page's number: it stays
    assert out[5] == "The gauges are read at low water."


def test_a_word_hyphenated_at_a_line_end_is_whole_when_the_document_writes_it_whole():
    from ingest.load import _joined_hyphenation

    pages = ["The gauge identi-\nfier is printed on it.\nA self-\ncontained unit.", "Each identifier is unique."]
    assert _joined_hyphenation(pages)[0] == "The gauge identifier is printed on it.\nA self-\ncontained unit."


def test_space_above_a_line_starts_a_paragraph_and_a_drawn_list_is_a_list(tmp_path, embedder):
    """Paragraphs set apart by space, not by indentation, and a list whose bullets the PDF drew as
    shapes (here: not drawn at all) after a lead-in."""
    from fpdf import FPDF

    from ingest.structure import parse_blocks

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    para = "The gauge house keeps a copy of every reading taken at the harbour mouth " * 3
    pdf.multi_cell(0, 6, para.strip() + ".", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    pdf.multi_cell(0, 6, "Readings can go wrong in three ways, such as:", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    for item in ("Gauges silted up by the spring floods", "Readers who misread the scale in the dark",
                 "Copies lost on the way to the port office"):
        pdf.set_x(25)
        pdf.multi_cell(0, 6, item, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    pdf.multi_cell(0, 6, "Two gauges stand at the mouth:", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    for item in ("The north gauge, read at six.", "The south gauge, read at noon."):  # each item one sentence
        pdf.set_x(25)
        pdf.multi_cell(0, 6, item, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    pdf.multi_cell(0, 6, "The port office checks every copy in the spring.", new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(tmp_path / "gauges.pdf"))
    doc = load_file(tmp_path / "gauges.pdf", "gauges.pdf")
    blocks = [(b.kind, doc.text[b.start : b.end].split("\n")[0]) for b in parse_blocks(doc.text, "pdf", dict(doc.layout))]
    assert blocks == [
        ("paragraph", blocks[0][1]),
        ("paragraph", "Readings can go wrong in three ways, such as:"),
        ("item", "Gauges silted up by the spring floods"),
        ("item", "Readers who misread the scale in the dark"),
        ("item", "Copies lost on the way to the port office"),
        ("paragraph", "Two gauges stand at the mouth:"),
        ("item", "The north gauge, read at six."),
        ("item", "The south gauge, read at noon."),
        ("paragraph", "The port office checks every copy in the spring."),
    ]
    assert blocks[0][1].startswith("The gauge house keeps")


def test_a_run_of_large_lines_is_a_figure_not_headings(tmp_path):
    """The labels of a diagram drawn as text ('ptr', 'len 5', 'capacity 5') are set large, but they
    head nothing; a lone large line before the body does."""
    from fpdf import FPDF

    from ingest.structure import parse_blocks

    pdf = FPDF()
    pdf.add_page()
    for size, text in [(16, "Gauge memory"), (11, "Each gauge keeps its readings in a small table of its own."),
                       (16, "ptr"), (16, "len 5"), (16, "capacity 5"),
                       (11, "The table grows when the readings outrun it.")]:
        pdf.set_font("Helvetica", size=size)
        pdf.multi_cell(0, 8, text, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(tmp_path / "memory.pdf"))
    doc = load_file(tmp_path / "memory.pdf", "memory.pdf")
    headings = [b.title for b in parse_blocks(doc.text, "pdf", dict(doc.layout)) if b.kind == "heading"]
    assert headings == ["Gauge memory"]


def test_lines_drawn_out_of_order_are_read_in_place_but_columns_stay_whole(tmp_path):
    """A browser's PDF draws a page's headings after its body text; each is read where its height
    places it. Two columns, drawn one after the other, are still read column by column."""
    from fpdf import FPDF

    from ingest.structure import parse_blocks

    pdf = FPDF()
    pdf.add_page()
    body = [(40, "The north gauge is read at six every morning by the harbour master."),
            (48, "Its readings go to the port office before noon each day."),
            (56, "A copy stays in the gauge house beside the north pier."),
            (64, "The master signs each reading before it is sent."),
            (88, "The south gauge is read at noon when the tide turns."),
            (96, "Its readings are kept in the gauge house for a year."),
            (104, "Storm readings are sent to the coast guard at once."),
            (112, "The south gauge was rebuilt after the flood of 1953.")]
    pdf.set_font("Helvetica", size=11)
    for y, text in body:
        pdf.set_xy(10, y)
        pdf.cell(0, 6, text)
    pdf.set_font("Helvetica", "B", 16)
    for y, text in [(30, "North gauge"), (78, "South gauge")]:  # drawn last, placed above their text
        pdf.set_xy(10, y)
        pdf.cell(0, 8, text)
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    for x, lines in [(10, ["Left column one.", "Left column two.", "Left column three.", "Left column four."]),
                     (110, ["Right column one.", "Right column two.", "Right column three.", "Right column four."])]:
        for k, text in enumerate(lines):
            pdf.set_xy(x, 30 + 8 * k)
            pdf.cell(80, 6, text)
    pdf.output(str(tmp_path / "gauges.pdf"))
    doc = load_file(tmp_path / "gauges.pdf", "gauges.pdf")
    text = doc.text
    assert text.index("North gauge") < text.index("The north gauge") < text.index("South gauge") < text.index("The south gauge")
    blocks = parse_blocks(text, "pdf", dict(doc.layout))
    assert [b.title for b in blocks if b.kind == "heading"] == ["North gauge", "South gauge"]
    assert text.index("Left column four.") < text.index("Right column one.")
