"""Process-wide switches for entry points: offline, no telemetry. Called by main() functions only."""
from __future__ import annotations

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "ORT_DISABLE_TELEMETRY": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "TOKENIZERS_PARALLELISM": "false",
    "DO_NOT_TRACK": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    # oneDNN keeps a kernel per input shape; with bf16 its default 1024 entries cost ~1 GB of RSS in ingest
    "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "8",
}


def prepare_environment() -> None:
    """Nothing may download or phone home at run time; bounded kernel caches."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
