"""The evals commands on a set of one's own: `new` drafts a set from an HTML corpus, `--set PATH`
ingests it into its own store and gates it, `from-feedback` turns votes into items, and
`calibrate --write` gives the collection a threshold the assistant then uses and names."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evals.__main__ import eval_store_path, main
from evals.dataset import load_set

REPO = Path(__file__).resolve().parent.parent

PAGES = {
    "kettles.html": """<html><body><h1>Kettles</h1>
<h2>Boiling point</h2><p>A <em>stovetop</em> kettle whistles when the water reaches 100 degrees Celsius at sea level.
It should then be taken off the heat.</p>
<h2>Descaling</h2><p>Limescale is removed by boiling a mixture of water and white vinegar for <b>fifteen minutes</b>.
Rinse twice afterwards.</p></body></html>""",
    "teapots.html": """<html><body><h1>Teapots</h1>
<h2>Warming the pot</h2><p>The pot is warmed with hot water before the leaves go in, so the brew keeps its heat.</p>
<h2>Steeping times</h2><p>Black tea steeps for four minutes, green tea for two minutes at a lower temperature.</p>
</body></html>""",
}


@pytest.fixture
def html_corpus(tmp_path) -> Path:
    corpus = tmp_path / "docs"
    corpus.mkdir()
    for name, html in PAGES.items():
        (corpus / name).write_text(html, encoding="utf-8")
    return corpus


def test_new_drafts_a_valid_set_from_html(html_corpus, tmp_path, capsys):
    out = tmp_path / "myset"
    assert main(["new", "--corpus", str(html_corpus), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"set.json", "README.md", "items.jsonl"}
    es = load_set(out)
    assert es.corpus_dir == html_corpus.resolve()
    assert len(es.items) == 4 and es.drafts == 4
    assert "4 drafts left" in es.status()
    boiling = next(i for i in es.items if "Boiling point" in i.question)
    # the evidence is the extracted text (no <em> tags), which the raw file does not hold
    assert boiling.evidence[0].startswith("A stovetop kettle whistles")
    assert boiling.evidence[0] not in PAGES["kettles.html"]
    # a second `new` does not overwrite the user's corrections
    assert main(["new", "--corpus", str(html_corpus), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err


def _write_set(path: Path, corpus: Path, thresholds: dict | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "set.json").write_text(json.dumps({"name": "tea", "corpus": os.path.relpath(corpus, path)}))
    items = [
        {"id": "f1", "kind": "fact", "question": "How long does black tea steep?", "answer": "four minutes",
         "accept": ["four minutes"], "evidence": ["Black tea steeps for four minutes"]},
        {"id": "f2", "kind": "fact", "question": "What removes limescale from a kettle?", "answer": "white vinegar",
         "accept": ["vinegar"], "evidence": ["boiling a mixture of water and white vinegar for fifteen minutes"]},
        {"id": "f3", "kind": "fact", "question": "At what temperature does a stovetop kettle whistle?", "answer": "100 degrees",
         "accept": ["100 degrees"], "evidence": ["A stovetop kettle whistles when the water reaches 100 degrees Celsius"]},
        {"id": "u1", "kind": "unanswerable", "question": "Which company manufactured the first electric kettle?",
         "answer": "", "accept": [], "evidence": []},
    ]
    (path / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    if thresholds is not None:
        (path / "thresholds.json").write_text(json.dumps(thresholds))
    return path


def test_set_path_with_html_corpus_runs_in_its_own_store_and_gates(html_corpus, tmp_path, capsys):
    set_dir = _write_set(tmp_path / "tea", html_corpus, {"full": {"accuracy": {"min": 1.01}}})
    reports = tmp_path / "reports"
    assert main(["--set", str(set_dir), "--out", str(reports)]) == 1
    err = capsys.readouterr().err
    assert "gate FAILED for set tea:" in err and "full accuracy" in err
    store = eval_store_path("tea")
    assert store.is_relative_to(Path(os.environ["RAG_DATA"])) and (store / "chroma.sqlite3").is_file()
    report = json.loads((reports / "tea" / "latest.json").read_text())
    assert report["set"] == "tea" and report["items"] == 4 and set(report["variants"]) == {"bm25", "dense", "hybrid", "full"}
    assert report["variants"]["full"]["overall"]["citation_validity"] == 1.0
    # --no-gate reports the failure, exits 0, and never claims the gate passed
    assert main(["--set", str(set_dir), "--out", str(reports), "--no-gate"]) == 0
    captured = capsys.readouterr()
    assert "not enforced: --no-gate" in captured.err and "0 chunks added" in captured.err  # incremental: nothing new
    assert "gate passed" not in captured.out


def _vote(vote: str, question: str, answer: str, quotes: list[str]) -> str:
    cites = [{"n": n, "source": "x.html", "quote": q, "start": 0, "end": len(q)} for n, q in enumerate(quotes, 1)]
    return json.dumps({"time": "2026-01-01T00:00:00+00:00", "vote": vote, "question": question, "answer": answer, "citations": cites})


def test_from_feedback_makes_items_and_review_items(html_corpus, tmp_path):
    fb = tmp_path / "feedback.jsonl"
    quote = "Black tea steeps for four minutes, green tea for two minutes at a lower temperature."
    fb.write_text("\n".join([
        _vote("up", "How long does black tea steep?", f"{quote} [1]", [quote]),
        _vote("down", "How hot must green tea water be?", "Black tea steeps for four minutes. [1]", [quote]),
        _vote("up", "Who invented the teapot?", "The documents do not say.", []),
        _vote("cleared", "Anything?", "", []),
        "{not json",
        _vote("up", "What does an old answer cite?", "Gone. [1]", ["A sentence the corpus no longer holds."]),
    ]) + "\n")
    out = tmp_path / "fbset"
    assert main(["from-feedback", str(fb), "--out", str(out), "--corpus", str(html_corpus)]) == 0
    es = load_set(out)
    by_q = {i.question: i for i in es.items}
    liked = by_q["How long does black tea steep?"]
    assert liked.evidence == (quote,) and liked.answer == quote
    assert all(a.lower() in quote.lower() for a in liked.accept) and liked.accept
    assert by_q["Who invented the teapot?"].kind == "unanswerable"
    assert len(es.items) == 2 and len(es.review) == 2  # the thumbs-down and the stale quote
    rows = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    down = next(r for r in rows if r["question"].startswith("How hot"))
    assert down["review"] is True and down["rejected_quotes"] == [quote]
    # running it again adds nothing twice
    assert main(["from-feedback", str(fb), "--out", str(out), "--corpus", str(html_corpus)]) == 0
    assert len((out / "items.jsonl").read_text().splitlines()) == 4


def test_calibrated_collection_threshold_is_used_named_and_kept(html_corpus, tmp_path, capsys, embedder):
    set_dir = _write_set(tmp_path / "tea", html_corpus)
    assert main(["calibrate", "--set", str(set_dir), "--write"]) == 0
    out = capsys.readouterr().out
    fitted = json.loads(out[: out.rindex("}") + 1])["abstain_threshold"]
    store = eval_store_path("tea")

    def ask() -> dict:
        proc = subprocess.run(
            [sys.executable, "-m", "assistant", "ask", "How long does black tea steep?", "--json", "--store", str(store)],
            capture_output=True, text=True, cwd=REPO, timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    answer = ask()
    assert answer["threshold"] == pytest.approx(fitted, abs=1e-4)
    assert answer["threshold_source"] == "collection 'corpus' (calibrated on set tea)"
    # an incremental ingest of a changed corpus keeps the calibration, and says it predates the change
    (html_corpus / "cups.html").write_text("<h1>Cups</h1><p>Porcelain cups keep tea warm longer than glass ones.</p>")
    from ingest.pipeline import run_ingest
    from ingest.settings import IngestSettings, StoreSettings

    run_ingest(IngestSettings(store=StoreSettings(path=store), corpus=(html_corpus,), progress=False), embedder, log=lambda s: None)
    answer = ask()
    assert answer["threshold"] == pytest.approx(fitted, abs=1e-4)
    assert "calibrated on set tea, before the corpus last changed" in answer["threshold_source"]


def test_probe_compares_the_ranker_with_the_cheap_score(html_corpus, tmp_path, capsys):
    """`probe` runs each question to the rank stage with the real ranker at weight 0: every
    re-scored unit carries p, gold units are found by the items' quotes, and the table and JSON
    say how often each scorer puts a gold unit first."""
    set_dir = _write_set(tmp_path / "tea", html_corpus)
    reports = tmp_path / "reports"
    assert main(["probe", "--set", str(set_dir), "--out", str(reports)]) == 0
    out = capsys.readouterr().out
    assert "| tea |" in out and "top-1 ranker" in out
    probe = json.loads((reports / "tea" / "probe.json").read_text())
    rows = {r["id"]: r for r in probe["rows"]}
    assert set(rows) == {"f1", "f2", "f3", "u1"} and not rows["u1"]["answerable"]
    for r in rows.values():
        assert r["p"] and len(r["p"]) == len(r["cheap"]) == len(r["gold"])
        assert all(0.0 <= p <= 1.0 for p in r["p"]) and r["cheap"] == sorted(r["cheap"], reverse=True)
    assert all(any(rows[i]["gold"]) for i in ("f1", "f2", "f3")) and not any(rows["u1"]["gold"])
    overall = probe["overall"]
    assert overall["answerable_with_gold_candidate"] == 3
    # on these three plain questions both scorers put the quoted sentence first
    assert overall["top1_cheap"] == 1.0 and overall["top1_ranker"] == 1.0
    assert overall["auc_confidence"] is not None and 0.0 <= overall["auc_ranker_max_p"] <= 1.0


def test_probe_summary_counts_what_each_scorer_puts_first():
    from evals.probe import ProbeRow, summarize

    rows = [
        ProbeRow("a", "fact", True, 0.6, (0.9, 0.7), (0.1, 0.9), (False, True)),  # the ranker is right
        ProbeRow("b", "fact", True, 0.5, (0.9, 0.2), (0.8, 0.1), (True, False)),  # both are right
        ProbeRow("u", "unanswerable", False, 0.55, (0.5,), (0.05,), (False,)),
    ]
    s = summarize(rows)
    assert s["answerable_with_gold_candidate"] == 2
    assert s["top1_cheap"] == 0.5 and s["top1_ranker"] == 1.0 and s["top1_cheap+0.15p"] == 0.5 and s["top1_cheap+0.5p"] == 1.0
    assert s["auc_confidence"] == 0.5 and s["auc_ranker_max_p"] == 1.0
