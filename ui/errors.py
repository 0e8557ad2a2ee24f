"""One readable line for the browser for any failure; the traceback of an unexpected one goes to stderr."""
from __future__ import annotations

import sys
import traceback

from assistant.errors import CiteError, IngestError, QuestionError, StoreError

from . import render

UNEXPECTED = (
    "Something went wrong inside the assistant ({kind}) — try again; "
    "if it persists, re-run `make ingest`"
)



def _log_exception(where: str) -> None:
    print(f"ui: unexpected error in {where}:", file=sys.stderr)
    traceback.print_exc(file=sys.stderr)


def error_line(err: BaseException, where: str = "the assistant") -> str:
    """One readable line for the browser; the traceback of an unexpected error goes to stderr only."""
    if isinstance(err, QuestionError):
        return render.public_message(f"Cannot ask that: {err}")
    if isinstance(err, StoreError):
        return render.public_message(f"The document store is not available: {err}")
    if isinstance(err, (IngestError, CiteError)):
        return render.public_message(str(err))
    _log_exception(where)
    return UNEXPECTED.format(kind=type(err).__name__)
