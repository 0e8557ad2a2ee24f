"""Answerers behind one protocol, chosen by name from a closed set.

A backend composes an answer from the Evidence the earlier stages found: it yields text as it is
composed (str pieces, in order) and ends with the Answer. It may raise BackendUnavailable, whose
notice is shown when the pipeline falls back to the extractive answer. No backend imports the
pipeline; a backend may also rewrite a follow-up into a standalone query (`condense`).
"""
from __future__ import annotations

from ..errors import SettingsError
from ..settings import BACKENDS, unknown_backend
from .base import Backend, BackendUnavailable

__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "make_backend"]


def make_backend(name: str, settings, embedder) -> Backend:
    """The backend called `name`; SettingsError with the choices for any other name."""
    if name == "extractive":
        from .extractive import ExtractiveBackend

        return ExtractiveBackend(settings)
    if name == "openai":
        from .openai import OpenAIBackend

        return OpenAIBackend(settings, embedder)
    raise SettingsError(unknown_backend(name))
