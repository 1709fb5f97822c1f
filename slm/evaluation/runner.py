"""Run an evaluation: score each retrieval setting once, then let each variant answer every question.

Retrieval results are cached per setting and shared by every generator that uses the setting, so
retrieval metrics are computed once and answers differ only by the generator. Each model loads once.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from slm.access.labels import can_see
from slm.errors import SlmError
from slm.evaluation.metrics import first_rank, rouge_l, source_matches, token_f1
from slm.evaluation.records import AnswerRecord, EvalQuestion, ModelIdentity, RetrievalRecord, RetrievedRef
from slm.evaluation.variants import RetrievalSetting, VariantSpec, retrieval_settings
from slm.types import Answer, Chunk, Hit, QAExample


@dataclass(frozen=True)
class EvalOptions:
    """Knobs of a run; the defaults keep 200+ questions with a 135M model on 2 CPU cores well under 30 min."""

    depth: int = 10  # how deep retrieval is scored (hit@1/5/10, MRR@10)
    max_new_tokens: int = 48
    closed_book: int | None = 40  # answerable questions asked with no retrieval, spread evenly (None: all, 0: none)
    resamples: int = 2000
    seed: int = 0
    baseline: str | None = None
    progress: bool = True


@dataclass
class EvalRun:
    """Everything a run collected, ready for scoring and reports."""

    questions: list[EvalQuestion]
    specs: list[VariantSpec]
    options: EvalOptions
    audiences: frozenset[str] | None
    retrieval: dict[str, dict[str, RetrievalRecord]] = field(default_factory=dict)  # setting -> qid -> record
    answers: dict[str, dict[str, AnswerRecord]] = field(default_factory=dict)  # variant -> qid -> record
    identities: dict[str, ModelIdentity] = field(default_factory=dict)  # variant -> weights
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> wall seconds
    started: float = 0.0
    wall_s: float = 0.0


# An answerer factory builds what answers for one variant over a (cached) retriever.
AnswererFactory = Callable[[VariantSpec, Any], tuple[Any, ModelIdentity]]


def _ref(chunk: Chunk) -> RetrievedRef:
    return RetrievedRef(chunk.id, chunk.doc_id, chunk.source, chunk.anchor)


class CachedRetriever:
    """A retriever pinned to one setting that remembers its results, so every variant sees the same passages.

    Hits the caller's audiences may not see are dropped here (defence in depth) and counted.
    """

    def __init__(self, inner: Any, setting: RetrievalSetting, depth: int):
        self.inner = inner
        self.setting = setting
        self.depth = depth
        self._cache: dict[tuple[str, frozenset[str] | None], tuple[list[Hit], float, int]] = {}

    def lookup(self, query: str, audiences: frozenset[str] | None, k: int) -> tuple[list[Hit], float, int]:
        key = (query.strip(), audiences)
        cached = self._cache.get(key)
        if cached is None or (len(cached[0]) < k and len(cached[0]) >= self.depth):
            t0 = time.perf_counter()
            hits = self.inner.retrieve(
                query.strip(), k=max(k, self.depth), audiences=audiences,
                mode=self.setting.mode, rerank=self.setting.rerank,
            )
            seconds = time.perf_counter() - t0
            visible = [h for h in hits if can_see(h.chunk.audiences, audiences)]
            cached = (visible, seconds, len(hits) - len(visible))
            self._cache[key] = cached
        return cached

    def retrieve(
        self, query: str, k: int = 5, *, audiences: frozenset[str] | None = None,
        mode: str | None = None, rerank: bool | None = None,
    ) -> list[Hit]:
        return list(self.lookup(query, audiences, k)[0][:k])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def prepare_questions(
    examples: Sequence[QAExample], documents: Iterable[Any], audiences: frozenset[str] | None
) -> tuple[list[EvalQuestion], list[str]]:
    """Mark questions whose gold source this audience may not see as unanswerable for this run.

    `documents` are the KB's DocumentInfo records (id, source, audiences). Returns notes too.
    """
    docs = list(documents)
    visible = [d for d in docs if can_see(getattr(d, "audiences", ()), audiences)]
    questions: list[EvalQuestion] = []
    hidden = missing = 0
    for ex in examples:
        if not ex.source or not ex.answerable:
            questions.append(EvalQuestion(ex, ex.answerable))
            continue
        in_kb = any(source_matches(d.id, d.source, ex.source) for d in docs)
        seen = any(source_matches(d.id, d.source, ex.source) for d in visible)
        if in_kb and not seen:
            hidden += 1
            questions.append(EvalQuestion(ex, False, gold_hidden=True))
            continue
        missing += not in_kb
        questions.append(EvalQuestion(ex, True))
    notes = []
    if hidden:
        notes.append(
            f"{hidden} question(s) have a gold source this audience may not see: scored as unanswerable "
            "(the right answer is to abstain) and their gold answers are left out of the report"
        )
    if missing:
        notes.append(f"{missing} answerable question(s) name a gold source that is not in the knowledge base")
    return questions, notes


def _progress(items: Sequence[Any], desc: str, enabled: bool):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="q", dynamic_ncols=True)


def score_retrieval(
    questions: Sequence[EvalQuestion], retriever: CachedRetriever, audiences: frozenset[str] | None,
    *, progress: bool = True,
) -> dict[str, RetrievalRecord]:
    """Retrieve `depth` chunks per question with one setting and locate the gold source and anchor."""
    out: dict[str, RetrievalRecord] = {}
    label = retriever.setting.label
    for q in _progress(questions, f"retrieve {label}", progress):
        hits, seconds, hidden = retriever.lookup(q.example.question, audiences, retriever.depth)
        chunks = [h.chunk for h in hits[: retriever.depth]]
        gold = q.example.source if q.answerable else None
        out[q.id] = RetrievalRecord(
            question_id=q.id,
            setting=label,
            ranked=tuple(_ref(c) for c in chunks),
            source_rank=first_rank(chunks, gold) if gold else None,
            anchor_rank=first_rank(chunks, gold, q.example.anchor) if gold and q.example.anchor else None,
            seconds=seconds,
            hidden_hits=hidden,
        )
    return out


def _stream(answerer: Any, question: str, audiences: frozenset[str] | None) -> tuple[Answer, float | None, float]:
    """Consume a stream: the final Answer, seconds to the first text, seconds in all."""
    t0 = time.perf_counter()
    first: float | None = None
    final: Answer | None = None
    for item in answerer.stream(question, audiences=audiences):
        if isinstance(item, Answer):
            final = item
        elif item and first is None:
            first = time.perf_counter() - t0
    if final is None:
        raise SlmError("the answerer ended without an answer")
    return final, first, time.perf_counter() - t0


def answer_question(
    answerer: Any, q: EvalQuestion, variant: str, retrieval: RetrievalRecord | None,
    audiences: frozenset[str] | None,
) -> AnswerRecord:
    """Ask one question and score the answer against the gold (latency includes the retrieval pass)."""
    retrieval_s = retrieval.seconds if retrieval else 0.0
    try:
        answer, first, total = _stream(answerer, q.example.question, audiences)
    except SlmError as exc:
        return AnswerRecord(q.id, variant, "", True, False, (), None, None, None, 0.0, 0, 0.0, error=str(exc))
    gold = q.example.answer if q.answerable else ""
    predicted = "" if answer.abstained else answer.text
    cited = () if answer.abstained else tuple(
        RetrievedRef(c.chunk_id, c.doc_id, c.source, c.anchor) for c in answer.citations
    )
    return AnswerRecord(
        question_id=q.id,
        variant=variant,
        text=answer.text,
        abstained=answer.abstained,
        uncited=bool(answer.uncited) or (not answer.abstained and not cited),
        citations=cited,
        f1=token_f1(predicted, gold) if gold else None,
        rouge_l=rouge_l(predicted, gold) if gold else None,
        first_token_s=retrieval_s + (first if first is not None else total),
        total_s=retrieval_s + total,
        generated_tokens=int(answer.timings.generated_tokens or 0),
        generation_s=max(total - answer.timings.retrieval_s, 0.0),
    )


def closed_book(answerer: Any, q: EvalQuestion) -> tuple[str, float, float] | None:
    """The model's answer with no retrieval, scored; None when the answerer cannot do it."""
    ask = getattr(answerer, "answer_closed_book", None)
    if ask is None or not q.example.answer:
        return None
    try:
        answer = ask(q.example.question)
    except SlmError as exc:
        return (f"(error: {exc})", 0.0, 0.0)
    predicted = "" if answer.abstained else answer.text
    return answer.text, token_f1(predicted, q.example.answer), rouge_l(predicted, q.example.answer)


