"""The Assistant: question (+ history) in, a short answer with verified citations out."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from ingest.embed import Embedder, shared_embedder

from . import answer as extractive
from . import qtype
from .conversation import Query, resolve
from .errors import QuestionError
from .records import NOT_IN_CORPUS, Answer, Citation, Hit, Turn
from .retrieve import Retriever
from .settings import Settings

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\ufeff]")


@dataclass(frozen=True)
class CorpusInfo:
    documents: int
    chunks: int
    ingested_at: str
    collection: str


@dataclass(frozen=True)
class StreamEvent:
    """A step of a streamed answer: text so far, and the Answer once done."""

    text: str
    done: bool = False
    answer: Answer | None = None


def clean_question(question: str, limit: int) -> str:
    """The question as we will use it, or QuestionError with a one-line reason."""
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


class Assistant:
    """Built from settings; ask() and stream() are safe to call from several threads."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self.embedder = embedder or shared_embedder()
        self.retriever = Retriever(settings, self.embedder)
        self._backend = None

    # -- corpus -----------------------------------------------------------------------
    def corpus_info(self) -> CorpusInfo:
        idx = self.retriever.index()
        return CorpusInfo(idx.documents, len(idx.chunks), idx.ingested_at, self.settings.store.collection)

    def warm_up(self) -> None:
        """Load the model and the index now rather than on the first question."""
        self.retriever.index()
        self.embedder.encode_one("warm up")

    # -- retrieval ----------------------------------------------------------------------
    def retrieve(self, query: Query, mode: str = "hybrid", rescore: bool | None = None):
        """Ranked hits for a query, and the scored units of the top ones."""
        qvec = extractive.query_vector(self.embedder, query)
        hits = self.retriever.search(query.text, qvec, mode)
        index = self.retriever.index()
        rescore = self.settings.rescore if rescore is None else rescore
        scored = extractive.score_units(query, qvec, hits, index, self.settings.candidates, everywhere=rescore)
        if rescore:
            hits = _rerank(hits, scored, index.chunks)
        return hits, scored, index

    # -- answers ------------------------------------------------------------------------
    def ask(self, question: str, history: Sequence[Turn] = (), mode: str = "hybrid") -> Answer:
        question = clean_question(question, self.settings.max_question_chars)
        query = resolve(question, _turns(history), self.settings.history_turns)
        if self.settings.backend != "extractive":
            return self._generative().answer(self, question, query, _turns(history))
        return self.answer_extractive(query, mode)

    def answer_extractive(self, query: Query, mode: str = "hybrid") -> Answer:
        hits, scored, index = self.retrieve(query, mode)
        useful = extractive.answerable_units(scored)
        kind = qtype.expected_type(query.focus)
        typed = [s for s in useful if qtype.satisfies(kind, s.unit.text)]
        confidence = 0.0
        if typed and not qtype.unknown_identifiers(query.focus, index.identifiers):
            confidence = max(s.evidence for s in typed[:5]) * (1.0 - 0.5 * extractive.unknown_share(query, index.stats))
        if confidence < self.settings.abstain_threshold or not typed:
            return Answer(
                text=NOT_IN_CORPUS,
                abstained=True,
                related=self._related(scored),
                query=query.text,
                hits=tuple(hits),
                confidence=confidence,
            )
        chosen = extractive.select(typed, index, self.settings.max_sentences)
        text, citations = extractive.compose(chosen, query, index)
        return Answer(text, False, citations, (), query.text, tuple(hits), confidence=confidence)

    def _related(self, scored) -> tuple[Citation, ...]:
        out, seen = [], set()
        for s in scored:
            if s.unit.chunk_id in seen:
                continue
            seen.add(s.unit.chunk_id)
            out.append(extractive.citation_for(len(out) + 1, s.unit))
            if len(out) >= self.settings.related:
                break
        return tuple(out)

    def stream(self, question: str, history: Sequence[Turn] = ()) -> Iterator[StreamEvent]:
        """The answer as it is composed, word by word, then the final Answer."""
        if self.settings.backend != "extractive":
            yield from self._generative().stream(self, question, _turns(history))
            return
        result = self.ask(question, history)
        words = result.text.split(" ")
        for i in range(1, len(words), 3):
            yield StreamEvent(" ".join(words[:i]))
        yield StreamEvent(result.text, True, result)

    def _generative(self):
        if self._backend is None:
            from .generative import GenerativeBackend

            self._backend = GenerativeBackend(self.settings)
        return self._backend

    # -- citations ------------------------------------------------------------------------
    def source_text(self, source: str) -> str:
        from .cite import source_text

        return source_text(self.settings.corpus_dirs, source)


def _turns(history) -> list[Turn]:
    out = []
    for t in history or ():
        if isinstance(t, Turn):
            out.append(t)
        elif isinstance(t, dict) and "role" in t:
            out.append(Turn(str(t["role"]), str(t.get("content") or "")))
        elif isinstance(t, (list, tuple)) and len(t) == 2:  # (user, assistant) pairs
            out += [Turn("user", str(t[0] or "")), Turn("assistant", str(t[1] or ""))]
    return out


def _rerank(hits: list[Hit], scored, chunks: dict) -> list[Hit]:
    """Passages ordered by their best sentence; passages with no scored sentence follow in fused order."""
    best: dict[str, float] = {}
    for s in scored:
        best[s.unit.chunk_id] = max(best.get(s.unit.chunk_id, -1.0), s.score)
    by_id = {h.chunk.id: h for h in hits}
    head = [by_id.get(cid) or Hit(chunks[cid], 0.0) for cid in sorted(best, key=lambda c: -best[c]) if cid in chunks]
    return head + [h for h in hits if h.chunk.id not in best]
