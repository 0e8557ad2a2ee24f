"""The rank stage: units (sentences, list items, table rows) scored against the question, and
passages re-ordered by their best unit.

The score is cheap: 0.55 × cosine (unit vectors made at ingest) + 0.35 × idf-weighted coverage of
the question's terms (a synonym the unit holds covers part of a term: assistant.synonyms) + 0.10 ×
the rank of the unit's passage among the fused hits, plus a bonus for naming the exact identifier
the question names ('v2.2', 'ASL-4'), holding a phrase it quotes ('the “If-Then” structure',
`path.join()`: words a lexical scorer drops as stopwords or splits) or being the table row whose
first cell it names ('Ctrl+U'), or spelling out the acronym it asks about ('MATS (ML Alignment &
Theory Scholars)'), larger the rarer it is.
"""
from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Sequence

import numpy as np

from ingest.records import split_row

from . import qtype
from .records import Hit, Query, Scored
from .synonyms import CREDIT, NONE, Synonyms
from .terms import TermStats, content_terms
from .units import item_key, label_only

W_DENSE, W_LEX, W_RANK = 0.55, 0.35, 0.10
W_IDENTIFIER = 0.25
# lost by a unit of another document than the ones the question names (named_documents), in order
# and, in decide, in confidence
W_ELSEWHERE = 0.2
CONTEXT_WEIGHT = 0.5  # earlier turns count half as much as the question asked
QUALIFIER_WEIGHT = 0.5  # the words that say where a term asked to be defined is used, in a unit's coverage
FIRST_MENTIONS = 4  # 'What is X?': the first chunk of this many documents that speak of X competes too


def query_vector(embedder, query: Query) -> np.ndarray:
    vec = embedder.encode_one(query.focus)
    if query.context:
        vec = vec + CONTEXT_WEIGHT * embedder.encode_one(query.context)
        vec = vec / (np.linalg.norm(vec) or 1.0)
    return vec


def _weighted_terms(query: Query, stats: TermStats) -> tuple[dict[str, float], float]:
    """Term weights, and the total a fully covered question reaches: the question's own words
    (earlier turns only add evidence; an answer to a follow-up rarely repeats them all)."""
    weights: dict[str, float] = {}
    for term in content_terms(query.context):
        weights[term] = max(weights.get(term, 0.0), CONTEXT_WEIGHT * stats.idf(term))
    focus = {t: stats.idf(t) for t in content_terms(query.focus)}
    weights.update(focus)
    return weights, (sum(focus.values()) or sum(weights.values()) or 1.0)


def unknown_share(query: Query, stats: TermStats, synonyms: Synonyms = NONE) -> float:
    """Share of the question's words the corpus never uses, nor any synonym of them. A follow-up
    is judged with the turns it leans on: in 'In which book?' after a question about an
    argument, 'book' is one word of the request, not all of it."""
    terms = set(content_terms(query.text))
    if not terms:
        return 0.0
    alts = synonyms.expansions(query.text, stats.known)
    return sum(1 for t in terms if not stats.known(t) and t not in alts) / len(terms)


def foreign_share(query: Query, stats, source: str, synonyms: Synonyms = NONE) -> float:
    """Share of the question's words that the corpus uses but the document `source` never does, nor
    any synonym of them: in a folder of manuals, 'What is the maximum length allowed for a trigger
    name?' is not answered from the one that never says 'trigger'."""
    terms = set(content_terms(query.text))
    if not terms:
        return 0.0
    here = lambda t: source in stats.sources_of(t)  # noqa: E731
    alts = synonyms.expansions(query.text, here)
    return sum(1 for t in terms if stats.known(t) and not here(t) and t not in alts) / len(terms)


def named_documents(query: Query, index) -> frozenset[str]:
    """The documents a question names by a word of their path that no other document's text uses
    ('Is the Apache License 2.0 compatible with …?' and apache-2.0/apache-2.0.txt in a folder of
    licences), or by their file's name and version ('GPLv3' and gpl-3/gpl-3.txt); empty when it
    names none, or names every one."""
    count = len(index.source_names)
    if count < 2:
        return frozenset()
    named: set[str] = set()
    for term in {t for t in content_terms(query.focus) if re.search("[a-z]", t)}:  # '3' names no file
        bearing = index.path_words.get(term)
        if bearing and len(bearing) < count and index.stats.sources_of(term) <= bearing:
            named |= bearing
    for ident in qtype.identifiers(query.focus):
        named |= documents_named_by(ident, query, index)
    return frozenset(named) if len(named) < count else frozenset()


