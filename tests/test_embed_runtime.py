"""The encoder runtimes: the ONNX export of the packaged model (built from its weights, checked,
rebuilt when stale, safe to kill and to build from two processes), ONNX Runtime vectors against
torch float32, the runtime setting, and model ids that keep lossy vectors out of a store."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ingest_into
from ingest.chunk import CHUNKER_VERSION, chunk_document
from ingest.embed import (
    AUTO,
    INT8_MODEL_ID,
    MODEL_ID,
    ONNX_NAME,
    PLAN_FILE,
    Choice,
    Embedder,
    _model_dir,
    candidates,
    plan_for,
)
from ingest.errors import IngestError, StoreError
from ingest.onnx_runtime import (
    MIN_COSINE,
    OnnxModel,
    build_key,
    ensure_export,
    ensure_sentence_encoder,
    export_transformer,
    manifest_path,
    read_current,
    sentence_encoder_key,
)
from ingest.records import Document
from ingest.settings import EncoderSettings, StoreSettings, encoder_from_env
from ingest.store import Store

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "corpus"
EDGE_TEXTS = [
    "",
    "x",
    "When was version 3 of the Responsible Scaling Policy released?",
    "ASL-3 and ASL-4: what changed between v2.1 and v2.2?",
    "word " * 300,  # past the 256-token window
    "Ünïcödé, 日本語, русский, emoji 🙂",
    "| a | b |\n|---|---|\n| 1 | 2 |",
]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """One real export for the module (the first use builds it: ~15 s)."""
    folder = tmp_path_factory.mktemp("models")
    ensure_sentence_encoder(_model_dir(), folder, ONNX_NAME)
    return folder


@pytest.fixture(scope="module")
def onnx_embedder(models_dir):
    return Embedder(settings=EncoderSettings(runtime="onnx", models_dir=models_dir))


@pytest.fixture(scope="module")
def torch_fp32():
    return Embedder(bf16=False)


@pytest.fixture(scope="module")
def mixed_texts(torch_fp32):
    doc = Document("x.md", (CORPUS / "anthropic-rsp-review.md").read_text(encoding="utf-8"), "markdown", "0")
    chunks, units = chunk_document(doc, torch_fp32.count_tokens)
    return [c.embed_text() for c in chunks[:12]] + [u.embed_text() for u in units[:14]] + EDGE_TEXTS


def test_onnx_vectors_match_torch_float32(onnx_embedder, torch_fp32, mixed_texts):
    """Same vectors (cosine >= 0.999) in batches and one by one; same token counts and window."""
    assert onnx_embedder.plan.engines == ("onnx",)
    ref = torch_fp32.encode(mixed_texts)
    got = onnx_embedder.encode(mixed_texts, batch_size=8)
    assert got.shape == ref.shape == (len(mixed_texts), 384) and got.dtype == np.float32
    cos = (got * ref).sum(axis=1)
    assert cos.min() >= MIN_COSINE, (cos.argmin(), cos.min())
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    singles = np.stack([onnx_embedder.encode_one(t) for t in mixed_texts[:8] + EDGE_TEXTS])
    assert ((singles * np.concatenate([ref[:8], ref[-len(EDGE_TEXTS):]])).sum(axis=1)).min() >= MIN_COSINE
    # different texts really give different vectors (a constant graph would pass the norm check)
    assert (got[:12] @ got[:12].T)[np.triu_indices(12, 1)].min() < 0.95
    st_tokenizer = torch_fp32.model.tokenizer
    for t in mixed_texts:
        assert onnx_embedder.count_tokens(t) == len(st_tokenizer(t, add_special_tokens=False)["input_ids"])
    assert onnx_embedder.max_tokens == torch_fp32.model.max_seq_length == 256


def test_our_tokenizer_gives_what_transformers_gives(mixed_texts):
    """ingest.embed.Tokens (tokenizers, no transformers) against the AutoTokenizer that
    sentence-transformers uses: the same ids, masks and counts, padding and truncation included."""
    from transformers import AutoTokenizer

    from ingest.embed import Tokens

    ref = AutoTokenizer.from_pretrained(str(_model_dir()), local_files_only=True)
    ours = Tokens(_model_dir(), 256)
    for i in range(0, len(mixed_texts), 5):
        batch = mixed_texts[i : i + 5]
        want = ref(batch, padding=True, truncation=True, max_length=256, return_tensors="np")
        got = ours.features(batch)
        assert set(got) == {"input_ids", "attention_mask", "token_type_ids"}
        for key, value in got.items():
            assert value.shape == want[key].shape and (value == want[key]).all(), (key, batch[0][:40])
    for text in mixed_texts:
        assert ours.count(text) == len(ref(text, add_special_tokens=False)["input_ids"]), text[:40]


def test_a_process_that_only_asks_never_imports_torch(models_dir, corpus_store):
    """Questions go to ONNX Runtime (auto and onnx alike); the tokenizer and the CPU probe need
    no transformers or torch, so a serving process on a store does without them."""
    code = (
        "import sys; from pathlib import Path\n"
        "from assistant.pipeline import Assistant\n"
        "from assistant.settings import load_settings\n"
        "from ingest.settings import StoreSettings\n"
        f"a = Assistant(load_settings(env={{}}, store=StoreSettings(path=Path({str(corpus_store.store.path)!r}))))\n"
        "answer = a.ask('When was RSP v3 released?')\n"
        "assert not answer.abstained, answer.text\n"
        "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))\n"
    )
    env = dict(os.environ, RAG_MODELS_DIR=str(models_dir), RAG_ENCODER="auto")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout


def test_manifest_names_what_the_export_was_built_from(models_dir):
    path = models_dir / f"{ONNX_NAME}.onnx"
    manifest = json.loads(manifest_path(path).read_text())
    key = sentence_encoder_key(_model_dir())
    assert {k: manifest[k] for k in key} == key
    assert key["torch"] and key["onnxruntime"] and key["opset"] and len(key["source_sha256"]) == 64
    assert manifest["check"]["min_cosine"] >= MIN_COSINE and manifest["check"]["probe_texts"] >= 20
    assert manifest["bytes"] == path.stat().st_size
    assert read_current(path, key) is not None


def test_stale_or_corrupt_exports_are_detected(models_dir, tmp_path):
    """A manifest that is corrupt, names another torch/source, or a file that does not match it."""
    src = models_dir / f"{ONNX_NAME}.onnx"
    key = sentence_encoder_key(_model_dir())
    path = tmp_path / src.name

    def fresh() -> None:
        shutil.copy(src, path)
        shutil.copy(manifest_path(src), manifest_path(path))
        assert read_current(path, key) is not None

    fresh()
    manifest_path(path).write_text('{"format": 1, "kind": "sent')  # cut short
    assert read_current(path, key) is None
    for field, value in (("torch", "0.0.1"), ("source_sha256", "0" * 64), ("opset", 9), ("format", 0)):
        fresh()
        m = json.loads(manifest_path(path).read_text())
        m[field] = value
        manifest_path(path).write_text(json.dumps(m))
        assert read_current(path, key) is None, field
    fresh()
    with open(path, "r+b") as fh:  # same size, one byte flipped
        fh.seek(path.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert read_current(path, key) is None
    fresh()
    os.truncate(path, 1000)
    assert read_current(path, key) is None
    manifest_path(path).unlink()
    assert read_current(path, key) is None


def test_a_corrupt_export_is_rebuilt_from_the_packaged_weights(models_dir, tmp_path):
    src = models_dir / f"{ONNX_NAME}.onnx"
    path = tmp_path / src.name
    shutil.copy(src, path)
    manifest_path(path).write_text("not json")
    lines: list[str] = []
    export = ensure_sentence_encoder(_model_dir(), tmp_path, ONNX_NAME, log=lines.append)
    assert lines and "building" in lines[0]
    assert export.manifest["check"]["min_cosine"] >= MIN_COSINE
    assert read_current(path, sentence_encoder_key(_model_dir())) is not None
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    lines.clear()
    again = ensure_sentence_encoder(_model_dir(), tmp_path, ONNX_NAME, log=lines.append)
    assert not lines and again.manifest["sha256"] == export.manifest["sha256"]  # current: not rebuilt


SLOW_BUILD = r"""
import sys, time
from pathlib import Path
from ingest.onnx_runtime import ensure_export
folder = Path(sys.argv[1])
def build(tmp):
    with open(folder / "builds.log", "a") as log:
        log.write("build\n")
    with open(tmp, "wb") as fh:
        fh.write(b"half an export")
        fh.flush()
        time.sleep(float(sys.argv[2]))
        fh.write(b" and the rest")
    return {"slow": True}
