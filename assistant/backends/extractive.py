"""The default answerer: a short answer made of verbatim units of the corpus, each followed by [n].

No generative model. The best unit, then near-best ones that add something and repeat nothing;
a lead-in ending in ':' brings its list items; a table row is shown with its column names; a
sentence that opens by pointing back ('She persuaded …') comes after the one it points to. Each
cited sentence is yielded as soon as it is composed.
"""
from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Iterator, Sequence

from ingest.records import Unit, split_row

from .. import qtype
from ..conversation import last_answer, strip_markers
from ..records import NOT_IN_CORPUS, Answer, Citation, Evidence, Query, Scored, Turn
from ..terms import content_terms
from ..units import (
    answer_after, child_sections, item_key, label_only, leads_in, list_later, overlaps, run_after, section_outline,
    section_units, sentences_after, with_list,
)

MARGIN = 0.06  # further sentences must score within this of the best one
REDUNDANT = 0.9  # cosine above which a further sentence repeats a chosen one


class ExtractiveBackend:
    name = "extractive"

    def __init__(self, settings) -> None:
        self.settings = settings

    def condense(self, question: str, query: Query, history: Sequence[Turn]) -> Query:
        return query

    def compose(self, evidence: Evidence) -> Iterator[str | Answer]:
        d = evidence.decision
        common = dict(
            query=evidence.query.text, hits=evidence.hits, confidence=d.confidence, threshold=d.threshold
        )
        if d.abstain:
            yield NOT_IN_CORPUS
            yield Answer(NOT_IN_CORPUS, True, related=evidence.related, **common)
            return
        parts: list[str] = []
        cites: list[Citation] = []
        chosen = select(d.units, evidence.index, self.settings.max_sentences)
        near = [h.chunk.id for h in evidence.hits[: self.settings.candidates]]
        chosen = with_sequel(chosen, d.units, evidence.query, evidence.index, near)
        rest = [s for s in d.units if s not in chosen]
        pieces = list(compose_parts(chosen, evidence.query, evidence.index, near, rest))
        news = something_new(pieces, evidence, rest) if evidence.query.context else None
        if news is not None:
            pieces = list(compose_parts(chosen + [news], evidence.query, evidence.index, near, rest))
        for part, citation in pieces:
            yield part if not parts else " " + part
            parts.append(part)
            cites.append(citation)
        if not parts:  # only lead-ins with nothing after them: nothing to quote
            yield NOT_IN_CORPUS
            yield Answer(NOT_IN_CORPUS, True, related=evidence.related, **common)
            return
        yield Answer(" ".join(parts), False, tuple(cites), **common)


def _plain(text: str) -> str:
    return " ".join(strip_markers(text).split())


def something_new(pieces: Sequence[tuple[str, Citation]], evidence: Evidence, rest: Sequence[Scored]) -> Scored | None:
    """A follow-up whose answer would only repeat the previous answer gets, beside it, a unit the
    user has not been shown yet, if that unit would be answered on its own (its evidence reaches the
    threshold): the one that comes next in the document after the last quote, or the best one when
    that holds more of the question's own words."""
    said = _plain(last_answer(evidence.history))
    if not said or not pieces or not all(_plain(text) in said for text, _ in pieces):
        return None
    best = None
    for s in rest:
        if s.evidence < evidence.decision.threshold:
            break
        if not label_only(s.unit) and _plain(s.unit.text) not in said:
            best = s
            break
    # 'What does he say that leads to?': what comes next in the document, unless another unit holds
    # more of the words the question itself asks with ('What does it throw when …?')
    after = _continuation(pieces[-1][1], evidence.index, rest)
    if after is None or after.evidence < evidence.decision.threshold or _plain(after.unit.text) in said:
        return best
    if best is None:
        return after
    weights = _idf_weights(evidence.query.focus, evidence.index)

    def asked(s: Scored) -> float:
        return sum(weights.get(t, 0.0) for t in set(content_terms(s.unit.text)))

    return after if asked(after) >= asked(best) else best


def _continuation(last: Citation, index, rest: Sequence[Scored]) -> Scored | None:
    """The unit that comes next in the document after the quote `last` (only blank lines between,
    in the same chunk), if it is among `rest`."""
    chunk = index.chunks.get(last.chunk_id)
    if chunk is None:
        return None
    following = [s for s in rest if s.unit.chunk_id == last.chunk_id and s.unit.start >= last.end]
    if not following:
        return None
    nxt = min(following, key=lambda s: s.unit.start)
    gap = chunk.text[last.end - chunk.start : nxt.unit.start - chunk.start]
    return nxt if not gap.strip() and not label_only(nxt.unit) else None


