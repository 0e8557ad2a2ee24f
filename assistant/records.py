"""Frozen records the assistant hands to its callers (CLI, UI, evals)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ingest.records import Chunk

NOT_IN_CORPUS = "The corpus does not say."  # the whole answer when the documents do not say


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    content: str


@dataclass(frozen=True)
class Citation:
    n: int
    chunk_id: str
    source: str
    section: str
    start: int
    end: int
    quote: str  # == source_text[start:end]
    header: str = ""  # for a table row: the table's header row

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its fused score and the ranks it had in each retriever."""

    chunk: Chunk
    score: float
    dense_rank: int | None = None
    bm25_rank: int | None = None


@dataclass(frozen=True)
class Answer:
    text: str
    abstained: bool
    citations: tuple[Citation, ...] = ()
    related: tuple[Citation, ...] = ()  # closest passages when abstaining; not citations
    query: str = ""  # the retrieval query built from the conversation
    hits: tuple[Hit, ...] = field(default=(), repr=False)
    backend: str = "extractive"
    notice: str = ""  # one line about a fallback or a refusal
    confidence: float = 0.0
    sentences_written: int = 0  # generative: sentences the model wrote
    sentences_removed: int = 0  # generative: of those, removed by verification

    def to_dict(self) -> dict:
        return {
            "answer": self.text,
            "abstained": self.abstained,
            "citations": [c.to_dict() for c in self.citations],
            "related": [c.to_dict() for c in self.related],
            "notice": self.notice,
            "backend": self.backend,
        }
