"""The results as a terminal table and as a short Markdown table for the README."""
from __future__ import annotations


def _f(value, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:,.{digits}f}"
    else:
        text = f"{value:,}"
    return text + unit


def _x(value) -> str:
    return "n/a" if value is None else f"{value:.2f}×"


def rows(r: dict) -> list[tuple[str, str, str]]:
    """(section, measure, value) for every figure worth a line."""
    ing, lc, q, re_, pl, ra = r["ingest"], r["large_corpus"], r["query"], r["reingest"], r["plain_llamaindex"], r["ratios"]
    big, emb = lc["ingest"], lc["embedding"]
    side = pl["side_by_side"]
    out = [
        ("ingest corpus/", "size", f"{ing['bytes'] / 1000:.1f} KB, {ing['files']} file(s), {ing['chunks']} chunks, {ing['embedded_texts']} texts"),
        ("ingest corpus/", "wall (process start to done)", _f(ing["wall_seconds"], 2, " s")),
        ("ingest corpus/", "pipeline (model loaded)", _f(ing["ingest_seconds"], 2, " s")),
        ("ingest corpus/", "chunks/s · tokens/s", f"{_f(ing['chunks_per_s'])} · {_f(ing['tokens_per_s'], 0)}"),
        ("ingest corpus/", "peak RSS", _f(ing["peak_rss_mb"], 0, " MB")),
        ("large corpus", "size", f"{lc['mb']:.2f} MB, {lc['files']} files, {big['chunks']:,} chunks, {big['embedded_texts']:,} texts"),
        ("large corpus", "ingest wall · pipeline", f"{_f(big['wall_seconds'], 1, ' s')} · {_f(big['ingest_seconds'], 1, ' s')}"),
        ("large corpus", "chunks/s · tokens/s", f"{_f(big['chunks_per_s'])} · {_f(big['tokens_per_s'], 0)}"),
        ("large corpus", "peak RSS", _f(big["peak_rss_mb"], 0, " MB")),
        ("large corpus", "share of time embedding", f"{100 * big['embed_share']:.1f} %"),
        ("large corpus", "embed rate: pipeline · bare model", f"{_f(emb['pipeline_embed_tokens_per_s'], 0)} · {_f(emb['bare_tokens_per_s'], 0)} tokens/s"),
        ("large corpus", "pipeline / bare (embed phase · end to end)", f"{_x(emb['pipeline_embed_vs_bare'])} · {_x(emb['pipeline_end_to_end_vs_bare'])}"),
        ("large corpus", "pipeline / bare in bf16 too (overhead)", _x(emb.get("pipeline_embed_vs_bare_same_precision"))),
        ("large corpus", "per CPU-second: pipeline / bare", _x(emb["pipeline_embed_vs_bare_per_cpu_s"])),
    ]
    for s in r["scaling"]:
        out.append(
            (
                "scaling",
                (s["name"] if s["name"].endswith("x") else f"{s['name']} = {s['factor']:g}x")
                + f" ({s['bytes'] / 1000:,.0f} KB, {s['chunks']:,} chunks)",
                f"{_f(s['ms_per_chunk'], 1)} ms/chunk · retrieve p50 {_f(s['retrieve']['p50_ms'], 1)} ms",
            )
        )
    cold = q["cold_start"]
    out += [
        ("query corpus/", "retrieve p50 · p95", f"{_f(q['retrieve']['p50_ms'], 1)} · {_f(q['retrieve']['p95_ms'], 1)} ms"),
        ("query corpus/", "ask p50 · p95", f"{_f(q['ask']['p50_ms'], 1)} · {_f(q['ask']['p95_ms'], 1)} ms"),
        ("query corpus/", "cold start to first answer", _f(cold["seconds"], 2, " s")),
        ("query corpus/", f"QPS, {q['concurrent']['clients']} clients · 1 client", f"{_f(q['concurrent']['qps'])} · {_f(q['single_client_qps'])}"),
        ("query corpus/", "recall@5 (ours · plain)", f"{q['recall@5']:.3f} · {pl['query']['recall@5']:.3f}"),
        ("re-ingest", "unchanged large corpus", f"{_f(re_['ingest_seconds'], 1, ' s')} ({100 * (re_['fraction_of_full_ingest'] or 0):.1f} % of full; {re_['embedded_texts']} texts re-embedded)"),
        ("plain llama-index", "nodes corpus/ · large", f"{pl['corpus']['nodes']} · {pl.get('large', {}).get('nodes', 'n/a')}"),
        ("plain llama-index", "large ingest (ours · plain)", f"{_f(big['ingest_seconds'], 1, ' s')} · {_f(pl.get('large', {}).get('ingest_seconds'), 1, ' s')}"),
        ("plain llama-index", "node text past the 256-token window", f"{100 * pl.get('large', {}).get('truncated_share', 0):.0f} % (never embedded)"),
        ("plain llama-index", "tokens embedded, large (ours · plain)", f"{_f(big.get('embedded_tokens'))} · {_f(pl.get('large', {}).get('node_tokens_embedded'))}"),
        ("plain llama-index", f"corpus/ ingest, median of {side['ingest_corpus']['rounds']} (ours · plain)", f"{_f(side['ingest_corpus']['ours_median_seconds'], 2, ' s')} · {_f(side['ingest_corpus']['plain_median_seconds'], 2, ' s')}"),
        ("plain llama-index", "retrieve p50, interleaved (ours · plain top-10)", f"{_f(side['ours_retrieve']['p50_ms'], 1)} · {_f(side['plain_retrieve']['p50_ms'], 1)} ms"),
        ("ratios ours/plain", "ingest time large · corpus/", f"{_x(ra['ingest_time_large'])} · {_x(ra['ingest_time_corpus'])}"),
        ("ratios ours/plain", "ingest CPU time large · time per embedded token", f"{_x(ra['ingest_cpu_large'])} · {_x(ra['ingest_time_per_embedded_token_large'])}"),
        ("ratios ours/plain", "retrieve latency p50 · p95", f"{_x(ra['retrieve_latency_p50'])} · {_x(ra['retrieve_latency_p95'])}"),
        ("ratios ours/plain", "recall@5 · recall@1", f"{_x(ra['recall@5'])} · {_x(ra['recall@1'])}"),
        ("ratios ours/plain", "top-5 context size (chars)", _x(ra["top5_context_chars"])),
    ]
    if r.get("runtimes"):
        from .runtimes import rows as runtime_rows

        out += runtime_rows(r["runtimes"])
    if r.get("serving"):
        from .serving import rows as serving_rows

        out += serving_rows(r["serving"])
    return out


