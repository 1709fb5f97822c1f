"""Matplotlib figures for the eval report (PNG files written next to report.md / report.html)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from slm.evaluation.scoring import METRICS, VariantScore
from slm.evaluation.stats import Difference

QUALITY = ["answer_f1", "answer_rouge_l", "answer_rate", "citation_accuracy", "abstention_precision",
           "abstention_recall", "closed_book_f1"]
RETRIEVAL = ["source_hit@1", "source_hit@5", "source_hit@10", "source_mrr", "anchor_hit@5", "anchor_mrr"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bars(path: Path, title: str, groups: Sequence[tuple[str, VariantScore]], metrics: Sequence[str]) -> Path | None:
    metrics = [m for m in metrics if any(s.estimates.get(m) and s.estimates[m].value is not None for _, s in groups)]
    if not groups or not metrics:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(min(13.0, 2.5 + 0.35 * len(metrics) * (len(groups) + 1)), 4.2))
    width = 0.8 / len(groups)
    for i, (label, score) in enumerate(groups):
        values, lows, highs = [], [], []
        for m in metrics:
            e = score.estimates.get(m)
            v = e.value if e and e.value is not None else 0.0
            values.append(v)
            lows.append(v - (e.low if e and e.low is not None else v))
            highs.append((e.high if e and e.high is not None else v) - v)
        xs = [j + (i - (len(groups) - 1) / 2) * width for j in range(len(metrics))]
        ax.bar(xs, values, width, yerr=[lows, highs], capsize=3, label=label)
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([METRICS[m].label for m in metrics], rotation=25, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (95% bootstrap CI)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def quality_plot(out: Path, scores: Sequence[VariantScore]) -> Path | None:
    groups = [(s.name, s) for s in scores if s.generator is not None]
    return _bars(out / "quality.png", "Answer quality by variant", groups, QUALITY)


def retrieval_plot(out: Path, scores: Sequence[VariantScore]) -> Path | None:
    seen: dict[str, VariantScore] = {}
    for s in scores:
        seen.setdefault(s.retrieval, s)
    return _bars(out / "retrieval.png", "Retrieval of the gold source by setting", list(seen.items()), RETRIEVAL)


def latency_plot(out: Path, scores: Sequence[VariantScore], totals: dict[str, list[float]]) -> Path | None:
    data = [(name, values) for name, values in totals.items() if values]
    if not data:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(data) + 2), 3.8))
    ax.boxplot([v for _, v in data], showfliers=True)
    ax.set_xticks(range(1, len(data) + 1))
    ax.set_xticklabels([n for n, _ in data], rotation=15, fontsize=8)
    ax.set_ylabel("seconds per question")
    ax.set_title("Total answer latency (retrieval + generation)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = out / "latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def comparison_plot(out: Path, diffs: Sequence[Difference]) -> Path | None:
    rows = [d for d in diffs if d.diff is not None and d.low is not None and d.high is not None]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(rows) + 1.4))
    ys = list(range(len(rows)))[::-1]
    for y, d in zip(ys, rows):
        color = "tab:green" if d.verdict == "real" and d.diff > 0 else "tab:red" if d.verdict == "real" else "tab:gray"
        ax.errorbar(d.diff, y, xerr=[[d.diff - d.low], [d.high - d.diff]], fmt="o", color=color, capsize=3)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(ys)
    ax.set_yticklabels([f"{d.a} − {d.b}: {METRICS[d.metric].label if d.metric in METRICS else d.metric}" for d in rows], fontsize=7)
    ax.set_xlabel("difference (paired bootstrap 95% CI)")
    ax.set_title("Variant vs baseline")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path = out / "comparisons.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
