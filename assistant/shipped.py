"""Files shipped with the package (model weights, tables), each checked against the sha256 its
manifest records before it is used."""
from __future__ import annotations

import json
from pathlib import Path

from ingest.onnx_runtime import sha256_file


def read_checked(directory: Path, manifest_name: str, error: type[Exception], what: str, fix: str) -> dict:
    """The manifest in `directory`, after checking the file it names against its sha256; any fault
    is `error` with one line: '<what> manifest … is missing; <fix>'."""
    path = directory / manifest_name
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        target = directory / manifest["file"]
        expected = manifest["sha256"]
    except FileNotFoundError:
        raise error(f"{what} manifest {path} is missing; {fix}") from None
    except (ValueError, KeyError, TypeError) as err:
        raise error(f"{what} manifest {path} is unreadable ({type(err).__name__}); {fix}") from None
    if not target.is_file():
        raise error(f"{what} file {target} is missing; {fix}")
    if sha256_file(target) != expected:
        raise error(f"{what} file {target} does not match the sha256 in {path.name} (corrupt); {fix}")
    return manifest
