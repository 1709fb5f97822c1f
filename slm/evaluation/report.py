"""Write what a run found: summary.json (what retraining gates on), per_question.jsonl, report.md, report.html.

Both human reports render the same tables; every text that comes from questions or documents is
escaped (Markdown table cells and HTML), and a question whose gold source the audience may not see
shows no gold answer or source.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from slm.evaluation.records import AnswerRecord, EvalQuestion
from slm.evaluation.runner import EvalRun
from slm.evaluation.scoring import HEADLINE, LATENCY, METRICS, VariantScore
from slm.evaluation.stats import Difference, Estimate

SCHEMA = "slm.eval/1"
RESTRICTED = "(restricted)"
MAX_CELL = 220


@dataclass(frozen=True)
class RunContext:
    """What the numbers were measured on: knowledge base, question files, settings, machine."""

    kb: dict[str, Any]
    qa_files: list[dict[str, Any]]
    bad_lines: list[str]
    settings: dict[str, Any]
    machine: dict[str, Any]
    command: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def fmt_estimate(e: Estimate | None) -> str:
    if e is None or e.value is None:
        return "n/a"
    return f"{e.value:.3f} [{_num(e.low)}, {_num(e.high)}] n={e.n}"


def _clean(value: float | None) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), 6)


# ---------------------------------------------------------------- summary.json


def build_summary(run: EvalRun, scores: Sequence[VariantScore], diffs: Sequence[Difference], ctx: RunContext,
                  baseline: str | None) -> dict[str, Any]:
    qs = run.questions
    variants: dict[str, Any] = {}
    for s in scores:
        identity = run.identities.get(s.name)
        variants[s.name] = {
            "generator": s.generator,
            "retrieval": s.retrieval,
            "model": asdict(identity) if identity else None,
            "metrics": {m: _clean(e.value) for m, e in s.estimates.items()},
            "ci95": {m: [_clean(e.low), _clean(e.high)] for m, e in s.estimates.items()},
            "n": {m: e.n for m, e in s.estimates.items()},
            "latency": {k: _clean(v) for k, v in s.latency.items()},
            "counts": s.counts,
        }
    return {
        "schema": SCHEMA,
        "created": datetime.fromtimestamp(run.started or 0, timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(run.wall_s, 2),
        "phase_seconds": {k: round(v, 2) for k, v in run.seconds.items()},
        "command": ctx.command,
        "machine": ctx.machine,
        "kb": ctx.kb,
        "qa": {
            "files": ctx.qa_files,
            "bad_lines": ctx.bad_lines,
            "questions": len(qs),
            "answerable": sum(q.answerable for q in qs),
            "unanswerable": sum(not q.answerable for q in qs),
            "gold_hidden_from_audience": sum(q.gold_hidden for q in qs),
            # which answer-overlap level scored how many gold answers (characters for Chinese ones)
            "answer_overlap": overlap_levels(q.example.answer for q in qs if q.example.answer),
        },
        "audience": sorted(run.audiences) if run.audiences is not None else None,
        "settings": ctx.settings,
        "baseline": baseline,
        "variants": variants,
        "comparisons": [
            {
                "metric": d.metric, "a": d.a, "b": d.b, "diff": _clean(d.diff),
                "ci95": [_clean(d.low), _clean(d.high)], "p_value": _clean(d.p_value), "n": d.n,
                "verdict": d.verdict,
            }
            for d in diffs
        ],
        "notes": [*ctx.notes, *run.notes],
    }


# ---------------------------------------------------------------- per_question.jsonl


def _gold(q: EvalQuestion) -> dict[str, Any]:
    if q.gold_hidden:
        return {"gold_source": RESTRICTED, "gold_anchor": None, "gold_answer": RESTRICTED}
    return {"gold_source": q.example.source, "gold_anchor": q.example.anchor}


def per_question_rows(run: EvalRun) -> list[dict[str, Any]]:
    """One row per question and variant (retrieval-only variants: ranks and top hits only)."""
    rows: list[dict[str, Any]] = []
    for spec in run.specs:
        retrieved = run.retrieval.get(spec.retrieval.label, {})
        answers = run.answers.get(spec.name, {})
        for q in run.questions:
            r = retrieved.get(q.id)
            row: dict[str, Any] = {
                "id": q.id, "variant": spec.name, "question": q.example.question,
                "answerable": q.answerable, **_gold(q),
                "source_rank": r.source_rank if r else None,
                "anchor_rank": r.anchor_rank if r else None,
                "top_hits": [h.location for h in r.ranked[:5]] if r else [],
            }
            a: AnswerRecord | None = answers.get(q.id)
            if a is not None:
                row.update({
                    "answer": a.text, "abstained": a.abstained, "uncited": a.uncited,
                    "citations": [c.location for c in a.citations],
                    "f1": _clean(a.f1), "rouge_l": _clean(a.rouge_l),
                    "first_token_s": _clean(a.first_token_s), "total_s": _clean(a.total_s),
                    "generated_tokens": a.generated_tokens,
                    "closed_book_answer": a.closed_book_text, "closed_book_f1": _clean(a.closed_book_f1),
                    "error": a.error,
                })
            rows.append(row)
    return rows


# ---------------------------------------------------------------- tables


def _fusion_note(fusion: dict[str, Any]) -> str:
    weights = f"dense {fusion.get('dense_weight', 1.0):g}, bm25 {fusion.get('bm25_weight', 1.0):g}"
    if not fusion.get("calibrated"):
        return f"equal-weight RRF ({weights}); `slm calibrate-fusion` tunes it for this KB"
    held = fusion.get("heldout") or {}
    scores = ", ".join(f"{k} {v.get('mrr_at_10', 0):.3f}" for k, v in held.items())
    return f"calibrated ({weights}) on {fusion.get('source')}; held-out MRR@10 ({fusion.get('heldout_count')} q): {scores}"


def build_tables(run: EvalRun, summary: dict[str, Any], scores: Sequence[VariantScore],
                 diffs: Sequence[Difference]) -> list[Table]:
    gen = [s for s in scores if s.generator is not None]
    settings_seen: dict[str, VariantScore] = {}
    for s in scores:
        settings_seen.setdefault(s.retrieval, s)
    qa, kb = summary["qa"], summary["kb"]
    overview = Table("Overview", ["", ""], [
        ["questions", f"{qa['questions']} ({qa['answerable']} answerable, {qa['unanswerable']} unanswerable)"],
        ["question files", ", ".join(f"{Path(f['path']).name} ({f['loaded']} loaded, {f['bad']} bad)" for f in qa["files"])
         + (f"; first {summary['settings']['limit_per_file']} of each used" if summary["settings"].get("limit_per_file") else "")],
        ["knowledge base", f"{kb.get('path')} — {kb.get('documents')} documents, {kb.get('chunks')} chunks, embedder {kb.get('embedder')}"],
        ["audience", ", ".join(summary["audience"]) if summary["audience"] is not None else "all (trusted)"],
        ["answer F1 / ROUGE-L", _overlap_note(qa.get("answer_overlap") or {})],
        ["generation", f"{(summary['settings'].get('generation') or {}).get('backend', 'transformers')} backend, "
                       f"max_new_tokens={summary['settings'].get('max_new_tokens')}, greedy"
                       + _abstention_gate_note(summary['settings'].get('generation') or {})],
        ["hybrid fusion", _fusion_note(summary["settings"].get("fusion") or {})],
        ["wall time", f"{summary['wall_seconds']:.0f} s ({summary['wall_seconds'] / 60:.1f} min)"],
        ["machine", f"{summary['machine'].get('platform')}, {summary['machine'].get('cpu_count')} CPU(s)"],
        ["date", summary["created"]],
    ])
    tables = [overview]
    retrieval_metrics = [m for m in METRICS if METRICS[m].group == "retrieval"]
    tables.append(Table(
        "Retrieval (gold source, and gold source#anchor)",
        ["setting", *[METRICS[m].label for m in retrieval_metrics]],
        [[label, *[fmt_estimate(s.estimates.get(m)) for m in retrieval_metrics]] for label, s in settings_seen.items()],
        "Computed once per retrieval setting over answerable questions with a gold source; value [95% CI] n.",
    ))
    if gen:
        groups = [
            ("Answers", ["answer_f1", "answer_rouge_l", "answer_f1_answered", "answer_rate", "closed_book_f1"]),
            ("Citations and abstention", ["citation_accuracy", "citation_precision", "uncited_rate",
                                          "abstention_precision", "abstention_recall"]),
        ]
        for title, metrics in groups:
            tables.append(Table(
                title, ["variant", "model", *[METRICS[m].label for m in metrics]],
                [[s.name, _model_label(run, s.name), *[fmt_estimate(s.estimates.get(m)) for m in metrics]] for s in gen],
                "; ".join(f"{METRICS[m].label}: {METRICS[m].description}" for m in metrics),
            ))
        tables.append(Table(
            "Latency", ["variant", "first token p50", "first token p95", "total p50", "total p95", "tokens/s", "retrieval p50"],
            [[s.name, *[_num(s.latency.get(k), 2) for k in LATENCY]] for s in gen],
            "Seconds per question, retrieval included; tokens/s over generation time (prompt included).",
        ))
    if diffs:
        tables.append(Table(
            "Differences vs the baseline (paired bootstrap over the same questions)",
            ["variant", "baseline", "metric", "difference", "95% CI", "p", "verdict"],
            [[d.a, d.b, METRICS[d.metric].label if d.metric in METRICS else d.metric, _signed(d.diff),
              f"[{_signed(d.low)}, {_signed(d.high)}]", _p(d.p_value, summary["settings"].get("resamples")),
              d.verdict] for d in diffs],
            "'real': the 95% interval of the difference excludes zero; 'noise': it does not. "
            "Metrics identical on every question are left out.",
        ))
    shown = _example_variant(gen)
    examples = _example_rows(run, shown)
    if examples and shown is not None:
        tables.append(Table(
            f"Examples ({shown.name}): the weakest answers and answered unanswerables",
            ["question", "gold", "answer", "F1", "top hit"], examples,
            "All questions and variants: per_question.jsonl.",
        ))
    return tables


def _p(value: float | None, resamples: int | None) -> str:
    if value is None:
        return "n/a"
    if value == 0 and resamples:
        return f"<{1 / resamples:.4f}"
    return f"{value:.3f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def _model_label(run: EvalRun, variant: str) -> str:
    ident = run.identities.get(variant)
    if ident is None:
        return ""
    return f"{ident.model} + {ident.adapter}" if ident.adapter else ident.model


def _truncate(text: str, limit: int = MAX_CELL) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _example_variant(gen: Sequence[VariantScore]) -> VariantScore | None:
    """The variant whose answers the examples show: `current` if run, else the last model, else the last."""
    models = [s for s in gen if s.generator not in (None, "extractive")]
    current = [s for s in models if s.generator == "current"]
    return (current or models or list(gen) or [None])[-1]


def _example_rows(run: EvalRun, shown: VariantScore | None, limit: int = 8) -> list[list[str]]:
    if shown is None:
        return []
    answers = run.answers.get(shown.name, {})
    retrieved = run.retrieval.get(shown.retrieval, {})
    weak = sorted((q for q in run.questions if q.answerable and q.id in answers and answers[q.id].f1 is not None),
                  key=lambda q: answers[q.id].f1)[: limit // 2]
    wrong = [q for q in run.questions if not q.answerable and q.id in answers and not answers[q.id].abstained][: limit // 2]
    rows = []
    for q in [*weak, *wrong]:
        a = answers[q.id]
        r = retrieved.get(q.id)
        gold = RESTRICTED if q.gold_hidden else (
            f"{q.example.source}#{q.example.anchor}" if q.example.anchor and q.example.source
            else (q.example.source or ("(no source given)" if q.answerable else "(unanswerable)")))
        rows.append([_truncate(q.example.question, 120), gold, _truncate(a.text), _num(a.f1),
                     r.ranked[0].location if r and r.ranked else ""])
    return rows


# ---------------------------------------------------------------- rendering


def _md_cell(text: str) -> str:
    text = " ".join(str(text).split()).replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("](", "]\\(")


def render_markdown(title: str, tables: Sequence[Table], images: Sequence[Path], notes: Sequence[str],
                    bad_lines: Sequence[str], command: str) -> str:
    out = [f"# {_md_cell(title)}", ""]
    if command:
        out += ["```", command.replace("```", "'''"), "```", ""]
    for table in tables:
        out += [f"## {table.title}", ""]
        out.append("| " + " | ".join(_md_cell(h) for h in table.headers) + " |")
        out.append("|" + "---|" * len(table.headers))
        out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
        if table.note:
            out += ["", f"_{_md_cell(table.note)}_"]
        out.append("")
    if images:
        out += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in images] + [""]
    if notes:
        out += ["## Notes", ""] + [f"- {_md_cell(n)}" for n in notes] + [""]
    if bad_lines:
        out += [f"## Skipped lines ({len(bad_lines)})", ""] + [f"- {_md_cell(b)}" for b in bad_lines[:50]] + [""]
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.85em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} .note{color:#666;font-size:0.85em} img{max-width:100%;margin:0.5em 0}
pre{background:#f6f6f6;padding:0.6em;overflow-x:auto}
"""


