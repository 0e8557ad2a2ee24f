"""Domain errors of the assistant; str(err) is one line that names the fix."""
from ingest.errors import IngestError, StoreError  # noqa: F401  (re-exported for callers)


class QuestionError(ValueError):
    """The question cannot be asked as it is (empty, too long, no words)."""


class CiteError(ValueError):
    """A citation reference that is malformed or points outside the corpus."""
