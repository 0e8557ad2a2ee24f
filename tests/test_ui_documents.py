"""The Documents panel: uploads into the corpus folder through the real incremental ingest (real
Chroma, the real model), removal, safe names, limits, concurrent uploads, PDF pages in
citations, the title and examples made from the corpus; handlers here, a real browser at the end."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from assistant.pipeline import Assistant
from assistant.settings import Settings
from conftest import ingest_into
from ingest.settings import StoreSettings
from ingest.store import Store
from ui import render
from ui.app import ChatController, build_app, new_conversation
from ui.documents import DocumentLibrary, UploadRefused, corpus_title, example_questions, safe_name

SEED = """# Lighthouse keeping

## Lamp care

The lamp of the Kestrel Point lighthouse is trimmed every evening at dusk by the keeper.

## Fog signals

In fog the keeper sounds the horn twice a minute until the fog lifts.
"""

NEW_MD = """# Otter survey

## Counting

The otter survey of the Brimble estuary counted 37 otters in the spring of the survey year.

## Methods

Volunteers walk the Brimble banks at low tide and record every spraint they find.
"""

PDF_PAGES = [
    ("Quarry report", "The Vellmoor quarry opened its north face after the winter closure. "
                      "Trucks leave the quarry gate in convoys of four."),
    ("Drainage", "The Vellmoor quarry pumps drain the lower pit at a rate of 90 litres a second. "
                 "The pump house stands beside the old weighbridge."),
    ("Blasting", "Blasting at the Vellmoor quarry happens on Tuesdays at noon, after a siren. "
                 "Neighbours are told by letter a week before."),
]


def write_pdf(path: Path, pages=PDF_PAGES) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    for heading, text in pages:
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 16)
        pdf.multi_cell(0, 10, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))
    return path


def make_site(tmp_path: Path, embedder, max_file_mb: float | None = None, uploads: bool = True):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "lighthouse.md").write_text(SEED, encoding="utf-8")
    settings, _ = ingest_into(tmp_path / "store", [corpus], embedder)
    assistant = Assistant(Settings(store=settings.store, corpus_dirs=(corpus,)), embedder)
    library = DocumentLibrary(assistant, uploads=uploads, max_file_mb=max_file_mb)
    ctl = ChatController(assistant, feedback_path=tmp_path / "fb.jsonl", export_dir=tmp_path / "x", library=library)
    return corpus, assistant, library, ctl


def upload_dir(tmp_path: Path) -> Path:
    d = tmp_path / "uploads"
    d.mkdir(exist_ok=True)
    return d


def ask(ctl, question: str):
    steps = list(ctl.respond(question, new_conversation()))
    return steps[-1]


def store_counts(store: StoreSettings) -> tuple[int, int, dict]:
    s = Store(store)
    manifest = s.manifest()
    return s.chunks.count(), s.info().units, manifest


@pytest.mark.parametrize(
    "given, stored",
    [
        ("notes.md", "notes.md"),
        ("../../x.md", "x.md"),
        ("/etc/passwd.md", "passwd.md"),
        ("C:\\Users\\eve\\..\\report.PDF", "report.pdf"),
        (".bashrc.md", "bashrc.md"),
        ("..", None),
        ("a\x00b.md", None),
        ("line\nbreak.txt", None),
        ("evil\u202egpj.md", "evil_gpj.md"),  # a right-to-left override is not kept
        ("run.sh", None),
        ("", None),
        ("...md", None),
    ],
)
def test_upload_names_are_made_safe_or_refused(given, stored):
    if stored is None:
        with pytest.raises(UploadRefused) as err:
            safe_name(given)
        assert "\n" not in str(err.value) and "—" in str(err.value)
    else:
        assert safe_name(given) == stored


def test_run_ingest_reports_progress(tmp_path, embedder):
    from ingest.pipeline import run_ingest
    from ingest.settings import IngestSettings

    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.md").write_text(NEW_MD, encoding="utf-8")
    settings = IngestSettings(store=StoreSettings(path=tmp_path / "s"), corpus=(corpus,), progress=False)
    calls: list[tuple[int, int]] = []
    summary = run_ingest(settings, embedder, log=lambda s: None, on_progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (0, summary.embedded) and calls[-1] == (summary.embedded, summary.embedded)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    calls.clear()
    assert run_ingest(settings, embedder, log=lambda s: None, on_progress=lambda d, t: calls.append((d, t))).embedded == 0
    assert calls == []  # nothing changed, nothing to report


def test_add_ask_replace_remove(tmp_path, embedder):
    corpus, assistant, library, ctl = make_site(tmp_path, embedder)
    assert ctl.title == "Lighthouse keeping"  # one document: its first heading
    ups = upload_dir(tmp_path)
    (ups / "otters.md").write_text(NEW_MD, encoding="utf-8")
    job = library.wait(library.add([(str(ups / "otters.md"), "../../otters.md")]).id)
    assert job.ok and job.finished and "1 skipped" not in job.summary and "chunks added" in job.summary, job
    assert (corpus / "otters.md").is_file() and not (tmp_path / "otters.md").exists()
    assert not [p for p in corpus.iterdir() if p.name.startswith(".")]  # no staging file left behind
    rows = {r.source: r for r in library.documents()}
    assert set(rows) == {"lighthouse.md", "otters.md"}
    assert rows["otters.md"].kind == "markdown" and rows["otters.md"].size == len(NEW_MD.encode())
    assert rows["otters.md"].chunks >= 1 and rows["otters.md"].headings == ("Counting", "Methods")
    assert ctl.title == "Corpus"  # two documents: the folder's name
    assert "2 documents" in ctl.header_html()
    final = ask(ctl, "How many otters did the Brimble estuary survey count?")
    assert "37 otters" in final.text and final.sources[0]["source"] == "otters.md"

    # the same name again: refused unless replacing is asked for; then no duplicates
    chunks_before, units_before, _ = store_counts(assistant.settings.store)
    job = library.wait(library.add([(str(ups / "otters.md"), "otters.md")]).id)
    assert not job.ok and "already in the corpus folder" in job.problems[0] and "Replace" in job.problems[0]
    (ups / "otters.md").write_text(NEW_MD.replace("37 otters", "41 otters"), encoding="utf-8")
    job = library.wait(library.add([(str(ups / "otters.md"), "otters.md")], replace_existing=True).id)
    assert job.ok and "updated" in job.summary
    chunks_after, units_after, manifest = store_counts(assistant.settings.store)
    assert (chunks_after, units_after) == (chunks_before, units_before)
    assert all(state.complete for state in manifest.values())
    assert "41 otters" in ask(ctl, "How many otters did the Brimble estuary survey count?").text

    # removal: the file and its chunks go; the last document cannot be removed
    job = library.wait(library.remove("otters.md").id)
    assert job.ok and "removed" in job.summary
    assert not (corpus / "otters.md").exists()
    assert set(store_counts(assistant.settings.store)[2]) == {"lighthouse.md"}
    assert ask(ctl, "How many otters did the Brimble estuary survey count?").text == "The corpus does not say."
    job = library.wait(library.remove("lighthouse.md").id)
    assert not job.ok and "only document" in job.summary and (corpus / "lighthouse.md").exists()
    assert not library.wait(library.remove("../../etc/passwd").id).ok


def test_bad_files_are_one_line_and_nothing_else_is_lost(tmp_path, embedder):
    corpus, assistant, library, ctl = make_site(tmp_path, embedder, max_file_mb=0.01)
    ups = upload_dir(tmp_path)
    (ups / "big.md").write_text("# Big\n\n" + "The big file repeats itself. " * 800, encoding="utf-8")
    (ups / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (ups / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (ups / "good.md").write_text(NEW_MD, encoding="utf-8")
    (ups / "tool.exe").write_bytes(b"MZ")
    files = [(str(ups / n), n) for n in ("big.md", "broken.pdf", "latin1.txt", "tool.exe", "good.md")]
    files.append((str(ups / "good.md"), "a\x00b.md"))
    job = library.wait(library.add(files).id)
    assert job.ok and len(job.problems) == 5, job.problems
    reasons = dict(zip(("big", "broken", "latin1", "tool", "nul"), job.problems))
    assert "over the 0.01 MB limit" in reasons["big"]
    assert "broken or unreadable PDF" in reasons["broken"]
    assert "UTF-8" in reasons["latin1"] and "unsupported file type" in reasons["tool"]
    assert "control characters" in reasons["nul"]
    assert all("\n" not in p for p in job.problems)
    assert sorted(p.name for p in corpus.iterdir()) == ["good.md", "lighthouse.md"]
    html = render.job_html(job)
    assert "over the 0.01 MB limit" in html and "✓" in html and "\x00" not in html


def test_two_uploads_at_once_are_both_ingested_once(tmp_path, embedder):
    corpus, assistant, library, ctl = make_site(tmp_path, embedder)
    ups = upload_dir(tmp_path)
    (ups / "otters.md").write_text(NEW_MD, encoding="utf-8")
    write_pdf(ups / "quarry.pdf")
    jobs: list = []
    threads = [
        threading.Thread(target=lambda f=f: jobs.append(library.add([(str(ups / f), f)])))
        for f in ("otters.md", "quarry.pdf")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [library.wait(j.id) for j in jobs]
    assert all(j.ok for j in done), done
    chunks, units, manifest = store_counts(assistant.settings.store)
    assert set(manifest) == {"lighthouse.md", "otters.md", "quarry.pdf"}
    assert all(s.complete for s in manifest.values())
    assert chunks == sum(s.chunks for s in manifest.values()) and units == sum(s.units for s in manifest.values())
    # and the same upload run again embeds nothing new (same ids, no duplicates)
    again = library.wait(library.add([(str(ups / "quarry.pdf"), "quarry.pdf")], replace_existing=True).id)
    assert again.ok and "0 texts embedded" in again.summary
    assert store_counts(assistant.settings.store)[:2] == (chunks, units)


def test_pdf_citation_names_its_page_in_json_panel_and_sources(tmp_path, embedder):
    corpus, assistant, library, ctl = make_site(tmp_path, embedder)
    write_pdf(upload_dir(tmp_path) / "quarry.pdf")
    assert library.wait(library.add([(str(tmp_path / "uploads" / "quarry.pdf"), "quarry.pdf")]).id).ok
    question = "How fast do the Vellmoor quarry pumps drain the lower pit?"
    data = assistant.ask(question).to_dict()
    cite = data["citations"][0]
    assert cite["source"] == "quarry.pdf" and cite["pages"] == [2, 2] and cite["where"] == "quarry.pdf, p. 2"
    assert "90 litres" in cite["quote"]
    assert json.loads(json.dumps(data))["citations"][0]["where"] == "quarry.pdf, p. 2"
    final = ask(ctl, question)
    assert "quarry.pdf, p. 2" in final.messages[-1]["content"]  # the sources list under the answer
    assert ctl.source_choices(final.conversation)[0][0].endswith("quarry.pdf, p. 2")
    panel = final.panel
    assert "p. 2" in panel and "<mark>" in panel
    # the panel shows the cited page: its heading and its other sentence, not the other pages
    assert "Drainage" in panel and "weighbridge" in panel and "Tuesdays" not in panel and "convoys" not in panel
    md = ctl.export_markdown(final.conversation)
    assert "`quarry.pdf` p. 2, characters" in md


def test_title_examples_and_no_uploads(tmp_path, embedder, monkeypatch):
    from ui.__main__ import parse_args

    corpus, assistant, library, ctl = make_site(tmp_path, embedder, uploads=False)
    examples = example_questions(library)
    assert examples == ("What does the document say about lamp care?", "What does the document say about fog signals?")
    assert "RSP" not in " ".join(examples) and corpus_title(library) == "Lighthouse keeping"
    assert ChatController(assistant, feedback_path=tmp_path / "f", title="Harbour desk").title == "Harbour desk"
    job = library.wait(library.add([(str(corpus / "lighthouse.md"), "copy.md")]).id)
    assert not job.ok and "turned off" in job.summary and not (corpus / "copy.md").exists()
    app = build_app(assistant, feedback_path=tmp_path / "f.jsonl", uploads=False)
    ids = {getattr(b, "elem_id", None) for b in app.blocks.values()}
    assert "rag-docs" in ids and "rag-upload" not in ids and "rag-remove" not in ids and "rag-no-uploads" in ids
    monkeypatch.setenv("RAG_UI_UPLOADS", "0")
    monkeypatch.setenv("RAG_UI_TITLE", "Harbour desk")
    args = parse_args([])
    assert args.no_uploads and args.title == "Harbour desk"
    monkeypatch.setenv("RAG_UI_UPLOADS", "1")
    assert not parse_args([]).no_uploads and parse_args(["--no-uploads"]).no_uploads


def test_questions_are_answered_from_the_last_state_while_an_ingest_runs(tmp_path, embedder):
    corpus, assistant, library, ctl = make_site(tmp_path, embedder)
    ups = upload_dir(tmp_path)
    long_text = "# Tides\n\n" + "".join(
        f"The tide table for harbour berth {i} lists a high water mark of {i % 7 + 2} metres in spring.\n\n"
        for i in range(400)
    )
    (ups / "tides.md").write_text(long_text, encoding="utf-8")
    job = library.add([(str(ups / "tides.md"), "tides.md")])
    seen = []
    while not (j := library.job(job.id)).finished:
        if j.phase == "embedding":
            answer = assistant.ask("Who trims the lamp of the Kestrel Point lighthouse?")
            seen.append((j.done, j.total, answer.citations[0].source if answer.citations else ""))
            assert "2 documents" not in ctl.header_html()
        time.sleep(0.05)
    assert library.wait(job.id).ok
    assert seen and all(src == "lighthouse.md" for _, _, src in seen), seen
    assert "2 documents" in ctl.header_html()


# -- in a real browser ------------------------------------------------------------------------------------
def test_browser_upload_ask_cite_remove(tmp_path, embedder):
    from test_ui_browser import CHROMIUM, CHROMIUM_ARGS, ask as ask_in_page, open_page, source_labels

    if not CHROMIUM.exists():
        pytest.fail("no /usr/bin/chromium — run `make browser` (scripts/install-browser.sh) first")
    from playwright.sync_api import sync_playwright

    from conftest import free_port

    corpus, assistant, library, ctl = make_site(tmp_path, embedder, max_file_mb=0.05)
    app = build_app(assistant, feedback_path=tmp_path / "fb.jsonl", max_file_mb=0.05)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    pdf = write_pdf(tmp_path / "quarry.pdf").read_bytes()
    md = NEW_MD.encode()

    def upload(page, files, replace=False):
        page.evaluate("() => { window.__seen = document.querySelector('#rag-job .rag-job')?.dataset.job || ''; }")
        page.locator("#rag-tab-docs-button, button[role='tab']:has-text('Documents')").first.click()
        page.locator("#rag-upload input[type='file']").set_input_files(
            [{"name": n, "mimeType": "application/octet-stream", "buffer": b} for n, b in files]
        )
        page.wait_for_function(
            "k => document.querySelectorAll('#rag-upload .file-preview tr, #rag-upload table tr').length >= k",
            arg=len(files), timeout=20_000,
        )
        if replace:
            page.locator("#rag-replace input").check()
        page.locator("#rag-add").click()

    def summary(page) -> str:
        """The one line of the job just started (not the one before it)."""
        page.wait_for_function(
            """() => { const j = document.querySelector('#rag-job .rag-job-done, #rag-job .rag-job-failed');
                       return j && j.dataset.job !== window.__seen; }""",
            timeout=120_000,
        )
        return page.locator("#rag-job .rag-job").inner_text()

    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            context, page, errors = open_page(browser, url)
            assert "Lighthouse keeping" in page.locator("#rag-header").inner_text()
            assert page.get_by_text("What does the document say about lamp care?").count()

            # two browsers upload at once: a Markdown file and a PDF; both end up ingested once
            context2, page2, errors2 = open_page(browser, url)
            upload(page, [("otters.md", md)])
            upload(page2, [("quarry.pdf", pdf)])
            first, second = summary(page), summary(page2)
            assert "chunks added" in first and "chunks added" in second, (first, second)
            chunks, units, manifest = store_counts(assistant.settings.store)
            assert set(manifest) == {"lighthouse.md", "otters.md", "quarry.pdf"}
            assert chunks == sum(s.chunks for s in manifest.values())
            page.wait_for_function(
                "() => (document.querySelector('#rag-header')?.innerText || '').includes('3 documents')",
                timeout=20_000,
            )
            docs = page.locator("#rag-docs").inner_text()
            assert "otters.md" in docs and "quarry.pdf" in docs and "Counting" in docs

            # a question only the new files answer, cited; the PDF's citation names its page
            page.locator("button[role='tab']:has-text('Chat')").first.click()
            text = ask_in_page(page, "How many otters did the Brimble estuary survey count?")
            assert "37 otters" in text and "[1]" in text and "otters.md" in text
            text = ask_in_page(page, "How fast do the Vellmoor quarry pumps drain the lower pit?")
            assert "90 litres" in text and "quarry.pdf, p. 2" in text
            assert any("quarry.pdf, p. 2" in label for label in source_labels(page))
            page.wait_for_function(
                "() => (document.querySelector('#rag-panel')?.innerText || '').includes('p. 2')", timeout=20_000
            )
            assert "90 litres" in page.locator("#rag-panel mark").inner_text()

            # malicious names land inside the corpus folder under a safe name, or not at all; too big: one line
            upload(page, [("../../evil.md", b"# Evil\n\nThe evil file says hello.\n")])
            evil = summary(page)
            assert not (tmp_path / "evil.md").exists() and not (tmp_path.parent / "evil.md").exists()
            assert [p.name for p in corpus.iterdir() if "evil" in p.name] in (["evil.md"], []), evil
            upload(page, [("big.md", b"# Big\n\n" + b"The big file repeats itself. " * 3000)])
            big = summary(page)
            assert "over the 0.05 MB limit" in big and not (corpus / "big.md").exists()

            # removal
            page.locator("#rag-remove-pick input").click()
            page.get_by_role("option", name="otters.md").click()
            page.evaluate("() => { window.__seen = document.querySelector('#rag-job .rag-job')?.dataset.job || ''; }")
            page.locator("#rag-remove").click()
            assert "removed" in summary(page)
            assert not (corpus / "otters.md").exists()
            assert "otters.md" not in page.locator("#rag-docs").inner_text()
            page.locator("button[role='tab']:has-text('Chat')").first.click()
            assert "The corpus does not say." in ask_in_page(page, "How many otters did the Brimble estuary survey count?")
            assert not errors and not errors2, errors + errors2
            context2.close()
            context.close()
            browser.close()
    finally:
        app.close()


def test_code_units_are_shown_preformatted(tmp_path, embedder):
    corpus, assistant, library, ctl = make_site(tmp_path, embedder)
    code = "rig-start --port 8080\nrig-watch --every 5s"
    (tmp_path / "uploads").mkdir()
    (tmp_path / "uploads" / "rig.md").write_text(
        f"# Rig manual\n\n## Starting the rig\n\nStart the rig and watch it with:\n\n```\n{code}\n```\n", encoding="utf-8"
    )
    assert library.wait(library.add([(str(tmp_path / "uploads" / "rig.md"), "rig.md")]).id).ok
    units = [u for u in Store(assistant.settings.store).all_units()[0] if u.kind == "code"]
    assert units, "the fenced block is a code unit"
    meta, text = {"chunk_id": units[0].chunk_id, "start": units[0].start, "end": units[0].end}, units[0].text
    assert library.unit_kind(meta["chunk_id"], meta["start"], meta["end"]) == "code"
    c = {"n": 1, "source": "rig.md", "section": "Starting the rig", "start": meta["start"], "end": meta["end"],
         "quote": text, "kind": "code", "chunk_id": meta["chunk_id"]}
    answer = render.exchange_message({"answer": f"Start it with: {text} [1]", "abstained": False, "citations": [c]})
    assert f'<pre class="rag-code">{render.esc(text)}</pre>' in answer and "\n" in text
    panel = ctl.panel_for(c)
    assert 'class="rag-para rag-code"' in panel and f"<mark>{render.esc(text)}</mark>" in panel
