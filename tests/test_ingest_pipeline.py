"""Ingest end to end: the real packaged model, real Chroma (embedded and `chroma run`),
the `python -m ingest` command line, bad input, kills and concurrent runs."""
from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import free_port, ingest_into, summary_of, texts_embedded
from ingest.chunk import CHUNKER_VERSION, chunk_document
from ingest.embed import MODEL_ID
from ingest.errors import StoreError
from ingest.load import load_paths
from ingest.records import Document
from ingest.settings import StoreSettings
from ingest.store import Store, fingerprint, rebuild_hint, unit_vectors

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "corpus"
SEED = REPO / "tests" / "data" / "rsp_seed.txt"
INFO_KEYS = ("embedding_model", "chunker_version", "corpus_fingerprint", "documents", "chunks")
GOOD_MD = (
    "# Harbour log\n\n## Morning\n\nThe tide gauges in the harbour were read at six every morning. "
    "The readings went to the port office before noon.\n"
)


# -- helpers ----------------------------------------------------------------------------------


def cli_args(*paths, store: Path) -> list[str]:
    return [sys.executable, "-m", "ingest", *map(str, paths), "--store", str(store), "--no-progress"]


def run_cli(*paths, store: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cli_args(*paths, store=store), cwd=REPO, capture_output=True, text=True, timeout=timeout)