def select(scored: Sequence[Scored], index, max_sentences: int) -> list[Scored]:
    """The best unit, then near-best ones that add something and repeat nothing."""
    scored = [s for s in scored if not label_only(s.unit)]
    if not scored:
        return []
    chosen = [scored[0]]
    for cand in scored[1:]:
        if len(chosen) >= max_sentences or cand.score < scored[0].score - MARGIN:
            break
        cv = index.vector_of(cand.unit)
        if any(float(cv @ index.vector_of(c.unit)) > REDUNDANT for c in chosen):
            continue
        if any(overlaps(cand.unit, c.unit) for c in chosen):
            continue
        chosen.append(cand)
    return chosen


def render(unit: Unit, query: Query) -> str:
    """The unit as it reads in the answer; table rows get their column names."""
    if unit.kind != "row" or not unit.header:
        return unit.text.strip()
    names, cells = split_row(unit.header), split_row(unit.text)
    if len(names) != len(cells) or len(cells) < 2:
        return unit.text.strip()
    asked = set(content_terms(query.focus))
    wanted = [j for j in range(1, len(names)) if asked & set(content_terms(names[j]))]
    cols = wanted or list(range(1, len(names)))
    parts = "; ".join(f"{names[j]}: {cells[j]}" for j in cols if cells[j])
    return f"{names[0]}: {cells[0]} — {parts}"


MAX_LIST_QUOTED = 8  # items, rows or steps quoted for a broad question, each cited
FOLLOWING = 3  # sentences quoted after a lead-in that no list follows


# "Who are the reviewers?", "Which parties were …?", "What must it include?": the answer may be a
# list; when the best unit stands in one (or leads into one), the list is quoted
PLURAL = re.compile(
    r"^\s*(?:(?:who|what)\s+(?:are|were)\s+(?:the\s+)?(?:[\w-]+\s+){0,3}?[\w-]+s\b"
    r"|(?:which|what)\s+(?:[\w-]+\s+){0,2}?[\w-]+s\s+(?:are|were|does|do|did|is|was|have|has|can|could|may|might|must|should|will)\b)"
    r"|\b(?:include|includes|consist\s+of|consists\s+of|comprise|comprises)\s*\??\s*$",
    re.IGNORECASE,
)


def asks_for_list(question: str) -> bool:
    """A question whose answer is a list when the corpus has one there (broad questions included)."""
    return qtype.is_broad(question) or bool(PLURAL.search(question))


def _siblings_chosen(chosen: Sequence[Scored], index, near: Sequence[str], question: str) -> bool:
    """The best unit is a list item and another chosen unit stands in the same list: the question
    is about the list, not one of its items, unless it names the best item's key ('What is the
    Frontier Safety Roadmap?' and 'Frontier Safety Roadmap — with accountable public milestones')."""
    if not chosen or chosen[0].unit.kind != "item":
        return False
    key = item_key(chosen[0].unit, plain=True)
    if key and re.search(rf"(?<!\w){re.escape(key)}(?!\w)", question.lower()):
        return False
    _, run = run_after(chosen[0].unit, index, MAX_LIST_QUOTED, near)
    ids = {u.id for u in run}
    return sum(1 for s in chosen if s.unit.id in ids) >= 2


