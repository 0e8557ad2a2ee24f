"""The learned answer ranker: its training code learns, the shipped file is intact and ranks
answers first, and a missing or corrupt file gives one line naming `make train-ranker`."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import replace

import numpy as np
import pytest

from assistant import ranker as rk
from conftest import REPO
from assistant.errors import IngestError, RankerError
from ingest.sentences import sentence_spans

# SQuAD-shaped, made up for the test: two articles, answers inside one sentence each
TINY_SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Lake_Varnholm",
            "paragraphs": [
                {
                    "context": (
                        "Lake Varnholm is a freshwater lake in the northern highlands. "
                        "It was formed by a retreating glacier about 11,000 years ago. "
                        "The lake covers 42 square kilometres and is 87 metres deep at its deepest point. "
                        "A small ferry crosses it twice a day in summer."
                    ),
                    "qas": [
                        {"id": "a1", "question": "How was Lake Varnholm formed?",
                         "answers": [{"text": "by a retreating glacier", "answer_start": 76}]},
                        {"id": "a2", "question": "How deep is Lake Varnholm?",
                         "answers": [{"text": "87 metres", "answer_start": 168}]},
                        {"id": "a3", "question": "How often does the ferry cross the lake?",
                         "answers": [{"text": "twice a day", "answer_start": 230}]},
                    ],
                },
            ],
        },
        {
            "title": "Tessaly_Bridge",
            "paragraphs": [
                {
                    "context": (
                        "The Tessaly Bridge spans the river Orm near the old harbour. "
                        "Construction began in 1931 and the bridge opened to traffic in 1934. "
                        "Its main span is 310 metres long. "
                        "The bridge was painted green to match the surrounding hills."
                    ),
                    "qas": [
                        {"id": "b1", "question": "When did the Tessaly Bridge open?",
                         "answers": [{"text": "1934", "answer_start": 124}]},
                        {"id": "b2", "question": "Why was the bridge painted green?",
                         "answers": [{"text": "to match the surrounding hills", "answer_start": 193}]},
                        {"id": "b3", "question": "How long is the main span of the Tessaly Bridge?",
                         "answers": [{"text": "310 metres", "answer_start": 147}]},
                    ],
                },
            ],
        },
    ],
}


def test_tiny_squad_offsets_are_real():
    for article in TINY_SQUAD["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                a = qa["answers"][0]
                assert para["context"][a["answer_start"] : a["answer_start"] + len(a["text"])] == a["text"]


def _train_tiny(spec):
    """A few steps on the tiny SQuAD slice: the net, its lists, mean loss before and after, the report."""
    import torch
    from transformers import AutoTokenizer

    from training import ranker_data as rd
    from training import train_ranker as tr

    paragraphs, questions = rd.load_squad(TINY_SQUAD)
    assert len(questions) == 6 and all(len(p.spans) == 4 for p in paragraphs)
    data = rd.DataSettings(sources=("squad", "bm25"), same_negatives=3, bm25_negatives=2)
    lists = rd.squad_lists(paragraphs, questions, data)
    # every list holds its answer sentence as the one positive; the other article's sentences are negatives
    for r, q in zip(lists, questions):
        assert r.labels[0] == 1 and sum(r.labels) == 1
        assert q.answer in r.candidates[0]
        assert r.candidates[0].startswith(paragraphs[q.paragraph].article + ": ")
        assert any(not c.startswith(paragraphs[q.paragraph].article) for c in r.candidates[1:])
    settings = replace(tr.TrainSettings(), spec=spec, batch_pairs=12, lr=5e-4 if not spec.lora_rank else 3e-3,
                       head_lr=5e-3, warmup=0.0, max_minutes=5.0)
    tr.seed_everything(0)
    torch.set_num_threads(2)
    net = rk.build_model(spec)
    tokenizer = AutoTokenizer.from_pretrained(str(rk.base_model_path()), local_files_only=True)
    base = {k: v.clone() for k, v in net.state_dict().items()}

    def mean_loss() -> float:
        with torch.no_grad():
            return float(np.mean([tr.batch_loss(net, tokenizer, spec, [r], 1.0, False)[0] for r in lists]))

    net.eval()
    before = mean_loss()
    report = tr.train(net, tokenizer, lists * 5, settings, log=lambda s: None)
    after = mean_loss()
    assert report["steps"] >= 8 and not report["stopped_early"]
    print(f"loss {before:.3f} -> {after:.3f} in {report['steps']} steps")
    assert after < 0.85 * before, (before, after)
    changed = {k for k, v in net.state_dict().items() if not torch.equal(v, base[k])}
    return net, tokenizer, lists, changed


def test_training_loss_falls():
    spec = rk.RankerSpec(layers=2, trained=1, max_length=64)
    net, _, _, changed = _train_tiny(spec)
    # only the top layer and the head moved: exactly what ships
    assert changed and changed <= set(rk.trained_state(net, spec))


def test_lora_training_ships_its_factors_and_merges_at_load(tmp_path):
    """All layers trained through LoRA: only factors, biases, LayerNorms and the head move; the
    saved file, loaded and merged into the base weights, scores as the trained net did."""
    import torch

    from ingest.settings import EncoderSettings

    spec = rk.RankerSpec(layers=2, trained=2, max_length=64, lora_rank=4)
    net, tokenizer, lists, changed = _train_tiny(spec)
    names = rk.shipped_names(net, spec)
    assert changed and changed <= set(names.values())
    assert any(k.endswith(".lora_b") for k in changed) and not any(k.endswith(".base.weight") for k in changed)
    manifest = rk.save(net, spec, tmp_path)
    assert manifest["lora_rank"] == 4 and set(rk.trained_state(net, spec)) == set(names)
    loaded = rk.Ranker(tmp_path, encoder=EncoderSettings(runtime="torch"))
    r = lists[0]
    with torch.no_grad():
        expected = rk.predict(net, tokenizer, spec, r.question, list(r.candidates))
    np.testing.assert_allclose(loaded.score(r.question, r.candidates), expected, atol=3e-3)
    assert not any(type(m).__name__ == "_LoRALinear" for m in loaded._net.modules())  # merged: a plain BERT


def test_candidate_text_format():
    assert rk.candidate_text(("Guide", "Install", "  From   source "), "Run\n  make  install.") == (
        "Install › From source: Run make install."
    )
    assert rk.candidate_text((), " Plain  text ") == "Plain text"


def test_shipped_file_matches_card_and_manifest():
    manifest = rk.read_manifest(rk.MODELS_DIR)  # raises if the sha256 does not match
    weights = rk.MODELS_DIR / manifest["file"]
    assert weights.stat().st_size <= 5 * 1024 * 1024
    assert rk.sha256_of(weights) == manifest["sha256"]
    card = (rk.MODELS_DIR / "RANKER.md").read_text(encoding="utf-8")
    assert re.findall(r"sha256 `([0-9a-f]{64})`", card) == [manifest["sha256"]]


LAKE = (
    "The Orsund observatory stands on a ridge above the town of Kell. "
    "It was founded in 1897 by the astronomer Ida Lenz. "
    "Its main telescope has a mirror 2.4 metres wide. "
    "Visitors can tour the dome on Saturdays from April to October. "
    "The building was restored after a fire in 1962."
)


def _sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text, 0, len(text))]


@pytest.mark.parametrize(
    "question, answer",
    [
        ("Who founded the Orsund observatory?", 1),
        ("How wide is the mirror of the main telescope?", 2),
        ("When can visitors tour the dome?", 3),
    ],
)
def test_shipped_ranker_puts_the_answer_first(question, answer):
    sents = _sentences(LAKE)
    assert len(sents) == 5
    cands = [rk.candidate_text(("Orsund observatory",), s) for s in sents]
    probs = rk.shared_ranker().score(question, cands)
    assert probs.dtype == np.float32 and probs.shape == (5,)
    assert int(np.argmax(probs)) == answer, probs


def test_scores_keep_order_and_are_thread_safe():
    ranker = rk.shared_ranker()
    sents = [rk.candidate_text(("Orsund observatory",), s) for s in _sentences(LAKE)]
    q = "When was the observatory restored?"
    alone = [float(ranker.score(q, [s])[0]) for s in sents]
    together = ranker.score(q, sents)
    np.testing.assert_allclose(together, alone, atol=1e-4)
    np.testing.assert_allclose(ranker.score(q, sents[::-1]), together[::-1], atol=1e-4)
    assert ranker.score(q, []).shape == (0,)
    results, errors = [None] * 4, []

    def work(i: int) -> None:
        try:
            results[i] = ranker.score(q, sents)
        except Exception as err:  # noqa: BLE001  (the assertion below reports it)
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        np.testing.assert_allclose(r, together, atol=1e-4)


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    """A models folder holding the ranker's ONNX export (built once, by the first load)."""
    from ingest.settings import EncoderSettings

    folder = tmp_path_factory.mktemp("ranker-onnx")
    rk.Ranker(encoder=EncoderSettings(runtime="onnx", models_dir=folder)).load()
    return folder


