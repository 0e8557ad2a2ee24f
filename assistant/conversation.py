"""The resolve stage: a follow-up's retrieval query is built from the conversation, not the last
message alone."""
from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

from . import qtype
from .records import NOT_IN_CORPUS, Query, Turn
from .terms import content_terms

_LEADS = re.compile(
    r"^\s*(and|but|also|so|then|or|what about|how about|what of|same for|and what|and how|and when|and who|"
    r"and why|why|how so|which of (them|those|these)|what else|anything else|more on)\b",
    re.IGNORECASE,
)
_ANAPHORA = re.compile(
    r"\b(it|its|it's|they|them|their|theirs|he|him|his|she|her|hers|these|those|this one|that one|"
    r"the same|the former|the latter|the one|the other|the first|the second|the last|the next|"
    r"the previous|each of them|both)\b",
    re.IGNORECASE,
)
_BARE_DEMONSTRATIVE = re.compile(r"\b(this|that)\s*[?.!]?\s*$", re.IGNORECASE)
# 'that law', 'this version' point back; 'say that the …' (a clause follows) does not
_DEMONSTRATIVE_NOUN = re.compile(
    r"\b(this|that)\s+(?!(the|a|an|it|its|they|their|there|he|his|she|her|we|our|you|is|was|are|were|"
    r"will|would|can|could|should|has|have|had|does|did|do|not|no|all|any|some|each|every)\b)[a-z]", re.IGNORECASE
)


def turns_of(history: Iterable[Any] | None) -> tuple[Turn, ...]:
    """A history as Turns: Turn records, {"role", "content"} dicts or (user, assistant) pairs."""
    out: list[Turn] = []
    for t in history or ():
        if isinstance(t, Turn):
            out.append(t)
        elif isinstance(t, dict) and "role" in t:
            out.append(Turn(str(t["role"]), str(t.get("content") or "")))
        elif isinstance(t, (list, tuple)) and len(t) == 2:
            out += [Turn("user", str(t[0] or "")), Turn("assistant", str(t[1] or ""))]
    return tuple(out)


# 'How did Anthropic respond?': a reaction verb with nothing after it leaves out what it reacts to
_BARE_REACTION = re.compile(r"\b(respond|responded|react|reacted|reply|replied|retaliate|retaliated)\s*[?.!]?\s*$", re.I)


def is_followup(question: str, last_turn: str = "") -> bool:
    """Does the question lean on an earlier turn (pronoun, 'that law', ellipsis, 'and …', 'what about …',
    or too few words to stand alone)? `last_turn` is the previous question and answer: a question of
    two content words and no identifier leans on them when it shares a word with them ('What does
    METR contribute?' after an answer naming METR) or leaves out what it reacts to ('How did
    Anthropic respond?'); 'What is the capital of France?' does not, nor does 'What is ASL-3?'."""
    pointers = (_ANAPHORA, _BARE_DEMONSTRATIVE, _DEMONSTRATIVE_NOUN)
    if _LEADS.match(question) or any(p.search(question) for p in pointers):
        return True
    terms = content_terms(question)
    if len(terms) <= 1:
        return True
    if len(terms) != 2 or qtype.identifiers(question):
        return False
    return bool(set(terms) & set(content_terms(last_turn))) or bool(_BARE_REACTION.search(question))


def resolve(question: str, history: Sequence[Turn], max_turns: int = 6) -> Query:
    """The retrieval query for `question` after `history` (oldest first)."""
    earlier = [t.content for t in history if t.role == "user" and t.content.strip()][-max_turns:]
    if not earlier or not is_followup(question, f"{earlier[-1]} {last_answer(history)}"):
        return Query(question)
    # the previous question may itself have leaned on the one before it
    previous = resolve(earlier[-1], [Turn("user", q) for q in earlier[:-1]], max_turns)
    return Query(question, f"{previous.text} {last_answer(history)}".strip())


_MARKER = re.compile(r"\[\d+\]")


def last_answer(history: Sequence[Turn]) -> str:
    """The assistant's last answer without its citation markers ('' if it abstained): what
    'that law' or 'the one after that' may point at."""
    said = next((t.content for t in reversed(history) if t.role == "assistant"), "")
    return "" if said.strip() == NOT_IN_CORPUS else strip_markers(said).strip()


def strip_markers(text: str) -> str:
    """The text without its citation markers ('[1]')."""
    return _MARKER.sub(" ", text)
