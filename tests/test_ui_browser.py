"""The chat page in a real headless Chromium (Debian's, driven by Playwright) over the real corpus."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from assistant.pipeline import Assistant
from assistant.settings import Settings
from conftest import ingest_into
from ui import build_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ANSWER_TIMEOUT = 120_000  # ms; the first question also loads the model

XSS_TEXT = """Zebulon flux capacitor maintenance log

The flux capacitor of the Zebulon widget is recalibrated every 42 days <script>window.__xss=1</script> by the night shift. Its log template reads ${window.__xss=4} and {{constructor.constructor('window.__xss=5')()}} each time.

The Zebulon inspector signs the calibration sheet <img src=x onerror="window.__xss=2"> after each recalibration of the flux capacitor.

Operators who need the Zebulon calibration manual can [click](javascript:window.__xss=3) to open it before recalibrating the flux capacitor.
"""


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("no /usr/bin/chromium — run `make browser` (scripts/install-browser.sh) first")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def serve(assistant, feedback_path: Path):
    from conftest import free_port

    app = build_app(assistant, feedback_path=feedback_path)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return app, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def site(corpus_store, embedder, tmp_path_factory):
    feedback = tmp_path_factory.mktemp("feedback") / "feedback.jsonl"
    app, url = serve(Assistant(Settings(store=corpus_store.store), embedder), feedback)
    try:
        yield url, feedback
    finally:
        app.close()


def open_page(browser, url, tmp_path=None):
    context = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(url)
    page.locator("#rag-question textarea").wait_for()
    return context, page, errors


def answers(page):
    """The finished assistant messages (answers, abstentions, errors) in the chat."""
    return page.locator("#rag-chat .rag-answer:not(:has(.rag-cursor)), #rag-chat .rag-error")


def ask(page, question: str) -> str:
    before = answers(page).count()
    page.locator("#rag-question textarea").fill(question)
    page.locator("#rag-send").click()
    return wait_answer(page, before)


def wait_answer(page, before: int) -> str:
    page.wait_for_function(
        """n => document.querySelectorAll('#rag-chat .rag-answer:not(:has(.rag-cursor)), #rag-chat .rag-error').length > n""",
        arg=before,
        timeout=ANSWER_TIMEOUT,
    )
    page.wait_for_timeout(300)  # let the same update fill the source list
    bots = page.locator("#rag-chat [data-testid='bot']")
    return bots.nth(bots.count() - 1).inner_text()


def source_labels(page) -> list[str]:
    return [t.strip() for t in page.locator("#rag-sources label").all_inner_texts()]


def open_source_with(page, text: str) -> str:
    """Pick each listed source until the side panel highlights `text`; the panel's text."""
    labels = page.locator("#rag-sources label")
    for i in range(labels.count()):
        labels.nth(i).click()
        n = labels.nth(i).inner_text().split("]")[0] + "]"
        page.wait_for_function(
            "n => (document.querySelector('#rag-panel .rag-panel-title')?.textContent || '').startsWith(n)",
            arg=n,
            timeout=20_000,
        )
        mark = page.locator("#rag-panel mark")
        if mark.count() and text in mark.inner_text():
            return page.locator("#rag-panel").inner_text()
    raise AssertionError(f"no source highlights {text!r}; sources: {source_labels(page)}")