def documents_named_by(ident: str, query: Query, index) -> set[str]:
    """The documents an identifier names by their file's name and version ('GPLv3' names
    gpl-3.txt; 'License 2.0' in 'Is the Apache License 2.0 …?' names apache-2.0.txt): the file name
    holds its number, and its letters or another word of the question are in the path. Such an
    identifier is no unknown one, though the text never writes it."""
    m = re.match(r"^([a-z]*?)-?v?(\d+(?:\.\d+)*)$", ident)
    if not m:
        return set()
    letters, number = m.groups()
    # words, not numbers: '2.0' is in both mpl-2.0.txt and apache-2.0.txt
    words = {w for w in content_terms(query.focus) if re.search("[a-z]", w)} | ({letters} if letters else set())
    return {s for s in index.file_numbers.get(number, ()) if words & qtype.path_terms(s)}


def _coverage(weights: dict[str, float], unit_terms, alts: dict[str, dict[str, float]]) -> float:
    """The question's term weights a unit covers: a term in full, or through a synonym,
    synonyms.CREDIT × their similarity of it."""
    got = 0.0
    for t, w in weights.items():
        if t in unit_terms:
            got += w
        elif t in alts:
            got += CREDIT * w * max((sim for s, sim in alts[t].items() if s in unit_terms), default=0.0)
    return got


def score_units(
    query: Query, qvec: np.ndarray, hits: Sequence[Hit], index, candidates: int, everywhere: bool = True,
    synonyms: Synonyms = NONE,
) -> list[Scored]:
    """Units scored against the question by meaning and words, plus a bonus for those in the
    top fused passages; best first, the top few dozen. The units that compete are those of the
    top passages and, with everywhere=True, those of the passages naming an identifier the
    question names; with everywhere=False only the units of the top passages compete (plain
    retrieve-then-read). A search of every unit in the store by its own vector (48 nearest, with
    their passages) used to join too: left out, no figure of `make eval` or of the squad-dev set
    moved by more than 0.003, and it made every serving process hold all unit vectors."""
    if index.unit_count == 0:
        return []
    top = [h.chunk.id for h in hits[: candidates * 2]]
    asked = []
    for ident in qtype.identifiers(query.focus) - index.file_identifiers:
        if documents_named_by(ident, query, index):
            continue  # 'the Apache License 2.0' says which document, not which of its units
        named_by_corpus, owners, count = index.identifiers.lookup(ident)
        if named_by_corpus and count:
            asked.append((ident, count))
            if everywhere and owners:
                top += owners
    subject = qtype.defined_subject(query.focus) if everywhere else ""
    if subject and (words := list(dict.fromkeys(content_terms(subject)))):
        # 'What is a dpkg trigger?': where each document first speaks of dpkg triggers
        top += index.first_mentions(words, FIRST_MENTIONS)
    groups = index.arena.load(top)
    chunk_rank: dict[str, int] = {}
    for rank, hit in enumerate(hits[: candidates * 2]):
        chunk_rank.setdefault(hit.chunk.id, rank)
    units, vecs, terms, names, ranks = [], [], [], [], []
    for cid, g in groups.items():
        units += g.units
        vecs.append(g.vecs)
        terms += g.terms
        names += g.names
        ranks += [chunk_rank.get(cid, -1)] * len(g.units)
    n = len(units)
    if n == 0:
        return []
    dense = np.concatenate(vecs) @ qvec
    weights, total = _weighted_terms(query, index.stats)
    if where := qtype.qualifier(query.focus):
        # 'What is a cycle in Callgrind's call graph?': the unit that says what a cycle is need not
        # say 'Callgrind' or 'call graph' (retrieval used them to find the place)
        kept = set(content_terms(qtype.defined_subject(query.focus)))
        for t in set(content_terms(where)) - kept:
            if t in weights:
                total -= weights[t] * (1 - QUALIFIER_WEIGHT)
                weights[t] *= QUALIFIER_WEIGHT
    alts = synonyms.expansions(query.focus, index.stats.known)
    lexical = np.asarray([_coverage(weights, ts, alts) / total for ts in terms], dtype=np.float32)
    np.minimum(lexical, 1.0, out=lexical)
    named = np.zeros(n, dtype=np.float32)
    for ident, count in asked:
        # 'v2.2' named in one row is a sharp signal; 'v3', named everywhere, is not
        named[[i for i, ns in enumerate(names) if ident in ns]] += min(1.0, 3.0 / count) / len(asked)
    # the units holding each phrase the question quotes, the rows it names by their first cell, and
    # those spelling out the acronym it asks about: rare among the units that compete, a sharp
    # signal, as for identifiers
    phrases = qtype.quoted(query.focus)
    flat = [" ".join(u.text.lower().split()) for u in units] if phrases else []
    # a quoted term is also where a section it heads begins ('"Secondary Licenses"' and the
    # definition under '1.12. "Secondary License"')
    matches = [_holding(phrase, flat, units) for phrase in phrases]
    keyed = _keyed_rows(query.focus, units)
    matches += [keyed] if keyed else []
    # 'What is a dpkg trigger?': 'A dpkg trigger is a facility that …'; 'What does "Source Code Form"
    # mean?': also the first unit of the section headed '1.13. "Source Code Form"'
    if term := qtype.defined_subject(query.focus):
        defining = [i for i, u in enumerate(units) if u.kind == "sentence" and qtype.defines(query.focus, u.text)]
        defining += [i for i in _first_under(units, lambda section: qtype.names_term(section[-1], term)) if i not in defining]
        matches += [defining] if defining else []
    acronym = qtype.acronym_asked(query.focus)  # 'What does MATS stand for?': where it is spelt out
    spelt = [i for i, u in enumerate(units) if qtype.spells_out(acronym, u.text)] if acronym else []
    if acronym and not spelt:  # '### 1. CBRN (Chemical, Biological, …)': the first unit under that heading
        spelt = _first_under(units, lambda section: qtype.spells_out(acronym, section[-1]))
    if spelt:  # the initials checked: as sharp as a named identifier, confidence included
        named[spelt] += min(1.0, 3.0 / len(spelt))
    if coded := _coded_items(query.focus, units):
        named[coded] += min(1.0, 3.0 / len(coded))
    # 'What does rl.prompt() do?': the first sentence under its heading
    defined = _defining_sentences(query.focus, units) if qtype.may_ask_what_it_is(query.focus) else []
    matches += [defined] if defined else []
    # 'Summarise the academic critique.': the first unit of the section it names answers as well
    # as its heading does, and the heading is as sharp a signal as a named identifier
    openings = _section_openings(query.focus, units)
    for i, heading in openings:
        own = _coverage(weights, set(terms[i]) | set(content_terms(heading)), alts) / total
        lexical[i] = max(lexical[i], min(own, 1.0))
        named[i] += 1.0 / len(openings)
    quoted = np.zeros(n, dtype=np.float32)
    for holding in matches:
        if holding:
            quoted[holding] += min(1.0, 3.0 / len(holding)) / len(matches)
    ranks_a = np.asarray(ranks)
    prior = np.where(ranks_a >= 0, 1.0 / (1.0 + 0.25 * np.maximum(ranks_a, 0)), 0.0).astype(np.float32)
    evidence = W_DENSE * dense + W_LEX * lexical + W_RANK * prior
    total_score = evidence + W_IDENTIFIER * (named + quoted) / (2.0 if asked and matches else 1.0)
    if docs := named_documents(query, index):  # 'In the Apache License, …': answers from that document first
        total_score -= W_ELSEWHERE * np.asarray([u.source not in docs for u in units], dtype=np.float32)
    if not everywhere:
        total_score = np.where((ranks_a >= 0) & (ranks_a < candidates), total_score, -np.inf)
    best = np.argsort(-total_score, kind="stable")[: max(candidates * 6, 30)]
    return [
        Scored(units[i], float(total_score[i]), float(dense[i]), float(lexical[i]), int(ranks_a[i]), float(named[i]), float(evidence[i]))
        for i in best
        if np.isfinite(total_score[i])
    ]


