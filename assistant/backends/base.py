"""The backend protocol: compose(evidence) yields text as it is composed, then the Answer."""
from __future__ import annotations

from typing import Iterator, Protocol, Sequence

from ..records import Answer, Evidence, Query, Turn


class BackendUnavailable(Exception):
    """The backend cannot answer this time; `notice` is the one line shown with the fallback."""

    def __init__(self, notice: str, transport: bool = False) -> None:
        super().__init__(notice)
        self.notice = notice
        self.transport = transport  # the server did not answer at all (down or too slow)


class Backend(Protocol):
    name: str

    def condense(self, question: str, query: Query, history: Sequence[Turn]) -> Query: ...

    def compose(self, evidence: Evidence) -> Iterator[str | Answer]: ...
