"""The one settings object of the assistant and its one loader: defaults < environment < flags.

`load_settings` is what every entry point (CLI, UI, evals, bench, scripts) calls. A store flag
replaces the other kind of store: `--store DIR` means the embedded folder even when
RAG_CHROMA_HOST is exported, and `--chroma-host` means the server. Nothing here reads a file:
the abstention threshold is resolved by `calibration.resolve` when an index is served, and the
settings record where an explicit one came from.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from ingest.settings import REPO_ROOT, StoreSettings, store_from_env, store_from_flags

from .errors import SettingsError

BACKENDS = ("extractive", "openai")  # the closed set; assistant.backends builds them


@dataclass(frozen=True)
class Settings:
    store: StoreSettings = field(default_factory=StoreSettings)
    corpus_dirs: tuple[Path, ...] = (REPO_ROOT / "corpus",)
    backend: str = "extractive"  # one of BACKENDS
    # retrieval
    dense_k: int = 20
    bm25_k: int = 20
    rrf_k: int = 60
    dense_weight: float = 1.0
    bm25_weight: float = 1.0
    candidates: int = 8  # fused chunks looked at closely
    rescore: bool = True  # sentence-level re-scoring with the embedding model
    synonyms: bool = True  # question words meet the corpus's words of like meaning (assistant/synonyms.py)
    ranker: bool = False  # the learned cross-encoder re-scores the best units (assistant/ranker.py)
    ranker_dir: str = ""  # weights folder; "" = the packaged assistant/models
    rank_candidates: int = 16  # units the cross-encoder re-scores per question
    ranker_weight: float = 0.15  # order: cheap score + this × p(answers)
    ranker_confidence: float = 0.0  # abstain: (1 − this) × cheap evidence + this × p(answers)
    # answers
    max_sentences: int = 3
    abstain_threshold: float | None = None  # None: the collection's calibration, else the packaged one
    threshold_source: str = ""  # where an explicit abstain_threshold came from
    related: int = 3
    max_question_chars: int = 2000
    history_turns: int = 6
    debug: bool = False  # RAG_DEBUG=1: unexpected exceptions are re-raised, not turned into one line
    # generative backend (OpenAI-compatible server)
    openai_base_url: str = ""
    openai_model: str = ""
    openai_api_key: str = ""
    openai_timeout: float = 30.0
    openai_max_tokens: int = 400
    openai_context_window: int = 4096


_NOT_FROM_ENV = ("store", "corpus_dirs", "threshold_source")


def _parse(name: str, raw: str, example: Any) -> Any:
    try:
        if isinstance(example, bool):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if name == "abstain_threshold" or isinstance(example, float):
            return float(raw)
        if isinstance(example, int):
            return int(raw)
    except ValueError:
        raise SettingsError(f"RAG_{name.upper()}={raw!r} is not a number — fix or unset it") from None
    return raw


def check(settings: Settings) -> Settings:
    """Refuse settings no run can use, with a line that names the fix."""
    if settings.backend not in BACKENDS:
        raise SettingsError(unknown_backend(settings.backend))
    return settings


def unknown_backend(name: str) -> str:
    return f"unknown backend '{name}' — choose one of: {', '.join(BACKENDS)} (RAG_BACKEND or --backend)"


def load_settings(args: Any = None, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from defaults < RAG_* environment < command-line flags (args) < keyword overrides."""
    env = os.environ if env is None else env
    base = Settings()
    values: dict[str, Any] = {}
    for f in fields(Settings):
        key = "RAG_" + f.name.upper()
        if f.name not in _NOT_FROM_ENV and key in env:
            values[f.name] = _parse(f.name, env[key], getattr(base, f.name))
    if "abstain_threshold" in values:
        values["threshold_source"] = "RAG_ABSTAIN_THRESHOLD"
    if env.get("RAG_CORPUS"):
        values["corpus_dirs"] = tuple(Path(p) for p in env["RAG_CORPUS"].split(os.pathsep))
    if env.get("OPENAI_API_KEY") and "openai_api_key" not in values:
        values["openai_api_key"] = env["OPENAI_API_KEY"]
    store = store_from_env(env)
    if args is not None:
        store = store_from_flags(store, args)
        if getattr(args, "backend", None):
            values["backend"] = args.backend
        if getattr(args, "corpus", None):
            values["corpus_dirs"] = tuple(Path(p) for p in args.corpus)
        if getattr(args, "abstain_threshold", None) is not None:
            values["abstain_threshold"] = float(args.abstain_threshold)
            values["threshold_source"] = "--abstain-threshold"
    if "abstain_threshold" in overrides and overrides["abstain_threshold"] is not None:
        overrides.setdefault("threshold_source", "given by the caller")
    values.update({k: v for k, v in overrides.items() if v is not None})
    values.setdefault("store", store)
    return check(replace(base, **values))
