"""python -m bench [--quick] [--out bench/results.json] [--large-mb 5]

Benchmarks of ingest and query, ours side by side with a plain llama-index pipeline.
Every measured step runs in a fresh worker process (bench/worker.py); all stores live in
one temporary folder; the large corpus is built from real prose on this machine into
bench/corpus_cache/ (git-ignored). Writes the JSON results and a Markdown table beside them.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .corpus import CACHE_DIR, build_large, build_subset, corpus_stats
from .report import markdown, table

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"
COLD_QUESTION = "Which Claude model was the first to cross the CBRN ASL-3 threshold?"


@dataclass(frozen=True)
class Profile:
    name: str
    large_bytes: int
    scales: tuple[float, ...]  # multiples of the size of corpus/
    query_limit: int | None  # eval questions for latency and recall (None: all)
    concurrent_total: int
    clients: int
    scaling_questions: int
    bare_sample: int  # embedded texts of the large corpus encoded again by the bare model
    cold_runs: int
    ingest_rounds: int  # alternating ours/plain ingests of corpus/ for the ratio
    worker_timeout: float
    runtime_bytes: int = 200_000  # the corpus ingested once per encoder runtime (bench/runtimes.py)
    runtime_sample: int = 1000  # texts the bare model encodes under every runtime


FULL = Profile("full", 5_000_000, (1, 4, 16), None, 200, 4, 20, 1500, 2, 3, 120 * 60)
QUICK = Profile("quick", 40_000, (0.25, 0.5, 1), 10, 20, 4, 6, 150, 1, 1, 15 * 60, runtime_bytes=20_000, runtime_sample=100)


def _log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


CODE = REPO  # where the workers import the code under test from: a snapshot once main() made one
MODELS: Path | None = None  # the ONNX exports of this run (RAG_MODELS_DIR of every worker)
SNAPSHOT_DIRS = ("ingest", "assistant", "evals", "bench", "corpus")


def snapshot_code(dest: Path) -> dict:
    """Copy the code under test (and corpus/, the eval sets) so edits made while a long run
    goes on cannot mix two versions into one set of results; returns its fingerprint."""
    import hashlib
    import shutil

    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "corpus_cache", "reports", "results.*", "*.png")
    digest = hashlib.sha1()
    files = 0
    for name in SNAPSHOT_DIRS:
        src = REPO / name
        if not src.is_dir():
            continue
        shutil.copytree(src, dest / name, ignore=skip)
        if name == "bench":
            continue
        for path in sorted((dest / name).rglob("*")):
            if path.is_file():
                digest.update(path.relative_to(dest).as_posix().encode() + b"\0" + path.read_bytes())
                files += 1
    return {"fingerprint": digest.hexdigest()[:16], "files": files, "covers": [d for d in SNAPSHOT_DIRS if d != "bench"]}


def _env() -> dict:
    env = dict(os.environ)
    for key in ("RAG_STORE", "RAG_CHROMA_HOST", "RAG_CHROMA_PORT", "RAG_COLLECTION", "RAG_CORPUS"):
        env.pop(key, None)  # every store here is named explicitly
    if MODELS is not None:
        env["RAG_MODELS_DIR"] = str(MODELS)  # built once by the first step, never into data/
    env["PYTHONPATH"] = str(CODE) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


STEPS: dict[str, float] = {}
NOTES = {
    "wall_seconds": "process start (interpreter, imports, model load) to the end of the step, in a fresh process",
    "ingest_seconds": "run_ingest itself, with the embedding model already loaded (model_load_seconds apart)",
    "embedded_tokens": "Embedder.count_tokens over every text our pipeline embedded (chunks and sentence units); "
    "tokens_per_s divides by ingest_seconds, embed_tokens_per_s by Summary.embed_seconds",
    "peak_rss_mb": "getrusage(RUSAGE_SELF).ru_maxrss of the worker right after the ingest",
    "bare": "bare SentenceTransformer(get_model_path()).encode(texts) (float32, default batch size) on every k-th text "
    "our pipeline embedded (large_corpus.embedding.sample_*), alternating with our Embedder.encode on the same texts "
    "(A-B-C-C-B-A) so a change in machine load hits all; bare_bf16 is the same call inside torch.autocast(bfloat16), "
    "the arithmetic our Embedder uses on CPUs with native bf16, so pipeline_embed_vs_bare_same_precision is the "
    "pipeline's own overhead; encoding all texts again would double the run",
    "cpu_seconds": "process CPU time (all threads); on a shared machine a steadier basis than wall time",
    "load_avg": "1-minute load average before/after a step: above the core count, other work shared the CPU",
    "plain_truncation": "the plain pipeline's nodes (1024 tokens by default) are cut to the model's 256-token window; "
    "truncated_share is the part of the node text that is never embedded",
    "recall": "ours: Assistant.retrieve hits that contain a gold evidence quote's span; plain: top-k node text that "
    "contains the quote; mean over the answerable eval items",
}


def run_worker(task: str, args: dict, tmp: Path, timeout: float, step: str) -> dict:
    args_path, out_path = tmp / f"{task}-{time.time_ns()}.args.json", tmp / f"{task}-{time.time_ns()}.out.json"
    args = dict(args, spawned_at=time.time())
    args_path.write_text(json.dumps(args))
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.worker", task, str(args_path), str(out_path)],
        cwd=CODE,
        env=_env(),
        stdout=sys.stderr,  # progress and library chatter; our stdout is the table
        timeout=timeout,
    )
    STEPS[step] = round(time.perf_counter() - t, 1)
    if proc.returncode != 0 or not out_path.exists():
        raise RuntimeError(f"worker '{task}' failed with exit code {proc.returncode} (its output is above)")
    return json.loads(out_path.read_text())


def cold_start(store: Path, runs: int, timeout: float) -> dict:
    """Process start to first answer: `python -m assistant ask "..." --store STORE`."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "assistant", "ask", COLD_QUESTION, "--store", str(store)],
            cwd=CODE,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        times.append(time.perf_counter() - t)
        if proc.returncode != 0:
            raise RuntimeError(f"python -m assistant ask failed ({proc.returncode}): {proc.stderr[-500:]}")
    return {
        "command": 'python -m assistant ask "..." --store STORE',
        "runs": runs,
        "seconds": round(min(times), 3),
        "all_seconds": [round(t, 3) for t in times],
        "answered": not proc.stdout.startswith("The corpus does not say"),
    }


