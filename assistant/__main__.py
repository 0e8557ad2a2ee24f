"""python -m assistant {ask,chat,batch,cite} — answers with citations from the ingested corpus."""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path


def _print_answer(answer, as_json: bool) -> None:
    if as_json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False))
        return
    print(answer.text)
    if answer.notice:
        print(f"({answer.notice})")
    for c in answer.citations:
        page = f" ({c.where.partition(', ')[2]})" if c.pages else ""
        print(f"  [{c.n}] {c.source}:{c.start}-{c.end}{page}  {c.section}")
        print(f"      “{c.quote}”")
    if answer.related:
        print("Related passages (not an answer):")
        for c in answer.related:
            print(f"  - {c.source}:{c.start}-{c.end}  {c.section}: {c.quote[:120]}")


def cmd_ask(args, assistant) -> int:
    _print_answer(assistant.ask(args.question), args.json)
    return 0


def cmd_chat(args, assistant) -> int:
    from .errors import QuestionError
    from .records import Turn

    history: list[Turn] = []
    print("Ask about the documents; an empty line or Ctrl-D ends the chat.")
    while True:
        try:
            question = input("you> ")
        except EOFError:
            print()
            return 0
        if not question.strip():
            return 0
        try:
            answer = assistant.ask(question, history)
        except QuestionError as err:
            print(f"error: {err}")
            continue
        _print_answer(answer, False)
        history += [Turn("user", question), Turn("assistant", answer.text)]


def cmd_batch(args, assistant) -> int:
    from .errors import QuestionError

    failures = 0
    with open(args.infile, encoding="utf-8") as src, open(args.outfile, "w", encoding="utf-8") as out:
        for lineno, line in enumerate(src, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                question = item["question"]
                history = item.get("history") or []
            except (ValueError, KeyError, TypeError):
                print(f"batch: {args.infile}:{lineno}: not a JSON object with a 'question' — skipped", file=sys.stderr)
                failures += 1
                continue
            try:
                item.update(assistant.ask(question, history).to_dict())
            except QuestionError as err:
                item.update({"answer": "", "abstained": True, "citations": [], "error": str(err)})
                failures += 1
            out.write(json.dumps(item, ensure_ascii=False) + "\n")
    return 1 if failures else 0


def cmd_cite(args, assistant) -> int:
    from .cite import parse_ref, passage

    ref = parse_ref(args.ref)
    if ref is None:  # a chunk id
        chunks = assistant.retriever.index().chunks
        chunk = chunks.get(args.ref.strip())
        if chunk is None:
            print(f"cite: no chunk '{args.ref[:40]}' — give a chunk id or SOURCE:START-END", file=sys.stderr)
            return 2
        ref = (chunk.source, chunk.start, chunk.end)
    p = passage(assistant.settings.corpus_dirs, *ref)
    print(f"{p.source}:{p.start}-{p.end}")
    before = p.paragraph[: p.start - p.paragraph_start]
    after = p.paragraph[p.end - p.paragraph_start :]
    print(f"{before}>>>{p.quote}<<<{after}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from ingest.runtime import prepare_environment
    from ingest.settings import add_store_arguments

    from .settings import BACKENDS

    prepare_environment()
    parser = argparse.ArgumentParser(prog="python -m assistant", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {
        "ask": (cmd_ask, "answer one question"),
        "chat": (cmd_chat, "a terminal conversation with history"),
        "batch": (cmd_batch, "answer a JSONL file of questions"),
        "cite": (cmd_cite, "show a cited passage in its paragraph"),
    }
    for name, (_, help_) in commands.items():
        p = sub.add_parser(name, help=help_)
        add_store_arguments(p)
        p.add_argument("--corpus", type=Path, action="append", help="corpus folder (for cite; default corpus/)")
        p.add_argument("--backend", help=f"answerer: {', '.join(BACKENDS)} (default: extractive)")
        p.add_argument("--abstain-threshold", type=float, help="abstain below this confidence (default: calibrated)")
        if name == "ask":
            p.add_argument("question")
            p.add_argument("--json", action="store_true", help="print JSON")
        elif name == "batch":
            p.add_argument("infile", type=Path)
            p.add_argument("outfile", type=Path)
        elif name == "cite":
            p.add_argument("ref", help="a chunk id or SOURCE:START-END")
    args = parser.parse_args(argv)

    from ingest.errors import IngestError

    from .errors import CiteError, QuestionError, SettingsError
    from .pipeline import Assistant
    from .settings import load_settings

    debug = False
    try:
        settings = load_settings(args)
        debug = settings.debug
        assistant = Assistant(settings)
        return commands[args.command][0](args, assistant)
    except (IngestError, QuestionError, CiteError, SettingsError) as err:
        print(f"{args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.filename is None:
            raise
        print(f"{args.command}: error: {err.strerror}: {err.filename} — check the path", file=sys.stderr)
        return 2
    except Exception:  # a bug: keep its traceback in the log; RAG_DEBUG=1 re-raises it
        if debug:
            raise
        traceback.print_exc()
        print(f"{args.command}: error: an unexpected failure (traceback above) — please report it", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