def test_onnx_ranker_scores_as_the_torch_one(onnx_models):
    """By default the ranker runs under ONNX Runtime: exported on first use, checked, the same
    probabilities as the torch model; RAG_ENCODER=torch keeps it on torch."""
    from ingest.settings import EncoderSettings

    onnx = rk.Ranker(encoder=EncoderSettings(runtime="onnx", models_dir=onnx_models))
    torch_ = rk.Ranker(encoder=EncoderSettings(runtime="torch"))
    assert onnx.runtime == "onnx" and torch_.runtime == "torch"
    assert [p.name for p in onnx_models.glob("ranker-*.onnx")]  # the export, in the models folder
    sents = [rk.candidate_text(("Orsund observatory",), s) for s in _sentences(LAKE)]
    long = rk.candidate_text(("Orsund observatory",), " ".join(_sentences(LAKE)) * 3)  # cut to max_length
    for q in ("Who founded the Orsund observatory?", "When was the observatory restored?"):
        np.testing.assert_allclose(onnx.score(q, sents + [long]), torch_.score(q, sents + [long]), atol=1e-3)
    assert onnx._net is None  # scored without building the torch model: the export was current


def test_onnx_ranker_imports_no_torch_once_exported(onnx_models):
    code = (
        "import sys; from assistant import ranker as rk; "
        "p = rk.shared_ranker().score('Who founded it?', ['Anna Berg founded it in 1911.', 'It has a dome.']); "
        "assert p.shape == (2,) and p[0] > p[1], p; "
        "assert not {'torch', 'transformers'} & set(sys.modules), sorted(m for m in sys.modules if m in ('torch', 'transformers'))"
    )
    env = {**os.environ, "RAG_MODELS_DIR": str(onnx_models), "RAG_ENCODER": "auto"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _copy_models(tmp_path):
    target = tmp_path / "models"
    shutil.copytree(rk.MODELS_DIR, target)
    return target


def _one_line_naming_fix(err: Exception) -> None:
    msg = str(err)
    assert "\n" not in msg and "make train-ranker" in msg, msg
    assert isinstance(err, IngestError)


def test_corrupt_weights_give_one_line(tmp_path):
    models = _copy_models(tmp_path)
    weights = models / "ranker.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(RankerError) as err:
        rk.Ranker(models).score("anything?", ["a candidate"])
    _one_line_naming_fix(err.value)
    assert "sha256" in str(err.value)


def test_missing_weights_or_manifest_give_one_line(tmp_path):
    models = _copy_models(tmp_path)
    (models / "ranker.safetensors").unlink()
    with pytest.raises(RankerError) as err:
        rk.Ranker(models).score("anything?", ["a candidate"])
    _one_line_naming_fix(err.value)
    (models / rk.MANIFEST).unlink()
    with pytest.raises(RankerError) as err:
        rk.Ranker(models).load()
    _one_line_naming_fix(err.value)
    with pytest.raises(RankerError) as err:
        rk.Ranker(tmp_path / "nowhere").load()
    _one_line_naming_fix(err.value)


def test_truncated_weights_with_matching_manifest_give_one_line(tmp_path):
    """A file that hashes as the manifest says but is not a valid safetensors file."""
    import json

    models = _copy_models(tmp_path)
    weights = models / "ranker.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    manifest = json.loads((models / rk.MANIFEST).read_text())
    manifest["sha256"] = rk.sha256_of(weights)
    (models / rk.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(RankerError) as err:
        rk.Ranker(models).load()
    _one_line_naming_fix(err.value)


def test_the_card_says_when_ingest_cuts_documentation_differently_than_at_training():
    from ingest.chunk import CHUNKER_VERSION
    from training.train_ranker import _chunker_note

    assert _chunker_note({"training": {"chunker": CHUNKER_VERSION}}) == []
    note = " ".join(_chunker_note({"training": {}}))
    assert "earlier chunker" in note and "CHUNKER_VERSION" in note
