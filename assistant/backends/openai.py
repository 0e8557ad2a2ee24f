"""Generative answerer: an OpenAI-compatible server (vLLM, Ollama, llama.cpp) writes the answer from
the retrieved passages, and every sentence is checked against what it cites.

llama-index's OpenAILike is the client; its types stay inside this module. Whatever the model
writes, the Answer it yields has [n] markers that all point at listed citations, citations that are
all used, and quotes that are exact source spans. When the server is down, too slow, replies with
something unusable, or nothing it wrote survives verification, it raises BackendUnavailable and the
pipeline shows the extractive answer with the notice.
"""
from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Iterator, Sequence

from ingest.records import Chunk, Unit

from .. import verify
from ..records import NOT_IN_CORPUS, Answer, Citation, Evidence, Query, Turn
from ..terms import content_terms
from ..units import label_only, with_list
from .base import BackendUnavailable

PROMPT_PACKAGE = "assistant"
PROMPT_DIR = "prompts"
MAX_PASSAGES = 8  # numbered passages offered to the model, at most
# Tokens are counted with the embedding model's tokenizer (WordPiece), an approximation of the
# served model's: byte-level BPE splits digits and typographic quotes finer. On this corpus
# SmolLM2's tokenizer gives 0.92-1.29 tokens (mean 1.05) per WordPiece token of a passage.
TOKEN_RATIO = 1.3  # model tokens per counted token, assumed
SAFETY_SHARE = 0.05  # of the context window kept free besides
MIN_SAFETY_TOKENS = 32
CHAT_TEMPLATE_TOKENS = 48  # role tags and default system prompt the server adds around the prompt
PASSAGE_FRAME_TOKENS = 8  # "[n] (label)" line and blank lines around a passage
MIN_PASSAGE_ROOM = 64  # below this the conversation is shortened to make room for passages
TURN_CHARS = 600  # an earlier turn is cut to this many characters in the prompt
CONDENSE_MAX_TOKENS = 64
CONDENSE_MAX_CHARS = 400
REWRITE_KEEPS = 1.0  # share of the question's content words a standalone rewrite must keep (it only adds)
TEMPERATURE = 0.0

# "The passages do not say.", "This is not mentioned in the passages", "I cannot answer ..."
REFUSAL = re.compile(
    r"\b(?:passages?|documents?|corpus|context|texts?|sources?|it)\s+(?:do|does|did)\s*(?:n['’]t|not)\s+"
    r"(?:say|mention|answer|contain|state|address|cover|specify|include|provide|discuss|tell|describe)\b"
    r"|\bdoes\s+not\s+say\b"
    r"|\bnot\s+(?:in|covered\s+(?:by|in)|mentioned\s+in|found\s+in|stated\s+in|given\s+in|addressed\s+in)\s+"
    r"(?:the\s+)?(?:passages?|documents?|corpus|context|texts?|sources?)\b"
    r"|\b(?:no|not\s+enough)\s+information\b"
    r"|\b(?:cannot|can['’]t|unable\s+to)\s+(?:answer|determine|find|tell)\b"
    r"|\bI\s+(?:do\s+not|don['’]t)\s+know\b",
    re.IGNORECASE,
)


# -- prompts --------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _jinja():
    import jinja2

    return jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


@lru_cache(maxsize=8)
def _template(name: str):
    text = resources.files(PROMPT_PACKAGE).joinpath(PROMPT_DIR, name).read_text(encoding="utf-8")
    return _jinja().from_string(text)


def render_prompt(name: str, **values) -> str:
    """The prompt template prompts/<name> rendered with values; a missing variable raises
    jinja2.UndefinedError."""
    return _template(name).render(**values).strip()


# -- errors ---------------------------------------------------------------------------------
ModelError = BackendUnavailable  # the model could not be used; .notice is the line shown