def test_ask_read_sources_follow_up_vote_export(browser, site, tmp_path):
    url, feedback = site
    context, page, errors = open_page(browser, url)
    header = page.locator("#rag-header").inner_text()
    assert "1 document" in header and "passages indexed" in header and "ingested" in header
    assert "Safety Framework" in header  # the title comes from the corpus (its one document's first heading)
    assert page.get_by_text("What does the document say about ASL definitions?").count()  # examples from its headings

    text = ask(page, "When was RSP v3 released?")
    assert "[1]" in text and "24 February 2026" in text
    assert "Sources" in text or "SOURCES" in text
    labels = source_labels(page)
    assert labels and labels[0].startswith("[1] ")
    assert page.locator("#rag-chat .rag-sources li").count() >= len(labels)

    panel = open_source_with(page, "24 February 2026")
    assert "anthropic-rsp-review.md" in panel and "characters" in panel
    assert page.locator("#rag-panel .rag-para").inner_text().strip() != page.locator("#rag-panel mark").inner_text().strip()

    # clicking a [n] in the answer opens that source too
    shown = page.locator("#rag-panel .rag-panel-title").inner_text().split("]")[0] + "]"
    refs = page.locator("#rag-chat .rag-answer").last.locator(".rag-ref")
    other = next((r for r in refs.all_inner_texts() if r.strip() != shown), None)
    if other:
        refs.filter(has_text=other).first.click()
        page.wait_for_function(
            "n => (document.querySelector('#rag-panel .rag-panel-title')?.textContent || '').startsWith(n)",
            arg=other.strip(),
            timeout=20_000,
        )

    follow = ask(page, "What did it rescind?")
    assert "pause" in follow.lower() and "[1]" in follow
    panel = open_source_with(page, "ause")
    assert "pause" in panel.lower()
    page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)
    assert (tmp_path / "chat.png").stat().st_size > 10_000

    # thumbs up on the first answer: one JSON line
    lines_before = len(feedback.read_text().splitlines()) if feedback.exists() else 0
    page.locator("#rag-chat button[aria-label='Like']").first.click()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        lines = feedback.read_text().splitlines() if feedback.exists() else []
        if len(lines) > lines_before:
            break
        time.sleep(0.2)
    record = json.loads(lines[-1])
    assert record["vote"] == "up" and record["question"] == "When was RSP v3 released?"
    assert record["citations"] and "24 February 2026" in record["answer"]

    # export: a Markdown file with both questions and their citations
    with page.expect_download(timeout=20_000) as download:
        page.locator("#rag-export").click()
    md = Path(download.value.path()).read_text(encoding="utf-8")
    assert download.value.suggested_filename.endswith(".md")
    assert "When was RSP v3 released?" in md and "What did it rescind?" in md
    assert "anthropic-rsp-review.md` characters" in md

    # another browser session starts empty and answers on its own
    context2, page2, errors2 = open_page(browser, url)
    assert page2.locator("#rag-chat [data-testid='bot']").count() == 0
    page2.get_by_text("What does the document say about ASL definitions?").first.click()
    other = wait_answer(page2, 0)
    assert "ASL" in other and "[1]" in other
    assert page2.locator("#rag-chat [data-testid='user']").count() == 1
    assert page.locator("#rag-chat [data-testid='user']").count() == 2  # the first session is unchanged

    # New chat clears the conversation: the follow-up no longer has anything to refer to
    page.locator("#rag-new").click()
    page.wait_for_function("() => document.querySelectorAll('#rag-chat [data-testid=\"bot\"]').length === 0")
    assert not page.locator("#rag-sources label").count() or not page.locator("#rag-sources").is_visible()
    assert not errors and not errors2, errors + errors2
    context2.close()
    context.close()


def test_abstention_and_errors_in_the_page(browser, site):
    url, _ = site
    context, page, errors = open_page(browser, url)
    text = ask(page, "What is the capital of France?")
    assert "The corpus does not say." in text
    assert page.locator("#rag-chat .rag-sources").count() == 0
    assert not page.locator("#rag-sources").is_visible() or not page.locator("#rag-sources label").count()
    text = ask(page, "x " * 2500)
    assert "Cannot ask that" in text and "limit" in text and "Traceback" not in text
    assert "[1]" in ask(page, "When was RSP v3 released?")  # and the page goes on
    assert not errors, errors
    context.close()


def test_corpus_markup_never_runs_or_renders(browser, embedder, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "zebulon-log.txt").write_text(XSS_TEXT, encoding="utf-8")
    settings, _ = ingest_into(tmp_path / "store", [corpus], embedder)
    assistant = Assistant(Settings(store=settings.store, corpus_dirs=(corpus,)), embedder)
    app, url = serve(assistant, tmp_path / "feedback.jsonl")
    try:
        context, page, errors = open_page(browser, url)
        text = ask(page, "How often is the Zebulon flux capacitor recalibrated?")
        assert "Zebulon" in text and "[1]" in text
        assert source_labels(page)
        for i in range(page.locator("#rag-sources label").count()):
            page.locator("#rag-sources label").nth(i).click()
            page.wait_for_timeout(400)
        # the markup is on the page as text ...
        visible = page.locator("body").inner_text()
        assert "<script>window.__xss=1</script>" in visible
        panel = next(
            page.locator("#rag-panel").inner_text()
            for i in range(page.locator("#rag-sources label").count())
            if page.locator("#rag-sources label").nth(i).click() is None
            and page.wait_for_timeout(400) is None
            and "recalibrated every 42 days" in page.locator("#rag-panel").inner_text()
        )
        assert "${window.__xss=4}" in panel and "{{constructor.constructor('window.__xss=5')()}}" in panel
        for question in ("Who signs the Zebulon calibration sheet?", "How do operators open the Zebulon calibration manual?"):
            assert "[1]" in ask(page, question)
            page.locator("#rag-sources label").first.click()
            page.wait_for_timeout(400)
            visible += page.locator("body").inner_text()
        assert '<img src=x onerror="window.__xss=2">' in visible
        assert "[click](javascript:window.__xss=3)" in visible
        # ... and never as elements, scripts or links
        assert page.evaluate("() => typeof window.__xss") == "undefined"
        assert page.evaluate("() => document.querySelectorAll('img[src=\"x\"], img[onerror]').length") == 0
        assert page.evaluate("() => document.querySelectorAll('a[href^=\"javascript\"]').length") == 0
        assert page.evaluate(
            "() => [...document.querySelectorAll('script')].filter(s => s.textContent.includes('__xss')).length"
        ) == 0
        assert page.evaluate("() => [...document.querySelectorAll('[onerror]')].length") == 0
        page.wait_for_timeout(500)
        assert page.evaluate("() => typeof window.__xss") == "undefined"
        assert not errors, errors
        context.close()
    finally:
        app.close()
