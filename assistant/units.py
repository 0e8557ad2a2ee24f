"""Small facts about quotable units that several stages share."""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Sequence

from ingest.records import Unit

MAX_LIST_ITEMS = 6
CHILD_WINDOW = 50_000  # characters after a lead-in searched for the sections it leads into


# 'For more, see the chapter on documentation tests.', 'See also the url module.': a pointer elsewhere
_POINTER = re.compile(
    r"^\s*(?:for\s+(?:more|further|additional|details|the\s+full|a\s+full|an?\s+\w+)\b[^.;:]*?,\s*)?"
    r"(?:please\s+)?(?:see|refer\s+to|consult)\b",
    re.IGNORECASE,
)
POINTER_WORDS = 14


def label_only(unit: Unit) -> bool:
    """'Evaluation methods:' and the like say nothing by themselves; nor does a short sentence that
    only points elsewhere ('For more, see the chapter on documentation tests.'), nor a bare link."""
    words = len(unit.text.split())
    if unit.text.rstrip().endswith(":") and words < 5:
        return True
    if _links_only(unit.text) or _contents_entry(unit.text):
        return True
    if unit.kind == "sentence" and _title_like(unit.text):
        return True
    return unit.kind == "sentence" and words <= POINTER_WORDS and bool(_POINTER.match(unit.text))


TITLE_WORDS = 12
_LINK = re.compile(r"\[[^\]\n]*\]\([^)\s]*\)|<?\b(?:https?|ftp)://[^\s>)]*>?")


def _links_only(text: str) -> bool:
    """A list of links and nothing else ('[Node.js 19](https://…)'): it points elsewhere."""
    return bool(_LINK.search(text)) and not re.search(r"\w", _LINK.sub(" ", text))


# a cross-reference in Vim's help: '|fold-methods|'
_REFERENCE = re.compile(r"\|[^|\s]+\|")


def _contents_entry(text: str) -> bool:
    """An entry of a table of contents: a title and the reference to where it is, nothing else
    ('Fold methods  |fold-methods|', '[Fold methods](#fold-methods)')."""
    if not (_REFERENCE.search(text) or _LINK.search(text)):
        return False
    rest = _LINK.sub(" ", _REFERENCE.sub(" ", text)).strip()
    return bool(rest) and len(rest.split()) <= 6 and not re.search(r"[.!?;:,]\W*$", rest)


def _title_like(text: str) -> bool:
    """A title or a name with no sentence around it ('Shared MIME-info Database X Desktop Group
    (http://www.freedesktop.org)', a PDF's first lines): no sentence end, no 'key: value', every
    word capitalised; or a bare term of one or two words ('plugdev')."""
    text = re.sub(r"\S*://\S*", " ", text)
    if re.search(r"[.!?;:]\W*$", text) or ":" in text:  # 'Stability: 2 - Stable' says something
        return False
    words = re.findall(r"[^\W\d_][\w'’-]*", text)
    if len(words) <= 2 and not re.search(r"\d", text):  # a bare term: 'plugdev', 'Thread Safety'
        return bool(words)
    return 2 <= len(words) <= TITLE_WORDS and all(w[0].isupper() for w in words if len(w) > 3 or w[0].isupper())


# '`null`: `bold`', '**bold** - Make text bold': a list item that pairs a key, marked as code or in
# bold, with its value (a plain 'MATS — alignment research cohort' is keyed only for a question that
# names nothing else: in prose lists the key is often what a question is about, not what it asks for)
_MARKED_KEY = re.compile(r"^\s*(?:`([^`\n]{1,40})`|\*\*([^*\n]{1,40})\*\*)\s*(?::|[-–—]\s)")
# 'Frontier Safety Roadmap — with accountable public milestones': a key in plain words and a dash
_PLAIN_KEY = re.compile(r"^\s*([^\n:—–]{2,60}?)\s+[—–]\s")


def item_key(unit: Unit, plain: bool = False) -> str:
    """The key of a list item that pairs a key with its value, lower-cased ('' if none): marked as
    code or in bold, or, with `plain`, any short phrase before a dash."""
    if unit.kind != "item":
        return ""
    m = _MARKED_KEY.match(unit.text)
    key = (m.group(1) or m.group(2)) if m else ""
    if not key and plain and (m := _PLAIN_KEY.match(unit.text)):
        key = m.group(1)
    return " ".join(key.lower().split())


def overlaps(a: Unit, b: Unit) -> bool:
    return a.source == b.source and a.start < b.end and b.start < a.end


