"""python -m evals [run|calibrate] [--set NAME] [--store DIR | --chroma-host H --chroma-port N] [--collection C]"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EVALS_DIR = Path(__file__).resolve().parent
THRESHOLDS = EVALS_DIR / "thresholds.json"


def main(argv: list[str] | None = None) -> int:
    from ingest.runtime import prepare_environment
    from ingest.settings import add_store_arguments

    prepare_environment()
    parser = argparse.ArgumentParser(prog="python -m evals", description=__doc__)
    parser.add_argument("command", nargs="?", default="run", choices=["run", "calibrate"])
    parser.add_argument("--set", default="rsp", help="eval set under evals/sets/ (default: rsp)")
    add_store_arguments(parser)
    parser.add_argument("--out", type=Path, default=EVALS_DIR / "reports", help="report folder")
    parser.add_argument("--no-gate", action="store_true", help="report only; do not fail below the thresholds")
    parser.add_argument("--write", action="store_true", help="calibrate: write assistant/calibration.json")
    parser.add_argument(
        "--generative",
        action="store_true",
        help="also run the generative backend (RAG_OPENAI_BASE_URL, RAG_OPENAI_MODEL) side by side",
    )
    args = parser.parse_args(argv)

    from assistant.calibration import PACKAGED_FILE
    from assistant.errors import SettingsError
    from assistant.settings import load_settings
    from ingest.errors import IngestError

    from . import report as rep
    from .dataset import EvalSetError, load_set
    from .runner import GENERATIVE, VARIANTS, calibrate, run

    try:
        es = load_set(args.set)
        settings = load_settings(args, corpus_dirs=(es.corpus_dir,))
        if args.command == "calibrate":
            result = calibrate(es, settings)
            print(json.dumps(result, indent=1))
            if args.write:
                PACKAGED_FILE.write_text(json.dumps(result, indent=1) + "\n")
                print(f"wrote {PACKAGED_FILE}")
            return 0
        if args.generative and not settings.openai_base_url:
            raise EvalSetError("--generative needs a model server: set RAG_OPENAI_BASE_URL and RAG_OPENAI_MODEL")
        report = run(es, settings, VARIANTS + ((GENERATIVE,) if args.generative else ()))
    except (EvalSetError, IngestError, SettingsError) as err:
        print(f"evals: error: {err}", file=sys.stderr)
        return 2
    thresholds = json.loads(THRESHOLDS.read_text()) if THRESHOLDS.exists() else {}
    failures = rep.check_gate(report, thresholds)
    report["gate"] = failures or ["passed"]
    paths = rep.write(report, args.out)
    print(rep.table(report))
    print(f"reports: {paths['md']}, {paths['json']}, {paths['png']}")
    if failures and not args.no_gate:
        print("gate FAILED:", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
        return 1
    print("gate passed" if thresholds else "no thresholds file: gate not checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
