"""Where the abstention threshold comes from: a setting, the collection's own calibration, or the
packaged one (fitted by `make calibrate` on the rsp eval set).

`python -m evals calibrate --set S --write` stores the threshold in the metadata of the
collection it was fitted on (`write_collection`): `abstain_threshold`, `calibration_set` and
`calibration_fingerprint` (the corpus fingerprint it was fitted on). An incremental ingest of
that collection keeps these keys (ingest merges its own keys into the metadata); when the
corpus has changed since, the threshold is still used but its source says it predates the
change, so `--json` and the UI show that it wants re-fitting. A rebuild (another model or
chunker) drops the collection and with it the calibration."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PACKAGED_FILE = Path(__file__).resolve().parent / "calibration.json"
FALLBACK_THRESHOLD = 0.45  # used only if the packaged file is missing
COLLECTION_KEY = "abstain_threshold"  # collection metadata written by `python -m evals calibrate --write`
SET_KEY = "calibration_set"
FINGERPRINT_KEY = "calibration_fingerprint"


@dataclass(frozen=True)
class Threshold:
    value: float
    source: str  # one line: which setting, collection or file it came from


@lru_cache(maxsize=1)
def packaged() -> Threshold:
    try:
        data = json.loads(PACKAGED_FILE.read_text())
        value = float(data["abstain_threshold"])
    except (OSError, ValueError, KeyError, TypeError):
        return Threshold(FALLBACK_THRESHOLD, "built-in default (assistant/calibration.json unreadable)")
    return Threshold(value, f"packaged calibration (assistant/calibration.json, set {data.get('set', '?')})")


def resolve(settings, collection_meta: dict) -> Threshold:
    """The threshold to apply: an explicit setting > the served collection's calibration > packaged."""
    if settings.abstain_threshold is not None:
        return Threshold(float(settings.abstain_threshold), settings.threshold_source or "settings")
    if COLLECTION_KEY in collection_meta:
        try:
            value = float(collection_meta[COLLECTION_KEY])
        except (TypeError, ValueError):
            value = None
        if value is not None:
            fitted = collection_meta.get(SET_KEY, "?")
            source = f"collection '{settings.store.collection}' (calibrated on set {fitted}"
            was = collection_meta.get(FINGERPRINT_KEY)
            if was and was != collection_meta.get("corpus_fingerprint"):
                source += ", before the corpus last changed: re-run `python -m evals calibrate --write`"
            return Threshold(value, source + ")")
    return packaged()


def write_collection(store_settings, result: dict) -> dict:
    """Store a calibration result in the collection's metadata; returns the metadata written.

    Holds the ingest lock, so it never races an ingest of the same collection."""
    from ingest.pipeline import store_lock
    from ingest.store import Store

    with store_lock(store_settings):
        store = Store(store_settings)
        meta = dict(store.chunks.metadata or {})
        meta.update(
            {
                COLLECTION_KEY: float(result["abstain_threshold"]),
                SET_KEY: str(result.get("set", "?")),
                FINGERPRINT_KEY: str(meta.get("corpus_fingerprint", "")),
            }
        )
        store.chunks.modify(metadata=meta)
    return meta
