"""Turn a run's records into metric values with bootstrap intervals, latency figures and paired comparisons.

Every metric is built as per-question (numerator, denominator) pairs aligned on the same question list,
so one bootstrap serves means and ratios, and two variants can be compared question by question.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from slm.evaluation.metrics import hit_at, percentile, reciprocal_rank, source_matches
from slm.evaluation.records import AnswerRecord, EvalQuestion, RetrievalRecord
from slm.evaluation.runner import EvalRun
from slm.evaluation.stats import Difference, Estimate, bootstrap_ratio, paired_bootstrap


@dataclass(frozen=True)
class MetricInfo:
    label: str
    group: str  # retrieval | answer | citation | abstention | closed-book
    description: str


METRICS: dict[str, MetricInfo] = {
    "source_hit@1": MetricInfo("source hit@1", "retrieval", "gold source is the top chunk"),
    "source_hit@5": MetricInfo("source hit@5", "retrieval", "gold source in the top 5 chunks"),
    "source_hit@10": MetricInfo("source hit@10", "retrieval", "gold source in the top 10 chunks"),
    "source_mrr": MetricInfo("source MRR@10", "retrieval", "1/rank of the first gold-source chunk"),
    "anchor_hit@1": MetricInfo("anchor hit@1", "retrieval", "gold source#anchor is the top chunk"),
    "anchor_hit@5": MetricInfo("anchor hit@5", "retrieval", "gold source#anchor in the top 5"),
    "anchor_hit@10": MetricInfo("anchor hit@10", "retrieval", "gold source#anchor in the top 10"),
    "anchor_mrr": MetricInfo("anchor MRR@10", "retrieval", "1/rank of the first gold source#anchor chunk"),
    "answer_f1": MetricInfo("answer F1", "answer", "SQuAD token F1 vs the gold answer (abstained = 0)"),
    "answer_rouge_l": MetricInfo("answer ROUGE-L", "answer", "LCS F-measure vs the gold answer (abstained = 0)"),
    "answer_f1_answered": MetricInfo("F1 when answered", "answer", "token F1 over the questions it answered"),
    "answer_rate": MetricInfo("answer rate", "answer", "answerable questions it answered (did not abstain)"),
    "uncited_rate": MetricInfo("uncited rate", "citation", "answers given with no valid citation"),
    "citation_accuracy": MetricInfo("citation accuracy", "citation", "answerable questions with a citation of the gold source"),
    "citation_precision": MetricInfo("citation precision", "citation", "citations that point at the gold source"),
    "abstention_precision": MetricInfo("abstention precision", "abstention", "abstentions that were on unanswerable questions"),
    "abstention_recall": MetricInfo("abstention recall", "abstention", "unanswerable questions it abstained on"),
    "closed_book_f1": MetricInfo("closed-book F1", "closed-book", "token F1 of the model with no retrieval"),
    "closed_book_rouge_l": MetricInfo("closed-book ROUGE-L", "closed-book", "ROUGE-L of the model with no retrieval"),
}
RETRIEVAL_METRICS = [m for m, info in METRICS.items() if info.group == "retrieval"]
ANSWER_METRICS = [m for m, info in METRICS.items() if info.group != "retrieval"]
# Compared between variants with a paired bootstrap.
HEADLINE = [
    "source_hit@5", "source_mrr", "anchor_hit@5", "answer_f1", "answer_rouge_l", "answer_rate",
    "citation_accuracy", "citation_precision", "abstention_precision", "abstention_recall", "closed_book_f1",
]
LATENCY = [
    "latency_first_token_p50_s", "latency_first_token_p95_s", "latency_total_p50_s", "latency_total_p95_s",
    "tokens_per_second", "retrieval_p50_s",
]

Series = tuple[list[float], list[float]]  # per-question numerators, denominators


@dataclass
class VariantScore:
    """Scored results of one variant: metric estimates, latency, counts."""

    name: str
    generator: str | None
    retrieval: str
    estimates: dict[str, Estimate] = field(default_factory=dict)
    latency: dict[str, float | None] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    series: dict[str, Series] = field(default_factory=dict)


def retrieval_series(questions: Sequence[EvalQuestion], records: Mapping[str, RetrievalRecord], depth: int) -> dict[str, Series]:
    out: dict[str, Series] = {}
    for prefix, attr, field_ in (("source", "source_rank", "source"), ("anchor", "anchor_rank", "anchor")):
        scored = [bool(q.answerable and q.example.source and getattr(q.example, field_)) for q in questions]
        ranks = [getattr(records[q.id], attr) if q.id in records else None for q in questions]
        den = [1.0 if s else 0.0 for s in scored]
        for k in (1, 5, 10):
            if k <= depth:
                out[f"{prefix}_hit@{k}"] = ([hit_at(r, k) if s else 0.0 for r, s in zip(ranks, scored)], den)
        out[f"{prefix}_mrr"] = ([reciprocal_rank(r, depth) if s else 0.0 for r, s in zip(ranks, scored)], den)
    return out


def answer_series(questions: Sequence[EvalQuestion], records: Mapping[str, AnswerRecord]) -> dict[str, Series]:
    names = [m for m in ANSWER_METRICS]
    num: dict[str, list[float]] = {m: [] for m in names}
    den: dict[str, list[float]] = {m: [] for m in names}

    def put(metric: str, n: float, d: float) -> None:
        num[metric].append(float(n))
        den[metric].append(float(d))

    for q in questions:
        r = records.get(q.id)
        ok = r is not None and r.error is None
        gold_answer = bool(q.answerable and q.example.answer)
        gold_source = q.example.source if q.answerable else None
        answered = ok and not r.abstained
        put("answer_f1", r.f1 if ok and gold_answer and r.f1 is not None else 0.0, gold_answer and ok)
        put("answer_rouge_l", r.rouge_l if ok and gold_answer and r.rouge_l is not None else 0.0, gold_answer and ok)
        put("answer_f1_answered", r.f1 if answered and gold_answer and r.f1 is not None else 0.0, answered and gold_answer)
        put("answer_rate", answered and q.answerable, ok and q.answerable)
        put("uncited_rate", answered and r.uncited, answered)
        if ok and gold_source:
            good = sum(1 for c in r.citations if source_matches(c.doc_id, c.source, gold_source))
            put("citation_accuracy", good > 0, 1)
            put("citation_precision", good, len(r.citations))
        else:
            put("citation_accuracy", 0, 0)
            put("citation_precision", 0, 0)
        abstained = ok and r.abstained
        put("abstention_precision", abstained and not q.answerable, abstained)
        put("abstention_recall", abstained and not q.answerable, ok and not q.answerable)
        has_book = ok and r.closed_book_f1 is not None
        put("closed_book_f1", r.closed_book_f1 if has_book else 0.0, has_book)
        put("closed_book_rouge_l", r.closed_book_rouge_l if has_book and r.closed_book_rouge_l is not None else 0.0, has_book)
    return {m: (num[m], den[m]) for m in names}


def latency(records: Sequence[AnswerRecord], retrieval: Sequence[RetrievalRecord]) -> dict[str, float | None]:
    ok = [r for r in records if r.error is None]
    firsts = [r.first_token_s for r in ok if r.first_token_s is not None]
    totals = [r.total_s for r in ok]
    generating = [r for r in ok if r.generated_tokens > 0 and r.generation_s > 0]
    tokens = sum(r.generated_tokens for r in generating)
    seconds = sum(r.generation_s for r in generating)
    return {
        "latency_first_token_p50_s": percentile(firsts, 50),
        "latency_first_token_p95_s": percentile(firsts, 95),
        "latency_total_p50_s": percentile(totals, 50),
        "latency_total_p95_s": percentile(totals, 95),
        "tokens_per_second": tokens / seconds if seconds > 0 else None,
        "retrieval_p50_s": percentile([r.seconds for r in retrieval], 50),
    }


def score_run(run: EvalRun) -> list[VariantScore]:
    """Estimates (with bootstrap CIs) for every variant, retrieval-only ones included."""
    opts = run.options
    qs = run.questions
    scores: list[VariantScore] = []
    retrieval_cache: dict[str, dict[str, Series]] = {}
    for spec in run.specs:
        label = spec.retrieval.label
        if label not in retrieval_cache:
            retrieval_cache[label] = retrieval_series(qs, run.retrieval.get(label, {}), opts.depth)
        score = VariantScore(spec.name, spec.generator, label)
        score.series.update(retrieval_cache[label])
        retrieval_records = list(run.retrieval.get(label, {}).values())
        if spec.generates and spec.name in run.answers:
            records = run.answers[spec.name]
            score.series.update(answer_series(qs, records))
            score.latency = latency(list(records.values()), retrieval_records)
            score.counts = {
                "answered": sum(1 for r in records.values() if not r.abstained and r.error is None),
                "abstained": sum(1 for r in records.values() if r.abstained and r.error is None),
                "errors": sum(1 for r in records.values() if r.error),
                "closed_book": sum(1 for r in records.values() if r.closed_book_f1 is not None),
            }
        else:
            score.latency = {"retrieval_p50_s": percentile([r.seconds for r in retrieval_records], 50)}
        for i, (metric, (num, den)) in enumerate(score.series.items()):
            score.estimates[metric] = bootstrap_ratio(num, den, resamples=opts.resamples, seed=opts.seed + i)
        scores.append(score)
    return scores


def choose_baseline(scores: Sequence[VariantScore], wanted: str | None = None) -> str | None:
    names = [s.name for s in scores]
    if wanted:
        if wanted not in names:
            from slm.errors import ConfigError

            raise ConfigError(f"--baseline '{wanted}' is not one of the variants: {', '.join(names)}")
        return wanted
    for preferred in ("base", "extractive"):
        if preferred in names:
            return preferred
    return names[0] if names else None


def compare(scores: Sequence[VariantScore], baseline: str | None, *, resamples: int, seed: int) -> list[Difference]:
    """Paired bootstrap of every variant against the baseline on the headline metrics both have."""
    by_name = {s.name: s for s in scores}
    if baseline is None or baseline not in by_name:
        return []
    base = by_name[baseline]
    out: list[Difference] = []
    for score in scores:
        if score.name == baseline:
            continue
        for i, metric in enumerate(HEADLINE):
            if metric not in score.series or metric not in base.series:
                continue
            if metric.startswith(("source_", "anchor_")) and score.retrieval == base.retrieval:
                continue  # same retrieval setting: identical by construction
            a, b = score.series[metric], base.series[metric]
            if sum(a[1]) == 0 or sum(b[1]) == 0:
                continue
            if a == b:
                continue  # identical question by question (e.g. `current` is the base model): nothing to test
            out.append(paired_bootstrap(metric, score.name, baseline, a[0], a[1], b[0], b[1],
                                        resamples=resamples, seed=seed + i))
    return out