def render_html(title: str, tables: Sequence[Table], images: Sequence[Path], notes: Sequence[str],
                bad_lines: Sequence[str], command: str) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{e(title)}</title>",
           f"<style>{_CSS}</style></head><body>", f"<h1>{e(title)}</h1>"]
    if command:
        out.append(f"<pre>{e(command)}</pre>")
    for table in tables:
        out.append(f"<h2>{e(table.title)}</h2><table><thead><tr>")
        out += [f"<th>{e(h)}</th>" for h in table.headers]
        out.append("</tr></thead><tbody>")
        for row in table.rows:
            out.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>")
        out.append("</tbody></table>")
        if table.note:
            out.append(f'<p class="note">{e(table.note)}</p>')
    if images:
        out.append("<h2>Plots</h2>")
        out += [f'<img src="{e(p.name)}" alt="{e(p.stem)}">' for p in images]
    if notes:
        out.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    if bad_lines:
        out.append(f"<h2>Skipped lines ({len(bad_lines)})</h2><ul>"
                   + "".join(f"<li>{e(b)}</li>" for b in bad_lines[:50]) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out)


@dataclass(frozen=True)
class ReportFiles:
    summary: Path
    per_question: Path
    markdown: Path
    html: Path
    images: tuple[Path, ...]


def write_reports(out: Path, run: EvalRun, scores: Sequence[VariantScore], diffs: Sequence[Difference],
                  ctx: RunContext, baseline: str | None, *, plots: bool = True) -> ReportFiles:
    from slm.evaluation import plots as figures

    out.mkdir(parents=True, exist_ok=True)
    summary = build_summary(run, scores, diffs, ctx, baseline)
    summary_path = out / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    pq_path = out / "per_question.jsonl"
    with pq_path.open("w", encoding="utf-8") as handle:
        for row in per_question_rows(run):
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    images: list[Path] = []
    if plots:
        totals = {name: [r.total_s for r in recs.values() if r.error is None] for name, recs in run.answers.items()}
        for made in (figures.quality_plot(out, scores), figures.retrieval_plot(out, scores),
                     figures.comparison_plot(out, diffs), figures.latency_plot(out, scores, totals)):
            if made is not None:
                images.append(made)
    tables = build_tables(run, summary, scores, diffs)
    title = f"slm eval — {Path(str(ctx.kb.get('path', 'knowledge base'))).name} — {summary['created'][:10]}"
    notes = summary["notes"]
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(render_markdown(title, tables, images, notes, ctx.bad_lines, ctx.command), encoding="utf-8")
    html_path.write_text(render_html(title, tables, images, notes, ctx.bad_lines, ctx.command), encoding="utf-8")
    return ReportFiles(summary_path, pq_path, md_path, html_path, tuple(images))


__all__ = ["RunContext", "ReportFiles", "write_reports", "build_summary", "per_question_rows", "HEADLINE"]


def overlap_levels(golds) -> dict[str, int]:
    """How many gold answers each overlap level scores (metrics.overlap_level)."""
    from collections import Counter

    from slm.evaluation.metrics import overlap_level

    return dict(Counter(overlap_level(g) for g in golds))


def _overlap_note(levels: dict[str, int]) -> str:
    if not levels:
        return "no gold answers"
    names = {"word": "word-level (SQuAD)", "char": "character-level (Chinese gold answers)"}
    return "; ".join(f"{names.get(k, k)} for {n}" for k, n in sorted(levels.items(), reverse=True))


def _abstention_gate_note(generation: dict) -> str:
    gate = generation.get("abstain_min_prob") or 0
    return f", abstains only at p ≥ {gate:g} (generation.abstain_min_prob)" if gate > 0 else ""
