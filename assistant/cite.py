"""Look up cited passages by chunk id or SOURCE:START-END, confined to the corpus folders."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ingest.errors import LoadError
from ingest.load import load_file

from .errors import CiteError

_REF = re.compile(r"^(?P<source>.+):(?P<start>\d+)-(?P<end>\d+)$")


@dataclass(frozen=True)
class Passage:
    source: str
    start: int
    end: int
    quote: str
    paragraph_start: int
    paragraph: str  # the surrounding paragraph (or table, or list item)


def confined_path(corpus_dirs, source: str) -> Path:
    """The file for a source path, refused if it would leave the corpus folders."""
    if not source or source.startswith(("/", "\\")) or "\x00" in source:
        raise CiteError(f"'{source[:80]}' is not a corpus path — use a path relative to the corpus folder")
    for root in corpus_dirs:
        root = Path(root).resolve()
        places = [root / source]
        head, _, rest = source.partition("/")
        if head == root.name and rest:  # ingested with several folders: 'folder/file.md'
            places.append(root / rest)
        for place in places:
            candidate = place.resolve()
            if not candidate.is_relative_to(root):
                raise CiteError(f"'{source[:80]}' is outside the corpus folder — only corpus files can be cited")
            if candidate.is_file():
                return candidate
    raise CiteError(f"no corpus file '{source[:80]}' — check the source path (see `python -m assistant ask --json`)")


def source_text(corpus_dirs, source: str) -> str:
    path = confined_path(corpus_dirs, source)
    try:
        return load_file(path, source, max_file_mb=1024).text
    except LoadError as err:
        raise CiteError(f"{source}: {err}") from None


def parse_ref(ref: str) -> tuple[str, int, int] | None:
    m = _REF.match(ref.strip())
    if not m:
        return None
    return m["source"], int(m["start"]), int(m["end"])


def passage(corpus_dirs, source: str, start: int, end: int) -> Passage:
    text = source_text(corpus_dirs, source)
    if not (0 <= start < end <= len(text)):
        raise CiteError(f"{source}:{start}-{end} is outside the file (it has {len(text)} characters)")
    para_start = text.rfind("\n\n", 0, start)
    para_start = 0 if para_start < 0 else para_start + 2
    para_end = text.find("\n\n", end)
    para_end = len(text) if para_end < 0 else para_end
    return Passage(source, start, end, text[start:end], para_start, text[para_start:para_end])