def _error(err: BaseException) -> ModelError:
    if isinstance(err, ModelError):
        return err
    kind, transport = type(err).__name__, False
    try:
        import openai

        if isinstance(err, openai.APITimeoutError):
            kind, transport = "Timeout", True
        elif isinstance(err, openai.APIConnectionError):
            kind, transport = "ConnectionError", True
        elif isinstance(err, openai.APIStatusError):
            kind = f"HTTP {err.status_code}"
    except ImportError:  # pragma: no cover - openai comes with llama-index-llms-openai-like
        pass
    if isinstance(err, TimeoutError):
        kind, transport = "Timeout", True
    elif isinstance(err, ConnectionError):
        kind, transport = "ConnectionError", True
    if transport:
        return ModelError(f"The model server did not answer ({kind}); showing the extractive answer.", True)
    return ModelError(f"The model server sent an unusable reply ({kind}); showing the extractive answer.")


def _timeout_error(seconds: float) -> ModelError:
    return ModelError(
        f"The model server did not answer (Timeout after {seconds:g} s); showing the extractive answer.", True
    )


NOT_CONFIGURED = (
    "No model server is configured (set RAG_OPENAI_BASE_URL and RAG_OPENAI_MODEL); showing the extractive answer."
)
NOT_INSTALLED = (
    "The generative backend needs llama-index-llms-openai-like (pip install -e '.[generative]'); "
    "showing the extractive answer."
)
NOTHING_SUPPORTED = (
    "The model's answer had no sentence its cited passages support; showing the extractive answer."
)


# -- what the model is shown ------------------------------------------------------------------
@dataclass(frozen=True)
class Passage:
    n: int
    chunk: Chunk
    label: str
    text: str  # what the model sees under the label
    units: tuple[Unit, ...]  # the chunk's quotable sentences, in order
    rows: tuple[int, ...]  # their rows in index.units / index.unit_vecs

    def as_template(self) -> dict:
        return {"n": self.n, "label": self.label, "text": self.text}


@dataclass(frozen=True)
class Prepared:
    passages: tuple[Passage, ...]
    prompt: str


def _conversation(history: Sequence[Turn], max_turns: int) -> list[dict]:
    turns = [t for t in history if t.role in ("user", "assistant") and t.content.strip()]
    out = []
    for t in turns[-2 * max_turns :] if max_turns > 0 else []:
        text = verify.strip_markers(t.content)  # old [n] point at passages the model no longer sees
        if len(text) > TURN_CHARS:
            text = text[: TURN_CHARS - 1].rstrip() + "…"
        out.append({"role": "User" if t.role == "user" else "Assistant", "content": text})
    return out


def _passage(n: int, chunk: Chunk, index) -> Passage:
    rows = tuple(index.units_by_chunk.get(chunk.id, ()))
    label = chunk.section_label or chunk.source
    if chunk.section and chunk.source:
        label = f"{chunk.source}: {chunk.section_label}"
    text = f"{chunk.header}\n{chunk.text}" if chunk.header else chunk.text
    return Passage(n, chunk, label, text.strip(), tuple(index.units[i] for i in rows), rows)


