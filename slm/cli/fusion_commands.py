"""`slm calibrate-fusion`: choose the dense/BM25 weights of hybrid retrieval for this KB (slm.retrieval.fusion)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from slm.cli.common import ConfigOption, KbOption, settings_from


def register(app: typer.Typer) -> None:
    app.command("calibrate-fusion")(calibrate_fusion)


def calibrate_fusion(
    kb: Optional[Path] = KbOption,
    config: Optional[Path] = ConfigOption,
    qa: List[Path] = typer.Option([], "--qa", help="JSONL questions with a gold `source` page (instead of generated ones). Repeatable."),
    generated: int = typer.Option(200, "--generated", help="Questions made from sampled chunks when no --qa is given."),
    heldout: float = typer.Option(0.5, "--heldout", min=0.1, max=0.9, help="Share of questions kept out of tuning to report on."),
    seed: int = typer.Option(0, "--seed"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report, but do not store the weights."),
) -> None:
    """Weight dense and BM25 in hybrid retrieval by what works on this KB: tuned on one split of questions,
    reported on the other, stored in <kb>/fusion.json (used while retrieval.fusion is `calibrated`)."""
    from slm.retrieval.fusion import GoldQuestion, calibrate_fusion as run, questions_with_gold
    from slm.kb.local import KnowledgeBase

    settings = settings_from(kb, config)
    with KnowledgeBase.open(Path(settings.kb), settings) as knowledge_base:
        if qa:
            from slm.evaluation.dataset import load_qa

            questions = []
            for path in qa:
                examples, bad = load_qa(path)
                for message in bad[:5]:
                    typer.secho(f"skipped {message}", fg="yellow", err=True)
                questions += [GoldQuestion(ex.question, ex.source, id=ex.id) for ex in examples
                              if ex.answerable and ex.source]
            source = ", ".join(map(str, qa))
        else:
            questions = questions_with_gold(knowledge_base.all_chunks(), generated, seed=seed)
            source = "generated"
        if len(questions) < 4:
            raise typer.BadParameter("need at least 4 questions with a gold page (see --qa, --generated)")
        result = run(knowledge_base, questions, rrf_k=settings.retrieval.rrf_k,
                     candidates=settings.retrieval.candidates, heldout_share=heldout, seed=seed,
                     embedder=knowledge_base.embedder_name, source=source, progress=True)
    typer.echo(f"weights: dense {result.dense_weight:.2f}, bm25 {result.bm25_weight:.2f} (rrf_k {result.rrf_k}); "
               f"questions: {source}")
    for split, count, scores in (("tuned", result.tuned_count, result.tuned), ("held-out", result.heldout_count, result.heldout)):
        typer.echo(f"  {split} ({count} questions): " + ", ".join(
            f"{name} hit@5 {s.hit_at_5:.3f} MRR {s.mrr_at_10:.3f}" for name, s in scores.items()))
    for note in result.notes:
        typer.echo(f"  note: {note}")
    if dry_run:
        typer.echo("dry run: nothing stored")
        return
    typer.echo(f"stored in {result.save(Path(settings.kb))}")
