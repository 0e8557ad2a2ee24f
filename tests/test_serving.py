"""Serving from the store: the lexical index ingest writes (segments, manifests, incremental),
BM25 as llama-index's BM25Retriever ranks, and two real UI processes on one real Chroma server
that keep answering through an ingest and pick up the new document."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import CORPUS, REPO, free_port, ingest_into, start_server, stop_process

NEW_DOC = """# Quokka field notes

The quokka census of Rottnest Island counted 11,842 quokkas in March 2031.
Census volunteers walked 212 transects with clipboards and binoculars.
"""


def _llama_bm25_ids(chunks, query: str, k: int) -> list[str]:
    from llama_index.core.schema import QueryBundle, TextNode
    from llama_index.retrievers.bm25 import BM25Retriever

    nodes = [TextNode(text=c.embed_text(), id_=c.id) for c in chunks]
    r = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=min(k, len(nodes)), token_pattern=r"(?u)\b\w+\b")
    return [n.node.node_id for n in r.retrieve(QueryBundle(query_str=query)) if (n.score or 0) > 0]


def test_bm25_over_segments_ranks_as_llama_index_does(corpus_store):
    """Our query-time BM25 over the stored segment gives llama-index's BM25Retriever ranking."""
    from ingest.lexical import LexicalIndex, Segment
    from ingest.store import Store

    store = Store(corpus_store.store)
    fp = store.info().corpus_fingerprint
    manifest = store.lexical_manifest(fp)
    assert manifest and set(manifest) == {"anthropic-rsp-review.md"}
    seg_id = manifest["anthropic-rsp-review.md"][1]
    seg = Segment(seg_id, store.lexical_segment(seg_id))
    assert seg.tf.dtype == np.uint8  # term counts are held in the smallest type that fits them
    lex = LexicalIndex(manifest, [seg])
    chunks = store.all_chunks()
    assert lex.n == len(chunks)
    for q in ("When was RSP v3 released?", "ASL-3 CBRN threshold Claude Opus", "pause commitment rescinded",
              "What does the roadmap say about external review?"):
        ours = [cid for cid, _ in lex.bm25(q, 20)]
        theirs = _llama_bm25_ids(chunks, q, 20)
        assert ours[:10] == theirs[:10], q  # ties far down may order differently
    assert lex.bm25("the of and", 20) == []  # stopwords only: nothing


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def test_release_heap_returns_freed_memory_to_the_os():
    """What loading a state leaves behind (freed, but held by malloc amid live blocks) goes back."""
    from assistant.retrieve import release_heap

    blocks = [bytes(4000) + bytes([i % 256]) for i in range(60_000)]  # ~240 MB of malloc'd blocks
    kept = blocks[::16]  # live blocks scattered through the heap: it cannot shrink from its top
    del blocks
    before = _rss_mb()
    release_heap()
    assert _rss_mb() < before - 100, "freed heap stayed resident"
    assert len(kept) == 3750


def test_term_counts_keep_their_values_in_the_compact_type():
    from ingest.lexical import _compact_counts

    for counts, dtype in (([0, 3, 255], np.uint8), ([1, 256, 65535], np.uint16), ([2, 70000], np.float32)):
        got = _compact_counts(np.asarray(counts, dtype=np.float32))
        assert got.dtype == dtype and got.tolist() == counts


def test_ingest_adds_a_segment_for_changed_files_and_keeps_the_rest(tmp_path, embedder):
    """A second ingest writes one segment for the new file; the first file's segment is reused;
    the index's statistics are those of all live chunks; removing the file drops it again."""
    from assistant.pipeline import Assistant
    from assistant.settings import Settings
    from assistant.terms import TermStats
    from ingest.store import Store

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(CORPUS / "anthropic-rsp-review.md", corpus)
    settings, _ = ingest_into(tmp_path / "store", [corpus], embedder)
    store = Store(settings.store)
    fp1 = store.info().corpus_fingerprint
    m1 = store.lexical_manifest(fp1)
    (corpus / "quokka.md").write_text(NEW_DOC, encoding="utf-8")
    ingest_into(tmp_path / "store", [corpus], embedder)
    store = Store(settings.store)  # a collection object keeps the metadata it was opened with
    fp2 = store.info().corpus_fingerprint
    m2 = store.lexical_manifest(fp2)
    assert fp2 != fp1 and set(m2) == {"anthropic-rsp-review.md", "quokka.md"}
    assert m2["anthropic-rsp-review.md"] == m1["anthropic-rsp-review.md"]  # not rebuilt
    assert m2["quokka.md"][1] != m1["anthropic-rsp-review.md"][1]  # a segment of its own

    assistant = Assistant(Settings(store=settings.store, corpus_dirs=(corpus,), ranker=False), embedder)
    index = assistant.retriever.index()
    chunks = store.all_chunks()
    full = TermStats([c.embed_text() for c in chunks])
    assert index.stats.n == full.n == len(chunks)
    for term in ("quokka", "census", "asl", "3", "commit", "rescind", "zzzz"):
        assert index.stats.idf(term) == pytest.approx(full.idf(term)), term
        assert index.stats.known(term) == full.known(term)
    assert "asl-3" in index.identifiers and "asl-9" not in index.identifiers
    answer = assistant.ask("How many quokkas did the Rottnest Island census count?")
    assert not answer.abstained and "11,842" in answer.text and answer.citations[0].source == "quokka.md"

    (corpus / "quokka.md").unlink()
    ingest_into(tmp_path / "store", [corpus], embedder)
    store = Store(settings.store)
    m3 = store.lexical_manifest(store.info().corpus_fingerprint)
    assert m3 == m1
    time.sleep(1.1)  # past the freshness check
    again = assistant.ask("How many quokkas did the Rottnest Island census count?")
    assert all(c.source != "quokka.md" for c in again.citations)