def with_list(unit: Unit, index) -> tuple[Unit, list[Unit]]:
    """A lead-in ending in ':' together with the list items that follow it in its passage.

    Returns the unit spanning lead-in and items (one contiguous quote), and the items.
    """
    if not unit.text.rstrip().endswith(":"):
        return unit, []
    pos = index.unit_pos.get(unit.id)
    chunk = index.chunks.get(unit.chunk_id)
    if pos is None or chunk is None:
        return unit, []
    items = []
    for u in index.units[pos + 1 : pos + 1 + MAX_LIST_ITEMS]:
        if u.kind != "item" or u.chunk_id != unit.chunk_id:
            break
        items.append(u)
    if not items:
        return unit, []
    end = items[-1].end
    text = chunk.text[unit.start - chunk.start : end - chunk.start]
    return replace(unit, kind="list", end=end, text=text), items  # keeps every other field (pages)


RUN_KINDS = ("item", "row", "code")


def _same_place(a: Unit, b: Unit) -> bool:
    return a.source == b.source and a.section == b.section


def leads_in(unit: Unit) -> bool:
    return unit.text.rstrip().endswith(":")


def section_units(unit: Unit, index, near: Sequence[str] = ()) -> list[Unit]:
    """The units of the unit's section, in document order, as far as its own chunk and the chunks
    `near` (e.g. the retrieved ones) hold them."""
    out: dict[str, Unit] = {}
    for cid in dict.fromkeys([unit.chunk_id, *near]):
        for row in index.units_by_chunk.get(cid) or ():
            u = index.units[row]
            if _same_place(u, unit):
                out[u.id] = u
    return sorted(out.values(), key=lambda u: (u.start, u.end))


FOLLOW_WINDOW = 2_000  # characters past the end of a unit's chunk where the chunks that go on from it start


def _placed(unit: Unit, index, near: Sequence[str] = ()) -> tuple[list[Unit], int | None]:
    """The units of the unit's section (section_units) and the unit's place among them (None if
    absent). What follows the unit may lie in the next chunk, retrieved or not ('Here are some of the
    features Ninja adds to Make.' and the list, a chunk later): the chunks that start within
    FOLLOW_WINDOW of its chunk's end join."""
    chunk = index.chunks.get(unit.chunk_id)
    following = index.chunks_following(chunk, FOLLOW_WINDOW) if chunk is not None else []
    units = section_units(unit, index, [*near, *following])
    return units, next((i for i, u in enumerate(units) if u.id == unit.id), None)


def run_after(unit: Unit, index, limit: int, near: Sequence[str] = ()) -> tuple[Unit | None, list[Unit]]:
    """The list, table rows or code a unit belongs to or leads into, in document order: its lead-in
    (a unit ending in ':' just before the run, if any) and up to `limit` members of the run.

    For an item or row, the run is the one it stands in, from its start; for any other unit, the
    items, rows or code that directly follow it in its section."""
    units, pos = _placed(unit, index, near)
    if pos is None:
        return None, []
    if unit.kind in ("item", "row"):
        start = pos
        while start > 0 and units[start - 1].kind == unit.kind:
            start -= 1
        lead = units[start - 1] if start > 0 and leads_in(units[start - 1]) else None
    else:
        start, lead = pos + 1, unit
    run: list[Unit] = []
    for u in units[start:]:
        if u.kind not in RUN_KINDS or len(run) >= limit:
            break
        run.append(u)
    return lead, run


def sentences_after(unit: Unit, index, limit: int, near: Sequence[str] = ()) -> list[Unit]:
    """Up to `limit` sentences that directly follow a unit in its section, none itself a lead-in."""
    units, pos = _placed(unit, index, near)
    out: list[Unit] = []
    for u in units[pos + 1 :] if pos is not None else ():
        if u.kind != "sentence" or leads_in(u) or label_only(u) or len(out) >= limit:
            break
        out.append(u)
    return out


def answer_after(unit: Unit, index, sentences: int, items: int, near: Sequence[str] = ()) -> list[Unit]:
    """What answers a question the text asks itself ('So, what types implement the Copy trait?'):
    up to `sentences` sentences after it in its section, and, when one of them leads in with ':',
    the list or rows it leads into (up to `items`; a short lead-in, 'The current tools are:', too)."""
    units, pos = _placed(unit, index, near)
    out: list[Unit] = []
    for u in units[pos + 1 :] if pos is not None else ():
        if u.kind != "sentence" or label_only(u) and not leads_in(u) or len(out) >= sentences:
            break
        out.append(u)
        if leads_in(u):
            _, run = run_after(u, index, items, near)
            return out + [v for v in run if v.kind in ("item", "row")]
    return out


LIST_GAP = 6  # sentences of prose that may stand between a section's opening and its list


def list_later(unit: Unit, index, limit: int, near: Sequence[str] = ()) -> list[Unit]:
    """For a sentence of a section's prose, the first list the section goes on to (after at most
    LIST_GAP more sentences, nothing but prose between), up to `limit` items: 'Several isolation
    mechanisms are available …' and, a paragraph later, '- SELinux and AppArmor …', '- Resource
    limits and cgroup controllers …'."""
    units, pos = _placed(unit, index, near)
    if pos is None or unit.kind != "sentence":
        return []
    for k, u in enumerate(units[pos + 1 :]):
        if u.kind == "item":
            run = []
            for v in units[pos + 1 + k :]:
                if v.kind != "item" or len(run) >= limit:
                    break
                run.append(v)
            return run
        if u.kind != "sentence" or k >= LIST_GAP:
            return []
    return []


