"""Serving at several corpus sizes: start-up to the first answer, RSS, retrieval and ask latency.

`python -m bench --only-serving` (or the serving step of a full run). Points: corpus/ (1×), 16×
and the large corpus (290×, 5 MB) ingested for real, and a 50 MB point made by copying the 5 MB
store's records (vectors included) under ten renamed copies of every file: a serving-only
figure (its answers are not a quality figure: every passage exists ten times). Every point is
served by a fresh process (bench.worker serve_point): spawned → Assistant → first answer is
the start-up; RSS is read after the first answer and after the timed questions; then warm
retrieval and ask latency over the scaling questions.
"""
from __future__ import annotations

import os
import resource
import time
from pathlib import Path

from harness import percentile

COPIES = 10
COLD_QUESTION = "Which Claude model was the first to cross the CBRN ASL-3 threshold?"
NOTES = {
    "startup_seconds": "process spawn (interpreter, imports, model load, index load) to the end of the first ask()",
    "rss_mb": "VmRSS of the serving process (/proc/self/status) after the first answer, and after the timed questions; "
    "peak_rss_mb is getrusage ru_maxrss",
    "retrieve": "Assistant.retrieve (search + rank stages), warm, one question at a time",
    "ask": "Assistant.ask, warm, one question at a time",
    "copies": "the 50 MB point copies the 5 MB store's chunks, units and vectors under renamed sources: serving figures only",
    "server": "the 50 MB copies once more behind `chroma run`: RSS is the serving process's; the server's is given beside it",
}


def _rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _lat(values: list[float]) -> dict:
    return {"n": len(values), "p50_ms": round(1000 * percentile(values, 0.5), 2), "p95_ms": round(1000 * percentile(values, 0.95), 2)}


def task_serve_ingest(args: dict) -> dict:
    """Ingest a corpus into a store (the model loaded first)."""
    from ingest.embed import shared_embedder
    from ingest.runtime import prepare_environment

    from .worker import _ingest

    prepare_environment()
    embedder = shared_embedder()
    embedder.load()
    summary, seconds, _ = _ingest(Path(args["store"]), [Path(p) for p in args["corpus"]], embedder)
    return {"chunks": summary.added + summary.updated + summary.unchanged, "ingest_seconds": round(seconds, 1)}


def task_serve_clone(args: dict) -> dict:
    """A store holding `copies` renamed copies of every record of another store, vectors included."""
    import datetime as dt
    import json

    import numpy as np

    from ingest.chunk import CHUNKER_VERSION
    from ingest.pipeline import update_lexical
    from ingest.runtime import prepare_environment
    from ingest.settings import StoreSettings
    from ingest.store import CollectionInfo, Store, fingerprint

    prepare_environment()
    t = time.perf_counter()
    src = Store(StoreSettings(path=Path(args["source"])))
    dst = Store(StoreSettings(path=Path(args["store"])), create=True)
    copies = int(args["copies"])
    shas: dict[str, str] = {}
    counts = {"chunks": 0, "units": 0}
    offset = 0
    while True:
        page = src.chunks.get(include=["embeddings", "metadatas", "documents"], limit=5000, offset=offset)
        if not page["ids"]:
            break
        vecs = np.asarray(page["embeddings"], dtype=np.float32)
        for k in range(copies):
            metas = []
            for m in page["metadatas"]:
                # a chunk record lists its units by id: the copies' ids
                spans = json.loads(m["units"])
                m = dict(m, source=f"copy{k}/{m['source']}",
                         units=json.dumps({"u": [[f"{k}-{r[0]}", *r[1:]] for r in spans["u"]], "h": spans["h"]}))
                shas[m["source"]] = m["file_sha"]
                counts["units"] += len(spans["u"])
                metas.append(m)
            # add, not upsert: the store is new and every id is fresh (upsert looks each one up first)
            dst.chunks.add(ids=[f"{k}-{i}" for i in page["ids"]], embeddings=vecs, documents=page["documents"], metadatas=metas)
        counts["chunks"] += len(page["ids"]) * copies
        offset += len(page["ids"])
    fp = fingerprint(shas.items())
    update_lexical(dst, "", fp, shas)
    info = src.info()
    dst.set_info(CollectionInfo(info.embedding_model, CHUNKER_VERSION, fp,
                                dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), len(shas), counts["chunks"],
                                counts["units"]))
    return counts | {"files": len(shas), "seconds": round(time.perf_counter() - t, 1)}


