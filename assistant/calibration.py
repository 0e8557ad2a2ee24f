"""Where the abstention threshold comes from: a setting, the collection's own calibration, or the
packaged one (fitted by `make calibrate` on the rsp eval set)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PACKAGED_FILE = Path(__file__).resolve().parent / "calibration.json"
FALLBACK_THRESHOLD = 0.45  # used only if the packaged file is missing
COLLECTION_KEY = "abstain_threshold"  # collection metadata written by `python -m evals calibrate --write`


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
            fitted = collection_meta.get("calibration_set", "?")
            return Threshold(value, f"collection '{settings.store.collection}' (calibrated on set {fitted})")
    return packaged()
