"""python -m evals [run] [--set NAME|PATH ...] [--store DIR | --chroma-host H --chroma-port N] [--collection C] [--no-gate]
python -m evals calibrate [--set NAME|PATH] [--write] [--write-packaged]
python -m evals probe [--set NAME|PATH ...]   (the learned ranker against the cheap unit score)
python -m evals new --corpus DIR --out PATH [--items N] [--force]
python -m evals from-feedback [FEEDBACK.jsonl] --out PATH [--corpus DIR]

A set is a bare name (evals/sets/NAME), a folder anywhere, `squad-dev` (built from SQuAD v1.1
dev under data/) or `squad-holdout` (SQuAD v1.1 train articles with a third of their paragraphs
left out, and questions on both). Each set is ingested, incrementally, into its own store
data/evals/SET/chroma unless --store or --chroma-host names one (used as it is, not ingested).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

EVALS_DIR = Path(__file__).resolve().parent
REPO_ROOT = EVALS_DIR.parent
COMMANDS = ("run", "calibrate", "probe", "new", "from-feedback")


def data_root() -> Path:
    return Path(os.environ["RAG_DATA"]) if os.environ.get("RAG_DATA") else REPO_ROOT / "data"


def eval_store_path(set_name: str) -> Path:
    return data_root() / "evals" / re.sub(r"[^A-Za-z0-9._-]+", "-", set_name) / "chroma"


def _parser() -> argparse.ArgumentParser:
    from ingest.settings import add_store_arguments

    parser = argparse.ArgumentParser(
        prog="python -m evals", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", nargs="?", default="run", choices=COMMANDS)
    parser.add_argument("feedback", nargs="?", type=Path, help="from-feedback: the feedback file (default data/feedback.jsonl)")
    parser.add_argument(
        "--set", action="append", dest="sets", metavar="NAME|PATH",
        help="eval set: a name under evals/sets/, a set folder, squad-dev or squad-holdout; repeat for several (default: rsp)",
    )
    add_store_arguments(parser)
    parser.add_argument("--out", type=Path, help="run: report folder (default evals/reports; each set writes SET/latest.*); new, from-feedback: the set folder to write")
    parser.add_argument("--corpus", type=Path, help="new, from-feedback: the corpus folder (from-feedback default: corpus/)")
    parser.add_argument("--items", type=int, default=12, help="new: how many items to draft (default 12)")
    parser.add_argument("--force", action="store_true", help="new: replace an existing items.jsonl")
    parser.add_argument("--no-gate", action="store_true", help="report only; do not fail below the thresholds")
    parser.add_argument("--write", action="store_true", help="calibrate: store the threshold in the metadata of the collection it was fitted on")
    parser.add_argument("--write-packaged", action="store_true", help="calibrate: write assistant/calibration.json (the default for every other collection)")
    parser.add_argument(
        "--generative",
        action="store_true",
        help="also run the generative backend (RAG_OPENAI_BASE_URL, RAG_OPENAI_MODEL) side by side",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    from ingest.runtime import prepare_environment

    prepare_environment()
    args = _parser().parse_args(argv)

    from assistant.errors import SettingsError
    from ingest.errors import IngestError

    from .dataset import EvalSetError

    try:
        if args.command == "new":
            return _new(args)
        if args.command == "from-feedback":
            return _from_feedback(args)
        sets = args.sets or ["rsp"]
        if args.command == "calibrate":
            if args.write_packaged and len(sets) > 1:
                raise EvalSetError("--write-packaged takes one --set (the packaged threshold is fitted on rsp)")
            return max(_calibrate(name, args) for name in sets)
        if args.command == "probe":
            return max(_probe(name, args) for name in sets)
        return max(_run(name, args) for name in sets)
    except (EvalSetError, IngestError, SettingsError) as err:
        print(f"evals: error: {err}", file=sys.stderr)
        return 2


def _new(args) -> int:
    from .authoring import new_set
    from .dataset import EvalSetError

    if not args.corpus or not args.out:
        raise EvalSetError("new needs --corpus DIR (the documents) and --out PATH (the set folder to write)")
    print(new_set(args.corpus, args.out, items=args.items, force=args.force))
    print(f"next: correct {args.out / 'items.jsonl'}, then run `python -m evals --set {args.out}`")
    return 0


def _from_feedback(args) -> int:
    from .authoring import from_feedback
    from .dataset import EvalSetError

    if not args.out:
        raise EvalSetError("from-feedback needs --out PATH (the set folder to write or extend)")
    feedback = args.feedback or data_root() / "feedback.jsonl"
    print(from_feedback(feedback, args.out, args.corpus or REPO_ROOT / "corpus"))
    return 0


def _load(name: str):
    from .dataset import load_set, resolve_set_dir

    if name in ("squad-dev", "squad-holdout") and not (resolve_set_dir(name) / "set.json").is_file():
        from . import squad

        return load_set(squad.prepare_set(name, data_root()))
    return load_set(name)


def _given_store(args) -> bool:
    return args.store is not None or args.chroma_host is not None


def _settings(es, args):
    """The set's own store (ingested incrementally from its corpus), or the store the flags name."""
    from dataclasses import replace

    from assistant.settings import load_settings
    from ingest.settings import DEFAULT_COLLECTION, IngestSettings, StoreSettings

    settings = load_settings(args, corpus_dirs=(es.corpus_dir,))
    if _given_store(args):
        return settings
    from ingest.embed import shared_embedder
    from ingest.pipeline import run_ingest

    store = StoreSettings(path=eval_store_path(es.name), collection=args.collection or DEFAULT_COLLECTION)
    summary = run_ingest(
        IngestSettings(store=store, corpus=(es.corpus_dir,), progress=sys.stderr.isatty()),
        shared_embedder(),
        log=lambda s: print(s, file=sys.stderr),
    )
    print(f"set {es.name}: store {store.path}: {summary.line()}", file=sys.stderr)
    return replace(settings, store=store)


