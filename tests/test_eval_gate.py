"""The regression gate runs in `make test`: the eval set through every pipeline variant."""
from __future__ import annotations

import json
from pathlib import Path

from assistant.settings import Settings
from evals import report as rep
from evals.dataset import load_set
from evals.runner import best_threshold, run

THRESHOLDS = Path(__file__).resolve().parent.parent / "evals" / "sets" / "rsp" / "thresholds.json"


def test_eval_gate(corpus_store, embedder, tmp_path):
    es = load_set("rsp")
    report = run(es, Settings(store=corpus_store.store, corpus_dirs=(es.corpus_dir,)), embedder=embedder)
    failures = rep.check_gate(report, json.loads(THRESHOLDS.read_text()))
    paths = rep.write(report, tmp_path)
    assert all(p.exists() for p in paths.values())
    assert not failures, "eval gate failed:\n" + "\n".join(failures)


def test_gate_names_the_metric_and_the_shortfall():
    report = {"variants": {"full": {"overall": {"accuracy": 0.5, "false_abstain": 0.4}}}}
    failures = rep.check_gate(report, {"full": {"accuracy": {"min": 0.6}, "false_abstain": {"max": 0.3}}})
    assert failures == [
        "full accuracy 0.500 < 0.6 (short by 0.100)",
        "full false_abstain 0.400 > 0.3 (over by 0.100)",
    ]


def test_threshold_calibration_separates_the_classes():
    conf = [(0.9, True), (0.8, True), (0.7, True), (0.3, False), (0.2, False)]
    threshold, acc = best_threshold(conf)
    assert 0.3 < threshold < 0.7 and acc == 1.0
