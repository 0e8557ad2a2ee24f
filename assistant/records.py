"""Frozen records that cross the stages of the pipeline and reach its callers (CLI, UI, evals).

One serializer: `Answer.to_dict()` is the JSON form of an answer for the CLI, the API, feedback
and export alike.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ingest.records import Chunk, Unit, format_pages

if TYPE_CHECKING:  # pragma: no cover
    from .index import CorpusIndex

NOT_IN_CORPUS = "The corpus does not say."  # the whole answer when the documents do not say


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    content: str


@dataclass(frozen=True)
class Query:
    """What to search for: the question as asked, plus the earlier turns it leans on."""

    focus: str
    context: str = ""

    @property
    def text(self) -> str:
        return f"{self.focus} {self.context}".strip()

    @property
    def is_followup(self) -> bool:
        return bool(self.context)


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
    pages: tuple[int, ...] = ()  # (first, last) page of a PDF; () for other documents

    @property
    def where(self) -> str:
        """'report.pdf, p. 12' for a PDF page, else the source path."""
        pages = format_pages(self.pages)
        return f"{self.source}, {pages}" if pages else self.source

    def to_dict(self) -> dict:
        return asdict(self) | {"pages": list(self.pages), "where": self.where}

    @classmethod
    def of_unit(cls, n: int, unit: Unit) -> "Citation":
        return cls(
            n=n,
            chunk_id=unit.chunk_id,
            source=unit.source,
            section=" › ".join(unit.section),
            start=unit.start,
            end=unit.end,
            quote=unit.text,
            header=unit.header,
            pages=unit.pages,
        )

    @classmethod
    def of_chunk(cls, n: int, chunk: Chunk) -> "Citation":
        return cls(
            n, chunk.id, chunk.source, chunk.section_label, chunk.start, chunk.end, chunk.text, chunk.header, chunk.pages
        )


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its fused score and the ranks it had in each retriever."""

    chunk: Chunk
    score: float
    dense_rank: int | None = None
    bm25_rank: int | None = None


@dataclass(frozen=True)
class Scored:
    """A unit scored against the question (the rank stage), best first in lists."""

    unit: Unit
    score: float
    dense: float
    lexical: float
    rank: int  # rank of its passage among the fused hits, -1 when outside them
    named: float = 0.0  # share of the question's identifiers this unit names
    evidence: float = 0.0  # how well the unit answers, apart from what it names
    model: float = -1.0  # the ranker's probability that the unit answers; -1 when it did not score it


@dataclass(frozen=True)
class Decision:
    """The decide stage: answer from `units`, or abstain (and why)."""

    abstain: bool
    confidence: float
    threshold: float
    reason: str = ""  # why it abstains: "no candidates", "answer type", "unknown identifier", "below threshold"
    units: tuple[Scored, ...] = ()  # answerable units, best first
    threshold_source: str = ""  # where the threshold came from


@dataclass(frozen=True)
class Evidence:
    """What the stages before compose found for one question; backends compose from it."""

    question: str  # the cleaned question
    history: tuple[Turn, ...]
    query: Query  # what was retrieved for
    hits: tuple[Hit, ...]
    scored: tuple[Scored, ...]
    index: "CorpusIndex"
    decision: Decision
    related: tuple[Citation, ...] = ()  # closest passages, offered when abstaining


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
    threshold: float = 0.0  # the abstention threshold applied
    threshold_source: str = ""  # where that threshold came from

    def to_dict(self) -> dict[str, Any]:
        """The answer as JSON data: the one form the CLI, the API, feedback and export use."""
        return {
            "answer": self.text,
            "abstained": self.abstained,
            "citations": [c.to_dict() for c in self.citations],
            "related": [c.to_dict() for c in self.related],
            "notice": self.notice,
            "backend": self.backend,
            "query": self.query,
            "confidence": round(float(self.confidence), 4),
            "threshold": round(float(self.threshold), 4),
            "threshold_source": self.threshold_source,
        }


@dataclass(frozen=True)
class StreamEvent:
    """A step of a streamed answer: the text so far, and the Answer once done."""

    text: str
    done: bool = False
    answer: Answer | None = None
