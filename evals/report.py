"""Write the JSON report, the Markdown summary and the per-kind chart; check the gate."""
from __future__ import annotations

import json
from pathlib import Path

COLUMNS = [
    ("accuracy", "acc"),
    ("f1", "F1"),
    ("recall@1", "R@1"),
    ("recall@5", "R@5"),
    ("recall@10", "R@10"),
    ("mrr", "MRR"),
    ("citation_validity", "cite valid"),
    ("citation_precision", "cite P"),
    ("citation_recall", "cite R"),
    ("abstain_unanswerable", "abstain (unans.)"),
    ("false_abstain", "false abstain"),
    ("fallback_rate", "fell back"),
    ("removed_share", "sentences removed"),
    ("latency_p50_ms", "p50 ms"),
    ("latency_p95_ms", "p95 ms"),
]


def _fmt(v) -> str:
    if v is None:
        return "–"
    return f"{v:.3f}" if isinstance(v, float) and v <= 1.0 else f"{v}"


def markdown(report: dict) -> str:
    lines = [
        f"# Eval report: set `{report['set']}`",
        "",
        f"{report['items']} single-turn items and {report['dialogues']} dialogues"
        + (f" ({report['drafts']} of them drafts)" if report.get("drafts") else "")
        + (f"; {report['review']} items marked for review, not scored" if report.get("review") else "")
        + f"; abstention threshold {report['abstain_threshold']}"
        + (f" ({report['threshold_source']})" if report.get("threshold_source") else "")
        + f"; wall time {report['wall_seconds']} s.",
        "",
    ]
    if report.get("headline"):
        lines += ["## Headline (full pipeline)", ""] + [f"- {line}" for line in headline(report)] + [""]
    lines += [
        "## Pipelines, all items",
        "",
        "| pipeline | " + " | ".join(label for _, label in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for name, summary in report["variants"].items():
        o = summary["overall"]
        lines.append(f"| {name} | " + " | ".join(_fmt(o[k]) for k, _ in COLUMNS) + " |")
    full = report["variants"].get("full") or next(iter(report["variants"].values()))
    lines += ["", "## Full pipeline, by kind", "", "| kind | n | " + " | ".join(lab for _, lab in COLUMNS[:11]) + " |"]
    lines.append("|---" * 13 + "|")
    for kind, agg in full["by_kind"].items():
        lines.append(f"| {kind} | {agg['n']} | " + " | ".join(_fmt(agg[k]) for k, _ in COLUMNS[:11]) + " |")
    if report.get("gate"):
        lines += ["", "## Gate", ""] + [f"- {g}" for g in report["gate"]] if report["gate"] else []
    return "\n".join(lines) + "\n"


def headline(report: dict) -> list[str]:
    """The set's own names for measures of the full pipeline ('passage hit 0.712 (citation_recall)')."""
    full = report["variants"].get("full") or next(iter(report["variants"].values()))
    return [
        f"{label} {_fmt(full['overall'].get(metric))} ({metric})" for label, metric in (report.get("headline") or {}).items()
    ]


def table(report: dict) -> str:
    """The terminal table: one line per pipeline."""
    keys = ["accuracy", "f1", "recall@5", "mrr", "citation_validity", "citation_recall",
            "abstain_unanswerable", "false_abstain", "latency_p50_ms"]
    head = f"{'pipeline':<9}" + "".join(f"{k[:12]:>14}" for k in keys)
    rows = [head]
    for name, summary in report["variants"].items():
        rows.append(f"{name:<9}" + "".join(f"{_fmt(summary['overall'][k]):>14}" for k in keys))
    return "\n".join(rows)


def chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    variants = list(report["variants"])
    kinds = list(report["variants"][variants[0]]["by_kind"])
    fig, axes = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    width = 0.8 / len(variants)
    x = np.arange(len(kinds))
    for ax, metric, label in ((axes[0], "accuracy", "answer accuracy"), (axes[1], "recall@5", "evidence recall@5")):
        for i, v in enumerate(variants):
            vals = [report["variants"][v]["by_kind"][k][metric] or 0.0 for k in kinds]
            ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=v)
        ax.set_ylabel(label)
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(ncol=len(variants), loc="upper right", fontsize=8)
    axes[1].set_xticks(x, kinds, rotation=20)
    fig.suptitle(f"Eval set '{report['set']}': per-kind accuracy and recall by pipeline")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(report: dict, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "latest.json", "md": out_dir / "latest.md", "png": out_dir / "latest.png"}
    paths["json"].write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["md"].write_text(markdown(report), encoding="utf-8")
    chart(report, paths["png"])
    return paths


def check_gate(report: dict, thresholds: dict) -> list[str]:
    """Failures as lines: 'full accuracy 0.71 < 0.75 (short by 0.04)'."""
    failures = []
    for variant, metrics in thresholds.items():
        if variant.startswith("_"):
            continue
        summary = report["variants"].get(variant)
        if summary is None:
            failures.append(f"{variant}: pipeline missing from the report")
            continue
        for metric, bound in metrics.items():
            value = summary["overall"].get(metric)
            if value is None:
                failures.append(f"{variant} {metric}: not measured")
            elif "min" in bound and value < bound["min"]:
                failures.append(f"{variant} {metric} {value:.3f} < {bound['min']} (short by {bound['min'] - value:.3f})")
            elif "max" in bound and value > bound["max"]:
                failures.append(f"{variant} {metric} {value:.3f} > {bound['max']} (over by {value - bound['max']:.3f})")
    return failures
