"""ONNX exports of transformer models from weights on disk, and ONNX Runtime sessions over them.

An export is built on first use, never downloaded, into a models folder (`data/models/` by
default): `NAME.onnx` and beside it `NAME.json`, its manifest — what it was built from (the
source weights' sha256), with what (torch, transformers, onnx, onnxruntime versions, opset,
this module's export format), the check it passed against torch, and the `.onnx` file's own
sha256. A manifest that is missing, unreadable, names anything other than what is installed
now, or does not match the file means the export is stale: it is built again.

Builds are safe to run from several processes at once and to kill: one builder at a time holds
`.NAME.lock` (the others wait, then find the export built), and every file is written under a
unique temporary name, fsync'ed and renamed into place, the manifest last; a killed build
leaves only a `*.tmp` that the next build removes.

Two users: the sentence encoder (`ensure_sentence_encoder`, for ingest/embed.py: the packaged
all-MiniLM-L6-v2 with sentence-transformers' mean pooling and L2 normalisation inside the
graph) and any transformers model with a head (`export_transformer`, e.g. a cross-encoder that
outputs one logit per pair).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .errors import IngestError

EXPORT_FORMAT = 1  # bump whenever the export code changes what it writes
OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
MIN_COSINE = 0.999  # float32 ONNX vs sentence-transformers float32 on the probe texts
INT8_MIN_COSINE = 0.95  # dynamic int8 is lossy (measured min ~0.97); below this the build is broken

# The probe: mixed lengths (one past the 256-token window), empty, punctuation, digits, other
# scripts, a table row; encoded in unsorted padded batches and one by one.
PROBE_TEXTS = (
    "When was version 3 of the Responsible Scaling Policy released?",
    "ASL-3",
    "",
    "x",
    "   leading and trailing spaces   ",
    "The policy was updated in October 2024 (v2.0), with further revisions in March 2025 (v2.1) and May 2025 (v2.2).",
    "| Version | Date | Change |\n|---|---|---|\n| 2.2 | 2025-05-14 | capability thresholds |",
    "Nous avons besoin d'une évaluation indépendante avant tout déploiement.",
    "安全性の評価は展開前に行われる。",
    "Модель прошла проверку на уровне ASL-3.",
    "$1,000,000 — 12.5% — 3/4 — #42 — 10^26 FLOP",
    "e-mail: someone@example.org; url: https://example.org/path?q=1",
    "Capability thresholds trigger stronger safeguards. " * 40,  # > 256 tokens: truncated
    "A short list:\n- first item\n- second item\n- third item",
    "Which Claude model was the first to cross the CBRN ASL-3 threshold?",
    "🙂 emoji and symbols ✓ → ∑",
    "UPPER CASE WORDS AND lower case words",
    "The Responsible Scaling Policy commits the company to pause training if safeguards lag behind.",
    "a",
    "Frontier Red Team findings were shared with the Long-Term Benefit Trust before the decision.",
    "tab\tseparated\tvalues\nand a second line",
    "In 2023 the first version set out AI Safety Levels modelled on biosafety levels.",
    "?",
    "Evaluations, red-teaming, and third-party audits are part of the process.",
)


class ExportError(IngestError):
    """An ONNX export could not be built or failed its check; the message names the fix."""


@dataclass(frozen=True)
class OnnxExport:
    """A checked export on disk."""

    path: Path
    manifest: dict

    @property
    def name(self) -> str:
        return self.path.stem


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_sha256(model_dir: Path, extra: Sequence[str] = ()) -> str:
    """One sha256 over the files that define a model's graph: its config, its weights, and the
    `extra` files (relative names) that matter to the export, e.g. a pooling config."""
    model_dir = Path(model_dir)
    names = ["config.json", *extra]
    names += sorted(p.name for p in model_dir.iterdir() if p.suffix in (".safetensors", ".bin"))
    digest = hashlib.sha256()
    for name in names:
        path = model_dir / name
        if not path.is_file():
            raise ExportError(f"{path} is missing — reinstall the model package (pip install --force-reinstall ...)")
        digest.update(name.encode() + b"\0" + sha256_file(path).encode() + b"\n")
    return digest.hexdigest()


def state_sha256(module) -> str:
    """One sha256 over a torch module's parameters and buffers (for a model held only in memory)."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}\0".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""


def build_key(kind: str, source: str, quantization: str = "none") -> dict:
    """Everything an export depends on; a manifest whose key differs is stale."""
    return {
        "format": EXPORT_FORMAT,
        "kind": kind,
        "source_sha256": source,
        "quantization": quantization,
        "opset": OPSET,
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "onnx": _version("onnx"),
        "onnxruntime": _version("onnxruntime"),
    }


