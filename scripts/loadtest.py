"""Load test of the chat server's public `/ask` API, on loopback only.

    python scripts/loadtest.py [--conversations 16] [--turns 3] [--store DIR] [--out bench/loadtest.json]
    python scripts/loadtest.py --sequential 500 [--store DIR] [--out bench/loadtest.json]

Starts the real server (`python -m ui --host 127.0.0.1 --port FREE`) as a child process and talks to
it with gradio_client, as an API user would.

Conversations mode: every conversation (a distinct topic of the corpus) is first run alone, one
after the other, as the baseline; then all of them run at once, each with its own client, passing
its own history. Every answer must be non-empty, every turn must equal the answer that
conversation got alone (nothing leaked in from another conversation), and every later turn that
answers must still be about its own topic. Reports p50/p95 latency of the concurrent requests.

Sequential mode: N asks one after the other (rotating over ~20 questions, some with history),
with the server's RSS (psutil on the child pid) when it is ready, after a warm-up round, and at
the end.

Writes a JSON report; exit code 0 when there were no errors (and isolation held), 1 otherwise,
2 when the server could not be started. Every loop is bounded; the server is stopped at the end.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness import free_port, percentile, run_dialogue  # noqa: E402

HOST = "127.0.0.1"  # never anything else: this script only ever talks to loopback

# (key, first question, follow-ups, words that show an answer is about this topic)
TOPICS: list[tuple[str, str, list[str], list[str]]] = [
    ("rsp-v3", "When was RSP v3 released?",
     ["What did it rescind?", "And what did it introduce?"],
     ["v3", "pause", "roadmap", "rescind"]),
    ("opus4", "Which Claude model triggered the ASL-3 CBRN threshold in May 2025?",
     ["How did Anthropic respond to it?", "Which evaluation methods were used for it?"],
     ["opus 4", "asl-3", "cbrn", "uplift"]),
    ("reviewers", "Who are the external reviewers for Risk Reports?",
     ["And which parties were not selected?", "And when was their first cohort?"],
     ["reviewer", "govai", "metr", "mats", "risk report", "not selected"]),
    ("bengio", "What did Yoshua Bengio argue about self-regulatory frameworks?",
     ["Does RSP v3 satisfy those elements?", "And which of them does it no longer satisfy?"],
     ["bengio", "(i)", "(ii)", "(iii)", "stopping"]),
    ("sb53", "What is the SB 53 Frontier Compliance Framework?",
     ["When was it published?", "What does it map?"],
     ["sb 53", "compliance"]),
    ("deepmind", "Does Google DeepMind's Frontier Safety Framework have a pause commitment?",
     ["What about its external review?", "And its risk domains?"],
     ["deepmind", "fsf", "ccl"]),
    ("openai", "How is OpenAI's Preparedness Framework structured?",
     ["What about its pause commitment?", "And its external review?"],
     ["openai", "preparedness", "threat categor", "safety advisory"]),
    ("mowshowitz", "What did Zvi Mowshowitz criticise about RSP v3?",
     ["What is his core logic?", "And what does it stand in tension with?"],
     ["mowshowitz", "zvi", "race to the bottom", "unilateral", "amodei"]),
    ("russell", "What does Stuart Russell argue about the default state of an AI system?",
     ["Does the ASL structure satisfy it?", "And how does the practice depart from it?"],
     ["russell", "default", "constrain"]),
    ("hendrycks", "What does Dan Hendrycks note about ASL determinations and benchmarks?",
     ["What follows from that?", "And what may ASL-3 warrant because of it?"],
     ["hendrycks", "benchmark", "under-estimate", "earlier triggering"]),
    ("cyber", "What is the cybersecurity ASL-3 trigger?",
     ["How is it evaluated?", "Has Claude 4.x triggered it?"],
     ["cyber", "cybench", "ctf", "exploit", "gpt-5.4"]),
    ("dod", "What contract did Anthropic sign with the US Department of Defense CDAO?",
     ["When did RSP v3 follow it?", "And why is that sequencing discussed?"],
     ["dod", "ota", "cdao", "other transaction", "contract"]),
    ("rand-sl4", "What is RAND Security Level 4?",
     ["How did v3 change it?", "And what was the practical effect of that?"],
     ["sl-4", "rand", "nation-state", "industry"]),
    ("welfare", "What is the Persuasion and Model Welfare category in RSP v3?",
     ["When was its welfare research line initiated?", "And what was it upgraded from?"],
     ["persuasion", "welfare", "watchlist", "tracked threshold", "moral"]),
    ("anderljung", "What three pillars did Anderljung et al. propose for frontier-model governance?",
     ["Which of them does the RSP advance?", "And what is GovAI's 2026 position on it?"],
     ["anderljung", "govai", "licensing", "registration", "standards"]),
    ("autonomy", "What is the autonomy and self-exfiltration threshold?",
     ["How is it evaluated?", "Has Claude 4.7 triggered it?"],
     ["autonom", "self-replicate", "metr", "apollo", "long-horizon"]),
]
MAX_TURNS = 1 + min(len(t[2]) for t in TOPICS)


# -- helpers ------------------------------------------------------------------------------------------
def latency_summary(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {
        "count": len(ms),
        "p50": round(percentile(ms, 0.50), 1),
        "p95": round(percentile(ms, 0.95), 1),
        "mean": round(statistics.fmean(ms), 1) if ms else 0.0,
        "max": round(max(ms), 1) if ms else 0.0,
    }


def rss_mb(pid: int) -> float | None:
    try:
        import psutil

        return round(psutil.Process(pid).memory_info().rss / 1024 / 1024, 1)
    except Exception:  # noqa: BLE001 - no psutil, or the process is gone
        return None


def log(msg: str) -> None:
    print(f"loadtest: {msg}", file=sys.stderr, flush=True)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


class Server:
    """`python -m ui` on 127.0.0.1 as a child process, stopped on exit."""

    def __init__(self, store: Path | None, workdir: Path, startup_timeout: float) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}/"
        self.log_path = workdir / "server.log"
        cmd = [sys.executable, "-m", "ui", "--host", HOST, "--port", str(self.port),
               "--feedback", str(workdir / "feedback.jsonl")]
        if store is not None:
            cmd += ["--store", str(store)]
        env = {k: v for k, v in os.environ.items() if k not in ("RAG_UI_USER", "RAG_UI_PASSWORD")}
        env.update({"GRADIO_ANALYTICS_ENABLED": "False", "ANONYMIZED_TELEMETRY": "False",
                    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1"})
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.startup_timeout = startup_timeout

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.proc.returncode}:\n{self.tail()}")
            if _http_ok(self.url + "gradio_api/info"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the server was not ready within {self.startup_timeout:.0f} s:\n{self.tail()}")

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        self._log.close()


def new_client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False, analytics_enabled=False)


def ask(client, question: str, history: list[dict], timeout: float) -> dict:
    result = client.submit(question, history, api_name="/ask").result(timeout=timeout)
    if isinstance(result, str):
        result = json.loads(result)
    return result


def topical(result: dict, words: list[str]) -> bool:
    blob = " ".join([result.get("answer", "")] + [c.get("quote", "") + " " + c.get("section", "")
                                                   for c in result.get("citations") or []]).lower()
    return any(w in blob for w in words)


# -- conversations mode ------------------------------------------------------------------------------------
def conversation_plan(n: int, turns: int) -> list[tuple[str, list[str], list[str]]]:
    plan = []
    for i in range(n):
        key, first, follow, words = TOPICS[i % len(TOPICS)]
        label = key if i < len(TOPICS) else f"{key}#{i // len(TOPICS) + 1}"
        plan.append((label, [first, *follow][:turns], words))
    return plan


def run_conversation(client, questions: list[str], timeout: float) -> list[dict]:
    """Each turn: {question, result | error, seconds}; history is passed as the API expects it."""

    def turn(q: str, history) -> dict:
        t0 = time.perf_counter()
        try:
            result = ask(client, q, [{"role": t.role, "content": t.content} for t in history], timeout)
            return {"question": q, "result": result, "seconds": time.perf_counter() - t0}
        except Exception as err:  # noqa: BLE001 - every failure is counted, none stops the run
            return {"question": q, "error": f"{type(err).__name__}: {str(err)[:300]}", "seconds": time.perf_counter() - t0}

    return run_dialogue(turn, questions, text=lambda r: (r.get("result") or {}).get("answer", ""))


def conversations_mode(server: Server, n: int, turns: int, timeout: float) -> dict:
    plan = conversation_plan(n, turns)
    # baseline: each conversation alone
    log(f"baseline: {n} conversations of {turns} turns, one at a time")
    base_client = new_client(server.url)
    baseline = {label: run_conversation(base_client, qs, timeout) for label, qs, _ in plan}
    # the load: all at once, one client each (a session each), released together
    log(f"load: {n} conversations at once")
    results: dict[str, list[dict]] = {}
    clients = {label: new_client(server.url) for label, _, _ in plan}
    barrier = threading.Barrier(n)

    def worker(label: str, qs: list[str]) -> None:
        try:
            barrier.wait(timeout=60)
        except threading.BrokenBarrierError:
            pass
        results[label] = run_conversation(clients[label], qs, timeout)

    threads = [threading.Thread(target=worker, args=(label, qs), daemon=True) for label, qs, _ in plan]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout * turns + 120)
    wall = time.perf_counter() - t0

    errors, error_samples, latencies = 0, [], []
    empty, mismatches, off_topic, abstained, later_checked = 0, [], [], 0, 0
    for label, qs, words in plan:
        got = results.get(label)
        if got is None:
            errors += len(qs)
            error_samples.append(f"{label}: the conversation did not finish")
            continue
        for i, (turn, ref) in enumerate(zip(got, baseline[label])):
            latencies.append(turn["seconds"])
            if "error" in turn:
                errors += 1
                error_samples.append(f"{label} turn {i + 1}: {turn['error']}")
                continue
            r = turn["result"]
            if not str(r.get("answer", "")).strip():
                empty += 1
                error_samples.append(f"{label} turn {i + 1}: empty answer")
            if r.get("abstained"):
                abstained += 1
            if "result" in ref and r != ref["result"]:
                mismatches.append(f"{label} turn {i + 1}: {turn['question']!r} answered differently under load")
            if i > 0:
                later_checked += 1
                if not r.get("abstained") and not topical(r, words):
                    off_topic.append(f"{label} turn {i + 1}: {turn['question']!r} -> {r.get('answer', '')[:120]!r}")
    baseline_errors = sum(1 for turns_ in baseline.values() for t in turns_ if "error" in t)
    distinct = len({json.dumps(t.get("result"), sort_keys=True) for turns_ in baseline.values() for t in turns_[1:]})
    return {
        "conversations": n,
        "turns": turns,
        "requests": sum(len(qs) for _, qs, _ in plan),
        "errors": errors + empty + baseline_errors,
        "error_samples": error_samples[:20],
        "empty_answers": empty,
        "abstained": abstained,
        "baseline_errors": baseline_errors,
        "latency_ms": latency_summary(latencies),
        "baseline_latency_ms": latency_summary([t["seconds"] for turns_ in baseline.values() for t in turns_]),
        "wall_seconds": round(wall, 2),
        "isolation": {
            "ok": not mismatches and not off_topic and errors == 0,
            "later_turns_checked": later_checked,
            "distinct_later_answers": distinct,
            "mismatches": mismatches[:20],
            "off_topic": off_topic[:20],
        },
    }


# -- sequential mode ---------------------------------------------------------------------------------------
def sequential_questions() -> list[tuple[str, list[dict]]]:
    """~20 asks: every first question alone, and a few follow-ups with their history."""
    items: list[tuple[str, list[dict]]] = [(first, []) for _, first, _, _ in TOPICS]
    for _, first, follow, _ in TOPICS[:4]:
        items.append((follow[0], [{"role": "user", "content": first}, {"role": "assistant", "content": ""}]))
    return items


def sequential_mode(server: Server, n: int, timeout: float) -> dict:
    items = sequential_questions()
    client = new_client(server.url)
    pid = server.proc.pid
    rss_ready = rss_mb(pid)
    errors, samples, latencies = 0, [], []
    rss_after_warmup = None
    for i in range(n):
        q, history = items[i % len(items)]
        t0 = time.perf_counter()
        try:
            r = ask(client, q, history, timeout)
            if not str(r.get("answer", "")).strip():
                errors += 1
                samples.append(f"ask {i + 1}: empty answer")
        except Exception as err:  # noqa: BLE001
            errors += 1
            samples.append(f"ask {i + 1}: {type(err).__name__}: {str(err)[:300]}")
        latencies.append(time.perf_counter() - t0)
        if i + 1 == min(len(items), n):
            rss_after_warmup = rss_mb(pid)
        if (i + 1) % 100 == 0:
            log(f"{i + 1}/{n} asks, server RSS {rss_mb(pid)} MB")
    rss_end = rss_mb(pid)
    growth = None if rss_end is None or rss_after_warmup is None else round(rss_end - rss_after_warmup, 1)
    return {
        "sequential": n,
        "requests": n,
        "distinct_questions": len(items),
        "errors": errors,
        "error_samples": samples[:20],
        "latency_ms": latency_summary(latencies),
        "server_rss_mb": {"ready": rss_ready, "start": rss_after_warmup, "end": rss_end, "growth": growth},
    }


# -- main -------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/loadtest.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=16, help="concurrent conversations (default 16)")
    parser.add_argument("--turns", type=int, default=3, help=f"turns per conversation, 1-{MAX_TURNS} (default 3)")
    parser.add_argument("--sequential", type=int, metavar="N", help="instead: N sequential asks, with server RSS")
    parser.add_argument("--store", type=Path, help="embedded Chroma folder the server reads (default: its own default)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "loadtest.json", help="JSON report")
    parser.add_argument("--request-timeout", type=float, default=120.0, help="seconds per request (default 120)")
    parser.add_argument("--startup-timeout", type=float, default=180.0, help="seconds for the server to start")
    args = parser.parse_args(argv)
    if not 1 <= args.conversations <= 64:
        parser.error("--conversations must be between 1 and 64")
    if not 1 <= args.turns <= MAX_TURNS:
        parser.error(f"--turns must be between 1 and {MAX_TURNS}")
    if args.sequential is not None and not 1 <= args.sequential <= 100_000:
        parser.error("--sequential must be between 1 and 100000")
    if args.store is not None and not (args.store / "chroma.sqlite3").exists():
        print(f"loadtest: error: no Chroma store at {args.store} — build it with "
              f"`python -m ingest --store {args.store}` (or `make ingest` for the default)", file=sys.stderr)
        return 2
    if not (REPO / "ui" / "__main__.py").exists():
        print("loadtest: error: ui/ is missing — there is no server to test", file=sys.stderr)
        return 2

    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="loadtest-") as tmp:
        server = Server(args.store.resolve() if args.store else None, Path(tmp), args.startup_timeout)
        try:
            t0 = time.perf_counter()
            try:
                server.wait_ready()
            except RuntimeError as err:
                print(f"loadtest: error: {err}", file=sys.stderr)
                return 2
            startup = time.perf_counter() - t0
            log(f"server pid {server.proc.pid} ready on {server.url} in {startup:.1f} s")
            rss_ready = rss_mb(server.proc.pid)
            if args.sequential:
                report = {"mode": "sequential", **sequential_mode(server, args.sequential, args.request_timeout)}
            else:
                report = {"mode": "conversations",
                          **conversations_mode(server, args.conversations, args.turns, args.request_timeout)}
                report["server_rss_mb"] = {"ready": rss_ready, "end": rss_mb(server.proc.pid)}
            report["server_alive"] = server.proc.poll() is None
            if not report["server_alive"]:
                report["errors"] += 1
                report.setdefault("error_samples", []).append("the server died during the run")
        finally:
            server.stop()
    report.update({"started_at": started, "startup_seconds": round(startup, 1),
                   "store": str(args.store.resolve()) if args.store else "(server default)", "host": HOST})

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    lat = report["latency_ms"]
    line = f"{report['requests']} requests, {report['errors']} errors, p50 {lat['p50']} ms, p95 {lat['p95']} ms"
    if report["mode"] == "conversations":
        iso = report["isolation"]
        line += (f", isolation {'OK' if iso['ok'] else 'BROKEN'} ({iso['later_turns_checked']} later turns, "
                 f"{len(iso['mismatches'])} mismatches, {len(iso['off_topic'])} off topic)")
    rss = report["server_rss_mb"]
    line += f", server RSS {rss.get('start', rss.get('ready'))} → {rss['end']} MB"
    print(line)
    print(f"report: {args.out}")
    ok = report["errors"] == 0 and (report["mode"] == "sequential" or report["isolation"]["ok"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