def machine() -> dict:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return ""

    cpu = ""
    try:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), ""
        )
    except OSError:
        pass
    mem_gb = 0.0
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": mem_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": version("torch"),
        "sentence_transformers": version("sentence-transformers"),
        "chromadb": version("chromadb"),
        "llama_index_core": version("llama-index-core"),
        "load_avg_start": round(os.getloadavg()[0], 2),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def assemble(profile: Profile, mach: dict, corpus: dict, large: dict, small: dict, cold: dict,
             big: dict, again: dict, plain: dict, seconds: float) -> dict:
    ing = small["ingest"]
    big_ing = big["ingest"]
    bare = big["bare"]
    embedding = {
        "tokens": big_ing["embedded_tokens"],
        "pipeline_embed_tokens_per_s": big_ing["embed_tokens_per_s"],
        "pipeline_end_to_end_tokens_per_s": big_ing["tokens_per_s"],
        "pipeline_embed_tokens_per_cpu_s": big_ing["embed_tokens_per_cpu_s"],
        **bare,
    }
    embedding["pipeline_embed_vs_bare"] = _ratio(embedding["pipeline_embed_tokens_per_s"], bare["bare_tokens_per_s"])
    embedding["pipeline_end_to_end_vs_bare"] = _ratio(big_ing["tokens_per_s"], bare["bare_tokens_per_s"])
    embedding["pipeline_embed_vs_bare_per_cpu_s"] = _ratio(big_ing["embed_tokens_per_cpu_s"], bare["bare_tokens_per_cpu_s"])
    embedding["embedder_vs_bare_same_sample"] = _ratio(bare["embedder_tokens_per_s"], bare["bare_tokens_per_s"])
    # overhead is judged against the bare model doing the same arithmetic (bf16 autocast when we use it)
    same = bare.get("bare_bf16_tokens_per_s") or bare["bare_tokens_per_s"]
    embedding["pipeline_embed_vs_bare_same_precision"] = _ratio(embedding["pipeline_embed_tokens_per_s"], same)
    embedding["within_15_percent"] = bool(
        embedding["pipeline_embed_vs_bare_same_precision"] and embedding["pipeline_embed_vs_bare_same_precision"] >= 0.85
    )
    query = small["query"] | {"cold_start": cold}
    scaling = small["scaling"] + ([big["scaling_point"]] if big.get("scaling_point") else [])
    base = scaling[0] if scaling else None
    for row in scaling:
        row["size_growth"] = _ratio(row["bytes"], base["bytes"])
        row["ms_per_chunk_growth"] = _ratio(row["ms_per_chunk"], base["ms_per_chunk"])
        row["retrieve_p50_growth"] = _ratio(row["retrieve"]["p50_ms"], base["retrieve"]["p50_ms"])
    re_ing = again["ingest"]
    reingest = re_ing | {
        "fraction_of_full_ingest": _ratio(re_ing["ingest_seconds"], big_ing["ingest_seconds"]),
        "fraction_of_full_wall": _ratio(re_ing["wall_seconds"], big_ing["wall_seconds"]),
    }
    plain_large = plain.get("large", {})
    side = plain["side_by_side"]
    ratios = {
        "note": "ours / plain llama-index, same run, same data; < 1 means ours takes less time "
        "(for recall, > 1 means ours finds more). Latency and corpus/ ingest ratios come from "
        "interleaved runs in one process (plain_llamaindex.side_by_side).",
        "ingest_time_large": _ratio(big_ing["ingest_seconds"], plain_large.get("ingest_seconds")),
        "ingest_cpu_large": _ratio(big_ing["ingest_cpu_seconds"], plain_large.get("ingest_cpu_seconds")),
        "ingest_time_corpus": _ratio(side["ingest_corpus"]["ours_median_seconds"], side["ingest_corpus"]["plain_median_seconds"]),
        "ingest_wall_corpus_cold": _ratio(ing["wall_seconds"], plain["corpus"]["wall_seconds"]),
        "retrieve_latency_p50": _ratio(side["ours_retrieve"]["p50_ms"], side["plain_retrieve"]["p50_ms"]),
        "retrieve_latency_p95": _ratio(side["ours_retrieve"]["p95_ms"], side["plain_retrieve"]["p95_ms"]),
        "recall@5": _ratio(small["query"]["recall@5"], plain["query"]["recall@5"]),
        "recall@1": _ratio(small["query"]["recall@1"], plain["query"]["recall@1"]),
        "top5_context_chars": _ratio(small["query"]["top5_chars_mean"], plain["query"]["top5_chars_mean"]),
        "ingest_time_per_embedded_token_large": _ratio(
            big_ing["ingest_seconds"] / big_ing["embedded_tokens"] if big_ing.get("embedded_tokens") else None,
            plain_large["ingest_seconds"] / plain_large["node_tokens_embedded"] if plain_large.get("node_tokens_embedded") else None,
        ),
        "embedded_tokens_large": _ratio(big_ing.get("embedded_tokens"), plain_large.get("node_tokens_embedded")),
        "pipeline_embed_rate_vs_bare_model": embedding["pipeline_embed_vs_bare"],
        "reingest_vs_full_ingest": reingest["fraction_of_full_ingest"],
    }
    mach = mach | {"torch_threads": small.get("torch_threads"), "load_avg_end": round(os.getloadavg()[0], 2)}
    return {
        "mode": profile.name,
        "machine": mach,
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "total_seconds": round(seconds, 1),
        "step_seconds": dict(STEPS),
        "ingest": ing | {"corpus": "corpus/", "bytes": corpus["bytes"], "files_on_disk": corpus["files"]},
        "large_corpus": {
            "mb": large["mb"],
            "bytes": large["bytes"],
            "files": large["files"],
            "bytes_by_source": large.get("bytes_by_source", {}),
            "built_in": str(Path(large["folder"]).relative_to(REPO)) if Path(large["folder"]).is_relative_to(REPO) else large["folder"],
            "ingest": big_ing | {"units": big_ing["embedded_texts"] - big_ing["chunks"]},
            "embedding": embedding,
        },
        "scaling": scaling,
        "query": query,
        "reingest": reingest,
        "plain_llamaindex": plain,
        "ratios": ratios,
        "notes": NOTES,
    }


