"""Domain errors of the assistant; str(err) is one line that names the fix."""
from ingest.errors import IngestError, StoreError  # noqa: F401  (re-exported for callers)

from .ranker import RankerError  # noqa: F401  (the ranker's weights are missing or corrupt)


class QuestionError(ValueError):
    """The question cannot be asked as it is (empty, too long, no words)."""


class CiteError(ValueError):
    """A citation reference that is malformed or points outside the corpus."""


class SettingsError(ValueError):
    """A setting no run can use (an unknown backend, a number that is not one)."""
