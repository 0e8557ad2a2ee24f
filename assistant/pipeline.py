"""The answer pipeline: a question flows through named stages, each a function of its own module.

    clean    clean.clean_question        the question as we will use it (or a one-line QuestionError)
    resolve  conversation.resolve        a follow-up's query from the conversation (+ backend.condense)
    retrieve retrieve.Retriever.search   dense + BM25 over the collection, fused by RRF
    rank     rank.score_units, rerank    units scored against the question; passages by their best unit
    decide   decide.decide               answer or abstain, with a confidence and a threshold
    compose  backends.<name>.compose     the answer text as it is composed, then the Answer
    verify   verify.citation_faults      every [n] names a listed citation; quotes are indexed spans

`stream()` runs them once and yields the text as the backend composes it; `ask()` is its last
event. When a backend cannot answer (server down, nothing it wrote is supported), the extractive
backend composes from the same evidence, with the backend's notice: decided here, once.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Iterator, Sequence

from ingest.embed import Embedder, shared_embedder

from . import calibration, synonyms
from .backends import Backend, BackendUnavailable, make_backend
from .backends.extractive import ExtractiveBackend
from .clean import clean_question
from .conversation import resolve, turns_of
from .decide import decide, related
from .rank import model_rescore, query_vector, rerank, score_units
from .records import NOT_IN_CORPUS, Answer, Evidence, Query, StreamEvent, Turn
from .retrieve import Retriever
from .settings import Settings, check
from .verify import citation_faults

__all__ = ["Assistant", "CorpusInfo", "NOT_IN_CORPUS", "StreamEvent", "clean_question"]


@dataclass(frozen=True)
class CorpusInfo:
    documents: int
    chunks: int
    ingested_at: str
    collection: str


class Assistant:
    """Built from settings; ask() and stream() are safe to call from several threads."""

    def __init__(
        self, settings: Settings, embedder: Embedder | None = None, backend: Backend | None = None, ranker=None
    ) -> None:
        self.settings = check(settings)
        self.embedder = embedder or shared_embedder()
        self.synonyms = synonyms.shared() if settings.synonyms else synonyms.NONE
        self.retriever = Retriever(settings, self.embedder, self.synonyms)
        self.backend = backend or make_backend(settings.backend, settings, self.embedder)
        self._extractive = ExtractiveBackend(settings)
        self.ranker = ranker if ranker is not None or not settings.ranker else _ranker(settings)

    # -- corpus -----------------------------------------------------------------------------
    def corpus_info(self) -> CorpusInfo:
        idx = self.retriever.index()
        return CorpusInfo(idx.documents, len(idx.chunks), idx.ingested_at, self.settings.store.collection)

    def warm_up(self) -> None:
        """Load the model and the index now rather than on the first question."""
        self.retriever.index()
        self.embedder.encode_one("warm up")
        if self.ranker is not None:
            self.ranker.load()

    def source_text(self, source: str) -> str:
        from .cite import source_text

        return source_text(self.settings.corpus_dirs, source)

    # -- stages retrieve + rank ----------------------------------------------------------------
    def retrieve(self, query: Query, mode: str = "hybrid", rescore: bool | None = None):
        """Ranked hits for a query, the scored units, and the index they come from."""
        qvec = query_vector(self.embedder, query)
        hits = self.retriever.search(query.text, qvec, mode)
        index = self.retriever.index()
        rescore = self.settings.rescore if rescore is None else rescore
        scored = score_units(query, qvec, hits, index, self.settings.candidates, everywhere=rescore, synonyms=self.synonyms)
        if rescore and self.ranker is not None:
            scored = model_rescore(query, scored, self.ranker, index, self.settings.rank_candidates, self.settings.ranker_weight)
        if rescore:
            hits = rerank(hits, scored, index.chunks)
        return hits, scored, index

    def evidence(self, question: str, history: Sequence[Turn], query: Query, mode: str = "hybrid") -> Evidence:
        """Stages retrieve, rank and decide for a cleaned question and its resolved query."""
        hits, scored, index = self.retrieve(query, mode)
        threshold = calibration.resolve(self.settings, index.meta)
        decision = replace(decide(query, scored, index, threshold.value, self.settings.ranker_confidence, self.synonyms),
                           threshold_source=threshold.source)
        return Evidence(
            question=question,
            history=tuple(history),
            query=query,
            hits=tuple(hits),
            scored=tuple(scored),
            index=index,
            decision=decision,
            related=related(scored, self.settings.related),
        )

    # -- answers ----------------------------------------------------------------------------------
    def stream(self, question: str, history: Sequence = (), mode: str = "hybrid") -> Iterator[StreamEvent]:
        """The answer as it is composed (text so far), then a last event with the Answer."""
        question = clean_question(question, self.settings.max_question_chars)
        turns = turns_of(history)
        given = resolve(question, turns, self.settings.history_turns)
        backend, notice = self.backend, ""
        try:
            query = backend.condense(question, given, turns)
        except BackendUnavailable as err:
            backend, notice, query = self._extractive, err.notice, given
        evidence = self.evidence(question, turns, query, mode)
        text = ""
        try:
            for piece in backend.compose(evidence):
                if isinstance(piece, Answer):
                    answer = piece
                    break
                text += piece
                yield StreamEvent(text)
            else:
                raise RuntimeError(f"the {backend.name} backend ended without an answer")
        except BackendUnavailable as err:
            notice = err.notice
            answer = _last(self._extractive.compose(evidence))
        answer = replace(answer, threshold_source=evidence.decision.threshold_source, notice=answer.notice or notice)
        yield StreamEvent(answer.text, True, self._verified(answer, evidence))

    def ask(self, question: str, history: Sequence = (), mode: str = "hybrid") -> Answer:
        """The answer to a question after `history` (Turns, role/content dicts or pairs)."""
        return _last(self.stream(question, history, mode)).answer

    def _verified(self, answer: Answer, evidence: Evidence) -> Answer:
        """Stage verify: an answer whose citations are not sound is a bug; say so, never show it."""
        faults = citation_faults(answer, evidence.index)
        if not faults:
            return answer
        print(f"assistant: unsound citations in an answer to {evidence.question!r}: {faults}", file=sys.stderr)
        if self.settings.debug:
            raise AssertionError("; ".join(faults))
        return Answer(
            NOT_IN_CORPUS, True, related=evidence.related, query=evidence.query.text, hits=evidence.hits,
            backend=answer.backend, notice="The answer's citations failed verification, so it is withheld.",
            threshold=answer.threshold, threshold_source=answer.threshold_source,
        )


def _ranker(settings: Settings):
    from .ranker import Ranker, shared_ranker

    return Ranker(settings.ranker_dir) if settings.ranker_dir else shared_ranker()


def _last(events):
    last = None
    for last in events:
        pass
    return last
