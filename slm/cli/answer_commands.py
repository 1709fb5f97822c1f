"""`slm ask`, `slm chat` and `slm calibrate`: thin commands over slm.answering.service / slm.answering.answerer / slm.answering.abstention."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Iterator, List, Optional

import typer

from slm.cli.common import ConfigOption, KbOption, parse_audiences, settings_from


def register(app: typer.Typer) -> None:
    app.command()(ask)
    app.command()(chat)
    app.command()(calibrate)


# ---------------------------------------------------------------- output


def _location(c) -> str:
    loc = c.source or c.doc_id
    if c.anchor:
        loc += f"#{c.anchor}"
    if c.page is not None:
        loc += f" (page {c.page})"
    return f"{loc} [chars {c.start}-{c.end}]"


def print_sources(answer) -> None:
    """The cited sources under an answer: title, section, quoted snippet, path#anchor / page / span."""
    if not answer.citations:
        if answer.uncited:
            typer.secho("\n(no source was cited: check the answer against the documents)", fg="yellow")
        return
    heading = "Nearest sources (not enough evidence to answer):" if answer.abstained else "Sources:"
    typer.secho(f"\n{heading}", bold=True)
    for c in answer.citations:
        title = c.title or c.doc_id
        section = " > ".join(s for s in c.section if s != title)
        typer.echo(f"[{c.marker}] {title}" + (f" — {section}" if section else ""))
        typer.echo(f'    "{c.snippet}"')
        typer.secho(f"    {_location(c)}", dim=True)


def print_timings(answer) -> None:
    t = answer.timings
    parts = [f"retrieval {t.retrieval_s:.2f}s"]
    if t.first_token_s is not None:
        parts.append(f"first token {t.first_token_s:.2f}s")
    if t.generated_tokens:
        gen_s = max(1e-9, t.total_s - (t.first_token_s or t.retrieval_s))
        parts.append(f"{t.generated_tokens} tokens, {t.generated_tokens / gen_s:.1f} tok/s")
    parts.append(f"total {t.total_s:.2f}s")
    model = answer.model + (f" + {answer.adapter}" if answer.adapter else "")
    typer.secho(f"({model}: {' · '.join(parts)})", dim=True, err=True)


def _answer_json(answer) -> str:
    data = asdict(answer)
    data["passages"] = [{"chunk_id": h.chunk.id, "score": h.score, "dense": h.dense} for h in answer.passages]
    return json.dumps(data, indent=2, ensure_ascii=False)


def _emit(items: Iterator, stream: bool):
    """Print deltas as they come (or the final text), return the final Answer."""
    from slm.types import Answer

    final = None
    for item in items:
        if isinstance(item, Answer):
            final = item
        elif stream:
            sys.stdout.write(item)
            sys.stdout.flush()
    if not stream and final is not None:
        sys.stdout.write(final.text)
    sys.stdout.write("\n")
    return final


def _build(kb: Optional[Path], config: Optional[Path], adapter: Optional[str], extractive: bool,
           max_new_tokens: Optional[int], *, live: bool = False):
    """The answerer for one command; `live` (chat) follows new indexes and adapter promotions meanwhile."""
    from slm.answering import service

    settings = settings_from(kb, config, {
        "generation.backend": service.EXTRACTIVE_BACKEND if extractive else None,
        "generation.max_new_tokens": max_new_tokens,
        "generation.adapter": adapter if live else None,  # pinned: the live answerer will not follow promotions
    })
    if live:
        return service.build_live_answerer(settings)
    return service.build_answerer(settings, adapter=adapter)


def _audited(items, kb: Optional[Path], config: Optional[Path], audiences: frozenset[str] | None):
    """The answer stream, logged in the audit log as the local CLI user (access.audit_log)."""
    import getpass

    from slm.access.audit import Caller, audit_log_for, audited

    caller = Caller(who=f"cli:{getpass.getuser()}", channel="cli", audiences=audiences)
    return audited(items, audit_log_for(settings_from(kb, config)), caller)


# ---------------------------------------------------------------- commands