def start_cli(*paths, store: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cli_args(*paths, store=store), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def snapshot(store_path: Path, collection: str = "corpus") -> dict:
    """Everything a store holds (ids, documents, metadata), read with a client that is closed after."""
    store = Store(StoreSettings(path=Path(store_path), collection=collection))
    try:
        chunks = store.chunks.get(include=["documents", "metadatas"])
        listed, _ = store.all_units()
        out = {
            "chunks": {i: (d, m) for i, d, m in zip(chunks["ids"], chunks["documents"], chunks["metadatas"])},
            "units": {u.id: (u.text, {"source": u.source, "start": u.start, "end": u.end, "kind": u.kind}) for u in listed},
            "meta": dict(store.chunks.metadata or {}),
            "count": store.count(),
            "unit_count": store.info().units,
        }
        assert not any(c.name.endswith("__units") for c in store.client.list_collections()), "units live in chunk records"
    finally:
        store.client.close()
    assert out["count"] == len(out["chunks"]) and out["unit_count"] == len(out["units"])
    return out


def assert_no_duplicates(snap: dict) -> None:
    spans = [(m["source"], m["start"], m["end"]) for _, m in snap["chunks"].values()]
    assert len(spans) == len(set(spans)), "the same passage is stored twice"
    uspans = [(m["source"], m["start"], m["end"]) for _, m in snap["units"].values()]
    assert len(uspans) == len(set(uspans)), "the same unit is stored twice"


def _without_vectors(chunks: dict) -> dict:
    return {i: (d, {k: v for k, v in m.items() if k != "unit_vectors"}) for i, (d, m) in chunks.items()}


def assert_same_store(got: dict, want: dict) -> None:
    """Same records; unit vectors equal up to the encoder's own noise (bf16 autocast rounds a text
    differently in batches of other shapes, so a file embedded in another run may differ in the
    last bits): cosine >= 0.999, the bar for interchangeable runtimes."""
    assert_no_duplicates(got)
    assert got["chunks"].keys() == want["chunks"].keys()
    assert _without_vectors(got["chunks"]) == _without_vectors(want["chunks"])
    for cid, (_, meta) in got["chunks"].items():
        n = len(json.loads(meta.get("units") or '{"u": []}')["u"])
        a, b = (unit_vectors(m, n).astype(np.float32) for m in (meta, want["chunks"][cid][1]))
        assert a.shape == b.shape, cid
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert n == 0 or cos.min() >= 0.999, (cid, float(cos.min()))
    assert got["units"].keys() == want["units"].keys()
    assert got["units"] == want["units"]
    assert {k: got["meta"].get(k) for k in INFO_KEYS} == {k: want["meta"].get(k) for k in INFO_KEYS}


def expected_chunks(folder: Path, embedder) -> dict[str, tuple[list, list]]:
    """What a clean ingest of the folder should store, per source, computed without a store."""
    return {
        d.source: chunk_document(d, embedder.count_tokens, 160, 32) for d in load_paths([folder]).documents
    }


def file_fingerprint(folder: Path) -> str:
    return fingerprint(
        (p.relative_to(folder).as_posix(), hashlib.sha1(p.read_bytes()).hexdigest())
        for p in folder.rglob("*")
        if p.is_file()
    )


def write_prose_files(folder: Path, n: int = 6, size: int = 3000) -> None:
    """Larger files of real prose: paragraphs of the corpus and the seed, in different orders."""
    md = CORPUS.joinpath("anthropic-rsp-review.md").read_text(encoding="utf-8")
    pool = [p for p in md.split("\n\n") if p.strip() and not p.startswith(("#", "|", "-"))]
    pool += [
        line
        for line in SEED.read_text(encoding="utf-8").splitlines()
        if len(line) > 150 and not line.startswith(("|", "-", "Section titled"))
    ]
    for k in range(n):
        rng = random.Random(k)
        parts = [f"# Reading notes {k}"]
        part = 0
        while sum(map(len, parts)) < size:
            order = pool[:]
            rng.shuffle(order)
            parts.append(f"## Part {part}: {order[0].split(':')[0][:40]}")
            parts.extend(order[:5])
            part += 1
        folder.joinpath(f"reading-notes-{k}.md").write_text("\n\n".join(parts) + "\n", encoding="utf-8")


def copy_corpus(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for f in CORPUS.iterdir():
        if f.is_file():
            shutil.copy(f, dest / f.name)
    return dest


# -- in-process ingest ----------------------------------------------------------------------------


def test_ingest_stores_exact_spans_and_build_metadata(tmp_path, embedder):
    corpus = copy_corpus(tmp_path / "corpus")
    settings, summary = ingest_into(tmp_path / "store", [corpus], embedder)
    want = expected_chunks(corpus, embedder)
    n_chunks = sum(len(c) for c, _ in want.values())
    n_units = sum(len(u) for _, u in want.values())
    assert summary.files == 1 and summary.added == n_chunks
    assert summary.embedded == sum(texts_embedded(cs, us) for cs, us in want.values())
    snap = snapshot(tmp_path / "store")
    assert snap["count"] == n_chunks and snap["unit_count"] == n_units
    assert set(snap["chunks"]) == {c.id for cs, _ in want.values() for c in cs}
    assert set(snap["units"]) == {u.id for _, us in want.values() for u in us}
    texts = {p.name: p.read_bytes().decode("utf-8") for p in corpus.iterdir()}
    for doc, meta in list(snap["chunks"].values()) + list(snap["units"].values()):
        assert doc == texts[meta["source"]][meta["start"] : meta["end"]]
    assert_no_duplicates(snap)
    meta = snap["meta"]
    assert meta["embedding_model"] == MODEL_ID
    assert meta["chunker_version"] == CHUNKER_VERSION
    assert meta["corpus_fingerprint"] == file_fingerprint(corpus)
    assert meta["documents"] == 1 and meta["chunks"] == n_chunks
    info = Store(settings.store).check_compatible(MODEL_ID, CHUNKER_VERSION)
    assert info.chunks == n_chunks


def test_dense_search_explores_widely_also_in_a_store_made_before(tmp_path, embedder):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    from ingest.store import EF_SEARCH

    corpus = copy_corpus(tmp_path / "corpus")
    # a store whose collection has Chroma's default search breadth, as earlier versions made it
    client = chromadb.PersistentClient(path=str(tmp_path / "store"), settings=ChromaSettings(anonymized_telemetry=False))
    client.create_collection("corpus", embedding_function=None, configuration={"hnsw": {"space": "cosine"}})
    assert client.get_collection("corpus").configuration["hnsw"]["ef_search"] < EF_SEARCH
    del client
    ingest_into(tmp_path / "store", [corpus], embedder)
    store = Store(StoreSettings(path=tmp_path / "store"))
    try:
        assert store.chunks.configuration["hnsw"]["ef_search"] == EF_SEARCH == 400
    finally:
        store.client.close()


def test_a_chunk_vector_is_the_normalised_mean_of_its_unit_vectors(tmp_path, embedder):
    corpus = copy_corpus(tmp_path / "corpus")
    ingest_into(tmp_path / "store", [corpus], embedder)
    store = Store(StoreSettings(path=tmp_path / "store"))
    try:
        chunks = store.chunks.get(include=["embeddings", "documents"])
        units, unit_vecs = store.all_units(with_vectors=True)
    finally:
        store.client.close()
    by_chunk: dict[str, list] = {}
    for u, vec in zip(units, unit_vecs):
        by_chunk.setdefault(u.chunk_id, []).append(vec)
    checked = 0
    for cid, vec in zip(chunks["ids"], chunks["embeddings"]):
        if cid not in by_chunk:
            continue
        mean = np.mean(by_chunk[cid], axis=0)
        assert float(np.asarray(vec) @ (mean / np.linalg.norm(mean))) > 0.9999, cid  # units stored as float16
        assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-4
        checked += 1
    assert checked >= len(chunks["ids"]) - 2  # nearly every chunk of the corpus has units
    # and such a vector still finds its own passage: each chunk's mean vector is nearest its own text
    q = embedder.encode(chunks["documents"][:10], 16)
    sims = q @ np.asarray(chunks["embeddings"], dtype=np.float32).T
    assert sum(int(np.argmax(sims[k]) == k) for k in range(len(q))) >= 8


def test_a_document_that_yields_no_passage_does_not_break_an_ingest(tmp_path, embedder):
    """A text file of nothing but '#' comment lines has no passage to store; ingesting it beside
    a real document, once and again, must work (the second run once failed on the empty group)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "notes.md").write_text("# Notes\n\nThe pump was serviced in May.\n", encoding="utf-8")
    (corpus / "trustlist.txt").write_text("# a list of keys\n# comment lines are ignored\n", encoding="utf-8")
    for _ in range(2):
        _, summary = ingest_into(tmp_path / "store", [corpus], embedder)
        assert summary.files == 2
        assert [p.split(":")[0] for p in summary.problems] == ["trustlist.txt"]  # said, not silently dropped
    snap = snapshot(tmp_path / "store")
    assert {m["source"] for _, m in snap["chunks"].values()} == {"notes.md"}


def test_bf16_batches_match_float32_and_questions_stay_float32(embedder):
    """bfloat16 autocast (used for ingest batches on CPUs with native bf16) gives the same
    vectors as float32 to within 1e-3 cosine; a lone question is encoded in float32."""
    from ingest.embed import Embedder

    doc = Document("x.md", (CORPUS / "anthropic-rsp-review.md").read_text(encoding="utf-8"), "markdown", "0")
    chunks, units = chunk_document(doc, embedder.count_tokens)
    texts = [c.embed_text() for c in chunks] + [u.embed_text() for u in units[:64]]
    fp32, bf16 = Embedder(bf16=False), Embedder(bf16=True)
    bf16._model = fp32.model  # the same weights; only the arithmetic differs
    a, b = fp32.encode(texts), bf16.encode(texts)
    cos = (a * b).sum(axis=1)
    assert cos.min() > 0.999
    if bf16.bf16:
        assert not np.array_equal(a, b)  # the bf16 path really ran
    assert np.array_equal(bf16.encode_one("What is ASL-3?"), fp32.encode_one("What is ASL-3?"))


def test_reingest_is_incremental_and_never_duplicates(tmp_path, embedder):
    corpus = copy_corpus(tmp_path / "corpus")
    seed_lines = SEED.read_text(encoding="utf-8").splitlines(keepends=True)
    (corpus / "rsp-seed.txt").write_text("".join(seed_lines[:23]), encoding="utf-8")  # the page up to "Capability thresholds"
    store = tmp_path / "store"

    def run():
        _, summary = ingest_into(store, [corpus], embedder)
        return summary, snapshot(store)

    def ids(want):
        return {c.id for cs, _ in want.values() for c in cs}, {u.id for _, us in want.values() for u in us}

    s1, snap1 = run()
    want = expected_chunks(corpus, embedder)
    n_md, n_seed = len(want["anthropic-rsp-review.md"][0]), len(want["rsp-seed.txt"][0])
    assert s1.added == n_md + n_seed and (set(snap1["chunks"]), set(snap1["units"])) == ids(want)

    # unchanged: nothing embedded, everything reported unchanged, the store as it was
    s2, snap2 = run()
    assert (s2.embedded, s2.added, s2.updated, s2.removed, s2.unchanged) == (0, 0, 0, 0, n_md + n_seed)
    assert snap2["chunks"] == snap1["chunks"] and snap2["units"] == snap1["units"]

    # one file changed: only its chunks and units are embedded again
    seed = corpus / "rsp-seed.txt"
    seed.write_text(
        seed.read_text(encoding="utf-8")
        + "\nHarbour notes\nSection titled “Harbour notes”The gauges overflowed twice in March. "
        "Nobody had cleaned the gutters since the autumn storms.\n",
        encoding="utf-8",
    )
    want3 = expected_chunks(corpus, embedder)
    new_seed_chunks, new_seed_units = want3["rsp-seed.txt"]
    s3, snap3 = run()
    assert s3.embedded == texts_embedded(new_seed_chunks, new_seed_units)
    assert (s3.updated, s3.unchanged, s3.added, s3.removed) == (len(new_seed_chunks), n_md, 0, 0)
    assert (set(snap3["chunks"]), set(snap3["units"])) == ids(want3)
    md_ids = {c.id for c in want["anthropic-rsp-review.md"][0]}
    assert {i: snap3["chunks"][i] for i in md_ids} == {i: snap1["chunks"][i] for i in md_ids}
    assert any("The gauges overflowed twice in March." in d for d, _ in snap3["chunks"].values())
    assert snap3["meta"]["corpus_fingerprint"] == file_fingerprint(corpus) != snap1["meta"]["corpus_fingerprint"]
    assert_no_duplicates(snap3)

    # a deleted file loses its chunks and units; nothing is embedded
    seed.unlink()
    s4, snap4 = run()
    assert (s4.embedded, s4.removed, s4.unchanged) == (0, len(new_seed_chunks), n_md)
    assert set(snap4["chunks"]) == md_ids
    assert {m["source"] for _, m in snap4["units"].values()} == {"anthropic-rsp-review.md"}
    assert snap4["meta"]["documents"] == 1 and snap4["meta"]["chunks"] == n_md == snap4["count"]

    # and again: stable
    s5, snap5 = run()
    assert s5.embedded == 0 and snap5["chunks"] == snap4["chunks"] and snap5["units"] == snap4["units"]


def test_two_corpus_folders_with_the_same_file_name(tmp_path, embedder):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "notes.md").write_text("# A\n\nAlpha notes describe the rainfall in the northern valley.\n", encoding="utf-8")
    (b / "notes.md").write_text("# B\n\nBeta notes describe the bridges of the southern city.\n", encoding="utf-8")
    store = tmp_path / "store"
    ingest_into(store, [a, b], embedder)
    _, again = ingest_into(store, [a, b], embedder)
    texts = {d for d, _ in snapshot(store)["chunks"].values()}
    assert any("Alpha notes" in t for t in texts) and any("Beta notes" in t for t in texts)
    assert again.embedded == 0


def _minimal_pdf(lines: list[str]) -> bytes:
    """A one-page PDF with a text object, written by hand (offsets computed)."""
    content = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({line}) '" for line in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{off:010d} 00000 n \n".encode() for off in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def test_real_pdf_is_ingested(tmp_path, embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    lines = [
        "Tide gauges in the harbour were read every morning.",
        "The readings were sent to the port office by noon.",
    ]
    (corpus / "gauges.pdf").write_bytes(_minimal_pdf(lines))
    _, summary = ingest_into(tmp_path / "store", [corpus], embedder)
    assert summary.files == 1 and summary.added >= 1 and not summary.problems
    snap = snapshot(tmp_path / "store")
    docs = [d for d, m in snap["chunks"].values() if m["source"] == "gauges.pdf"]
    assert docs and "Tide gauges in the harbour were read every morning." in " ".join(docs)
    unit_texts = {d for d, _ in snap["units"].values()}
    assert set(lines) <= unit_texts


# -- store errors ------------------------------------------------------------------------------


def test_store_built_with_another_model_is_refused_until_rebuilt(tmp_path, embedder):
    import chromadb
    from chromadb.config import Settings

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.md").write_text(GOOD_MD, encoding="utf-8")
    settings, _ = ingest_into(tmp_path / "store", [corpus], embedder)
    # the same client settings as the store's, or Chroma refuses a second client on the folder
    client = chromadb.PersistentClient(
        path=str(tmp_path / "store"), settings=Settings(anonymized_telemetry=False, allow_reset=False)
    )
    collection = client.get_collection("corpus")
    meta = dict(collection.metadata)
    meta["embedding_model"] = "sentence-transformers/some-other-model (other==9.9)"
    collection.modify(metadata=meta)
    with pytest.raises(StoreError) as err:
        Store(settings.store).check_compatible(MODEL_ID, CHUNKER_VERSION)
    message = str(err.value)
    assert "some-other-model" in message and "\n" not in message
    assert "python -m ingest" in message or "make ingest" in message
    assert f"--store {settings.store.path}" in message

    meta["embedding_model"] = MODEL_ID
    meta["chunker_version"] = "0"
    collection.modify(metadata=meta)
    with pytest.raises(StoreError, match=r"older chunker.*(python -m ingest|make ingest)"):
        Store(settings.store).check_compatible(MODEL_ID, CHUNKER_VERSION)

    # the next ingest rebuilds the collection, after which it is accepted again
    meta["embedding_model"] = "sentence-transformers/some-other-model (other==9.9)"
    collection.modify(metadata=meta)
    _, summary = ingest_into(tmp_path / "store", [corpus], embedder)
    assert summary.rebuilt and summary.embedded > 0
    info = Store(settings.store).check_compatible(MODEL_ID, CHUNKER_VERSION)
    assert info.embedding_model == MODEL_ID and info.chunks == summary.added
    client.close()


def test_missing_store_names_the_ingest_command(tmp_path):
    missing = tmp_path / "no-store-here"
    with pytest.raises(StoreError) as err:
        Store(StoreSettings(path=missing))
    assert f"python -m ingest --store {missing}" in str(err.value)
    assert not missing.exists()  # opening for reading creates nothing
    with pytest.raises(StoreError, match="python -m ingest --store .* --collection other"):
        Store(StoreSettings(path=missing, collection="other"))
    assert rebuild_hint(StoreSettings()) == "make ingest"


# -- the command line -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_store(tmp_path_factory):
    """The corpus ingested once through `python -m ingest` (first run's output kept)."""
    base = tmp_path_factory.mktemp("cli")
    corpus = copy_corpus(base / "corpus")
    store = base / "store"
    first = run_cli(corpus, store=store)
    return corpus, store, first


def test_cli_prints_one_summary_line_and_second_run_embeds_nothing(cli_store, embedder):
    corpus, store, first = cli_store
    want = expected_chunks(corpus, embedder)
    n_chunks = sum(len(c) for c, _ in want.values())
    n_units = sum(len(u) for _, u in want.values())
    embedded = sum(texts_embedded(c, u) for c, u in want.values())
    assert first.returncode == 0, first.stderr
    s1 = summary_of(first.stdout)
    assert s1 == dict(files=1, added=n_chunks, updated=0, removed=0, unchanged=0, embedded=embedded, skipped=0)
    assert "skipped" not in first.stderr and "error" not in first.stderr.lower()

    second = run_cli(corpus, store=store)
    assert second.returncode == 0, second.stderr
    s2 = summary_of(second.stdout)
    assert s2["embedded"] == 0 and s2["unchanged"] == n_chunks and s2["added"] == s2["updated"] == 0
    assert "0 texts embedded" in second.stdout
    snap = snapshot(store)
    assert snap["count"] == n_chunks and snap["unit_count"] == n_units
    assert snap["meta"]["embedding_model"] == MODEL_ID


@pytest.mark.parametrize("what", ["missing path", "empty folder"])
def test_cli_nothing_to_ingest_exits_2_and_leaves_the_store_alone(what, cli_store, tmp_path):
    _, store, first = cli_store
    assert first.returncode == 0
    before = snapshot(store)
    assert before["count"] > 0
    if what == "missing path":
        target = tmp_path / "no-such-corpus"
    else:
        target = tmp_path / "empty-corpus"
        target.mkdir()
    result = run_cli(target, store=store)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout.strip() == ""
    errors = [line for line in result.stderr.splitlines() if target.name in line]
    assert any(line.startswith("ingest: error: nothing to ingest") for line in errors), result.stderr
    assert any("left as it was" in line for line in errors)
    after = snapshot(store)
    assert after == before  # same chunks, units and metadata, ingested_at included


BAD_INPUTS = {
    # name: (file or folder named in the message, words of the message)
    "missing path": ("no-such-folder", "no such file or folder"),
    "empty folder": ("empty-folder", "no documents to ingest"),
    "non-UTF-8 text": ("menu-latin1.txt", "not valid UTF-8"),
    "broken PDF": ("scan.pdf", "PDF"),
    "docx": ("report.docx", "unsupported file type '.docx'"),
    "xyz": ("data.xyz", "unsupported file type '.xyz'"),
    "symlink outside": ("linked.md", "symbolic link"),
}


def _bad_case(case: Path, names) -> list[Path]:
    """A corpus folder holding good.md and the named bad inputs; returns the CLI paths."""
    corpus = case / "corpus"
    corpus.mkdir(parents=True)
    (corpus / "good.md").write_text(GOOD_MD, encoding="utf-8")
    paths = [corpus]
    for name in names:
        if name == "missing path":
            paths.append(case / "no-such-folder")
        elif name == "empty folder":
            (case / "empty-folder").mkdir()
            paths.append(case / "empty-folder")
        elif name == "non-UTF-8 text":
            (corpus / "menu-latin1.txt").write_bytes(b"caf\xe9 au lait, the menu said, and cr\xe8me br\xfbl\xe9e.\n")
        elif name == "broken PDF":
            (corpus / "scan.pdf").write_bytes(random.Random(7).randbytes(4096))
        elif name == "docx":
            (corpus / "report.docx").write_bytes(b"PK\x03\x04" + random.Random(8).randbytes(512))
        elif name == "xyz":
            (corpus / "data.xyz").write_text("station,reading\nnorth,12\n", encoding="utf-8")
        elif name == "symlink outside":
            outside = case / "outside"
            outside.mkdir()
            (outside / "secret.md").write_text("# Secret\n\nThe outside file must stay outside.\n", encoding="utf-8")
            (corpus / "linked.md").symlink_to(outside / "secret.md")
    return paths


def _assert_only_good_file_stored(store: Path) -> None:
    snap = snapshot(store)
    assert {m["source"] for _, m in snap["chunks"].values()} == {"good.md"}
    assert {m["source"] for _, m in snap["units"].values()} == {"good.md"}
    assert any("tide gauges in the harbour" in d for d, _ in snap["chunks"].values())
    assert not any("outside file" in d for d, _ in snap["chunks"].values())


@pytest.fixture(scope="module")
def bad_all(tmp_path_factory):
    """Every bad input at once next to one good file: one CLI run that has to embed the good file."""
    case = tmp_path_factory.mktemp("bad-all")
    store = case / "store"
    return run_cli(*_bad_case(case, BAD_INPUTS), store=store), store


def test_cli_bad_inputs_all_skipped_and_the_good_file_ingested(bad_all):
    result, store = bad_all
    assert result.returncode == 1, (result.stdout, result.stderr)
    summary = summary_of(result.stdout)
    assert summary["files"] == 1 and summary["skipped"] == len(BAD_INPUTS)
    assert summary["added"] >= 1 and summary["embedded"] > summary["added"]
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == len(BAD_INPUTS), result.stderr
    for culprit, words in BAD_INPUTS.values():
        assert len([line for line in skipped if culprit in line and words in line]) == 1, culprit
    assert "Traceback" not in result.stderr
    _assert_only_good_file_stored(store)


@pytest.fixture(scope="module")
def bad_runs(bad_all, tmp_path_factory):
    """Each bad input alone next to the same good file, every case its own CLI run, all run at once.

    Each store starts as a copy of the combined run's (good.md already in it, so no case needs
    the model); the combined run above shows the good file being embedded despite bad inputs.
    """
    result, all_store = bad_all
    assert result.returncode == 1
    base = tmp_path_factory.mktemp("bad")
    runs = {}
    for i, name in enumerate(BAD_INPUTS):
        case = base / f"case{i}"
        paths = _bad_case(case, [name])
        shutil.copytree(all_store, case / "store")
        runs[name] = (start_cli(*paths, store=case / "store"), case / "store")
    results = {}
    for name, (proc, store) in runs.items():
        out, err = proc.communicate(timeout=600)
        results[name] = (proc.returncode, out, err, store)
    return results


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_cli_bad_input_is_skipped_with_one_line(name, bad_runs):
    code, out, err, store = bad_runs[name]
    culprit, words = BAD_INPUTS[name]
    assert code == 1, (out, err)
    summary = summary_of(out)
    assert summary["files"] == 1 and summary["skipped"] == 1 and summary["unchanged"] >= 1
    named = [line for line in err.splitlines() if culprit in line]
    assert len(named) == 1, err
    assert named[0].startswith("skipped: ") and words in named[0], named[0]
    assert "—" in named[0]  # every message names a fix after the dash
    assert "Traceback" not in err
    _assert_only_good_file_stored(store)


# -- kills and concurrent runs ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory):
    corpus = copy_corpus(tmp_path_factory.mktemp("big") / "corpus")
    write_prose_files(corpus)
    return corpus


@pytest.fixture(scope="module")
def big_reference(big_corpus, embedder, tmp_path_factory):
    """A clean, uninterrupted ingest of the big corpus into its own store."""
    store = tmp_path_factory.mktemp("big-ref") / "store"
    _, summary = ingest_into(store, [big_corpus], embedder)
    assert summary.files == 7 and summary.added > 60 and not summary.problems
    snap = snapshot(store)
    assert_no_duplicates(snap)
    return snap


def _segment_files(store: Path) -> set[Path]:
    return set(store.glob("*/data_level0.bin")) if store.exists() else set()


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)


def test_sigkill_at_any_point_then_rerun_gives_the_clean_result(big_corpus, big_reference, tmp_path):
    """Kill `python -m ingest` at several points of a run, run it to the end, compare with a clean run.

    The first kill lands as soon as Chroma starts writing vectors (new index files appear), which
    also measures how long a run takes to get there; the next kills are spread over that time
    (imports, model, chunking, embedding) but never later than the start of writing, so each one
    interrupts real work however loaded the machine is; the last lands just after writing starts.
    """
    store = tmp_path / "store"
    kills, ended = [], []

    def kill_run(delay: float | None, extra: float = 0.0) -> float | None:
        """Start an ingest; kill it after `delay` s or once it writes (+extra s), whichever comes first."""
        before = _segment_files(store)
        t0 = time.monotonic()
        proc = start_cli(big_corpus, store=store)
        while proc.poll() is None:
            elapsed = time.monotonic() - t0
            if _segment_files(store) - before:
                time.sleep(extra)
                break
            if delay is not None and elapsed >= delay:
                break
            time.sleep(0.005)
        if proc.poll() is None:
            _kill(proc)
            kills.append(f"{elapsed:.1f}s" + ("" if delay is not None and elapsed >= delay else " (writing)"))
            return elapsed
        _, err = proc.communicate(timeout=600)
        ended.append((delay, proc.returncode, err[-400:]))
        return None

    write_started = kill_run(None)
    assert write_started, f"the ingest ended before it wrote anything: {ended}"
    for fraction in (0.3, 0.6, 0.9):
        kill_run(fraction * write_started)
    kill_run(None, extra=0.05)

    # a run that was not killed must have succeeded: no kill leaves a store that makes ingest fail
    assert all(code == 0 for _, code, _ in ended), ended
    assert len(kills) >= 5, (kills, ended)

    final = run_cli(big_corpus, store=store)
    assert final.returncode == 0, final.stderr
    assert_same_store(snapshot(store), big_reference)

    again = run_cli(big_corpus, store=store)
    assert again.returncode == 0 and summary_of(again.stdout)["embedded"] == 0
    assert_same_store(snapshot(store), big_reference)


class _Killed(BaseException):
    """Stands for a kill: not an Exception, so nothing on the way up handles it."""


class _DyingCollection:
    """A Chroma collection whose next upsert writes only `keep` of its records, then dies."""

    def __init__(self, collection, keep: float):
        self._collection, self._keep = collection, keep

    def upsert(self, ids, embeddings, metadatas=None, documents=None):
        n = int(len(ids) * self._keep)
        if n:
            more = {k: v[:n] for k, v in (("documents", documents), ("metadatas", metadatas)) if v is not None}
            self._collection.upsert(ids=ids[:n], embeddings=embeddings[:n], **more)
        raise _Killed

    def __getattr__(self, name):
        return getattr(self._collection, name)


def test_update_interrupted_mid_write_is_repaired_by_the_next_run(tmp_path, embedder, monkeypatch):
    """Deterministic kill points inside an incremental update (the store was complete before):
    after a changed file's old chunks are deleted, and halfway through its new chunks. The next
    run must end exactly where a clean ingest does."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(CORPUS / "anthropic-rsp-review.md", corpus / "a-review.md")
    seed_lines = SEED.read_text(encoding="utf-8").splitlines(keepends=True)
    (corpus / "b-seed.txt").write_text("".join(seed_lines[:23]), encoding="utf-8")
    store = tmp_path / "store"
    ingest_into(store, [corpus], embedder)

    real_init = Store.__init__

    def interrupted_run(collection: str, keep: float) -> None:
        def init(self, settings, create=False):
            real_init(self, settings, create)
            setattr(self, collection, _DyingCollection(getattr(self, collection), keep))

        monkeypatch.setattr(Store, "__init__", init)
        with pytest.raises(_Killed):
            ingest_into(store, [corpus], embedder)
        monkeypatch.setattr(Store, "__init__", real_init)

    def edit(name: str, extra: str) -> None:
        path = corpus / name
        path.write_text(path.read_text(encoding="utf-8") + extra, encoding="utf-8")

    edit("b-seed.txt", "Harbour notes\nSection titled “Harbour notes”The gauges overflowed twice in March.\n")
    interrupted_run("chunks", 0.0)  # old chunks (and the units they carry) deleted, nothing new written yet
    edit("b-seed.txt", "The gutters had not been cleaned since the autumn storms. Nobody noticed until May.\n")
    (corpus / "c-new.md").write_text(GOOD_MD, encoding="utf-8")
    interrupted_run("chunks", 0.5)  # half of the changed file's chunks written

    _, summary = ingest_into(store, [corpus], embedder)
    _, clean = ingest_into(tmp_path / "clean", [corpus], embedder)
    assert_same_store(snapshot(store), snapshot(tmp_path / "clean"))
    assert summary.unchanged == len(expected_chunks(corpus, embedder)["a-review.md"][0])
    _, again = ingest_into(store, [corpus], embedder)
    assert again.embedded == 0 and again.unchanged == clean.added


def test_two_ingests_at_once_one_refuses_and_the_store_ends_complete(corpus_store, tmp_path):
    reference = snapshot(corpus_store.store.path)  # a clean in-process ingest of corpus/
    corpus = copy_corpus(tmp_path / "corpus")
    store = tmp_path / "store"
    procs = [start_cli(corpus, store=store) for _ in range(2)]
    results = [(p.communicate(timeout=600), p.returncode) for p in procs]
    codes = sorted(code for _, code in results)
    assert codes == [0, 2], results
    (out, err), _ = next(r for r in results if r[1] == 2)
    assert out.strip() == ""
    refused = [line for line in err.splitlines() if "another ingest" in line]
    assert len(refused) == 1 and refused[0].startswith("ingest: error: another ingest"), err
    (winner_out, _), _ = next(r for r in results if r[1] == 0)
    assert summary_of(winner_out)["added"] == len(reference["chunks"])
    assert_same_store(snapshot(store), reference)


# -- a Chroma server -------------------------------------------------------------------------------


def test_server_mode_ingest_and_query(chroma_server, embedder, tmp_path, monkeypatch):
    import ingest.pipeline

    monkeypatch.setattr(ingest.pipeline, "REPO_ROOT", tmp_path)  # the server lock lives under REPO_ROOT/data
    host, port, _ = chroma_server
    corpus = copy_corpus(tmp_path / "corpus")
    settings, summary = ingest_into(tmp_path / "unused", [corpus], embedder, host=host, port=port)
    assert settings.store.is_server and summary.added > 0
    assert not (tmp_path / "unused").exists()
    store = Store(settings.store)
    info = store.check_compatible(MODEL_ID, CHUNKER_VERSION)
    assert store.count() == info.chunks == summary.added
    text = (corpus / "anthropic-rsp-review.md").read_bytes().decode("utf-8")

    # the closest sentence to the question, read from the chunk records the server holds
    units, vecs = store.units_of_chunks(store.all_chunks())
    best = units[int(np.argmax(vecs @ embedder.encode_one("When was RSP v3 released?")))]
    assert "24 February 2026" in best.text, best.text
    (owner,) = store.get_chunks([best.chunk_id])
    assert text[owner.start : owner.end] == owner.text and owner.text[best.start - owner.start : best.end - owner.start] == best.text

    # the closest chunk to the question asked in full words
    hits = store.chunks.query(
        query_embeddings=[embedder.encode_one("When was version 3 of the Responsible Scaling Policy released?").tolist()],
        n_results=1,
        include=["documents", "metadatas"],
    )
    top, meta = hits["documents"][0][0], hits["metadatas"][0][0]
    assert "24 February 2026" in top, top
    assert text[meta["start"] : meta["end"]] == top
    # a second run against the server is incremental too
    _, again = ingest_into(tmp_path / "unused", [corpus], embedder, host=host, port=port)
    assert again.embedded == 0 and again.unchanged == summary.added


def test_unreachable_server_names_chroma_run():
    port = free_port()
    with pytest.raises(StoreError) as err:
        Store(StoreSettings(host="127.0.0.1", port=port))
    message = str(err.value)
    assert "chroma run" in message and f"127.0.0.1:{port}" in message and "\n" not in message
