"""The one settings object of the assistant: defaults < environment < flags, built at entry points."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from ingest.settings import REPO_ROOT, StoreSettings, store_from_env

CALIBRATION_FILE = Path(__file__).resolve().parent / "calibration.json"


def _calibrated(key: str, default: float) -> float:
    try:
        return float(json.loads(CALIBRATION_FILE.read_text())[key])
    except (OSError, ValueError, KeyError):
        return default


@dataclass(frozen=True)
class Settings:
    store: StoreSettings = field(default_factory=StoreSettings)
    corpus_dirs: tuple[Path, ...] = (REPO_ROOT / "corpus",)
    backend: str = "extractive"  # or "openai"
    # retrieval
    dense_k: int = 20
    bm25_k: int = 20
    rrf_k: int = 60
    dense_weight: float = 1.0
    bm25_weight: float = 1.0
    candidates: int = 8  # fused chunks looked at closely
    rescore: bool = True  # sentence-level re-scoring with the embedding model
    # answers
    max_sentences: int = 3
    abstain_threshold: float = field(default_factory=lambda: _calibrated("abstain_threshold", 0.45))
    related: int = 3
    max_question_chars: int = 2000
    history_turns: int = 6
    # generative backend (OpenAI-compatible server)
    openai_base_url: str = ""
    openai_model: str = ""
    openai_api_key: str = ""
    openai_timeout: float = 30.0
    openai_max_tokens: int = 400
    openai_context_window: int = 4096


def settings_from_env(env=None, **overrides) -> Settings:
    """Build Settings from RAG_* variables; keyword overrides (flags) win over both."""
    env = os.environ if env is None else env
    values: dict = {}
    for f in fields(Settings):
        key = "RAG_" + f.name.upper()
        if key in env and f.name not in ("store", "corpus_dirs"):
            raw = env[key]
            kind = type(getattr(Settings(), f.name))
            values[f.name] = raw.lower() in ("1", "true", "yes") if kind is bool else kind(raw)
    if env.get("RAG_CORPUS"):
        values["corpus_dirs"] = tuple(Path(p) for p in env["RAG_CORPUS"].split(os.pathsep))
    if env.get("OPENAI_API_KEY") and "openai_api_key" not in values:
        values["openai_api_key"] = env["OPENAI_API_KEY"]
    store = store_from_env(env, **(overrides.pop("store_overrides", None) or {}))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return replace(Settings(), store=store, **values)


def settings_from_args(args, env=None) -> Settings:
    """Settings for a command line: defaults < environment < the flags given (store, backend, corpus)."""
    from ingest.settings import store_from_args

    given = any(getattr(args, k, None) for k in ("store", "chroma_host", "chroma_port", "collection"))
    overrides: dict = {"store_overrides": vars(store_from_args(args)) if given else None}
    if getattr(args, "backend", None):
        overrides["backend"] = args.backend
    if getattr(args, "corpus", None):
        overrides["corpus_dirs"] = tuple(args.corpus)
    return settings_from_env(env, **overrides)