def ask(
    question: str = typer.Argument(..., help="The question to answer from the knowledge base."),
    kb: Optional[Path] = KbOption,
    config: Optional[Path] = ConfigOption,
    audience: Optional[str] = typer.Option(None, "--audience", help="Comma-separated labels the asker may see."),
    k: Optional[int] = typer.Option(None, "--k", help="How many passages the model sees."),
    adapter: Optional[str] = typer.Option(None, "--adapter", help="Adapter folder or registry version; 'base' = none."),
    extractive: bool = typer.Option(False, "--extractive", help="No model: quote the best passage."),
    closed_book: bool = typer.Option(False, "--closed-book", help="The model alone, without the documents."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens"),
    stream: bool = typer.Option(True, "--stream/--no-stream", help="Print the answer as it is written."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole Answer as JSON."),
) -> None:
    """Answer QUESTION from the documents, with cited sources (or say it does not know)."""
    answerer = _build(kb, config, adapter, extractive, max_new_tokens)
    if closed_book:
        items = answerer.stream_closed_book(question) if hasattr(answerer, "stream_closed_book") else iter(
            [answerer.answer_closed_book(question)])
    else:
        audiences = parse_audiences(audience)
        items = _audited(answerer.stream(question, audiences=audiences, k=k), kb, config, audiences)
    if as_json:
        final = [i for i in items if not isinstance(i, str)][-1]
        typer.echo(_answer_json(final))
        return
    final = _emit(items, stream)
    print_sources(final)
    print_timings(final)


def chat(
    kb: Optional[Path] = KbOption,
    config: Optional[Path] = ConfigOption,
    audience: Optional[str] = typer.Option(None, "--audience", help="Comma-separated labels the asker may see."),
    adapter: Optional[str] = typer.Option(None, "--adapter", help="Adapter folder or registry version; 'base' = none."),
    extractive: bool = typer.Option(False, "--extractive", help="No model: quote the best passage."),
) -> None:
    """Talk with the knowledge base; follow-up questions are understood in context. /reset forgets, /quit leaves."""
    from slm.errors import RequestTooLarge
    from slm.answering.prompting import Turn

    answerer = _build(kb, config, adapter, extractive, None, live=True)
    audiences = parse_audiences(audience)
    history: list[Turn] = []
    typer.secho("Ask a question (/reset to start over, /quit or Ctrl-D to leave).", dim=True)
    while True:
        try:
            question = input("\nyou> ").strip()
        except EOFError:
            typer.echo()
            return
        if not question:
            continue
        if question in ("/quit", "/exit", "quit", "exit"):
            return
        if question == "/reset":
            history.clear()
            typer.secho("(conversation forgotten)", dim=True)
            continue
        sys.stdout.write("slm> ")
        try:
            final = _emit(_audited(answerer.stream(question, history=history, audiences=audiences), kb, config,
                                   audiences), stream=True)
        except RequestTooLarge as exc:  # one refused question must not end the conversation
            typer.secho(f"error: {exc}", fg="red", err=True)
            continue
        print_sources(final)
        history += [Turn("user", question), Turn("assistant", final.text)]


def calibrate(
    kb: Optional[Path] = KbOption,
    config: Optional[Path] = ConfigOption,
    qa: List[Path] = typer.Option([], "--qa", help="JSONL questions; `answerable: false` marks unanswerable ones. Repeatable."),
    negatives: List[Path] = typer.Option([], "--negatives", help="Unanswerable questions: JSONL or one per line. Repeatable."),
    generated: Optional[int] = typer.Option(None, "--generated", help="Answerable questions made from sampled chunks (default 60 when --qa gives none)."),
    off_topic: Optional[bool] = typer.Option(None, "--off-topic/--no-off-topic", help="Add the shipped off-topic questions as unanswerable (default: when no negatives are given)."),
    heldout: float = typer.Option(0.5, "--heldout", min=0.1, max=0.9, help="Share of questions kept out of tuning to report on."),
    recall: Optional[float] = typer.Option(None, "--recall", min=0.5, max=1.0, help="Raise the threshold while it keeps this share of answerable questions (default 0.9 when the only unanswerable ones are the shipped off-topic set)."),
    seed: int = typer.Option(0, "--seed"),
    audience: Optional[str] = typer.Option(None, "--audience"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report, but do not store the threshold."),
) -> None:
    """Choose the abstention threshold from data: answerable vs unanswerable questions, tuned on one split
    and reported on the other, stored in <kb>/calibration.json for every interface to use."""
    from slm.answering.abstention import LabelledQuestion, calibrate as run_calibration, evidence_threshold, questions_from_chunks
    from slm.answering.off_topic import off_topic_languages, off_topic_questions
    from slm.kb.local import KnowledgeBase

    settings = settings_from(kb, config)
    questions: list[LabelledQuestion] = []
    sources: list[str] = []
    for path in qa:
        loaded = _load_qa(path)
        questions += loaded
        sources.append(f"{path} ({sum(q.answerable for q in loaded)} answerable, {sum(not q.answerable for q in loaded)} unanswerable)")
    for path in negatives:
        loaded = _load_negatives(path)
        questions += loaded
        sources.append(f"{path} ({len(loaded)} unanswerable)")
    with KnowledgeBase.open(Path(settings.kb), settings) as knowledge_base:
        want = generated if generated is not None else (0 if any(q.answerable for q in questions) else 60)
        if want:
            made = questions_from_chunks(knowledge_base.all_chunks(parse_audiences(audience)), want, seed=seed)
            questions += [LabelledQuestion(q, True) for q in made]
            sources.append(f"{len(made)} questions made from sampled chunks (answerable)")
        user_negatives = any(not q.answerable for q in questions)
        if off_topic if off_topic is not None else not user_negatives:
            # in the languages of the KB's chunks: a Chinese KB is asked Chinese questions
            languages = knowledge_base.store.languages()
            shipped = off_topic_questions(languages)
            questions += [LabelledQuestion(q, False) for q in shipped]
            sources.append(f"{len(shipped)} shipped off-topic questions in {'+'.join(off_topic_languages(languages))} (unanswerable)")
        if recall is None and not user_negatives:
            recall = 0.9  # easy negatives cannot place the boundary: keep 90% of answerable ones, no more
        if not any(q.answerable for q in questions) or all(q.answerable for q in questions):
            raise typer.BadParameter("need both answerable and unanswerable questions (see --qa, --negatives, --generated)")
        result = run_calibration(
            knowledge_base.retriever(),
            questions,
            passages=settings.answering.passages,
            audiences=parse_audiences(audience),
            heldout_share=heldout,
            seed=seed,
            sources=sources,
            embedder=knowledge_base.embedder_name,
            mode=settings.retrieval.mode,
            progress=True,
            recall=recall,
        )
        for line in sources:
            typer.echo(f"  from {line}")
        uncalibrated = evidence_threshold(settings.answering.min_evidence, knowledge_base.embedder_name)
        typer.echo(
            f"threshold {result.threshold:.3f} by {result.rule} (uncalibrated: {uncalibrated:.3f})\n"
            f"  tuned on {result.tuned_count} questions: balanced accuracy {result.calibration_balanced_accuracy:.3f}\n"
            f"  {result.heldout_count} held-out questions: balanced accuracy {result.heldout_balanced_accuracy:.3f}, "
            f"answerable kept {result.heldout_answerable_kept:.1%}, unanswerable stopped {result.heldout_unanswerable_abstained:.1%}"
        )
        if result.tuned_question_ids:
            typer.echo(f"  {len(result.tuned_question_ids)} QA-file questions were used to tune: their ids are in calibration.json; do not report on them")
        if dry_run:
            typer.echo("dry run: nothing stored")
            return
        path = result.save(knowledge_base.path)
        typer.echo(f"stored in {path}")


def _load_qa(path: Path):
    from slm.answering.abstention import LabelledQuestion
    from slm.evaluation.dataset import load_qa

    examples, bad = load_qa(path)
    for message in bad[:5]:
        typer.secho(f"skipped {message}", fg="yellow", err=True)
    return [LabelledQuestion(ex.question, ex.answerable, id=ex.id) for ex in examples]


def _load_negatives(path: Path):
    from slm.answering.abstention import LabelledQuestion
    from slm.errors import ConfigError

    if not path.is_file():
        raise ConfigError(f"question file not found: {path}")
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            try:
                line = json.loads(line)["question"]
            except (json.JSONDecodeError, KeyError, TypeError):
                typer.secho(f"skipped {path}:{number}: not a JSON object with a question", fg="yellow", err=True)
                continue
        out.append(LabelledQuestion(str(line), False, id=f"{path.stem}-{number}"))
    return out