def test_a_store_without_a_lexical_index_is_still_served(tmp_path, embedder, capfd):
    """A store written before the lexical index existed: built in memory, with a notice naming the fix."""
    from assistant.pipeline import Assistant
    from assistant.settings import Settings
    from ingest.store import Store

    settings, _ = ingest_into(tmp_path / "store", [CORPUS], embedder)
    store = Store(settings.store)
    store.client.delete_collection(settings.store.collection + "__lexical")
    answer = Assistant(Settings(store=settings.store, ranker=False), embedder).ask("When was RSP v3 released?")
    assert "24 February 2026" in answer.text
    assert "python -m ingest" in capfd.readouterr().err


# ------------------------------------------------------------------ several servers, one store


def _ask(client, question: str) -> dict:
    result = client.predict(question, [], api_name="/ask")
    return json.loads(result) if isinstance(result, str) else result


def test_two_ui_servers_on_one_chroma_server_answer_through_an_ingest(chroma_server, tmp_path):
    """Two `python -m ui` processes on one `chroma run`; an ingest adds a document while both
    serve: every question is answered throughout, and both then cite the new document."""
    from gradio_client import Client

    host, cport, _ = chroma_server
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(CORPUS / "anthropic-rsp-review.md", corpus)
    env = {**os.environ, "RAG_RANKER": "0", "PYTHONPATH": str(REPO)}
    store_flags = ["--chroma-host", host, "--chroma-port", str(cport)]
    ingest_cmd = [sys.executable, "-m", "ingest", str(corpus), *store_flags, "--no-progress"]
    first = subprocess.run(ingest_cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    procs, clients = [], []
    try:
        for i in range(2):
            port = free_port()
            cmd = [sys.executable, "-m", "ui", "--port", str(port), *store_flags, "--corpus", str(corpus),
                   "--no-uploads", "--feedback", str(tmp_path / f"fb{i}.jsonl")]
            procs.append(start_server(cmd, port, 120, cwd=REPO, env=env))
        clients = [Client(f"http://127.0.0.1:{p.args[p.args.index('--port') + 1]}/", verbose=False) for p in procs]
        for c in clients:
            assert "24 February 2026" in _ask(c, "When was RSP v3 released?")["answer"]

        (corpus / "quokka.md").write_text(NEW_DOC, encoding="utf-8")
        ingest = subprocess.Popen(ingest_cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        failures: list[str] = []
        answered = [0, 0]

        def keep_asking(i: int) -> None:
            while ingest.poll() is None:
                try:
                    a = _ask(clients[i], "When was RSP v3 released?")
                    if "24 February 2026" not in a["answer"]:
                        failures.append(f"server {i}: {a['answer'][:120]}")
                    answered[i] += 1
                except Exception as err:  # noqa: BLE001 - recorded and asserted below
                    failures.append(f"server {i}: {type(err).__name__}: {err}")

        askers = [threading.Thread(target=keep_asking, args=(i,)) for i in range(2)]
        for t in askers:
            t.start()
        out, err = ingest.communicate(timeout=300)
        for t in askers:
            t.join(60)
        assert ingest.returncode == 0, err
        assert not failures, failures[:3]
        assert all(answered), answered
        time.sleep(1.2)  # past each server's freshness check
        for c in clients:
            a = _ask(c, "How many quokkas did the Rottnest Island census count?")
            assert "11,842" in a["answer"], a["answer"]
            assert a["citations"][0]["source"] == "quokka.md"
    finally:
        for p in procs:
            stop_process(p, 10)