def _segments(chosen: Sequence[Scored], query: Query, index, near: Sequence[str] = ()) -> Iterator[tuple[str, Unit]]:
    """(text, unit) for each quoted piece of the answer, in order; each gets its own [n]."""
    broad = qtype.is_broad(query.focus)
    listing = asks_for_list(query.focus) or _siblings_chosen(chosen, index, near, query.focus)
    covered: list[Unit] = []

    def fresh(u: Unit) -> bool:
        return not any(overlaps(u, c) for c in covered)

    if chosen and chosen[0].unit.section:
        depth = qtype.section_asked(query.focus, chosen[0].unit.section, chosen[0].unit.source)
        outline = section_outline(chosen[0].unit, depth, index, MAX_LIST_QUOTED, broad) if depth is not None else []
        if outline:  # 'Summarise the academic critique.': the section it names, in outline
            for prefix, u in outline:
                listed, items = with_list(u, index) if prefix else (u, [])
                if items:  # a subsection opening with a lead-in: with its list, in one piece
                    yield prefix + _with_items(u, items), listed
                else:
                    yield prefix + render(u, query), u
            return
    for k, s in enumerate(chosen):
        unit, prefix = s.unit, ""
        if k == 0 and unit.section and (
            qtype.heading_named(unit.section[-1], query.focus) or _spelt_in_heading(unit, query.focus)
        ):  # the answer names the thing asked for ('What is CBRN short for?': '1. CBRN (Chemical, …)')
            prefix = f"{unit.section[-1]}: "
        if not fresh(unit):
            continue  # already quoted as an item of a list above
        listed, items = with_list(unit, index)
        if items and (not broad or unit.kind == "item"):  # a lead-in and its items, in one piece (a broad
            # question asked of an item leading into sub-items gets those, not the items beside it)
            covered.append(listed)
            yield prefix + _with_items(unit, items), listed
            continue
        # a broad question quotes the list, rows or steps the unit is in or leads into; a plural
        # one quotes a list the unit stands in (not table rows: a row is one answer of its own)
        wants_run = broad or leads_in(unit) or (listing and unit.kind == "item")
        lead, run = run_after(unit, index, MAX_LIST_QUOTED, near) if wants_run else (None, [])
        if broad and not run and unit.kind == "sentence":
            # 'List the isolation mechanisms …': the list its section goes on to, a paragraph later
            run = list_later(unit, index, MAX_LIST_QUOTED, near)
        if listing and not wants_run and unit.kind == "sentence":
            # 'There are three supported hook types …' just before the list of them
            lead, run = run_after(unit, index, MAX_LIST_QUOTED, near)
            if not run or run[0].kind != "item":
                # or a sentence later, after its own lead-in ('… runs some tools …' then 'The
                # current tools are:' and the list)
                later = answer_after(unit, index, 1, MAX_LIST_QUOTED, near)
                lead, run = None, (later if len(later) > 1 and later[-1].kind in ("item", "row") else [])
        if unit.kind == "sentence" and unit.text.rstrip().endswith("?") and not run:
            # 'So, what types implement the Copy trait?' asks; what follows it answers
            run = answer_after(unit, index, FOLLOWING, MAX_LIST_QUOTED, near)
            if not run:
                continue
            lead = unit
        children = child_sections(unit, index, MAX_LIST_QUOTED) if leads_in(unit) and not run else []
        if children and fresh(unit):  # a lead-in to subsections: each named by its heading
            covered.append(unit)
            yield prefix + unit.text.strip(), unit
            for u in children:
                if fresh(u):
                    covered.append(u)
                    yield f"{u.section[-1]}: {render(u, query)}", u
            return
        if leads_in(unit) and not run:
            # a lead-in ending in ':' is never an answer on its own; with no list after it (a PDF
            # that drew its bullets), the sentences it leads into are the list
            run = sentences_after(unit, index, FOLLOWING, near)
            if not run:
                continue
            lead = unit
        if lead is not None and fresh(lead):
            covered.append(lead)
            yield prefix + lead.text.strip(), lead
            prefix = ""
        elif not run or unit not in run:
            before, own = _antecedent(unit, index, near)
            if not own and not prefix and unit.section and _POINTS_BACK.match(unit.text.lstrip()):
                prefix = f"{unit.section[-1]}: "  # 'missing_docs: This lint is allowed by default.'
            for u in before:
                if fresh(u):
                    covered.append(u)
                    yield prefix + u.text.strip(), u
                    prefix = ""
            covered.append(unit)
            yield prefix + render(unit, query), unit
            prefix = ""
        for u in run:
            if fresh(u):
                covered.append(u)
                yield prefix + render(u, query), u
                prefix = ""
        if (broad or listing) and run:
            return  # the list is the answer


def _with_items(lead: Unit, items: Sequence[Unit]) -> str:
    """A lead-in and the list items it leads into, as one piece of the answer."""
    return f"{lead.text.strip()} {'; '.join(i.text.strip() for i in items)}"


def _spelt_in_heading(unit: Unit, question: str) -> bool:
    acronym = qtype.acronym_asked(question)
    return bool(acronym) and qtype.spells_out(acronym, unit.section[-1]) and not qtype.spells_out(acronym, unit.text)


_POINTS_BACK = re.compile(r"^(he|she|it|they|his|her|its|their|this|these|those|such|the latter|the former)\b", re.I)
# a sentence that goes on from the one before: 'This means that …', 'If that is not specified, …', 'To
# avoid this, …', 'Otherwise, …'
_GOES_ON = re.compile(
    r"^(?:this|that|these|those|otherwise|instead|in that case|in this case"
    r"|(?:if|when|unless|to avoid|to prevent|to change|to do|because of|despite|without|apart from)\s+(?:this|that|so|it)\b)\b",
    re.I,
)