_NUMBER_KEY = re.compile(r"^\s*(\d{1,4})\s*(?::|[—–-]\s)")  # '7: Unsupported xsl:output method'


def _coded_items(question: str, units) -> list[int]:
    """List items keyed by the number of the code the question names ('What does return code 7
    mean?' and '7: Unsupported xsl:output method'): as sharp a match as a named identifier."""
    codes = set(re.findall(r"\b(?:code|status|value|error|exit|level|number)\s+(\d{1,4})(?!\w)", question, re.IGNORECASE))
    if not codes:
        return []
    return [i for i, u in enumerate(units) if u.kind == "item" and (m := _NUMBER_KEY.match(u.text)) and m.group(1) in codes]


def _keyed_rows(question: str, units) -> list[int]:
    """Rows whose first cell the question names word for word ('What does Ctrl+U do?' and the
    row keyed 'Ctrl+U'; 'the pause commitment' and the row 'Pause commitment'). A key with a
    number in it is an identifier, matched as one already."""
    asked = " ".join(question.lower().split())
    only = set(content_terms(question))
    out = []
    for i, u in enumerate(units):
        if u.kind == "row":
            cells = split_row(u.text)
            key = " ".join(cells[0].lower().split()) if cells else ""
        elif u.kind == "item" and (marked := item_key(u)):
            key = marked  # '`null`: `bold`': keyed like a row
        elif u.kind == "item" and (plain := item_key(u, plain=True)) and set(content_terms(plain)) == only:
            key = plain  # 'Tell me about METR.' and 'METR — autonomous-capability evaluation': only the key asked
        else:
            continue
        if len(key) >= 2 and not qtype.identifiers(key) and re.search(rf"(?<!\w){re.escape(key)}(?!\w)", asked):
            out.append(i)
    return out


