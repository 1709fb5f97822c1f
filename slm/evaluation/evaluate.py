"""The whole `slm eval` job in order: load questions → open the KB → run variants → score → write reports."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from slm.config import Settings
from slm.errors import ConfigError
from slm.evaluation.dataset import QAFile, combine, load_qa_file
from slm.evaluation.metrics import source_matches
from slm.evaluation.report import ReportFiles, RunContext, write_reports
from slm.evaluation.runner import AnswererFactory, EvalOptions, EvalRun, exclude_tuned, run_eval
from slm.evaluation.scoring import VariantScore, choose_baseline, compare, score_run
from slm.evaluation.stats import Difference
from slm.evaluation.variants import VariantSpec, parse_variants


@dataclass(frozen=True)
class EvalResult:
    run: EvalRun
    scores: list[VariantScore]
    comparisons: list[Difference]
    baseline: str | None
    files: ReportFiles
    summary: dict[str, Any]


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = bool(torch.cuda.is_available())
    try:
        from importlib.metadata import version

        info["slm"] = version("slm")
    except Exception:
        pass
    return info


def kb_identity(kb: Any, settings: Settings, audiences: frozenset[str] | None) -> dict[str, Any]:
    """Which knowledge base was measured: path, visible documents and chunks, and a content fingerprint."""
    from slm.access.labels import can_see

    docs = [d for d in kb.documents() if can_see(getattr(d, "audiences", ()), audiences)]
    digest = hashlib.sha256()
    for d in sorted(docs, key=lambda d: d.id):
        digest.update(f"{d.id}\0{getattr(d, 'content_hash', '')}\n".encode())
    return {
        "path": str(Path(kb.path).resolve()) if getattr(kb, "path", None) else None,
        "documents": len(docs),
        "chunks": sum(int(getattr(d, "chunk_count", 0) or 0) for d in docs),
        "fingerprint": digest.hexdigest()[:16],
        "embedder": getattr(kb, "embedder_name", None) or settings.embedder.model,
    }


def _settings_info(settings: Settings, specs: Sequence[VariantSpec], options: EvalOptions,
                   limit: int | None, threshold: float | None, embedder: str = "") -> dict[str, Any]:
    from slm.answering.abstention import evidence_threshold

    return {
        "variants": [s.name for s in specs],
        "limit_per_file": limit,
        "depth": options.depth,
        "max_new_tokens": options.max_new_tokens,
        "closed_book": options.closed_book,
        "resamples": options.resamples,
        "seed": options.seed,
        "retrieval": dataclasses.asdict(settings.retrieval),
        "fusion": _fusion_info(settings, embedder or settings.embedder.model),
        "answering": dataclasses.asdict(settings.answering),
        "min_evidence_used": threshold if threshold is not None else evidence_threshold(settings.answering.min_evidence, embedder),
        "generation": {
            "model": settings.generation.model,
            "backend": settings.generation.backend,
            "temperature": 0.0,
            "repetition_penalty": settings.generation.repetition_penalty,
            "abstain_min_prob": settings.generation.abstain_min_prob,
        },
    }


def _fusion_info(settings: Settings, embedder: str) -> dict[str, Any]:
    """The hybrid weights this run used (the retriever's rule, slm.retrieval.fusion.fusion_weights): calibrated for the
    KB, with the held-out scores they were chosen with, or equal."""
    from slm.retrieval.fusion import fusion_weights, load_fusion

    calibrated = settings.retrieval.fusion == "calibrated" and fusion_weights(Path(settings.kb), embedder) is not None
    if not calibrated:
        return {"dense_weight": 1.0, "bm25_weight": 1.0, "calibrated": False}
    return {**load_fusion(Path(settings.kb)).summary(), "calibrated": True}


def gold_documents(gold_sources: Sequence[str], documents: Sequence[Any]) -> dict[str, list[Any]]:
    """Each gold source of a question file resolved once to the KB's documents it names (same rule as scoring)."""
    return {g: [d for d in documents if source_matches(d.id, d.source, g)] for g in gold_sources}


def training_notes(run: EvalRun, qa_paths: Sequence[Path], documents: Sequence[Any] = ()) -> list[str]:
    """For each adapter: were the gold source pages in its training corpus, was the question file guarded.
    A gold page counts as trained on when a KB document it resolves to is not excluded by the adapter's
    `exclude_docs` (one glob dialect, `slm.access.globs`)."""
    from slm.access.globs import document_matches

    gold = sorted({q.example.source for q in run.questions if q.example.source and not q.gold_hidden})
    resolved = gold_documents(gold, documents)
    notes = []
    for variant, ident in run.identities.items():
        entry = ident.registry
        if not ident.adapter or not entry:
            continue
        excluded = entry.get("exclude_docs") or []
        trained_on = [g for g in gold if any(not document_matches(d.id, d.source, excluded) for d in resolved[g])]
        guarded = {Path(p).name for p in entry.get("eval_qa_guarded") or []}
        unguarded = [Path(p).name for p in qa_paths if Path(p).name not in guarded]
        notes.append(
            f"'{variant}' (adapter {ident.adapter}): {len(trained_on)} of {len(gold)} gold source page(s) were in its "
            f"training corpus (exclude_docs={excluded or 'none'}); question/answer pairs "
            + ("of every question file were kept out by the leak guard" if not unguarded
               else f"of {', '.join(unguarded)} were not checked by its leak guard")
        )
    return notes


def evaluate(
    settings: Settings,
    qa_paths: Sequence[Path],
    variants: str | Sequence[str],
    out: Path,
    *,
    limit: int | None = None,
    audiences: frozenset[str] | None = None,
    options: EvalOptions = EvalOptions(),
    kb: Any | None = None,
    factory: AnswererFactory | None = None,
    command: str = "",
    plots: bool = True,
) -> EvalResult:
    """Run `slm eval` end to end and write the reports into `out`."""
    if not qa_paths:
        raise ConfigError("give at least one question file with --qa")
    if limit is not None and limit < 1:
        raise ConfigError("--limit must be at least 1")
    specs = parse_variants(variants, default_mode=settings.retrieval.mode, default_rerank=settings.retrieval.rerank)
    if any(s.retrieval.rerank for s in specs) and not settings.retrieval.reranker:
        raise ConfigError("a 'rerank' variant needs a cross-encoder: set retrieval.reranker in the config")
    files: list[QAFile] = [load_qa_file(p) for p in qa_paths]
    examples, notes = combine(files, limit=limit)
    bad_lines = [b for f in files for b in f.bad_lines]
    own_kb = kb is None
    if kb is None:
        from slm.kb.local import KnowledgeBase

        kb = KnowledgeBase.open(Path(settings.kb), settings)
    try:
        examples, excluded = exclude_tuned(examples, Path(kb.path))
        notes += excluded
        if not examples:
            raise ConfigError("no questions to evaluate (every line was bad or left out)")
        threshold = None
        if factory is None:
            from slm.evaluation.backends import ModelAnswererFactory

            factory = ModelAnswererFactory(settings, Path(kb.path), max_new_tokens=options.max_new_tokens)
            threshold = factory.threshold()
        run = run_eval(examples, specs, kb=kb, factory=factory, audiences=audiences, options=options)
        notes += list(getattr(factory, "notes", []))
        notes += training_notes(run, qa_paths, kb.documents() if hasattr(kb, "documents") else ())
        scores = score_run(run)
        baseline = choose_baseline(scores, options.baseline)
        diffs = compare(scores, baseline, resamples=options.resamples, seed=options.seed)
        ctx = RunContext(
            kb=kb_identity(kb, settings, audiences),
            qa_files=[
                {"path": f.path, "sha256": f.sha256, "lines": f.lines, "loaded": len(f.examples), "bad": len(f.bad_lines)}
                for f in files
            ],
            bad_lines=bad_lines,
            settings=_settings_info(settings, specs, options, limit, threshold, getattr(kb, "embedder_name", "")),
            machine=machine_info(),
            command=command,
            notes=notes,
        )
        report_files = write_reports(Path(out), run, scores, diffs, ctx, baseline, plots=plots)
    finally:
        if own_kb:
            kb.close()
    import json

    summary = json.loads(report_files.summary.read_text(encoding="utf-8"))
    return EvalResult(run, scores, diffs, baseline, report_files, summary)