def _neighbour(unit: Unit, index, near: Sequence[str], step: int, paragraphs: int = 1) -> Unit | None:
    """The sentence just before (step -1) or after (step 1) a sentence in the same paragraph (or, with
    paragraphs=2, across one paragraph break)."""
    if unit.kind != "sentence":
        return None
    units = section_units(unit, index, near)
    pos = next((i for i, u in enumerate(units) if u.id == unit.id), None)
    if pos is None or not 0 <= pos + step < len(units):
        return None
    other = units[pos + step]
    first, second = (other, unit) if step < 0 else (unit, other)
    chunk = index.chunks.get(unit.chunk_id)
    if other.kind != "sentence" or other.chunk_id != unit.chunk_id or chunk is None or first.end > second.start:
        return None
    gap = chunk.text[first.end - chunk.start : second.start - chunk.start]
    return other if not gap.strip() and gap.count("\n") < 2 * paragraphs else None


def _antecedent(unit: Unit, index, near: Sequence[str]) -> tuple[list[Unit], bool]:
    """The sentence before a sentence that opens by pointing back ('He appointed …', 'This
    stands …'): what 'he' or 'this' is. In the same paragraph, or the last of the paragraph before
    when the sentence opens its own ('This facility is called the closure API.'); and the one before
    that when it points back too. The flag says whether one was found in the sentence's own paragraph
    (otherwise its heading may be what it points to: '`url.toJSON()`' over 'This method is …')."""
    out: list[Unit] = []
    own = False
    while unit.kind == "sentence" and _POINTS_BACK.match(unit.text.lstrip()) and len(out) < 2:
        before = _neighbour(unit, index, near, -1)
        own = own or (before is not None and not out)
        before = before or _neighbour(unit, index, near, -1, paragraphs=2)
        if before is None or label_only(before):
            break
        out.insert(0, before)
        unit = before
    return out, own


DEFINITION = 3  # sentences of the opening paragraph quoted for 'What does X do?'
SEQUEL_SHARE = 0.05  # of the question's idf weight: a question word that is not among the most common


def with_sequel(chosen: list[Scored], scored: Sequence[Scored], query: Query, index, near: Sequence[str]) -> list[Scored]:
    """The best sentence and, right after it, the next sentence of its paragraph when that one holds
    question words the best one lacks (SEQUEL_SHARE of the question's idf weight or more): 'How did
    Anthropic react when Opus 4 crossed the threshold — did it pause?' is answered by the sentence
    after the one naming Opus 4 ('Anthropic's response was deployment …, rather than pause.')."""
    if not chosen:
        return chosen
    top = chosen[0].unit
    nxt = _neighbour(top, index, near, 1)
    if nxt is None or label_only(nxt) or any(overlaps(nxt, c.unit) for c in chosen):
        return chosen
    if top.section and qtype.asks_what_it_is(query.focus, top.section[-1], (*top.section[:-1], PurePosixPath(top.source).stem)):
        # 'What does --crate-name do?': the opening paragraph under its heading, up to DEFINITION sentences
        run = [nxt]
        while len(run) < DEFINITION - 1:
            after = _neighbour(run[-1], index, near, 1)
            if after is None or label_only(after) or any(overlaps(after, c.unit) for c in chosen):
                break
            run.append(after)
    else:
        # words joined by '_' count apart: 'broken_intra_doc_links' asks about intra-doc links
        weights = _idf_weights(query.focus.replace("_", " "), index)
        total = sum(weights.values())
        have, new = set(content_terms(top.text.replace("_", " "))), set(content_terms(nxt.text.replace("_", " ")))
        adds = total and sum(w for t, w in weights.items() if t in new and t not in have) >= SEQUEL_SHARE * total
        if not adds and not _GOES_ON.match(nxt.text.lstrip()):
            return chosen
        run = [nxt]
    found = {s.unit.id: s for s in scored}
    return [chosen[0], *(found.get(u.id) or Scored(u, 0.0, 0.0, 0.0, -1) for u in run), *chosen[1:]]


def _idf_weights(text: str, index) -> dict[str, float]:
    """The question's content terms with their idf in the corpus."""
    return {t: index.stats.idf(t) for t in content_terms(text)}


def compose_parts(
    chosen: Sequence[Scored], query: Query, index, near: Sequence[str] = (), rest: Sequence[Scored] = ()
) -> Iterator[tuple[str, Citation]]:
    """Each answer piece with its [n], and its citation (each used once); `near` are the ids of the
    retrieved chunks, where a list or a section may continue. When the chosen units yield nothing
    (lead-ins with nothing after them), the best of `rest` that yields something answers."""
    pieces = list(_segments(chosen, query, index, near))
    for s in rest:
        if pieces:
            break
        pieces = list(_segments([s], query, index, near))
    for n, (text, unit) in enumerate(pieces, 1):
        yield f"{text} [{n}]", Citation.of_unit(n, unit)