def manifest_path(onnx_path: Path) -> Path:
    return onnx_path.with_suffix(".json")


def read_current(onnx_path: Path, key: Mapping) -> OnnxExport | None:
    """The export at onnx_path if its manifest matches key and the file matches the manifest."""
    try:
        manifest = json.loads(manifest_path(onnx_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # missing or corrupt: stale
    if not isinstance(manifest, dict) or any(manifest.get(k) != v for k, v in key.items()):
        return None
    try:
        if onnx_path.stat().st_size != manifest.get("bytes") or sha256_file(onnx_path) != manifest.get("sha256"):
            return None
    except OSError:
        return None
    return OnnxExport(onnx_path, manifest)


@contextmanager
def _build_lock(folder: Path, name: str):
    """One builder of NAME at a time across processes (the lock dies with its holder)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f".{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _tmp_path(final: Path) -> Path:
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    os.close(fd)
    return Path(name)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, final: Path) -> None:
    os.chmod(tmp, 0o644)  # mkstemp made it private; an export is readable like any data file
    _fsync(tmp)
    os.replace(tmp, final)


def ensure_export(
    onnx_path: Path, key: Mapping, build: Callable[[Path], dict], log: Callable[[str], None] | None = None
) -> OnnxExport:
    """The current export at onnx_path, built with build(tmp_path) -> check record when stale.

    build writes a complete ONNX file at the path it is given and returns what its check
    measured (it raises ExportError when the check fails: nothing is published then)."""
    onnx_path = Path(onnx_path)
    current = read_current(onnx_path, key)
    if current:
        return current
    try:
        return _build(onnx_path, key, build, log)
    except OSError as err:
        raise ExportError(
            f"cannot write the ONNX export {onnx_path} ({type(err).__name__}: {err.strerror or err}) — "
            "set RAG_MODELS_DIR to a writable folder, or RAG_ENCODER=torch"
        ) from None


def _build(onnx_path: Path, key: Mapping, build: Callable[[Path], dict], log) -> OnnxExport:
    with _build_lock(onnx_path.parent, onnx_path.stem):
        current = read_current(onnx_path, key)  # another process may have built it meanwhile
        if current:
            return current
        for stale in onnx_path.parent.glob(f".{onnx_path.name}.*.tmp"):
            stale.unlink(missing_ok=True)  # left by a killed build (no builder runs now: we hold the lock)
        for stale in onnx_path.parent.glob(f".{manifest_path(onnx_path).name}.*.tmp"):
            stale.unlink(missing_ok=True)
        if log:
            log(f"building {onnx_path} (once; it is rebuilt only when the model or the runtime changes)")
        t = time.perf_counter()
        tmp = _tmp_path(onnx_path)
        try:
            check = build(tmp)
            manifest = dict(key) | {
                "file": onnx_path.name,
                "bytes": tmp.stat().st_size,
                "sha256": sha256_file(tmp),
                "check": check,
                "build_seconds": round(time.perf_counter() - t, 1),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            _publish(tmp, onnx_path)
        finally:
            tmp.unlink(missing_ok=True)
        mtmp = _tmp_path(manifest_path(onnx_path))
        try:
            mtmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
            _publish(mtmp, manifest_path(onnx_path))
        finally:
            mtmp.unlink(missing_ok=True)
        return OnnxExport(onnx_path, manifest)


# --------------------------------------------------------------------------- export (torch side)


@contextmanager
def _eager_attention(module):
    """Export with transformers' eager attention: its mask is plain arithmetic that traces for
    every padding pattern (the sdpa path has data-dependent branches)."""
    from transformers import PreTrainedModel

    changed = []
    for sub in module.modules():
        if isinstance(sub, PreTrainedModel):
            was = getattr(sub.config, "_attn_implementation", None)
            if was != "eager":
                sub.set_attn_implementation("eager")
                changed.append((sub, was))
    try:
        yield
    finally:
        for sub, was in changed:
            sub.set_attn_implementation(was)


def _graph_module(model):
    """A module taking (input_ids, attention_mask, token_type_ids) and returning one tensor."""
    import torch

    class Graph(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            if hasattr(out, "logits"):
                out = out.logits
            elif isinstance(out, (tuple, list)):
                out = out[0]
            return out.float()

    return Graph(model).eval()


def _torch_export(module, example: Mapping[str, np.ndarray], path: Path, output_name: str) -> None:
    import warnings

    import torch

    args = tuple(torch.from_numpy(np.ascontiguousarray(example[n], dtype=np.int64)) for n in INPUT_NAMES)
    axes = {n: {0: "batch", 1: "sequence"} for n in INPUT_NAMES}
    axes[output_name] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        with torch.no_grad(), _eager_attention(module):
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=list(INPUT_NAMES),
                output_names=[output_name],
                dynamic_axes=axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )


def _quantize_int8(src: Path, dest: Path) -> None:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process applies to static (calibrated) quantization
    try:
        quantize_dynamic(str(src), str(dest), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)


# --------------------------------------------------------------------------- run (ONNX Runtime side)


class OnnxModel:
    """An ONNX Runtime session over an export: feed it tokenizer output, get the one output."""

    def __init__(self, export: OnnxExport, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # fusions at load
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        self.export = export
        self.session = ort.InferenceSession(str(export.path), options, providers=["CPUExecutionProvider"])
        self.input_names = tuple(i.name for i in self.session.get_inputs())

    def run(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        feeds = {}
        for name in self.input_names:
            if name in features:
                feeds[name] = np.ascontiguousarray(features[name], dtype=np.int64)
            elif name == "token_type_ids":
                feeds[name] = np.zeros_like(feeds["input_ids"])
            else:
                raise ExportError(f"the ONNX model {self.export.path.name} needs input '{name}', which was not given")
        return self.session.run(None, feeds)[0]


def _tokenize(tokenizer, texts: Sequence[str], max_length: int) -> dict[str, np.ndarray]:
    return dict(tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np"))


def _probe_batches(n: int, batch: int = 8) -> list[list[int]]:
    """Unsorted batches (long and short texts together, so padding is exercised), then singles."""
    idx = list(range(n))
    mixed = idx[::2] + idx[1::2]
    return [mixed[i : i + batch] for i in range(0, n, batch)] + [[i] for i in idx]


# --------------------------------------------------------------------------- the sentence encoder


SENTENCE_FILES = ("modules.json", "1_Pooling/config.json", "sentence_bert_config.json")


def sentence_encoder_key(model_dir: Path, quantization: str = "none") -> dict:
    return build_key("sentence-embedding", source_sha256(model_dir, SENTENCE_FILES), quantization)


def _check_pooling(model_dir: Path) -> None:
    """The graph hard-codes mean pooling + L2 normalisation: refuse a model configured otherwise."""
    modules = [m.get("type", "").rsplit(".", 1)[-1] for m in json.loads((model_dir / "modules.json").read_text())]
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    if modules != ["Transformer", "Pooling", "Normalize"] or modes != {"pooling_mode_mean_tokens"}:
        raise ExportError(
            f"{model_dir} is not Transformer + mean pooling + Normalize ({modules}, {sorted(modes)}) — "
            "use RAG_ENCODER=torch for it"
        )


def _sentence_module(model_dir: Path):
    """BertModel + sentence-transformers' mean pooling over the attention mask + L2 normalisation."""
    import torch
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager").eval()

    class SentenceEncoder(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            # as sentence_transformers Pooling(mean) then Normalize
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(dim=1)
            counts = torch.clamp(mask.sum(dim=1), min=1e-9)
            return torch.nn.functional.normalize(summed / counts, p=2, dim=-1)

    return SentenceEncoder(bert).eval()


def _probe_cosines(encode: Callable[[list[str]], np.ndarray], reference: np.ndarray) -> np.ndarray:
    texts = list(PROBE_TEXTS)
    worst = np.ones(len(texts), dtype=np.float64)
    for batch in _probe_batches(len(texts)):
        vecs = encode([texts[i] for i in batch])
        cos = (vecs.astype(np.float64) * reference[batch]).sum(axis=1)
        worst[batch] = np.minimum(worst[batch], cos)
    return worst


def build_sentence_encoder(model_dir: Path, dest: Path, quantization: str = "none") -> dict:
    """Export, then check against sentence-transformers in float32; returns the check record."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    _check_pooling(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    max_length = int(json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"])
    example = _tokenize(tokenizer, ["a short one", "a somewhat longer text, so the first is padded"], max_length)
    fp32 = dest if quantization == "none" else dest.with_name(dest.name + ".fp32")
    try:
        _torch_export(_sentence_module(model_dir), example, fp32, "sentence_embedding")
        if quantization == "int8":
            _quantize_int8(fp32, dest)
        elif quantization != "none":
            raise ExportError(f"unknown quantization '{quantization}' — use none or int8")
    finally:
        if fp32 != dest:
            fp32.unlink(missing_ok=True)
    reference_model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    reference = reference_model.encode(
        list(PROBE_TEXTS), batch_size=8, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    ).astype(np.float64)
    session = OnnxModel(OnnxExport(dest, {}))
    cos = _probe_cosines(lambda b: session.run(_tokenize(tokenizer, b, max_length)), reference)
    floor = MIN_COSINE if quantization == "none" else INT8_MIN_COSINE
    record = {
        "reference": "sentence_transformers.SentenceTransformer.encode, float32, normalize_embeddings=True",
        "probe_texts": len(PROBE_TEXTS),
        "min_cosine": round(float(cos.min()), 6),
        "mean_cosine": round(float(cos.mean()), 6),
        "required_min_cosine": floor,
    }
    if cos.min() < floor:
        raise ExportError(
            f"the ONNX export of {model_dir.name} ({quantization}) gives vectors at cosine {cos.min():.4f} "
            f"to torch (needs >= {floor}) — use RAG_ENCODER=torch and report this"
        )
    return record


def ensure_sentence_encoder(
    model_dir: Path, models_dir: Path, name: str, quantization: str = "none", log: Callable[[str], None] | None = None
) -> OnnxExport:
    """The checked ONNX sentence encoder for model_dir, in models_dir/NAME.onnx (built if stale)."""
    model_dir = Path(model_dir)
    key = sentence_encoder_key(model_dir, quantization)
    path = Path(models_dir) / f"{name}.onnx"
    return ensure_export(path, key, lambda tmp: build_sentence_encoder(model_dir, tmp, quantization), log)


# --------------------------------------------------------------------------- any model with a head


def transformer_key(kind: str, source_id: str, output_name: str = "logits") -> dict:
    """The staleness key of export_transformer's export of a model of this kind from these weights:
    with it, read_current finds a current export without building (or importing) the torch model."""
    return build_key(f"transformer:{kind}:{output_name}", source_id)


def export_transformer(
    model,
    tokenizer,
    name: str,
    models_dir: Path,
    source: str | Path | None = None,
    output_name: str = "logits",
    max_length: int = 256,
    probe_pairs: Sequence[tuple[str, str]] | None = None,
    atol: float = 1e-3,
    log: Callable[[str], None] | None = None,
    kind: str | None = None,
) -> OnnxExport:
    """Export a transformers model with a head (any torch module called as
    model(input_ids=, attention_mask=, token_type_ids=) returning a tensor, a tuple or an output
    with .logits) to models_dir/NAME.onnx with a manifest; rebuilt when stale. Open it with
    OnnxModel(export).run(tokenizer(...)).

    source identifies the weights for staleness: a model folder (hashed), a sha256 string, or
    None (the module's tensors are hashed). The export is checked against the torch module on
    probe pairs (text, text_pair) tokenised with `tokenizer`: max |difference| <= atol. kind names
    the model in the key (default: its class name); see transformer_key."""
    import torch

    if source is None:
        source_id = state_sha256(model)
    elif isinstance(source, Path) or (isinstance(source, str) and os.path.isdir(source)):
        source_id = source_sha256(Path(source))
    else:
        source_id = str(source)
    pairs = list(probe_pairs or [(q, t) for q, t in zip(PROBE_TEXTS[::2], PROBE_TEXTS[1::2])])
    key = transformer_key(kind or type(model).__name__, source_id, output_name)

    def features(batch: Sequence[tuple[str, str]]) -> dict[str, np.ndarray]:
        enc = tokenizer(
            [a for a, _ in batch], [b for _, b in batch],
            padding=True, truncation=True, max_length=max_length, return_tensors="np",
        )
        out = dict(enc)
        out.setdefault("token_type_ids", np.zeros_like(out["input_ids"]))
        return out

    def build(tmp: Path) -> dict:
        graph = _graph_module(model)
        was_training = model.training
        model.eval()
        try:
            _torch_export(graph, features(pairs[:2]), tmp, output_name)
            session = OnnxModel(OnnxExport(tmp, {}))
            worst = 0.0
            for batch in _probe_batches(len(pairs)):
                feats = features([pairs[i] for i in batch])
                with torch.no_grad():
                    ref = graph(*(torch.from_numpy(feats[n].astype(np.int64)) for n in INPUT_NAMES)).numpy()
                worst = max(worst, float(np.abs(session.run(feats) - ref).max()))
        finally:
            model.train(was_training)
        if worst > atol:
            raise ExportError(f"the ONNX export '{name}' differs from torch by {worst:.2e} (> {atol}) — keep it on torch")
        return {"reference": "the torch module, float32", "probe_pairs": len(pairs), "max_abs_diff": worst, "atol": atol}

    return ensure_export(Path(models_dir) / f"{name}.onnx", key, build, log)
