"""`slm ingest`, `slm search`, `slm status`: thin commands over slm.kb.ingest, slm.retrieval.hybrid and slm.kb.local."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer

from slm.cli.common import ConfigOption, KbOption, parse_audiences, settings_from


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest_command)
    app.command("search")(search_command)
    app.command("status")(status_command)


def ingest_command(
    source: str = typer.Argument(
        ...,
        help="A folder (or file), https://… (one page; a site with --crawl), s3://bucket/prefix, "
        "or git+https://…@ref / git+file://…@ref.",
    ),
    crawl: bool = typer.Option(False, "--crawl", help="Follow same-origin links from the https:// page given."),
    max_pages: Optional[int] = typer.Option(None, "--max-pages", help="Crawl at most N pages (default ingest.crawl_max_pages)."),
    max_depth: Optional[int] = typer.Option(None, "--max-depth", help="Follow links at most D clicks deep (default ingest.crawl_max_depth)."),
    endpoint_url: Optional[str] = typer.Option(
        None, "--endpoint-url", help="An S3-compatible store (MinIO, Ceph …); credentials from the AWS environment or credentials file."
    ),
    rebuild: bool = typer.Option(False, "--rebuild", help="Re-read and re-embed everything (e.g. after changing the embedder)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    kb: Optional[Path] = KbOption,
    config: Optional[Path] = ConfigOption,
) -> None:
    """Ingest a folder, a website, a bucket or a Git repository; re-runs touch only changed documents."""
    from slm.kb.connectors.spec import SourceSpec
    from slm.kb.ingest import ingest
    from slm.kb.local import KnowledgeBase

    settings = settings_from(kb, config)
    spec = SourceSpec(source, crawl=crawl, max_pages=max_pages, max_depth=max_depth, endpoint_url=endpoint_url)
    with KnowledgeBase.open(settings.kb, settings, create=True, check_embedder=not rebuild) as base:
        report = ingest(spec, base, progress=not quiet, rebuild=rebuild)
    version = f" at {report.version[:12]}" if report.version else ""
    typer.echo(
        f"ingested {report.root}{version} into {settings.kb}: {report.seen} documents seen, {report.added} added, "
        f"{report.changed} changed, {report.unchanged} unchanged, {report.deleted} deleted, "
        f"{len(report.failed)} failed, {len(report.skipped)} skipped; {report.chunks_written} chunks written "
        f"({report.embedded} embedded) in {report.seconds:.1f} s"
    )
    for item in report.failed:
        typer.echo(f"  failed: {item.path}: {item.reason}")
    for item in report.skipped:
        typer.echo(f"  skipped: {item.path}: {item.reason}")
    for item in report.warnings:
        typer.echo(f"  warning: {item.path}: {item.reason}")


def search_command(
    query: str = typer.Argument(..., help="What to look for."),
    k: int = typer.Option(5, "-k", "--k", help="How many hits."),
    audience: Optional[str] = typer.Option(None, "--audience", help="Search as these audiences (comma-separated)."),
    mode: Optional[str] = typer.Option(None, "--mode", help="dense | bm25 | hybrid (default: retrieval.mode)."),
    rerank: Optional[bool] = typer.Option(None, "--rerank/--no-rerank", help="Rescore with the cross-encoder."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per hit."),
    kb: Optional[Path] = KbOption,
    config: Optional[Path] = ConfigOption,
) -> None:
    """Search the knowledge base and print the best chunks with their scores and locations."""
    from slm.kb.local import KnowledgeBase

    settings = settings_from(kb, config)
    with KnowledgeBase.open(settings.kb, settings) as base:
        if base.current_generation() is None:
            typer.echo("the knowledge base is empty: run `slm ingest ROOT` first", err=True)
            raise typer.Exit(1)
        hits = base.retriever().retrieve(query, k, audiences=parse_audiences(audience), mode=mode, rerank=rerank)
    if not hits:
        typer.echo("no results", err=True)
    for rank, hit in enumerate(hits, start=1):
        c = hit.chunk
        if as_json:
            typer.echo(json.dumps({
                "rank": rank, "chunk_id": c.id, "doc_id": c.doc_id, "location": c.location, "title": c.title,
                "section": list(c.section), "score": hit.score, "dense": hit.dense, "sparse": hit.sparse,
                "fused": hit.fused, "rerank": hit.rerank, "start": c.start, "end": c.end, "text": c.text,
            }))
            continue
        section = " > ".join(c.section)
        typer.secho(f"[{rank}] {c.location}  score={hit.score:.4f} cosine={hit.dense:.3f}", bold=True)
        if section:
            typer.echo(f"    {section}")
        snippet = " ".join(c.text.split())
        typer.echo(f"    {snippet[:300]}{'…' if len(snippet) > 300 else ''}")


def status_command(
    kb: Optional[Path] = KbOption,
    config: Optional[Path] = ConfigOption,
    log: int = typer.Option(0, "--log", help="Also show the last N ingestion log entries."),
) -> None:
    """Show what the knowledge base holds: documents, chunks, index generation, embedder, last ingest."""
    from slm.kb.local import KnowledgeBase

    settings = settings_from(kb, config)
    with KnowledgeBase.open(settings.kb, settings, check_embedder=False) as base:
        st = base.status()
        typer.echo(f"knowledge base: {st.path}")
        typer.echo(f"root:           {st.root or '(never ingested)'}")
        typer.echo(f"documents:      {st.documents}")
        typer.echo(f"chunks:         {st.chunks}")
        languages = sorted(base.store.languages().items(), key=lambda kv: -kv[1])
        if languages:
            typer.echo("languages:      " + ", ".join(f"{lang or '?'} {n}" for lang, n in languages) + " (chunks)")
        typer.echo(f"generation:     {st.generation if st.generation is not None else '(none)'}")
        typer.echo(f"embedder:       {st.embedder or '(none)'}" + (f" ({st.dimension}-dim)" if st.dimension else ""))
        if st.embedder and settings.embedder.model != "auto" and st.embedder != settings.embedder.model:
            typer.secho(
                f"warning: embedder.model is '{settings.embedder.model}'; searches will fail until you re-ingest "
                "with --rebuild or set it back", fg="yellow")
        when = datetime.fromtimestamp(st.last_ingest).isoformat(sep=" ", timespec="seconds") if st.last_ingest else "never"
        typer.echo(f"last ingest:    {when} ({st.failed_last_run} failed)")
        for entry in base.store.log_entries(limit=log) if log else []:
            stamp = datetime.fromtimestamp(entry.time).isoformat(sep=" ", timespec="seconds")
            typer.echo(f"  {stamp} {entry.status:9} {entry.path}" + (f"  ({entry.reason})" if entry.reason else ""))
