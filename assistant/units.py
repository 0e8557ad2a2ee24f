"""Small facts about quotable units that several stages share."""
from __future__ import annotations

from dataclasses import replace

from ingest.records import Unit

MAX_LIST_ITEMS = 6


def label_only(unit: Unit) -> bool:
    """'Evaluation methods:' and the like say nothing by themselves."""
    return unit.text.rstrip().endswith(":") and len(unit.text.split()) < 5


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