def child_sections(unit: Unit, index, limit: int) -> list[Unit]:
    """For a lead-in ending in ':' that closes its section ('RSP v3 specifies thresholds across four
    capability categories:' followed by '### 1. CBRN', '### 2. Cybersecurity' …): the first unit of
    each subsection that follows it, in document order, up to `limit`. Empty when anything else
    of its own section follows it, or when fewer than two subsections do."""
    if not leads_in(unit):
        return []
    rows = index.units_by_chunk.get(unit.chunk_id) or []
    pos = index.unit_pos.get(unit.id)
    if pos is None or not rows or pos != rows[-1]:
        return []
    depth = len(unit.section)
    ids = [cid for cid in index.store.chunk_ids_after(unit.source, unit.end, CHILD_WINDOW) if cid != unit.chunk_id]
    groups = index.arena.load(ids) if ids else {}
    out: list[Unit] = []
    seen: set[str] = set()
    for cid in ids:
        chunk = index.chunks.get(cid)
        if chunk is None or chunk.section[:depth] != unit.section or len(chunk.section) == depth:
            break  # the parent section ended, or it goes on: not a lead-in to subsections
        if len(chunk.section) > depth + 1 or chunk.section[depth] in seen:
            continue
        first = next((u for u in (groups[cid].units if cid in groups else ()) if not label_only(u)), None)
        if first is None:
            continue
        seen.add(chunk.section[depth])
        out.append(first)
        if len(out) >= limit:
            break
    return out if len(out) >= 2 else []


OUTLINE_SENTENCES = 3  # sentences quoted from a named section that has no subsections


def section_outline(unit: Unit, depth: int, index, limit: int, whole: bool = True) -> list[tuple[str, Unit]]:
    """What a question about a whole section ('Summarise the academic critique.') gets: the section
    (the unit's heading trail down to `depth`) as (heading prefix, unit) pairs in document order.
    With two or more subsections, when the `whole` section is asked for (a broad question) or it
    says nothing itself but a lead-in: the section's own first unit, then the first unit of each
    subsection, named by its heading ('Bengio: minimum requirements …: In the 2024 International
    AI Safety Report …'), up to `limit`. Otherwise its own units ('What is rustdoc?': what its
    page says first): up to OUTLINE_SENTENCES sentences and the list, rows or code among them (code
    examples only when the whole section is asked for), up to `limit` in all. Empty when the
    section is not found around the unit."""
    trail = unit.section[: depth + 1]
    ids = index.store.chunk_ids_after(unit.source, max(0, unit.start - CHILD_WINDOW), 2 * CHILD_WINDOW)
    groups = index.arena.load(ids) if ids else {}
    own: list[Unit] = []
    subs: dict[str, list[Unit]] = {}
    for cid in ids:
        for u in groups[cid].units if cid in groups else ():
            if u.section[: depth + 1] != trail or label_only(u) and not leads_in(u) or _comment(u):
                continue  # a comment ('<!-- YAML added: v7.5.0 -->') answers only a question about it
            if len(u.section) == depth + 1:
                own.append(u)
            else:
                subs.setdefault(u.section[depth + 1], []).append(u)
    if len(subs) >= 2 and (whole or all(leads_in(u) for u in own)):
        heads = [(f"{h}: ", _opening(us, index)) for h, us in subs.items()]
        return ([("", own[0])] if own else []) + [(p, u) for p, u in heads if u is not None][: limit - bool(own)]
    out: list[tuple[str, Unit]] = []
    sentences = 0
    for k, u in enumerate(own):
        after = own[k + 1] if k + 1 < len(own) else None
        if not whole and (u.kind == "code" or leads_in(u) and (after is None or after.kind == "code")):
            continue  # 'What is X?' is told in words: examples ('For example:' and its code) left out
        if u.kind not in RUN_KINDS:
            if sentences >= OUTLINE_SENTENCES:
                break
            sentences += 1
        out.append(("", u))
        if len(out) >= limit:
            break
    while out and leads_in(out[-1][1]):
        out.pop()  # 'For example:' with its example cut off
    return out


def _comment(unit: Unit) -> bool:
    return unit.text.lstrip().startswith("<!--")


def _opening(units: Sequence[Unit], index) -> Unit | None:
    """What a subsection says first: its first unit that is not a lead-in to an example ('Using this
    flag looks like this:'; a lead-in to a list counts), words before code ('This will show
    rustdoc's built-in help.' rather than '$ rustdoc -h'). None when it has only labels."""
    fit = [u for u in units if not label_only(u) and (not leads_in(u) or with_list(u, index)[1])]
    return next((u for u in fit if u.kind != "code"), fit[0] if fit else None)  # words before code
