"""The chat page's handlers (ui.app.ChatController) over the real Assistant and the real corpus, no browser."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from assistant.cite import passage
from assistant.pipeline import NOT_IN_CORPUS, Assistant
from assistant.settings import Settings
from conftest import ingest_into
from ingest.settings import StoreSettings
from ui import render
from ui.app import UNEXPECTED, ChatController, new_conversation

XSS_TEXT = """Zebulon flux capacitor maintenance log

The flux capacitor of the Zebulon widget is recalibrated every 42 days <script>alert(1)</script> by the night shift.

The Zebulon inspector signs the calibration sheet <img src=x onerror=alert(2)> after each recalibration of the flux capacitor.

Operators who need the Zebulon calibration manual can [click](javascript:alert(3)) to open it before recalibrating.
"""


@pytest.fixture(scope="module")
def assistant(corpus_store, embedder):
    return Assistant(Settings(store=corpus_store.store), embedder)


@pytest.fixture
def ctl(assistant, tmp_path):
    return ChatController(assistant, feedback_path=tmp_path / "fb" / "feedback.jsonl", export_dir=tmp_path / "exports")


def run(ctl, question, conversation=None):
    steps = list(ctl.respond(question, conversation if conversation is not None else new_conversation()))
    assert steps and steps[-1].done and all(not s.done for s in steps[:-1])
    return steps


def source_text(name: str) -> str:
    from conftest import CORPUS

    return (CORPUS / name).read_text(encoding="utf-8")


def test_streams_partial_text_then_an_answer_with_numbered_sources(ctl):
    # a broad question: its answer is a list of dated items, each cited, streamed item by item
    steps = run(ctl, "Give the timeline of events in 2025 and early 2026.")
    final = steps[-1]
    partial = [s.text for s in steps[:-1] if s.text]
    assert len(partial) >= 2, "the answer should arrive in several pieces"
    assert all(final.text.startswith(p) for p in partial)
    assert [len(p) for p in partial] == sorted(len(p) for p in partial)
    assert "[1]" in final.text and "24 February 2026" in final.text
    assert not final.error and final.sources
    numbers = {int(n) for n in re.findall(r"\[(\d+)\]", final.text)}
    assert numbers == {c["n"] for c in final.sources}
    for c in final.sources:
        assert source_text(c["source"])[c["start"] : c["end"]] == c["quote"]
    # the chat shows the question, then the answer with its sources below it
    user, bot = final.messages[-2:]
    assert user["role"] == "user" and "Give the timeline of events in 2025 and early 2026." in user["content"]
    assert bot["role"] == "assistant" and "Sources" in bot["content"] and 'class="rag-ref">[1]' in bot["content"]
    assert "Timeline" in bot["content"] or "RSP v3" in bot["content"]
    # the first source opens in the panel on its own, highlighted
    assert "<mark>" in final.panel
    choices = ctl.source_choices(final.conversation)
    assert [v for _, v in choices] == [f"0:{c['n']}" for c in final.sources]
    assert choices[0][0].startswith("[1] ")


def test_source_panel_shows_paragraph_highlight_trail_file_and_range(ctl):
    final = run(ctl, "When was RSP v3 released?")[-1]
    target = next(c for c in final.sources if "24 February 2026" in c["quote"])
    html = ctl.select_source(final.conversation, f"0:{target['n']}")
    mark = re.search(r"<mark>(.*?)</mark>", html, re.S).group(1)
    assert "24 February 2026" in mark
    assert render.esc(target["section"] or "Beginning of the document") in html
    assert target["source"] in html
    assert f"{target['start']:,}–{target['end']:,}" in html
    # the surrounding paragraph is there too, not just the quote
    p = passage(ctl.assistant.settings.corpus_dirs, target["source"], target["start"], target["end"])
    before, after = p.paragraph[: p.start - p.paragraph_start], p.paragraph[p.end - p.paragraph_start :]
    assert before or after
    assert f"{render.esc(before)}<mark>{render.esc(p.quote)}</mark>{render.esc(after)}" in html
    assert ctl.select_source(final.conversation, "0:99") == render.PANEL_EMPTY
    assert ctl.select_source(final.conversation, "garbage") == render.PANEL_EMPTY
    assert ctl.select_source(new_conversation(), "0:1") == render.PANEL_EMPTY


def test_follow_up_uses_the_conversation(ctl):
    first = run(ctl, "When was RSP v3 released?")[-1]
    second = run(ctl, "What did it rescind?", first.conversation)[-1]
    assert not second.error and not second.conversation["exchanges"][-1]["abstained"]
    assert any("pause" in c["quote"].lower() for c in second.sources), second.sources
    assert "pause" in second.text.lower()
    turns = second.conversation["turns"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[0]["content"] == "When was RSP v3 released?"
    # the panel offers the latest answer's sources
    assert all(v.startswith("1:") for _, v in ctl.source_choices(second.conversation))
    assert len(second.messages) == 4


def test_two_sessions_do_not_mix(ctl):
    a = run(ctl, "When was RSP v3 released?")[-1].conversation
    a_before = json.dumps(a, sort_keys=True)
    b = run(ctl, "What did it rescind?", new_conversation())[-1].conversation
    # session B saw only its own question
    assert len(b["exchanges"]) == 1 and b["exchanges"][0]["question"] == "What did it rescind?"
    assert "v3" not in b["exchanges"][0].get("query", "") and "released" not in b["exchanges"][0].get("query", "")
    assert all("RSP v3" not in t["content"] for t in b["turns"] if t["role"] == "user")
    # and session A is untouched by B, and by its own later steps (respond copies the state it is given)
    assert json.dumps(a, sort_keys=True) == a_before
    a2 = run(ctl, "What did it rescind?", a)[-1].conversation
    assert len(a2["exchanges"]) == 2 and len(a["exchanges"]) == 1
    assert "v3" in a2["exchanges"][1]["query"] or "released" in a2["exchanges"][1]["query"]


def test_abstention_shows_the_plain_message_and_no_sources(ctl):
    final = run(ctl, "What is the capital of France?")[-1]
    assert final.text == NOT_IN_CORPUS and not final.error
    assert final.sources == []
    ex = final.conversation["exchanges"][-1]
    assert ex["abstained"] and ex["citations"] == []
    bot = final.messages[-1]["content"]
    assert NOT_IN_CORPUS in bot and "Sources" not in bot and "rag-ref" not in bot
    if ex["related"]:
        assert "Related passages (not an answer)" in bot
    assert ctl.source_choices(final.conversation) == []
    assert final.panel == render.PANEL_EMPTY


@pytest.mark.parametrize("question, words", [("   ", "empty"), ("x " * 3000, "limit"), ("?!", "no words")])
def test_bad_question_is_one_line_in_the_chat(ctl, question, words):
    conv = run(ctl, "When was RSP v3 released?")[-1].conversation
    final = run(ctl, question, conv)[-1]
    assert final.error and "\n" not in final.error and words in final.error
    assert final.conversation["turns"] == conv["turns"], "a refused question is not part of the history"
    assert final.sources == [] and ctl.source_choices(final.conversation) == []
    bot = final.messages[-1]["content"]
    assert "⚠" in bot and render.esc(final.error) in bot
    # the session goes on
    again = run(ctl, "What did it rescind?", final.conversation)[-1]
    assert again.sources and not again.error


def test_unexpected_error_is_one_line_without_traceback_or_path(ctl, assistant, monkeypatch, capfd):
    def boom(*args, **kwargs):
        raise RuntimeError(f"exploded in {Path(__file__).resolve()} at line 3")

    monkeypatch.setattr(assistant, "stream", boom)  # ask() is the last event of stream()
    final = run(ctl, "When was RSP v3 released?")[-1]
    assert final.error == UNEXPECTED.format(kind="RuntimeError")
    shown = json.dumps(final.messages, ensure_ascii=False)
    assert "Traceback" not in shown and "/tests/" not in shown and "exploded" not in shown
    assert "RuntimeError" in shown and "make ingest" in shown
    err = capfd.readouterr().err
    assert "Traceback" in err and "exploded" in err, "the full traceback goes to stderr"
    monkeypatch.undo()
    assert run(ctl, "When was RSP v3 released?")[-1].sources, "the next question works again"


def test_missing_store_is_one_line_in_chat_and_header(tmp_path, embedder):
    assistant = Assistant(Settings(store=StoreSettings(path=tmp_path / "no-store")), embedder)
    ctl = ChatController(assistant, feedback_path=tmp_path / "fb.jsonl", export_dir=tmp_path / "x")
    final = run(ctl, "When was RSP v3 released?")[-1]
    assert final.error.startswith("The document store is not available")
    assert "ingest" in final.error and "\n" not in final.error
    assert str(tmp_path) not in final.error and str(tmp_path) not in json.dumps(final.messages)
    header = ctl.header_html()
    assert "rag-warn" in header and "not available" in header and str(tmp_path) not in header


def test_corpus_html_is_escaped_everywhere(tmp_path, embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "zebulon-log.txt").write_text(XSS_TEXT, encoding="utf-8")
    settings, _ = ingest_into(tmp_path / "store", [corpus], embedder)
    assistant = Assistant(Settings(store=settings.store, corpus_dirs=(corpus,)), embedder)
    ctl = ChatController(assistant, feedback_path=tmp_path / "fb.jsonl", export_dir=tmp_path / "x")
    final = run(ctl, "How often is the Zebulon flux capacitor recalibrated?")[-1]
    assert final.sources, final.text
    panels = [ctl.select_source(final.conversation, v) for _, v in ctl.source_choices(final.conversation)]
    panels.append(final.panel)
    assert any("&lt;script&gt;" in p for p in panels)
    assert any("&lt;img src=x onerror=alert(2)&gt;" in p for p in panels)
    chat = "".join(m["content"] for m in final.messages)
    for html in panels + [chat, ctl.header_html()]:
        assert "<script" not in html.lower() and "<img" not in html.lower()
        assert 'href="javascript' not in html.lower() and "<a " not in html.lower()
    assert "&lt;script&gt;" in chat
    # a question with markup in it is shown as text too
    q = run(ctl, 'Who signs <b onmouseover="x()">the</b> Zebulon sheet?', final.conversation)[-1]
    assert "&lt;b onmouseover=&quot;x()&quot;&gt;" in q.messages[-2]["content"]
    # the exported Markdown carries no raw HTML and no live link
    md = ctl.export_markdown(q.conversation)
    assert "<script" not in md and "<img" not in md and "](javascript" not in md


def test_thumbs_append_one_json_line_each(ctl):
    final = run(ctl, "When was RSP v3 released?")[-1]
    conv = run(ctl, "What is the capital of France?", final.conversation)[-1].conversation
    assert ctl.vote(conv, 1, True)["vote"] == "up"  # message 1 = the first answer
    assert ctl.vote(conv, 3, "Dislike")["vote"] == "down"  # message 3 = the abstention
    assert ctl.vote(conv, 99, True) is None
    lines = ctl.feedback_path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    up, down = (json.loads(line) for line in lines)
    assert set(up) == {"time", "vote", "question", "answer", "citations"}
    assert up["question"] == "When was RSP v3 released?" and up["answer"] == final.text
    assert [c["n"] for c in up["citations"]] == [c["n"] for c in final.sources]
    assert {"n", "chunk_id", "source", "section", "start", "end", "quote"} <= set(up["citations"][0])
    assert down["vote"] == "down" and down["answer"] == NOT_IN_CORPUS and down["citations"] == []


def test_export_is_markdown_with_the_citations(ctl):
    assert ctl.export(new_conversation()) is None
    final = run(ctl, "When was RSP v3 released?")[-1]
    conv = run(ctl, "What did it rescind?", final.conversation)[-1].conversation
    path = ctl.export(conv)
    assert path.suffix == ".md" and path.is_file()
    md = path.read_text(encoding="utf-8")
    assert md.startswith("# ")
    assert "## 1. When was RSP v3 released?" in md and "## 2. What did it rescind?" in md
    for ex in conv["exchanges"]:
        for c in ex["citations"]:
            assert f"{c['n']}. `{c['source']}` characters {c['start']}–{c['end']}" in md
            assert " ".join(c["quote"].split())[:60] in md
    assert "24 February 2026" in md and "1 document" in md