def _write_part(found: dict, out: Path, markdown, mode: str) -> int:
    """One part of the bench run alone (--only-serving, --only-runtimes): its JSON and Markdown, printed too."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(found, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(found, dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")))
    print(markdown(found, f"{mode} run"))
    print(f"wrote {out} and {out.with_suffix('.md')} in {found['total_seconds']:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    from ingest.runtime import prepare_environment

    prepare_environment()
    import signal

    # `timeout` or Ctrl-C: stop the running worker too (subprocess.run kills it on the way out)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a tiny run (~60 KB large corpus, few questions)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON (results.md is written beside it)")
    parser.add_argument("--large-mb", type=float, help="size of the large corpus in MB (full run: 5)")
    parser.add_argument("--cache", type=Path, default=CACHE_DIR, help="where the built corpora are kept")
    parser.add_argument("--only-runtimes", action="store_true",
                        help="only the encoder runtimes side by side (writes runtimes.json beside --out)")
    parser.add_argument("--only-serving", action="store_true",
                        help="only serving by corpus size: 1x, 16x, the large corpus, 10 copies of it (writes serving.json beside --out)")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else FULL
    if args.large_mb:
        profile = Profile(**(vars(profile) | {"large_bytes": int(args.large_mb * 1_000_000)}))
    t0 = time.perf_counter()
    mach = machine()
    timeout = profile.worker_timeout

    corpus_dir = REPO / "corpus"
    corpus = corpus_stats(corpus_dir)
    _log(f"{profile.name} run: building the large corpus ({profile.large_bytes / 1e6:.2f} MB) in {args.cache}")
    large_dir, large = build_large(profile.large_bytes, args.cache, log=_log)
    large = large | {"folder": str(large_dir)}
    _log(f"large corpus: {large['mb']} MB in {large['files']} files")
    subsets = []
    for factor in profile.scales:
        name = f"{factor:g}x"
        dest = args.cache / f"scale_{profile.name}" / name
        stats = build_subset(large_dir, dest, int(factor * corpus["bytes"]))
        subsets.append({"name": name, "factor": factor, "dir": str(dest), "bytes": stats["bytes"], "files": stats["files"]})

    runtime_dir = args.cache / f"runtimes_{profile.name}"
    runtime_corpus = build_subset(large_dir, runtime_dir, profile.runtime_bytes)

    global CODE, MODELS
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp_name:
        tmp = Path(tmp_name)
        CODE = tmp / "code"
        code = snapshot_code(CODE)
        corpus_dir = CODE / "corpus"
        _log(f"code under test copied to {CODE} (fingerprint {code['fingerprint']})")
        from . import serving

        points = [{"name": "1x", "factor": 1, "bytes": corpus["bytes"], "dir": str(corpus_dir)}]
        points += [dict(p) for p in subsets[-1:] if p["factor"] > 1]  # 16x in a full run
        points.append({"name": "large", "factor": round(large["bytes"] / corpus["bytes"], 1), "bytes": large["bytes"], "dir": str(large_dir)})
        if args.only_serving:
            found = serving.run(run_worker, tmp, points, None, profile.scaling_questions, timeout, _log)
            found |= {"mode": profile.name, "machine": mach | {"load_avg_end": round(os.getloadavg()[0], 2)},
                      "step_seconds": dict(STEPS), "code": code, "total_seconds": round(time.perf_counter() - t0, 1)}
            return _write_part(found, args.out.with_name("serving.json"), serving.markdown, profile.name)
        from . import runtimes as rt

        MODELS = tmp / "models"
        _log("0/7 ONNX exports of the embedding model (what a first use builds)")
        exports = run_worker("rt_export", {"models_dir": str(MODELS)}, tmp, timeout, "runtimes_export")
        if args.only_runtimes:
            _log(f"encoder runtimes on {runtime_corpus['bytes'] / 1000:.0f} KB")
            found = rt.run(run_worker, tmp, runtime_dir, MODELS, profile.runtime_sample, profile.query_limit, timeout, _log, exports)
            found |= {"mode": profile.name, "machine": mach, "step_seconds": dict(STEPS), "code": code,
                      "total_seconds": round(time.perf_counter() - t0, 1)}
            return _write_part(found, args.out.with_name("runtimes.json"), rt.markdown, profile.name)
        ours_store = tmp / "ours-corpus"
        _log("1/7 our pipeline on corpus/: ingest, queries, scaling")
        small = run_worker(
            "ours",
            {
                "store": str(ours_store),
                "corpus": [str(corpus_dir)],
                "query": {"limit": profile.query_limit, "concurrent_total": profile.concurrent_total, "clients": profile.clients},
                "scaling": {"subsets": subsets, "tmp": str(tmp), "questions": profile.scaling_questions},
            },
            tmp,
            timeout,
            "ours_corpus_query_scaling",
        )
        _log("2/7 cold start: python -m assistant ask")
        t = time.perf_counter()
        cold = cold_start(ours_store, profile.cold_runs, timeout)
        STEPS["cold_start"] = round(time.perf_counter() - t, 1)
        _log("3/7 plain llama-index pipeline: corpus/, queries, large corpus")
        plain = run_worker(
            "plain",
            {
                "store": str(tmp / "plain"),
                "corpus": str(corpus_dir),
                "large": str(large_dir),
                "query_limit": profile.query_limit,
                "ours_store": str(ours_store),
                "ingest_rounds": profile.ingest_rounds,
            },
            tmp,
            timeout,
            "plain_llamaindex",
        )
        large_store = tmp / "ours-large"
        _log(f"4/7 our pipeline on the large corpus ({large['mb']} MB)")
        big = run_worker(
            "ours",
            {
                "store": str(large_store),
                "corpus": [str(large_dir)],
                "bare_sample": profile.bare_sample,
                "scaling_point": {
                    "name": "large",
                    "factor": round(large["bytes"] / corpus["bytes"], 1),
                    "bytes": large["bytes"],
                    "questions": profile.scaling_questions,
                },
            },
            tmp,
            timeout,
            "ours_large",
        )
        _log("5/7 re-ingest of the unchanged large corpus")
        again = run_worker("reingest", {"store": str(large_store), "corpus": [str(large_dir)]}, tmp, timeout, "reingest")
        _log(f"6/7 encoder runtimes side by side ({runtime_corpus['bytes'] / 1000:.0f} KB ingested under each)")
        runtimes = rt.run(run_worker, tmp, runtime_dir, MODELS, profile.runtime_sample, profile.query_limit, timeout, _log, exports)
        _log("7/7 serving by corpus size: 1x, 16x, the large corpus (stores of steps 1 and 4), 10 copies of it")
        served = serving.run(run_worker, tmp, points, {"1x": ours_store, "large": large_store},
                             profile.scaling_questions, timeout, _log)
    code["chunker_version"] = small.get("chunker_version")
    results = assemble(profile, mach, corpus, large, small, cold, big, again, plain, time.perf_counter() - t0)
    results["code"] = code
    results["runtimes"] = runtimes
    results["serving"] = served
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    md_path = args.out.with_suffix(".md")
    md_path.write_text(markdown(results))
    print(table(results))
    print(f"\nwrote {args.out} and {md_path} in {results['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