def _calibrate(name: str, args) -> int:
    from assistant import calibration

    from .runner import calibrate

    es = _load(name)
    settings = _settings(es, args)
    result = calibrate(es, settings)
    print(json.dumps(result, indent=1))
    if args.write:
        calibration.write_collection(settings.store, result)
        print(f"wrote abstain_threshold {result['abstain_threshold']} into the metadata of {settings.store.describe()}")
    if args.write_packaged:
        calibration.PACKAGED_FILE.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {calibration.PACKAGED_FILE}")
    return 0


def _probe(name: str, args) -> int:
    from dataclasses import asdict

    from .probe import by_kind, probe_rows, summarize, table

    es = _load(name)
    rows = probe_rows(es, _settings(es, args))
    overall, kinds = summarize(rows), by_kind(rows)
    folder = (args.out or EVALS_DIR / "reports") / re.sub(r"[^A-Za-z0-9._-]+", "-", es.name)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "probe.json"
    head = json.dumps({"set": es.name, "overall": overall, "by_kind": kinds}, indent=1)[:-2]
    body = ",\n".join(json.dumps(asdict(r)) for r in rows)  # one row per line
    path.write_text(f'{head},\n "rows": [\n{body}\n ]\n}}\n', encoding="utf-8")
    print(table(es.name, overall, kinds))
    print(f"wrote {path}")
    return 0


def _run(name: str, args) -> int:
    from . import report as rep
    from .dataset import EvalSetError
    from .runner import GENERATIVE, run, variants_of

    es = _load(name)
    print(es.status(), file=sys.stderr)
    settings = _settings(es, args)
    if args.generative and not settings.openai_base_url:
        raise EvalSetError("--generative needs a model server: set RAG_OPENAI_BASE_URL and RAG_OPENAI_MODEL")
    report = run(es, settings, variants_of(es) + ((GENERATIVE,) if args.generative else ()))
    thresholds_path = es.thresholds_path
    thresholds = json.loads(thresholds_path.read_text()) if thresholds_path and thresholds_path.is_file() else {}
    failures = rep.check_gate(report, thresholds)
    report["gate"] = failures or (["passed"] if thresholds else ["not checked: no thresholds.json"])
    paths = rep.write(report, (args.out or EVALS_DIR / "reports") / re.sub(r"[^A-Za-z0-9._-]+", "-", es.name))
    print(f"== set {es.name} ({settings.store.describe()}; threshold {report['abstain_threshold']} from {report['threshold_source']})")
    print(rep.table(report))
    for line in rep.headline(report):
        print(line)
    print(f"reports: {paths['md']}, {paths['json']}, {paths['png']}")
    if failures:
        print(f"gate FAILED for set {es.name}{' (not enforced: --no-gate)' if args.no_gate else ''}:", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
        return 0 if args.no_gate else 1
    print(f"gate passed for set {es.name} ({thresholds_path})" if thresholds else f"set {es.name}: no thresholds.json, gate not checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
