"""The clean stage: the question as the pipeline will use it, or a one-line QuestionError."""
from __future__ import annotations

import re
import unicodedata

from .errors import QuestionError

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\ufeff]")


def clean_question(question: str, limit: int) -> str:
    """The question with control characters and extra spaces removed; QuestionError names the fix."""
    if not isinstance(question, str):
        raise QuestionError("the question must be text")
    question = question.encode("utf-8", "replace").decode("utf-8")  # lone surrogates become '?'
    question = unicodedata.normalize("NFC", _CONTROL.sub(" ", question)).strip()
    if not question:
        raise QuestionError("the question is empty — type a question about the documents")
    if len(question) > limit:
        raise QuestionError(
            f"the question is {len(question):,} characters long; the limit is {limit:,} — shorten it"
        )
    if not any(ch.isalnum() for ch in question):
        raise QuestionError("the question has no words in it — type a question about the documents")
    return " ".join(question.split())
