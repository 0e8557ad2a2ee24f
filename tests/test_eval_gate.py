"""The regression gate runs in `make test`: the eval set through every pipeline variant."""
from __future__ import annotations

import json
import random
from pathlib import Path

from assistant.settings import Settings
from evals import report as rep
from evals.dataset import load_set
from evals.runner import SMOOTHING, balanced_accuracy, best_threshold, run

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


def test_smoothed_fit_cross_validates_better_than_the_hard_step():
    """Few unanswerable items: the hard step's threshold lands in the gap beside one of them and
    transfers worse to the other half than the smoothed fit's (answerable and unanswerable
    confidences drawn from overlapping normals, as the eval sets' are)."""
    def cross_validated(conf, width):
        folds = [conf[0::2], conf[1::2]]
        return sum(balanced_accuracy(folds[1 - i], best_threshold(folds[i], width)[0]) for i in (0, 1)) / 2

    hard = smooth = 0.0
    for seed in range(40):
        rng = random.Random(seed)
        conf = [(rng.gauss(0.65, 0.12), True) for _ in range(160)] + [(rng.gauss(0.42, 0.12), False) for _ in range(20)]
        rng.shuffle(conf)
        hard += cross_validated(conf, 0.0)
        smooth += cross_validated(conf, SMOOTHING)
    assert smooth > hard + 0.1  # summed over 40 sets: more than 0.0025 each on average