def closed_book_sample(questions: Sequence[EvalQuestion], size: int | None) -> set[str]:
    """Ids of the answerable questions asked closed-book: all (None), or `size` spread evenly over the list."""
    pool = [q.id for q in questions if q.answerable and q.example.answer]
    if size is None or size >= len(pool):
        return set(pool)
    if size <= 0:
        return set()
    step = len(pool) / size
    return {pool[int(i * step)] for i in range(size)}


def run_eval(
    examples: Sequence[QAExample],
    specs: Sequence[VariantSpec],
    *,
    kb: Any,
    factory: AnswererFactory,
    audiences: frozenset[str] | None = None,
    options: EvalOptions = EvalOptions(),
    documents: Iterable[Any] | None = None,
) -> EvalRun:
    """Score every retrieval setting once, then every generating variant on every question."""
    started = time.time()
    t_all = time.perf_counter()
    questions, notes = prepare_questions(examples, kb.documents() if documents is None else documents, audiences)
    run = EvalRun(questions, list(specs), options, audiences, notes=notes, started=started)
    base_retriever = kb.retriever()
    try:  # load the embedder (and indexes) now, so the first question's latency is not a load time
        base_retriever.retrieve("warm up", k=1, audiences=audiences)
    except SlmError:
        pass
    retrievers: dict[RetrievalSetting, CachedRetriever] = {}
    for setting in retrieval_settings(specs):
        t0 = time.perf_counter()
        retrievers[setting] = CachedRetriever(base_retriever, setting, options.depth)
        run.retrieval[setting.label] = score_retrieval(questions, retrievers[setting], audiences, progress=options.progress)
        run.seconds[f"retrieval {setting.label}"] = time.perf_counter() - t0
        leaks = sum(r.hidden_hits for r in run.retrieval[setting.label].values())
        if leaks:
            notes.append(f"retrieval '{setting.label}' returned {leaks} hit(s) this audience may not see (dropped)")

    book_ids = closed_book_sample(questions, options.closed_book)
    # Weights + retrieval setting -> the variant that already ran them (`current` may be the base model).
    done: dict[tuple[Any, ...], str] = {}
    closed_books: dict[Any, dict[str, tuple[str, float, float]]] = {}
    for spec in specs:
        if not spec.generates:
            continue
        t0 = time.perf_counter()
        answerer, identity = factory(spec, retrievers[spec.retrieval])
        run.identities[spec.name] = identity
        weights = ("extractive",) if not spec.uses_model else (identity.model, identity.adapter_path)
        key = (*weights, spec.retrieval)
        if key in done:
            source = done[key]
            run.answers[spec.name] = {
                qid: dataclasses.replace(rec, variant=spec.name) for qid, rec in run.answers[source].items()
            }
            notes.append(f"'{spec.name}' uses the same weights and retrieval as '{source}': its answers are reused")
            continue
        done[key] = spec.name
        records: dict[str, AnswerRecord] = {}
        book = closed_books.setdefault(weights, {})
        for q in _progress(questions, f"answer {spec.name}", options.progress):
            rec = answer_question(answerer, q, spec.name, run.retrieval[spec.retrieval.label].get(q.id), audiences)
            if spec.uses_model and q.id in book_ids:
                if q.id not in book:
                    result = closed_book(answerer, q)
                    if result is not None:
                        book[q.id] = result
                if q.id in book:
                    text, f1, rl = book[q.id]
                    rec = dataclasses.replace(rec, closed_book_text=text, closed_book_f1=f1, closed_book_rouge_l=rl)
            records[q.id] = rec
        run.answers[spec.name] = records
        errors = sum(1 for r in records.values() if r.error)
        if errors:
            first = next(r.error for r in records.values() if r.error)
            notes.append(f"'{spec.name}': {errors} question(s) failed to answer, e.g. {first}")
        run.seconds[f"answer {spec.name}"] = time.perf_counter() - t0
    run.wall_s = time.perf_counter() - t_all
    return run


def exclude_tuned(examples: Sequence[QAExample], kb_path: Path) -> tuple[list[QAExample], list[str]]:
    """Leave out questions `slm calibrate` tuned its threshold on, or `slm calibrate-fusion` its weights on
    (they would flatter abstention or retrieval)."""
    from slm.answering.abstention import load_calibration
    from slm.retrieval.fusion import load_fusion

    kept, notes = list(examples), []
    for tuner, what, calibration in (("slm calibrate", "the abstention threshold", load_calibration(Path(kb_path))),
                                     ("slm calibrate-fusion", "the hybrid weights", load_fusion(Path(kb_path)))):
        tuned = set(calibration.tuned_question_ids) if calibration else set()
        before = len(kept)
        kept = [ex for ex in kept if ex.id not in tuned]
        if len(kept) < before:
            notes.append(f"{before - len(kept)} question(s) left out: `{tuner}` tuned {what} on them")
    return kept, notes