ensure_export(folder / "m.onnx", {"format": 1, "kind": "test"}, build)
print("done")
"""


def _slow_build(folder: Path, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", SLOW_BUILD, str(folder), str(seconds)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_a_killed_build_leaves_nothing_half_written(tmp_path):
    proc = _slow_build(tmp_path, 30)
    deadline = time.time() + 60
    while not (tmp_path / "builds.log").exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.json").exists()
    assert list(tmp_path.glob(".m.onnx.*.tmp"))  # the partial file only under its temporary name
    done = _slow_build(tmp_path, 0)
    out, err = done.communicate(timeout=60)
    assert done.returncode == 0, err
    assert (tmp_path / "m.onnx").read_bytes() == b"half an export and the rest"
    assert not list(tmp_path.glob(".m.onnx.*.tmp"))  # the next build cleaned up
    assert read_current(tmp_path / "m.onnx", {"format": 1, "kind": "test"}) is not None


def test_concurrent_builders_build_once(tmp_path):
    procs = [_slow_build(tmp_path, 1.5) for _ in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    assert (tmp_path / "builds.log").read_text().count("build") == 1
    assert (tmp_path / "m.onnx").read_bytes() == b"half an export and the rest"


def test_a_failed_check_publishes_nothing(tmp_path):
    def build(tmp: Path) -> dict:
        tmp.write_bytes(b"an export that failed its check")
        raise IngestError("cosine too low")

    with pytest.raises(IngestError):
        ensure_export(tmp_path / "bad.onnx", {"format": 1}, build)
    assert not any(p.name.startswith(("bad", ".bad.onnx.")) and p.suffix != ".lock" for p in tmp_path.iterdir())


def test_runtime_setting_and_the_cpu_probe_rule(models_dir):
    assert encoder_from_env({}).runtime == "auto"
    assert encoder_from_env({"RAG_ENCODER": "ONNX", "RAG_MODELS_DIR": str(models_dir)}) == EncoderSettings(
        runtime="onnx", models_dir=models_dir.resolve()
    )
    with pytest.raises(IngestError, match="RAG_ENCODER"):
        encoder_from_env({"RAG_ENCODER": "tensorflow"})
    # the rule: forced runtimes as named; auto sends small calls to ONNX and batches where measured
    assert plan_for("auto", native_bf16=True).batch == AUTO and plan_for("auto", native_bf16=True).engines == ("onnx",)
    measured = Choice("torch", (("torch-bf16", 3375.2), ("torch", 5127.5), ("onnx", 4745.1)))
    assert plan_for("auto", native_bf16=True, measured=measured).engines == ("torch", "onnx")
    assert "torch-bf16 3,375, torch 5,128, onnx 4,745 tokens/s" in plan_for("auto", True, measured).why
    assert candidates(True) == ("torch-bf16", "torch", "onnx") and candidates(False) == ("torch", "onnx")
    assert plan_for("torch", native_bf16=False).engines == ("torch",)
    assert plan_for("torch", native_bf16=True).engines == ("torch-bf16", "torch")
    assert plan_for("onnx", native_bf16=True).engines == ("onnx",)
    forced = Embedder(settings=EncoderSettings(runtime="torch", models_dir=models_dir))
    assert "onnx" not in forced.plan.engines
    assert Embedder(bf16=True).plan.batch == "torch-bf16"  # bf16 given: torch whatever the setting


def test_auto_measures_the_batch_engine_once_per_machine_and_keeps_the_choice(models_dir, tmp_path, torch_fp32, mixed_texts):
    """A question never measures; the first batch does (every candidate on the same probe), the
    fastest engine encodes it, and the choice is kept in the models folder for the next process
    on this machine, not for another CPU or other versions."""
    import json
    import shutil

    folder = tmp_path / "models"
    shutil.copytree(models_dir, folder)  # the export, already built
    lines: list[str] = []
    auto = Embedder(settings=EncoderSettings(runtime="auto", models_dir=folder), log=lines.append)
    auto._model = torch_fp32.model  # share the loaded weights
    question = auto.encode_one("When was RSP v3 released?")
    assert auto.plan.batch == AUTO and not (folder / PLAN_FILE).exists()
    assert float(question @ torch_fp32.encode_one("When was RSP v3 released?")) > 0.999
    vecs = auto.encode(mixed_texts, 16)
    kept = json.loads((folder / PLAN_FILE).read_text())
    assert [e for e, _ in kept["rates"]] == list(candidates(kept["key"]["flags"].count("avx512_bf16") > 0))
    assert kept["engine"] == max(kept["rates"], key=lambda r: r[1])[0] == auto.plan.batch
    assert len([x for x in lines if "auto chose" in x]) == 1 and PLAN_FILE in lines[-1]
    assert ((vecs * torch_fp32.encode(mixed_texts, 16)).sum(axis=1)).min() > 0.999
    again = Embedder(settings=EncoderSettings(runtime="auto", models_dir=folder), log=lines.append)
    assert again.plan.batch == kept["engine"] and "measured fastest" in again.runtime  # read, not measured
    kept["key"]["cpu"] = "another CPU"
    (folder / PLAN_FILE).write_text(json.dumps(kept))
    assert Embedder(settings=EncoderSettings(runtime="auto", models_dir=folder)).plan.batch == AUTO


def test_forced_onnx_ingest_from_the_command_line(models_dir, tmp_path, torch_fp32):
    """RAG_ENCODER=onnx: `python -m ingest` encodes with ONNX Runtime, records the float32 model id,
    and a torch float32 query finds the right passage in that store."""
    store, docs = tmp_path / "store", tmp_path / "docs"
    docs.mkdir()
    text = (CORPUS / "anthropic-rsp-review.md").read_text(encoding="utf-8")
    (docs / "rsp.md").write_text(text[: text.index("\n", 6000)], encoding="utf-8")  # the first sections
    env = {**os.environ, "RAG_ENCODER": "onnx", "RAG_MODELS_DIR": str(models_dir)}
    code = (
        "import sys; from ingest.embed import shared_embedder; import ingest.__main__ as m; "
        "rc = m.main(sys.argv[1:]); e = shared_embedder(); "
        "print('ENGINES', ','.join(e.plan.engines), 'TORCH_LOADED', e._model is not None, file=sys.stderr); sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(docs), "--store", str(store), "--no-progress"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ENGINES onnx TORCH_LOADED False" in proc.stderr
    assert "building" not in proc.stderr  # the export was current: reused, not rebuilt
    s = Store(StoreSettings(path=store))
    assert s.check_compatible(torch_fp32.model_id, CHUNKER_VERSION).embedding_model == MODEL_ID
    hits = s.chunks.query(query_embeddings=[torch_fp32.encode_one("When was RSP v3 released?").tolist()], n_results=3)
    assert any("v3" in doc for doc in hits["documents"][0]), hits["documents"][0]


def test_int8_vectors_get_their_own_model_id_and_the_store_refuses_them(tmp_path, torch_fp32):
    int8 = Embedder(settings=EncoderSettings(runtime="onnx-int8", models_dir=tmp_path / "models"))
    assert int8.model_id == INT8_MODEL_ID != MODEL_ID
    assert Embedder(settings=EncoderSettings(runtime="onnx")).model_id == MODEL_ID  # float32-equivalent
    doc = tmp_path / "docs" / "harbour.md"
    doc.parent.mkdir()
    doc.write_text("# Harbour\n\nThe tide gauges were read at six every morning.\n", encoding="utf-8")
    settings, _ = ingest_into(tmp_path / "store", [doc.parent], torch_fp32)
    with pytest.raises(StoreError, match="another embedding model") as err:
        Store(settings.store).check_compatible(int8.model_id, CHUNKER_VERSION)
    assert "\n" not in str(err.value)


def test_auto_falls_back_to_torch_when_the_export_cannot_be_written(tmp_path, torch_fp32):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the models folder should be")
    lines: list[str] = []
    auto = Embedder(settings=EncoderSettings(runtime="auto", models_dir=blocker / "models"), log=lines.append)
    auto._model = torch_fp32.model  # share the loaded weights
    auto._plan = plan_for("auto", native_bf16=False)  # as on a CPU without native bf16: ONNX first
    vec = auto.encode_one("When was RSP v3 released?")
    assert float(vec @ torch_fp32.encode_one("When was RSP v3 released?")) > 0.9999
    assert len(lines) == 1 and "RAG_ENCODER=torch" in lines[0]
    forced = Embedder(settings=EncoderSettings(runtime="onnx", models_dir=blocker / "models"), log=lines.append)
    with pytest.raises(IngestError, match="RAG_MODELS_DIR") as err:
        forced.encode_one("x")
    assert "\n" not in str(err.value)


def test_a_model_with_a_head_exports_and_matches_torch(tmp_path):
    """export_transformer: a cross-encoder-shaped model (MiniLM, mean pool, one logit) from the
    packaged weights; same logits as torch; current on a second call; rebuilt when weights change."""
    import torch
    from transformers import AutoTokenizer, BertModel

    torch.manual_seed(0)
    bert = BertModel.from_pretrained(str(_model_dir()), num_hidden_layers=1, add_pooling_layer=False, local_files_only=True)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert, self.head = bert, torch.nn.Linear(384, 1)

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            return self.head((h * m).sum(1) / m.sum(1).clamp(min=1.0)).squeeze(-1)

    net = Net().eval()
    tok = AutoTokenizer.from_pretrained(str(_model_dir()), local_files_only=True)
    export = export_transformer(net, tok, "ranker-test", tmp_path)
    assert export.manifest["check"]["max_abs_diff"] <= 1e-3 and export.manifest["kind"].startswith("transformer:")
    pairs = [("When was v3 released?", "Version 3 took effect in 2024."), ("What is ASL-3?", "x " * 400)]
    feats = tok([a for a, _ in pairs], [b for _, b in pairs], padding=True, truncation=True, max_length=256, return_tensors="np")
    with torch.no_grad():
        ref = net(**{k: torch.from_numpy(v) for k, v in feats.items()}).numpy()
    got = OnnxModel(export).run(feats)
    np.testing.assert_allclose(got, ref, atol=1e-3)
    assert export_transformer(net, tok, "ranker-test", tmp_path).manifest["built_at"] == export.manifest["built_at"]
    with torch.no_grad():
        net.head.bias += 1.0
    rebuilt = export_transformer(net, tok, "ranker-test", tmp_path)
    assert rebuilt.manifest["source_sha256"] != export.manifest["source_sha256"]
    np.testing.assert_allclose(OnnxModel(rebuilt).run(feats), ref + 1.0, atol=1e-3)
    assert build_key("x", "y")["opset"] == export.manifest["opset"]
