"""python -m ingest [PATH ...] [--store DIR | --chroma-host HOST --chroma-port N] [--collection NAME]"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .settings import IngestSettings, add_store_arguments, store_from_args


def main(argv: list[str] | None = None) -> int:
    from .runtime import prepare_environment

    prepare_environment()
    parser = argparse.ArgumentParser(prog="python -m ingest", description=__doc__)
    parser.add_argument("paths", nargs="*", type=Path, help="files or folders (default: corpus/)")
    add_store_arguments(parser)
    parser.add_argument("--chunk-tokens", type=int, default=IngestSettings.chunk_tokens)
    parser.add_argument("--max-file-mb", type=float, default=IngestSettings.max_file_mb)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    defaults = IngestSettings()
    settings = IngestSettings(
        store=store_from_args(args),
        corpus=tuple(args.paths) or defaults.corpus,
        chunk_tokens=args.chunk_tokens,
        max_file_mb=args.max_file_mb,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    from .embed import shared_embedder
    from .errors import IngestError
    from .pipeline import run_ingest

    try:
        summary = run_ingest(settings, shared_embedder(), log=lambda s: print(s, file=sys.stderr))
    except IngestError as err:
        print(f"ingest: error: {err}", file=sys.stderr)
        return 2
    print(summary.line())
    return 1 if summary.problems else 0


if __name__ == "__main__":
    sys.exit(main())