def _first_in(units, place) -> dict[tuple, int]:
    """For each place (`place(unit)`: a (source, heading trail) key, or None to pass the unit over),
    the unit that comes first in its document."""
    first: dict[tuple, int] = {}
    for i, u in enumerate(units):
        key = place(u)
        if key is not None and (key not in first or u.start < units[first[key]].start):
            first[key] = i
    return first


def _defining_sentences(question: str, units) -> list[int]:
    """For a question that only asks what a named thing is or does ('What does rl.prompt() do?'),
    the first sentence of each section whose heading names it ('`rl.prompt([preserveCursor])`'),
    lead-ins to examples left out: reference documentation says what a thing does first."""
    def place(u):  # 'Using this flag looks like this:' introduces an example, it says nothing
        return None if u.kind != "sentence" or not u.section or u.text.rstrip().endswith(":") else (u.source, u.section)

    return [
        i for (source, section), i in _first_in(units, place).items()
        if qtype.asks_what_it_is(question, section[-1], (*section[:-1], PurePosixPath(source).stem))
    ]


def _holding(phrase: str, flat: list[str], units) -> list[int]:
    """The units holding a quoted phrase word for word (flat: their lower-cased texts), and the first
    unit of each section the phrase heads as a term."""
    heads = _first_under(units, lambda section: qtype.names_term(section[-1], phrase))
    return list(dict.fromkeys([i for i, t in enumerate(flat) if phrase in t] + heads))


def _first_under(units, heading_fits) -> list[int]:
    """The first unit (lead-ins and pointers left out) of each section whose heading trail fits."""
    def place(u):
        return (u.source, u.section) if u.section and not label_only(u) and heading_fits(u.section) else None

    return list(_first_in(units, place).values())


def _section_openings(question: str, units) -> list[tuple[int, str]]:
    """The first unit (lead-ins and pointers left out) of each section the question asks about as a
    whole (qtype.section_asked), among the units that compete, with the section's heading."""
    depths: dict[tuple, int | None] = {}

    def place(u):
        if not u.section or label_only(u):
            return None
        if (u.source, u.section) not in depths:
            depths[(u.source, u.section)] = qtype.section_asked(question, u.section, u.source)
        depth = depths[(u.source, u.section)]
        return None if depth is None else (u.source, u.section[: depth + 1])

    return [(i, trail[-1]) for (_, trail), i in _first_in(units, place).items()]


def rerank(hits: Sequence[Hit], scored: Sequence[Scored], chunks: dict) -> list[Hit]:
    """Passages ordered by their best unit; passages with no scored unit follow in fused order."""
    best: dict[str, float] = {}
    for s in scored:
        best[s.unit.chunk_id] = max(best.get(s.unit.chunk_id, -1.0), s.score)
    by_id = {h.chunk.id: h for h in hits}
    head = [by_id.get(cid) or Hit(chunks[cid], 0.0) for cid in sorted(best, key=lambda c: -best[c]) if cid in chunks]
    return head + [h for h in hits if h.chunk.id not in best]


# -- the learned ranker --------------------------------------------------------------------------
MODEL_QUESTION_WORDS = 40  # the question the model sees (follow-ups carry their context)


def model_question(query: Query) -> str:
    words = query.text.split()
    return " ".join(words[:MODEL_QUESTION_WORDS])


def candidate_body(unit, index) -> str:
    """What the model reads for a unit: a row with its column names, a lead-in with its items."""
    from ingest.records import labelled_row

    from .units import with_list

    if unit.kind == "row" and unit.header:
        return labelled_row(unit.header, unit.text)
    if unit.text.rstrip().endswith(":"):
        listed, items = with_list(unit, index)
        if items:
            return listed.text
    return unit.text


def model_rescore(query: Query, scored: Sequence[Scored], ranker, index, n: int, weight: float) -> list[Scored]:
    """The top n units re-scored with the cross-encoder: score = cheap score + weight × p(answers);
    units it did not score follow, in their order."""
    from dataclasses import replace

    from .ranker import candidate_text

    head, tail = list(scored[:n]), list(scored[n:])
    if not head:
        return list(scored)
    probs = ranker.score(model_question(query), [candidate_text(s.unit.section, candidate_body(s.unit, index)) for s in head])
    rescored = [replace(s, score=s.score + weight * float(p), model=float(p)) for s, p in zip(head, probs)]
    rescored.sort(key=lambda s: -s.score)
    floor = min(s.score for s in rescored) - 1.0
    return rescored + [replace(s, score=floor + 0.01 * s.score) for s in tail]