def _code_line(r: dict) -> str:
    code = r.get("code") or {}
    return (
        f"code under test: fingerprint {code.get('fingerprint', '?')} of {', '.join(code.get('covers', []))}; "
        f"chunker v{code.get('chunker_version', '?')}"
    )


def table(r: dict) -> str:
    m = r["machine"]
    lines = [
        f"Benchmarks ({r['mode']}) — {m['cores']} cores, Python {m['python']}, torch {m['torch']}, "
        f"load avg {m['load_avg_start']} → {m['load_avg_end']}; total {r['total_seconds']:.0f} s",
        _code_line(r),
        "",
    ]
    data = rows(r)
    w0 = max(len(s) for s, _, _ in data)
    w1 = max(len(k) for _, k, _ in data)
    last = None
    for section, key, value in data:
        label = section if section != last else ""
        last = section
        lines.append(f"{label:<{w0}}  {key:<{w1}}  {value}")
    return "\n".join(lines)


def markdown(r: dict) -> str:
    m = r["machine"]
    head = (
        f"Benchmarks ({r['mode']} run, {r['when']}): {m['cores']} CPU cores ({m['cpu'] or 'unknown CPU'}), "
        f"Python {m['python']}, torch {m['torch']}; load average {m['load_avg_start']} at start. "
        "Produced by `make bench`; figures in `bench/results.json`; "
        + _code_line(r)
        + ".\n\n"
    )
    lines = ["| Area | Measure | Value |", "|---|---|---|"]
    last = None
    for section, key, value in rows(r):
        lines.append(f"| {section if section != last else ''} | {key} | {value} |")
        last = section
    return head + "\n".join(lines) + "\n"
