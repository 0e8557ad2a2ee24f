"""The assistant against the real collection: citations, abstention, follow-ups, CLI."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.core import NOT_IN_CORPUS, Assistant
from assistant.errors import CiteError, QuestionError
from assistant.records import Turn
from assistant.settings import Settings

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def assistant(corpus_store, embedder):
    return Assistant(Settings(store=corpus_store.store), embedder)


def corpus_text(assistant, source):
    return assistant.source_text(source)


def check_citations(assistant, answer):
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)}
    assert markers == {c.n for c in answer.citations}, "phantom or orphan citation"
    for c in answer.citations:
        assert corpus_text(assistant, c.source)[c.start : c.end] == c.quote


def test_answers_with_a_cited_date(assistant):
    answer = assistant.ask("When was version 3 of the policy released?")
    assert not answer.abstained
    assert "24 February 2026" in answer.text
    assert any("24 February 2026" in c.quote for c in answer.citations)
    check_citations(assistant, answer)


@pytest.mark.parametrize(
    "question",
    [
        "What is the annual revenue of Anthropic?",
        "Which football club won the 2026 league?",
    ],
)
def test_abstains_when_the_corpus_does_not_say(assistant, question):
    answer = assistant.ask(question)
    assert answer.abstained
    assert answer.text == NOT_IN_CORPUS
    assert answer.citations == ()


def test_every_answer_cites_exact_spans(assistant):
    for q in [
        "Which Claude models are ASL-2?",
        "What did Bengio argue?",
        "Who are the external reviewers?",
        "Does DeepMind have a pause commitment?",
        "What does ASL-3 require for weight protection?",
    ]:
        answer = assistant.ask(q)
        check_citations(assistant, answer)
        for c in answer.citations:
            assert c.section is not None and c.chunk_id and c.end > c.start


def test_table_rows_keep_their_header(assistant):
    answer = assistant.ask("Does Google DeepMind's framework have a pause commitment?")
    assert "No explicit pause" in answer.text
    row = next(c for c in answer.citations if "No explicit pause" in c.quote)
    assert row.header.startswith("| Dimension")


def test_follow_up_uses_the_conversation(assistant):
    first = assistant.ask("When was RSP v3 released?")
    history = [Turn("user", "When was RSP v3 released?"), Turn("assistant", first.text)]
    follow = assistant.ask("What did it rescind?", history)
    assert "pause" in follow.text.lower()
    alone = assistant.ask("What did it rescind?")
    assert alone.query != follow.query  # the history changed what was searched for
    check_citations(assistant, follow)


def test_follow_up_what_about(assistant):
    q1 = "Does OpenAI's Preparedness Framework have a pause commitment?"
    a1 = assistant.ask(q1)
    a2 = assistant.ask("What about DeepMind's?", [Turn("user", q1), Turn("assistant", a1.text)])
    assert "No explicit pause" in a2.text


def test_follow_up_query_carries_the_last_answer_without_markers():
    """'that law' may be named only in the previous answer; an abstention adds nothing."""
    from assistant.conversation import resolve
    from assistant.records import NOT_IN_CORPUS

    q1 = "What did Anthropic publish in October 2025?"
    said = "October 2025: SB 53 Frontier Compliance Framework published [1]"
    q = resolve("When did that law take effect?", [Turn("user", q1), Turn("assistant", said)])
    assert q.focus == "When did that law take effect?"
    assert q1 in q.context and "SB 53 Frontier Compliance Framework published" in q.context and "[1]" not in q.context
    assert resolve("When did that law take effect?", [Turn("user", q1), Turn("assistant", NOT_IN_CORPUS)]).context == q1
    assert resolve("What is ASL-3?", [Turn("user", q1), Turn("assistant", said)]).context == ""  # not a follow-up


def test_short_follow_up_with_a_word_the_corpus_lacks_is_answered(assistant):
    """'In what book?' names one word the corpus never uses; judged with the turn it leans on,
    that word is one of several, so the answer is not suppressed as off-corpus."""
    from assistant.answer import unknown_share
    from assistant.conversation import Query

    q1 = "Which researcher says AI should be constrained by default?"
    stats = assistant.retriever.index().stats
    assert unknown_share(Query("In what book?"), stats) == 1.0
    assert unknown_share(Query("In what book?", q1), stats) < 0.5
    a1 = assistant.ask(q1)
    a2 = assistant.ask("In what book?", [Turn("user", q1), Turn("assistant", a1.text)])
    assert not a2.abstained and "Human Compatible" in a2.text
    check_citations(assistant, a2)


@pytest.mark.parametrize(
    "question, fragment",
    [
        ("", "empty"),
        ("   \n\t ", "empty"),
        ("?!?... ---", "no words"),
        ("x" * 20_000, "limit is 2,000"),
    ],
)
def test_bad_questions_are_refused_in_one_line(assistant, question, fragment):
    with pytest.raises(QuestionError) as err:
        assistant.ask(question)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_control_characters_and_broken_unicode_are_cleaned(assistant):
    answer = assistant.ask("When was\x00 RSP v3\x1b released?\ud800")
    assert "24 February 2026" in answer.text


def test_cite_is_confined_to_the_corpus(assistant):
    from assistant.cite import passage

    for bad in ["../../etc/passwd", "/etc/passwd", "corpus/../../etc/passwd"]:
        with pytest.raises(CiteError):
            passage(assistant.settings.corpus_dirs, bad, 0, 5)


def run_cli(*args, input=None):
    return subprocess.run(
        [sys.executable, "-m", "assistant", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        input=input,
        timeout=120,
    )


def test_cli_ask_json(corpus_store):
    out = run_cli("ask", "When was version 3 of the policy released?", "--json", "--store", str(corpus_store.store.path))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) == {"answer", "abstained", "citations"}
    assert data["abstained"] is False
    assert any("24 February 2026" in c["quote"] for c in data["citations"])
    assert set(data["citations"][0]) == {"n", "chunk_id", "source", "section", "start", "end", "quote"}


def test_cli_batch_round_trips_a_two_turn_history(corpus_store, tmp_path):
    src = tmp_path / "in.jsonl"
    rows = [
        {"id": "a", "question": "When was RSP v3 released?"},
        {
            "id": "b",
            "question": "What did it rescind?",
            "history": [
                {"role": "user", "content": "When was RSP v3 released?"},
                {"role": "assistant", "content": "RSP v3, released 24 February 2026 [1]"},
            ],
        },
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out_path = tmp_path / "out.jsonl"
    out = run_cli("batch", str(src), str(out_path), "--store", str(corpus_store.store.path))
    assert out.returncode == 0, out.stderr
    got = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert [g["id"] for g in got] == ["a", "b"]
    assert got[1]["history"] == rows[1]["history"]
    assert "pause" in got[1]["answer"].lower()
    assert all({"answer", "abstained", "citations"} <= set(g) for g in got)


def test_cli_cite_and_refusal(corpus_store):
    store = str(corpus_store.store.path)
    ok = run_cli("cite", "anthropic-rsp-review.md:20-60", "--store", store)
    assert ok.returncode == 0 and ">>>" in ok.stdout
    bad = run_cli("cite", "../../etc/passwd:0-10", "--store", store)
    assert bad.returncode == 2
    assert "outside the corpus" in bad.stderr
    assert "root:" not in bad.stdout + bad.stderr


def test_cli_missing_store_names_the_fix(tmp_path):
    out = run_cli("ask", "anything", "--store", str(tmp_path / "nope"))
    assert out.returncode == 2
    assert "python -m ingest" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_server_mode_ingest_question_and_follow_up(chroma_server, embedder, tmp_path):
    """Scale-out path: a real `chroma run`, ingest through HttpClient, then ask and follow up."""
    from conftest import CORPUS

    from ingest.pipeline import run_ingest
    from ingest.settings import IngestSettings, StoreSettings

    host, port, _ = chroma_server
    store = StoreSettings(host=host, port=port)
    summary = run_ingest(IngestSettings(store=store, corpus=(CORPUS,), progress=False), embedder, log=lambda s: None)
    assert summary.added > 0
    assistant = Assistant(Settings(store=store), embedder)
    first = assistant.ask("When was RSP v3 released?")
    assert "24 February 2026" in first.text
    follow = assistant.ask(
        "What did it rescind?", [Turn("user", "When was RSP v3 released?"), Turn("assistant", first.text)]
    )
    assert "pause" in follow.text.lower()
    check_citations(assistant, follow)
