"""Take the README screenshot: start the chat over a store, ask a real question in headless Chromium,
open a source, and save docs/screenshot.png.

    .venv/bin/python scripts/screenshot.py [--store data/chroma] [--out docs/screenshot.png]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def main(argv=None) -> int:
    from ingest.runtime import prepare_environment

    prepare_environment()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=REPO / "data" / "chroma", help="embedded Chroma folder")
    parser.add_argument("--collection", default=None)
    parser.add_argument("--question", default="When was version 3 of the RSP released?")
    parser.add_argument("--follow-up", default="What did it rescind?", help="asked second ('' for none)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot.png")
    parser.add_argument("--width", type=int, default=1360)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from assistant.pipeline import Assistant
    from assistant.settings import load_settings
    from harness import free_port
    from ingest.errors import IngestError
    from ui import build_app

    assistant = Assistant(load_settings(args))
    try:
        assistant.warm_up()
    except IngestError as err:
        print(f"screenshot: error: {err}", file=sys.stderr)
        return 2
    feedback = Path(tempfile.mkdtemp(prefix="rag-shot-")) / "feedback.jsonl"
    app = build_app(assistant, feedback_path=feedback)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.goto(f"http://127.0.0.1:{port}/")
            for n, question in enumerate(q for q in (args.question, args.follow_up) if q):
                page.locator("#rag-question textarea").fill(question)
                page.locator("#rag-send").click()
                page.locator("#rag-chat .rag-sources, #rag-chat .rag-abstain, #rag-chat .rag-error").nth(n).wait_for(
                    timeout=120_000
                )
            page.wait_for_timeout(500)
            options = page.locator("#rag-sources label")
            if options.count():
                options.nth(min(1, options.count() - 1)).click()
                page.locator("#rag-panel mark").wait_for(timeout=30_000)
            page.mouse.move(0, 0)
            page.wait_for_timeout(800)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    finally:
        app.close()
    print(f"screenshot: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
