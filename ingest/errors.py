"""The few domain errors of ingest; each message is one line that names the fix."""


class IngestError(Exception):
    """Base class: a problem the user can fix; str(err) is the one-line message."""


class LoadError(IngestError):
    """A file or path could not be loaded (missing, unsupported, not UTF-8, broken PDF...)."""


class StoreError(IngestError):
    """The Chroma store is missing, unreachable, corrupted or built another way."""


class LockedError(StoreError):
    """Another ingest holds the store."""