def task_serve_point(args: dict) -> dict:
    """One serving process on one store: start-up to first answer, RSS, warm latency."""
    spawned = args["spawned_at"]
    from ingest.runtime import prepare_environment

    prepare_environment()
    from assistant.conversation import Query
    from assistant.pipeline import Assistant
    from assistant.settings import load_settings
    from ingest.settings import StoreSettings

    from .worker import _scaling_questions

    store = StoreSettings(host=args["host"], port=int(args["port"])) if args.get("host") else StoreSettings(path=Path(args["store"]))
    settings = load_settings(env={}, store=store, ranker=False)  # the default
    assistant = Assistant(settings)
    first = assistant.ask(COLD_QUESTION)
    startup = time.time() - spawned
    rss_first = _rss_mb()
    items = _scaling_questions(int(args["questions"]))
    questions = [i.question for i in items]
    for q in questions:  # warm pass, untimed
        assistant.ask(q)
    retrieve, ask = [], []
    for q in questions:
        t = time.perf_counter()
        assistant.retrieve(Query(q))
        retrieve.append(time.perf_counter() - t)
    for q in questions:
        t = time.perf_counter()
        assistant.ask(q)
        ask.append(time.perf_counter() - t)
    rss_after, peak = _rss_mb(), _peak_mb()  # before the ranker's run below loads its model
    ranked = _with_ranker(settings, assistant, questions) if args.get("ranker") else None
    index = assistant.retriever.index()
    return {
        "startup_seconds": round(startup, 2),
        "first_answer_abstained": first.abstained,
        "rss_mb_after_first_answer": rss_first,
        "rss_mb_after_questions": rss_after,
        "peak_rss_mb": peak,
        "retrieve": _lat(retrieve),
        "ask": _lat(ask),
        "chunks": len(index.chunks),
        "units": index.unit_count,
        "index_memory": index.memory(),
        "load_avg": round(os.getloadavg()[0], 2),
    } | ({"with_ranker": ranked} if ranked else {})


def _with_ranker(settings, plain, questions: list[str]) -> dict:
    """The same questions with the learned ranker on (RAG_RANKER=1): ask latency, and the share
    of it spent in the cross-encoder (Ranker.score, timed inside the pipeline)."""
    from dataclasses import replace

    from assistant.pipeline import Assistant
    from assistant.ranker import Ranker

    spent: list[float] = []

    class Timed(Ranker):
        def score(self, question, candidates):
            t = time.perf_counter()
            try:
                return super().score(question, candidates)
            finally:
                spent.append(time.perf_counter() - t)

    ranked = Assistant(replace(settings, ranker=True), embedder=plain.embedder, ranker=Timed().load())
    for q in questions:  # warm pass, untimed
        ranked.ask(q)
    spent.clear()
    ask = []
    for q in questions:
        t = time.perf_counter()
        ranked.ask(q)
        ask.append(time.perf_counter() - t)
    return {"candidates": settings.rank_candidates, "ask": _lat(ask), "ranker": _lat(spent),
            "ranker_share": round(sum(spent) / sum(ask), 3) if ask else None}


TASKS = {"serve_ingest": task_serve_ingest, "serve_clone": task_serve_clone, "serve_point": task_serve_point}


