"""python -m ui — the browser chat over the ingested corpus (http://127.0.0.1:7860 by default).

Binding to an address other than loopback needs a login: RAG_UI_USER and RAG_UI_PASSWORD,
or --auth-file FILE holding one line `user:password`.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import traceback
from pathlib import Path

AUTH_HOW = "set RAG_UI_USER and RAG_UI_PASSWORD, or pass --auth-file FILE with one line user:password"


class UsageError(Exception):
    """A start-up problem the user fixes; str() is one line."""


def is_loopback(host: str) -> bool:
    if host.strip().lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_auth(auth_file: Path | None, env=None) -> tuple[str, str] | None:
    """(user, password) from --auth-file or RAG_UI_USER/RAG_UI_PASSWORD; None when neither is given."""
    env = os.environ if env is None else env
    if auth_file is not None:
        try:
            lines = [ln.strip() for ln in Path(auth_file).read_text(encoding="utf-8").splitlines() if ln.strip()]
        except OSError as err:
            raise UsageError(f"cannot read the auth file {auth_file} ({err.strerror}) — {AUTH_HOW}") from None
        except UnicodeDecodeError:
            raise UsageError(f"the auth file {auth_file} is not UTF-8 text — {AUTH_HOW}") from None
        if len(lines) != 1 or ":" not in lines[0]:
            raise UsageError(f"the auth file {auth_file} must hold exactly one line user:password")
        user, password = lines[0].split(":", 1)
        if not user or not password:
            raise UsageError(f"the auth file {auth_file} has an empty user or password — write user:password")
        return user, password
    user, password = env.get("RAG_UI_USER", ""), env.get("RAG_UI_PASSWORD", "")
    if user and password:
        return user, password
    if user or password:
        raise UsageError("RAG_UI_USER and RAG_UI_PASSWORD must both be set (or neither)")
    return None


def default_feedback_path(env=None) -> Path:
    from ingest.settings import REPO_ROOT

    env = os.environ if env is None else env
    data = Path(env["RAG_DATA"]) if env.get("RAG_DATA") else REPO_ROOT / "data"
    return data / "feedback.jsonl"


def parse_args(argv):
    from ingest.settings import add_store_arguments

    parser = argparse.ArgumentParser(prog="python -m ui", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=os.environ.get("RAG_UI_HOST", "127.0.0.1"),
                        help="address to listen on (default 127.0.0.1; any other needs a login)")
    parser.add_argument("--port", type=int, default=os.environ.get("RAG_UI_PORT", "7860"),
                        help="port (default 7860)")
    add_store_arguments(parser)
    parser.add_argument("--corpus", type=Path, action="append", help="corpus folder for showing passages (default corpus/)")
    parser.add_argument("--backend", help="answerer: extractive or openai (default: extractive)")
    parser.add_argument("--auth-file", type=Path, help="file with one line user:password (or set RAG_UI_USER/RAG_UI_PASSWORD)")
    parser.add_argument("--feedback", type=Path, help="where thumbs up/down are appended (default data/feedback.jsonl)")
    parser.add_argument("--title", default=os.environ.get("RAG_UI_TITLE") or None,
                        help="title shown on the page (or RAG_UI_TITLE; default: made from the corpus)")
    parser.add_argument("--no-uploads", action="store_true",
                        default=os.environ.get("RAG_UI_UPLOADS", "1").strip().lower() in ("0", "false", "no", "off"),
                        help="no adding or removing documents in the page (or RAG_UI_UPLOADS=0); it lists them only")
    parser.add_argument("--max-file-mb", type=float, default=None,
                        help="size limit of an uploaded file (default: that of `python -m ingest`, 10 MB)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from ingest.runtime import prepare_environment

    prepare_environment()
    args = parse_args(argv)

    try:
        auth = read_auth(args.auth_file)
    except UsageError as err:
        print(f"ui: error: {err}", file=sys.stderr)
        return 2
    if auth is None and not is_loopback(args.host):
        print(
            f"ui: error: refusing to listen on {args.host} without authentication — {AUTH_HOW} "
            "(or use --host 127.0.0.1)",
            file=sys.stderr,
        )
        return 2
    if not 0 < args.port < 65536:
        print(f"ui: error: --port {args.port} is not a port number (1-65535)", file=sys.stderr)
        return 2

    from assistant.settings import load_settings
    from assistant.pipeline import Assistant
    from ingest.errors import IngestError

    from .app import build_app

    try:
        settings = load_settings(args)
        assistant = Assistant(settings)
    except (IngestError, ValueError) as err:
        print(f"ui: error: {err}", file=sys.stderr)
        return 2
    print(f"ui: loading the model and {settings.store.describe()}…", flush=True)
    try:
        assistant.warm_up()
    except IngestError as err:  # start anyway: the page shows the problem, and recovers once it is fixed
        print(f"ui: warning: {err}", file=sys.stderr)
    except Exception as err:  # noqa: BLE001 - start anyway; the traceback stays in the log
        if settings.debug:
            raise
        traceback.print_exc()
        print(f"ui: warning: the assistant could not warm up ({type(err).__name__}: {err})", file=sys.stderr)

    feedback = args.feedback or default_feedback_path()
    app = build_app(assistant, feedback_path=feedback, title=args.title, uploads=not args.no_uploads,
                    max_file_mb=args.max_file_mb)
    if args.no_uploads:
        print("ui: adding and removing documents is off (--no-uploads)", flush=True)
    else:
        print(f"ui: documents added in the page go to {assistant.settings.corpus_dirs[0]}", flush=True)
    if auth is not None:
        print(f"ui: authentication is on (user '{auth[0]}')", flush=True)
    print(f"ui: feedback goes to {feedback}", flush=True)
    try:
        app.launch(
            server_name=args.host,
            server_port=args.port,
            auth=[auth] if auth else None,
            auth_message="Sign in to ask the documents." if auth else None,
            show_error=False,
            quiet=False,
        )
    except OSError as err:
        why = "the port is in use" if "empty port" in str(err) else (err.strerror or str(err))
        print(f"ui: error: cannot listen on {args.host}:{args.port} ({why}) — pick another --port", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
