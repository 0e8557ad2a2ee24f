"""Settings for ingest and the store: frozen, built only at entry points, passed down."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_COLLECTION = "corpus"


@dataclass(frozen=True)
class StoreSettings:
    """Where the Chroma collection lives: an embedded folder, or a server given by host and port."""

    path: Path = REPO_ROOT / "data" / "chroma"
    host: str | None = None
    port: int | None = None
    collection: str = DEFAULT_COLLECTION

    @property
    def is_server(self) -> bool:
        return self.host is not None

    def describe(self) -> str:
        where = f"Chroma server {self.host}:{self.port}" if self.is_server else f"store {self.path}"
        return f"collection '{self.collection}' in {where}"

    def cli_flags(self) -> str:
        """The command-line flags that point another command at this store."""
        if self.is_server:
            flags = f"--chroma-host {self.host} --chroma-port {self.port}"
        else:
            flags = f"--store {self.path}"
        if self.collection != DEFAULT_COLLECTION:
            flags += f" --collection {self.collection}"
        return flags


@dataclass(frozen=True)
class IngestSettings:
    """How documents become chunks and vectors."""

    store: StoreSettings = field(default_factory=StoreSettings)
    corpus: tuple[Path, ...] = (REPO_ROOT / "corpus",)
    chunk_tokens: int = 160
    overlap_tokens: int = 32
    batch_size: int = 32  # 64 is no faster on CPU and doubles peak activation memory
    max_file_mb: float = 10.0  # ~9 min of embedding on 2 cores (make bench); larger files are refused, not truncated
    progress: bool = True


ENCODER_RUNTIMES = ("auto", "torch", "onnx", "onnx-int8")


@dataclass(frozen=True)
class EncoderSettings:
    """Which runtime runs the embedding model (ingest/embed.py) and where ONNX exports are kept.

    auto: chosen by probing the CPU; torch: sentence-transformers (bf16 batches where the CPU
    has native bf16); onnx: ONNX Runtime float32; onnx-int8: dynamic int8, opt-in (lossy; its
    vectors get their own model id)."""

    runtime: str = "auto"
    models_dir: Path = REPO_ROOT / "data" / "models"


def encoder_from_env(env: os._Environ | dict | None = None, **overrides) -> EncoderSettings:
    """Defaults < environment (RAG_ENCODER, RAG_MODELS_DIR) < overrides."""
    env = os.environ if env is None else env
    values = {"runtime": (env.get("RAG_ENCODER") or "auto").strip().lower()}
    if env.get("RAG_MODELS_DIR"):
        values["models_dir"] = Path(env["RAG_MODELS_DIR"]).resolve()
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values["runtime"] not in ENCODER_RUNTIMES:
        from .errors import IngestError

        raise IngestError(f"unknown encoder runtime '{values['runtime']}' — set RAG_ENCODER to one of {', '.join(ENCODER_RUNTIMES)}")
    return replace(EncoderSettings(), **values)


def store_from_env(env: os._Environ | dict | None = None, **overrides) -> StoreSettings:
    """Defaults < environment (RAG_STORE, RAG_CHROMA_HOST, RAG_CHROMA_PORT, RAG_COLLECTION) < overrides."""
    env = os.environ if env is None else env
    base = StoreSettings()
    values = {
        "path": Path(env["RAG_STORE"]) if env.get("RAG_STORE") else base.path,
        "host": env.get("RAG_CHROMA_HOST") or None,
        "port": int(env["RAG_CHROMA_PORT"]) if env.get("RAG_CHROMA_PORT") else None,
        "collection": env.get("RAG_COLLECTION") or base.collection,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values["path"] is not None:
        values["path"] = Path(values["path"]).resolve()
    if values["host"] and not values["port"]:
        values["port"] = 8000
    return replace(base, **values)


def add_store_arguments(parser) -> None:
    """The store flags every command shares."""
    parser.add_argument("--store", type=Path, help="embedded Chroma folder (default: data/chroma)")
    parser.add_argument("--chroma-host", help="use a Chroma server at this host instead of --store")
    parser.add_argument("--chroma-port", type=int, help="port of the Chroma server (default 8000)")
    parser.add_argument("--collection", help=f"collection name (default: {DEFAULT_COLLECTION})")


def store_from_args(args, env: os._Environ | dict | None = None) -> StoreSettings:
    """Defaults < environment < the store flags given."""
    return store_from_flags(store_from_env(env), args)


def store_from_flags(store: StoreSettings, args: Any) -> StoreSettings:
    """The store the flags name; a flag for one kind of store replaces the other kind's fields."""
    path, host, port = getattr(args, "store", None), getattr(args, "chroma_host", None), getattr(args, "chroma_port", None)
    if path is not None:
        store = replace(store, path=Path(path).resolve(), host=None, port=None)
    if host is not None:
        store = replace(store, host=host, port=port or store.port or 8000)
    elif port is not None and store.host is not None:
        store = replace(store, port=port)
    if getattr(args, "collection", None):
        store = replace(store, collection=args.collection)
    return store

