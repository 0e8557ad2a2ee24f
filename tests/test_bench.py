"""`python -m bench --quick` end to end: every section present, every figure a positive number.

Behaviour only — no wall-time thresholds: timings on a shared machine are not a test.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SECTIONS = ("machine", "when", "ingest", "large_corpus", "scaling", "query", "reingest", "plain_llamaindex", "ratios")


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.exists()
    return out, json.loads(out.read_text()), proc.stdout


pytestmark = pytest.mark.timeout(1600)


def test_every_section_is_there(results):
    _, r, _ = results
    for section in SECTIONS:
        assert section in r, section
    assert r["mode"] == "quick"
    assert r["machine"]["cores"] >= 1
    assert r["machine"]["python"].startswith("3.")
    assert r["machine"]["torch"]


def test_ingest_figures(results):
    _, r, _ = results
    ing = r["ingest"]
    for key in ("wall_seconds", "ingest_seconds", "chunks", "chunks_per_s", "embedded_tokens", "tokens_per_s", "peak_rss_mb"):
        assert _positive(ing[key]), (key, ing[key])
    assert ing["wall_seconds"] >= ing["ingest_seconds"]
    assert ing["embedded_texts"] >= ing["chunks"]  # chunks and their sentence units


def test_large_corpus_is_real_text_on_disk(results):
    _, r, _ = results
    lc = r["large_corpus"]
    assert _positive(lc["mb"]) and _positive(lc["files"])
    folder = REPO / lc["built_in"] if not Path(lc["built_in"]).is_absolute() else Path(lc["built_in"])
    files = sorted(p for p in folder.iterdir() if p.suffix in (".md", ".txt"))
    assert len(files) == lc["files"]
    for p in files[:20]:
        p.read_text(encoding="utf-8")  # UTF-8 clean
    big = lc["ingest"]
    for key in ("ingest_seconds", "wall_seconds", "chunks_per_s", "tokens_per_s", "peak_rss_mb", "embed_seconds"):
        assert _positive(big[key]), (key, big[key])
    assert 0 < big["embed_share"] <= 1
    emb = lc["embedding"]
    keys = ["pipeline_embed_tokens_per_s", "bare_tokens_per_s", "pipeline_embed_vs_bare", "embedder_tokens_per_s"]
    keys += ["pipeline_embed_vs_bare_same_precision"] + (["bare_bf16_tokens_per_s"] if emb["embedder_bf16"] else [])
    for key in keys:
        assert _positive(emb[key]), (key, emb[key])
    assert "bench/corpus_cache/" in (REPO / ".gitignore").read_text()


def test_scaling_rows(results):
    _, r, _ = results
    rows = r["scaling"]
    assert len(rows) == 4  # three subsets of the large corpus, then the large corpus itself
    assert rows[-1]["name"] == "large" and rows[-1]["chunks"] == r["large_corpus"]["ingest"]["chunks"]
    assert [row["bytes"] for row in rows] == sorted(row["bytes"] for row in rows)
    for row in rows:
        for key in ("bytes", "chunks", "ingest_seconds", "ms_per_chunk"):
            assert _positive(row[key]), (key, row)
        assert _positive(row["retrieve"]["p50_ms"])


def test_query_figures(results):
    _, r, _ = results
    q = r["query"]
    for part in ("retrieve", "ask"):
        assert _positive(q[part]["p50_ms"]) and q[part]["p95_ms"] >= q[part]["p50_ms"]
    assert _positive(q["cold_start"]["seconds"])
    assert _positive(q["concurrent"]["qps"]) and q["concurrent"]["clients"] == 4
    assert 0 < q["recall@5"] <= 1


def test_reingest_embeds_nothing(results):
    _, r, _ = results
    re_ = r["reingest"]
    assert re_["embedded_texts"] == 0 and re_["chunks"] == 0
    assert re_["unchanged_chunks"] == r["large_corpus"]["ingest"]["chunks"]
    assert _positive(re_["ingest_seconds"]) and _positive(re_["fraction_of_full_ingest"])


def test_plain_llamaindex_and_ratios(results):
    _, r, _ = results
    pl = r["plain_llamaindex"]
    assert _positive(pl["corpus"]["nodes"]) and _positive(pl["large"]["nodes"])
    assert _positive(pl["query"]["retrieve"]["p50_ms"])
    assert 0 < pl["query"]["recall@5"] <= 1
    for key in ("ingest_time_large", "ingest_time_corpus", "retrieve_latency_p50", "recall@5"):
        assert _positive(r["ratios"][key]), (key, r["ratios"][key])


def test_table_and_markdown(results):
    out, _, stdout = results
    assert "ratios ours/plain" in stdout
    md = out.with_suffix(".md").read_text()
    assert md.count("\n|") >= 20 and "| Area | Measure | Value |" in md


def test_encoder_runtimes_side_by_side(results):
    _, r, stdout = results
    rt = r["runtimes"]
    assert rt["cpu"] is not None and isinstance(rt["flags"], list)  # the CPU and its flags are named
    for engine, b in rt["bare"]["bare"].items():
        assert _positive(b["tokens_per_s"]) and _positive(b["vs_torch_fp32"]), engine
        assert 0.9 < b["min_cosine_to_torch_fp32"] <= 1.0001, engine
    assert {"torch", "onnx", "auto"} <= set(rt["summary"])
    for engine, s in rt["summary"].items():
        for key in ("ingest_tokens_per_s", "ingest_vs_torch_fp32", "ingest_kb_per_s", "pipeline_embed_vs_bare_same_runtime"):
            assert _positive(s[key]), (engine, key, s[key])
    assert "encoder runtimes" in stdout


def test_serving_by_corpus_size_and_the_rankers_share(results):
    _, r, stdout = results
    points = r["serving"]["points"]
    served, behind = points[-2], points[-1]
    assert [p["name"] for p in points][0] == "1x" and served["name"].endswith("(copies)")
    assert [p["chunks"] for p in points] == sorted(p["chunks"] for p in points)
    assert served["chunks"] == 10 * points[-3]["chunks"]  # ten copies of the largest store
    # the same copies behind `chroma run`: the vectors live in the server, not the serving process
    assert behind["name"].endswith("Chroma server") and behind["chunks"] == served["chunks"]
    assert behind["rss_mb_after_questions"] < served["rss_mb_after_questions"] and _positive(behind["server_rss_mb"])
    for p in points:
        for key in ("startup_seconds", "rss_mb_after_questions", "peak_rss_mb"):
            assert _positive(p[key]), (p["name"], key)
        for part in ("retrieve", "ask"):
            assert _positive(p[part]["p50_ms"]) and p[part]["p95_ms"] >= p[part]["p50_ms"], (p["name"], part)
    ranked = [p["with_ranker"] for p in points if "with_ranker" in p]
    assert len(ranked) == 2  # at the smallest and the largest corpus ingested for real
    for w in ranked:
        assert 0 < w["ranker_share"] < 1 and _positive(w["ranker"]["p50_ms"]) and _positive(w["ask"]["p50_ms"])
    assert "serving by corpus size" in stdout and "% of ask" in stdout
