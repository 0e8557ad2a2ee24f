"""Shared fixtures: the real packaged model, real Chroma, every data folder under tmp."""
from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from harness import free_port, start_server, stop_process  # noqa: F401  (tests import them from here)
from ingest.runtime import prepare_environment

prepare_environment()
# the embedding model's ONNX export (ingest/onnx_runtime.py) is built once per machine for every
# test run and its child processes, outside the developer's data/ folder
os.environ.setdefault("RAG_MODELS_DIR", str(Path(os.environ.get("TMPDIR") or "/tmp") / "rag-test-models"))

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "corpus"
SEED = Path(__file__).resolve().parent / "data" / "rsp_seed.txt"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """No test reads or writes the developer's data/ folder or settings."""
    for key in ("RAG_STORE", "RAG_CHROMA_HOST", "RAG_CHROMA_PORT", "RAG_COLLECTION"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RAG_DATA", str(tmp_path / "rag-data"))


@pytest.fixture(scope="session")
def embedder():
    from ingest.embed import shared_embedder

    return shared_embedder()


def ingest_into(store_dir: Path, paths, embedder, collection: str = "corpus", **store_kw):
    from ingest.pipeline import run_ingest
    from ingest.settings import IngestSettings, StoreSettings

    store = StoreSettings(path=Path(store_dir), collection=collection, **store_kw)
    settings = IngestSettings(store=store, corpus=tuple(Path(p) for p in paths), progress=False)
    return settings, run_ingest(settings, embedder, log=lambda s: None)


def assistant_over(root: Path, files: dict[str, str], embedder):
    """An extractive assistant over a small corpus written under root/corpus, ingested into root/store."""
    from assistant.pipeline import Assistant
    from assistant.settings import load_settings
    from ingest.settings import StoreSettings

    (root / "corpus").mkdir(parents=True)
    for name, text in files.items():
        (root / "corpus" / name).write_text(text, encoding="utf-8")
    ingest_into(root / "store", [root / "corpus"], embedder)
    settings = load_settings(env={}, store=StoreSettings(path=root / "store"), corpus_dirs=(root / "corpus",))
    return Assistant(settings, embedder=embedder)


@pytest.fixture(scope="session")
def corpus_store(tmp_path_factory, embedder):
    """The real corpus ingested once into an embedded store; read-only for tests."""
    store_dir = tmp_path_factory.mktemp("corpus-store")
    settings, _ = ingest_into(store_dir, [CORPUS], embedder)
    return settings


SUMMARY = re.compile(
    r"^(\d+) files: (\d+) chunks added, (\d+) updated, (\d+) removed, (\d+) unchanged; "
    r"(\d+) texts embedded; (\d+) skipped; \d+\.\d s$"
)


def texts_embedded(chunks, units) -> int:
    """What an ingest embeds: every unit, and the chunks without any (a chunk's vector is the mean of its units')."""
    return len(units) + len({c.id for c in chunks} - {u.chunk_id for u in units})


def summary_of(stdout: str) -> dict[str, int]:
    """The counts of `python -m ingest`'s one-line summary."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert len(lines) == 1, stdout
    m = SUMMARY.match(lines[0])
    assert m, lines[0]
    keys = ("files", "added", "updated", "removed", "unchanged", "embedded", "skipped")
    return dict(zip(keys, map(int, m.groups())))


@pytest.fixture
def chroma_server(tmp_path):
    """A real `chroma run` on a free loopback port; stopped after the test."""
    exe = Path(sys.executable).parent / "chroma"
    port = free_port()
    cmd = [str(exe), "run", "--path", str(tmp_path / "server-data"), "--host", "127.0.0.1", "--port", str(port)]
    proc = start_server(cmd, port, 30, env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    yield ("127.0.0.1", port, proc)
    stop_process(proc, 10)
