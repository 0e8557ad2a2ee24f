"""The chat app served for real on loopback: its public `/ask` API through gradio_client, and authentication."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from assistant.pipeline import NOT_IN_CORPUS, Assistant
from assistant.settings import Settings
from conftest import CORPUS, REPO, free_port, stop_process
from ui import build_app


@pytest.fixture(scope="module")
def served(corpus_store, embedder, tmp_path_factory):
    assistant = Assistant(Settings(store=corpus_store.store), embedder)
    app = build_app(assistant, feedback_path=tmp_path_factory.mktemp("fb") / "feedback.jsonl")
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


@pytest.fixture(scope="module")
def client(served):
    from gradio_client import Client

    return Client(served, verbose=False)


def http(method: str, url: str, body: bytes | None = None, timeout: float = 20):
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", "replace")


def test_ask_returns_the_answer_with_verified_citations(client):
    result = client.predict("When was RSP v3 released?", [], api_name="/ask")
    if isinstance(result, str):
        result = json.loads(result)
    assert {"answer", "abstained", "citations", "related", "notice", "backend"} <= set(result)
    assert result["abstained"] is False
    assert "[1]" in result["answer"] and "24 February 2026" in result["answer"]
    assert result["citations"] and [c["n"] for c in result["citations"]] == list(range(1, len(result["citations"]) + 1))
    for c in result["citations"]:
        assert {"n", "chunk_id", "source", "section", "start", "end", "quote"} <= set(c)
        text = (CORPUS / c["source"]).read_text(encoding="utf-8")
        assert text[c["start"] : c["end"]] == c["quote"]


def test_ask_follows_up_with_history(client):
    first = client.predict("When was RSP v3 released?", [], api_name="/ask")
    history = [
        {"role": "user", "content": "When was RSP v3 released?"},
        {"role": "assistant", "content": first["answer"]},
    ]
    second = client.predict("What did it rescind?", history, api_name="/ask")
    assert not second["abstained"]
    assert any("pause" in c["quote"].lower() for c in second["citations"])


def test_unanswerable_question_abstains_without_citations(client):
    result = client.predict("What is the capital of France?", [], api_name="/ask")
    assert (result["answer"], result["abstained"], result["citations"]) == (NOT_IN_CORPUS, True, [])


def test_bad_input_is_a_one_line_error_and_the_server_keeps_serving(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as err:
        client.predict("   ", [], api_name="/ask")
    assert "empty" in str(err.value) and "Traceback" not in str(err.value)
    with pytest.raises(AppError) as err:
        client.predict("When?", [{"who": "me"}], api_name="/ask")
    assert "history" in str(err.value)
    assert client.predict("What does ASL-3 require?", [], api_name="/ask")["citations"]


def test_only_ask_is_in_the_public_api(client, served):
    info = client.view_api(print_info=False, return_format="dict")
    assert list(info["named_endpoints"]) == ["/ask"]
    assert not info.get("unnamed_endpoints")
    status, body = http("GET", served + "gradio_api/info")
    assert status == 200 and list(json.loads(body)["named_endpoints"]) == ["/ask"]


def _python_m_ui(*args: str, env_extra: dict | None = None, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RAG_UI_USER", "RAG_UI_PASSWORD")}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "ui", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, **kw
    )


def test_non_loopback_without_credentials_refuses_to_start(tmp_path):
    port = free_port()
    started = time.monotonic()
    proc = _python_m_ui("--host", "0.0.0.0", "--port", str(port), "--store", str(tmp_path / "none"))
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "authentication" in err and "RAG_UI_USER" in err and "--auth-file" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert time.monotonic() - started < 30, "it must refuse before loading anything"
    # only one of the two variables is no better; nor is a malformed auth file
    proc = _python_m_ui("--host", "0.0.0.0", "--port", str(port), env_extra={"RAG_UI_USER": "alice"})
    assert proc.returncode != 0 and "RAG_UI_PASSWORD" in proc.stderr
    bad = tmp_path / "auth.txt"
    bad.write_text("no colon here\n")
    proc = _python_m_ui("--host", "0.0.0.0", "--port", str(port), "--auth-file", str(bad))
    assert proc.returncode != 0 and "user:password" in proc.stderr
    proc = _python_m_ui("--host", "0.0.0.0", "--port", str(port), "--auth-file", str(tmp_path / "missing.txt"))
    assert proc.returncode != 0 and "auth file" in proc.stderr


def test_with_credentials_unauthenticated_requests_are_refused(corpus_store, embedder, tmp_path):
    from gradio_client import Client

    assistant = Assistant(Settings(store=corpus_store.store), embedder)
    app = build_app(assistant, feedback_path=tmp_path / "feedback.jsonl")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
               auth=[("alice", "correct horse")])
    try:
        status, body = http("GET", url + "config")
        assert status in (401, 403) and "24 February" not in body
        status, body = http("POST", url + "gradio_api/call/ask", json.dumps({"data": ["When was RSP v3 released?", []]}).encode())
        assert status in (401, 403) and "citations" not in body
        status, body = http("POST", url + "gradio_api/upload", b"--x\r\n")  # adding documents needs the login too
        assert status in (401, 403)
        status, body = http("GET", url)  # the page shell only: it asks for a login before any component
        assert "Sources of the latest answer" not in body and "rag-chat" not in body
        with pytest.raises(Exception):
            Client(url, verbose=False)
        with pytest.raises(Exception):
            Client(url, auth=("alice", "wrong"), verbose=False)
        authed = Client(url, auth=("alice", "correct horse"), verbose=False)
        assert authed.predict("When was RSP v3 released?", [], api_name="/ask")["citations"]
    finally:
        app.close()


def test_main_with_auth_file_and_a_missing_store_starts_and_reports(tmp_path):
    """`python -m ui` on loopback with --auth-file: says auth is on, serves, asks for a login,
    and a missing store is one line for the client rather than a crash."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    auth = tmp_path / "auth.txt"
    auth.write_text("bob:hunter22\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tmp_path / "ui.log"
    env = {k: v for k, v in os.environ.items() if k not in ("RAG_UI_USER", "RAG_UI_PASSWORD")}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ui", "--port", str(port), "--store", str(tmp_path / "no-store"),
             "--auth-file", str(auth), "--feedback", str(tmp_path / "fb.jsonl")],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if http("GET", url + "config", timeout=2)[0] in (200, 401):
                    break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        assert proc.poll() is None, log.read_text()
        text = log.read_text()
        assert "authentication is on" in text and "hunter22" not in text
        assert http("GET", url + "config")[0] == 401
        client = Client(url, auth=("bob", "hunter22"), verbose=False)
        with pytest.raises(AppError) as err:
            client.predict("When was RSP v3 released?", [], api_name="/ask")
        msg = str(err.value)
        assert "store is not available" in msg and str(tmp_path) not in msg and "Traceback" not in msg
        assert proc.poll() is None, "the server keeps serving"
    finally:
        stop_process(proc, 15)