# -- the backend ------------------------------------------------------------------------------
class OpenAIBackend:
    """Answers through an OpenAI-compatible chat server; thread-safe."""

    name = "openai"

    def __init__(self, settings, embedder) -> None:
        self.settings = settings
        self.embedder = embedder
        self._lock = threading.Lock()
        self._llms: dict[int, object] = {}

    @property
    def configured(self) -> bool:
        return bool(self.settings.openai_base_url and self.settings.openai_model)

    # -- the client (llama-index stays in here) -------------------------------------------
    def _llm(self, max_tokens: int):
        with self._lock:
            llm = self._llms.get(max_tokens)
            if llm is None:
                try:
                    from llama_index.llms.openai_like import OpenAILike
                except ImportError:
                    raise ModelError(NOT_INSTALLED) from None
                s = self.settings
                llm = OpenAILike(
                    model=s.openai_model,
                    api_base=s.openai_base_url,
                    api_key=s.openai_api_key or "none",
                    is_chat_model=True,
                    is_function_calling_model=False,
                    context_window=s.openai_context_window,
                    max_tokens=max_tokens,
                    timeout=s.openai_timeout,
                    max_retries=0,
                    temperature=TEMPERATURE,
                )
                self._llms[max_tokens] = llm
            return llm

    @staticmethod
    def _messages(prompt: str):
        from llama_index.core.llms import ChatMessage

        return [ChatMessage(role="user", content=prompt)]

    def _chat(self, prompt: str, max_tokens: int) -> str:
        """The model's reply to prompt; ModelError on any failure."""
        llm = self._llm(max_tokens)
        try:
            response = llm.chat(self._messages(prompt))
            text = response.message.content
        except Exception as err:  # noqa: BLE001 - every failure of the server becomes a notice
            raise _error(err) from None
        if not isinstance(text, str) or not text.strip():
            raise ModelError("The model server sent an empty reply; showing the extractive answer.")
        return text.strip()

    def _deltas(self, prompt: str) -> Iterator[str]:
        """The model's reply as it arrives; ModelError on any failure or past the timeout."""
        llm = self._llm(self.settings.openai_max_tokens)
        deadline = time.monotonic() + self.settings.openai_timeout
        try:
            gen = llm.stream_chat(self._messages(prompt))
            for chunk in gen:
                if time.monotonic() > deadline:
                    close = getattr(gen, "close", None)
                    if close:
                        close()
                    raise _timeout_error(self.settings.openai_timeout)
                if chunk.delta:
                    yield chunk.delta
        except ModelError:
            raise
        except Exception as err:  # noqa: BLE001 - every failure of the server becomes a notice
            raise _error(err) from None

    # -- the protocol -------------------------------------------------------------------------
    def condense(self, question: str, query: Query, history: Sequence[Turn]) -> Query:
        """A standalone retrieval query written by the model from the conversation; the
        given query when there is no conversation or the model's rewrite is unusable.
        Raises ModelError only when the server did not answer at all."""
        if not self.configured or not any(t.role == "user" and t.content.strip() for t in history):
            return query
        conversation = _conversation(history, self.settings.history_turns)
        try:
            raw = self._chat(
                render_prompt("condense.txt", conversation=conversation, question=question), CONDENSE_MAX_TOKENS
            )
        except ModelError as err:
            if err.transport:
                raise
            return query
        standalone = _clean_condensed(raw)
        if not _usable_rewrite(standalone, question):
            return query
        return Query(standalone)

    def compose(self, evidence: Evidence) -> Iterator[str | Answer]:
        """The model's words as they arrive, then the verified Answer."""
        if not self.configured:
            raise ModelError(NOT_CONFIGURED)
        prep = self.prepare(evidence)
        text = ""
        for delta in self._deltas(prep.prompt):
            text += delta
            yield delta
        if not text.strip():
            raise ModelError("The model server sent an empty reply; showing the extractive answer.")
        yield self.finish(evidence, prep, text)

    # -- steps ------------------------------------------------------------------------------
    def prepare(self, evidence: Evidence) -> Prepared:
        """The prompt with as many of the retrieved passages as fit the token budget."""
        s = self.settings
        index = evidence.index
        question = evidence.question

        def count(text: str) -> int:
            return math.ceil(TOKEN_RATIO * self.embedder.count_tokens(text))

        conversation = _conversation(evidence.history, s.history_turns)
        safety = max(MIN_SAFETY_TOKENS, int(SAFETY_SHARE * s.openai_context_window))

        def room(conv) -> int:
            frame = render_prompt(
                "answer.txt", passages=[], conversation=conv, question=question, max_sentences=s.max_sentences
            )
            return s.openai_context_window - s.openai_max_tokens - safety - CHAT_TEMPLATE_TOKENS - count(frame)

        budget = room(conversation)
        while budget < MIN_PASSAGE_ROOM and conversation:
            conversation = conversation[1:]  # oldest turns go first
            budget = room(conversation)
        passages: list[Passage] = []
        for hit in evidence.hits:
            if len(passages) >= MAX_PASSAGES:
                break
            p = _passage(len(passages) + 1, hit.chunk, index)
            cost = count(f"{p.label}\n{p.text}") + PASSAGE_FRAME_TOKENS
            if cost > budget:
                break  # passages go in rank order: skipping one would reorder them
            budget -= cost
            passages.append(p)
        if evidence.hits and not passages:
            raise ModelError(
                f"The question leaves no room for passages in the model's context window "
                f"({s.openai_context_window} tokens); showing the extractive answer."
            )
        prompt = render_prompt(
            "answer.txt",
            passages=[p.as_template() for p in passages],
            conversation=conversation,
            question=question,
            max_sentences=s.max_sentences,
        )
        return Prepared(tuple(passages), prompt)

    def finish(self, evidence: Evidence, prep: Prepared, raw: str) -> Answer:
        """The verified Answer for the model's raw reply; ModelError when nothing it wrote is supported."""
        index = evidence.index
        sources = [
            verify.Source(
                p.text,  # not the label: a claim must come from the passage, not its heading
                tuple(u.text for u in p.units),
                index.unit_vecs[list(p.rows)] if p.rows else None,
            )
            for p in prep.passages
        ]
        result = verify.verify(raw, sources, encode=lambda texts: self.embedder.encode(list(texts)), refusal=REFUSAL)
        kept = result.kept
        refused = result.refusals > 0 or (not result.sentences and bool(REFUSAL.search(raw)))
        common = dict(query=evidence.query.text, hits=evidence.hits, backend=self.name, threshold=evidence.decision.threshold)
        if not kept:
            if refused or not prep.passages:
                return Answer(
                    text=NOT_IN_CORPUS,
                    abstained=True,
                    related=evidence.related,
                    notice="The model found no answer in the passages." if refused else "",
                    **common,
                )
            raise ModelError(NOTHING_SUPPORTED)
        citations = tuple(
            _citation(new, prep.passages[old - 1], result.best.get(old, -1), index)
            for new, old in enumerate(result.order, 1)
        )
        notes = []
        if result.removed:
            k = result.removed
            notes.append(f"Removed {k} sentence{'s' if k > 1 else ''} the cited passages do not support.")
        if refused:
            notes.append("The model said the passages answer only part of the question.")
        support = [min(c.lexical, c.dense if c.dense is not None else c.lexical) for c in kept]
        return Answer(
            text=result.text,
            abstained=False,
            citations=citations,
            notice=" ".join(notes),
            confidence=sum(support) / len(support),
            sentences_written=len(result.sentences),
            sentences_removed=result.removed,
            **common,
        )


def _usable_rewrite(standalone: str, question: str) -> bool:
    """A rewrite is a question (not an answer) that keeps the asked question's words."""
    if not standalone or len(standalone) > CONDENSE_MAX_CHARS or not standalone.endswith("?"):
        return False
    asked = set(content_terms(question))
    kept = asked & set(content_terms(standalone))
    return bool(content_terms(standalone)) and len(kept) >= REWRITE_KEEPS * len(asked)


def _clean_condensed(raw: str) -> str:
    lines = [ln.strip() for ln in raw.strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    line = re.sub(r"^(?:standalone\s+question|question|rewritten\s+question)\s*:\s*", "", lines[0], flags=re.I)
    line = line.strip().strip("\"'“”").strip()
    return " ".join(line.split())


def _citation(n: int, passage: Passage, best: int, index) -> Citation:
    """Citation n for a passage: its best-matching sentence (a list lead-in with its items),
    or the whole passage when it has no sentences."""
    if passage.units:
        unit = passage.units[best] if 0 <= best < len(passage.units) else passage.units[0]
        if label_only(unit):  # 'Evaluation methods:' says nothing alone
            unit, _ = with_list(unit, index)
        return Citation.of_unit(n, unit)
    return Citation.of_chunk(n, passage.chunk)