def run(run_worker, tmp: Path, points: list[dict], stores: dict[str, Path] | None, questions: int, timeout: float, log) -> dict:
    """points: {"name", "factor", "bytes", "dir"} ingested for real, in order; the last one is
    also copied COPIES times for the 50 MB point. stores: already ingested stores by point name,
    reused (a full bench run has ingested corpus/ and the large corpus before)."""
    stores = stores or {}
    rows = []
    last_store = None
    for p in points:
        store = stores.get(p["name"]) or tmp / f"serve-{p['name']}"
        ing = {}
        if p["name"] not in stores:
            log(f"serving: ingest {p['name']} ({p['bytes'] / 1e6:.2f} MB)")
            ing = run_worker("serve_ingest", {"store": str(store), "corpus": [p["dir"]]}, tmp, timeout, f"serve_ingest_{p['name']}")
        log(f"serving: serve {p['name']}")
        ranker = p is points[0] or p is points[-1]  # the ranker's share of ask, at the smallest and largest real corpus
        got = run_worker("serve_point", {"store": str(store), "questions": questions, "ranker": ranker}, tmp, timeout, f"serve_{p['name']}")
        rows.append({k: p[k] for k in ("name", "factor", "bytes")} | ing | got)
        log(f"serving {p['name']}: {_line(rows[-1])}")
        last_store = store
    if last_store is not None:
        big = points[-1]
        log(f"serving: {COPIES} copies of the {big['name']} store (vectors reused)")
        store = tmp / "serve-copies"
        made = run_worker("serve_clone", {"source": str(last_store), "store": str(store), "copies": COPIES}, tmp, timeout, "serve_clone")
        got = run_worker("serve_point", {"store": str(store), "questions": questions}, tmp, timeout, "serve_copies")
        rows.append({"name": f"{COPIES}x {big['name']} (copies)", "factor": big["factor"] * COPIES,
                     "bytes": big["bytes"] * COPIES, "copied_records": made} | got)
        log(f"serving copies: {_line(rows[-1])}")
        log("serving: the same copies behind a Chroma server (`chroma run`), the scale-out path")
        rows.append({"name": f"{COPIES}x {big['name']} (copies), Chroma server", "factor": big["factor"] * COPIES,
                     "bytes": big["bytes"] * COPIES} | _behind_server(run_worker, tmp, store, questions, timeout))
        log(f"serving copies behind a server: {_line(rows[-1])}, server RSS {rows[-1]['server_rss_mb']} MB")
    base = rows[0] if rows else None
    for r in rows:
        r["startup_over_1x_seconds"] = round(r["startup_seconds"] - base["startup_seconds"], 2)
        r["rss_over_1x_mb"] = round(r["rss_mb_after_questions"] - base["rss_mb_after_questions"], 1)
    return {"points": rows, "notes": NOTES}


def _behind_server(run_worker, tmp: Path, store: Path, questions: int, timeout: float) -> dict:
    """serve_point against `chroma run` on the store: the serving process holds no HNSW then; the
    server's RSS (read after the questions) is where the vectors live."""
    import sys

    from harness import free_port, start_server, stop_process

    port = free_port()
    cmd = [str(Path(sys.executable).parent / "chroma"), "run", "--path", str(store), "--host", "127.0.0.1", "--port", str(port)]
    proc = start_server(cmd, port, 60, env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    try:
        got = run_worker("serve_point", {"host": "127.0.0.1", "port": port, "questions": questions}, tmp, timeout, "serve_copies_server")
        got["server_rss_mb"] = _rss_mb(proc.pid)
    finally:
        stop_process(proc, 15)
    return got


def _line(r: dict) -> str:
    return (f"{r['chunks']} chunks, {r['units']} units, start-up {r['startup_seconds']} s, RSS {r['rss_mb_after_questions']} MB, "
            f"retrieve p50/p95 {r['retrieve']['p50_ms']}/{r['retrieve']['p95_ms']} ms, ask p50/p95 {r['ask']['p50_ms']}/{r['ask']['p95_ms']} ms")


def rows(found: dict) -> list[tuple[str, str, str]]:
    """Rows of the bench table: one per point, then the ranker's share where it was measured."""
    section = "serving by corpus size"
    out = []
    for r in found["points"]:
        out.append((section, f"{r['name']} ({r['bytes'] / 1e6:.2f} MB, {r['chunks']:,} chunks, {r['units']:,} units)",
                    f"start-up {r['startup_seconds']:.1f} s (+{r['startup_over_1x_seconds']:.1f} s over 1x) · "
                    f"RSS {r['rss_mb_after_questions']:,.0f} MB (+{r['rss_over_1x_mb']:,.0f} MB)"
                    + (f", Chroma server {r['server_rss_mb']:,.0f} MB" if "server_rss_mb" in r else "") + " · "
                    f"retrieve p50 {r['retrieve']['p50_ms']:.1f} / p95 {r['retrieve']['p95_ms']:.1f} ms · "
                    f"ask p50 {r['ask']['p50_ms']:.1f} / p95 {r['ask']['p95_ms']:.1f} ms"))
    for r in found["points"]:
        w = r.get("with_ranker")
        if w:
            out.append((section, f"{r['name']}, ranker on ({w['candidates']} candidates)",
                        f"ask p50 {w['ask']['p50_ms']:.1f} / p95 {w['ask']['p95_ms']:.1f} ms · "
                        f"cross-encoder p50 {w['ranker']['p50_ms']:.1f} ms, {100 * w['ranker_share']:.0f} % of ask"))
    return out


def markdown(found: dict, title: str) -> str:
    lines = [f"## Serving by corpus size ({title})", "", "| point | figures |", "|---|---|"]
    lines += [f"| {k} | {v} |" for _, k, v in rows(found)]
    lines += ["", *(f"- {k}: {v}" for k, v in found["notes"].items()), ""]
    return "\n".join(lines)
