"""`slm ui` (the employee chat) and `slm feedback export` (ratings from the chat as JSONL)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from slm.cli.common import ConfigOption, KbOption, settings_from

feedback_app = typer.Typer(help="Ratings employees gave answers in the chat.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("ui")(ui_command)
    app.add_typer(feedback_app, name="feedback")


def ui_command(
    host: Optional[str] = typer.Option(None, "--host", help="Address to listen on (default ui.host, 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, "--port", help="Port (default ui.port, 7860)."),
    kb: Optional[Path] = KbOption,
    config: Optional[Path] = ConfigOption,
) -> None:
    """Start the chat in the browser: streamed answers with clickable sources, feedback, login."""
    from slm.webui.auth import check_bind

    settings = settings_from(kb, config, {"ui.host": host, "ui.port": port})
    check_bind(settings.ui, settings.ui.host)  # fail before loading any model
    from slm.webui.app import serve

    serve(settings)


@feedback_app.command("export")
def feedback_export_command(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="JSONL file to write (default: stdout)."),
    audience: Optional[str] = typer.Option(
        None, "--audience", help="Export only ratings of answers whose documents these audiences may see (comma list)."
    ),
    kb: Optional[Path] = KbOption,
    config: Optional[Path] = ConfigOption,
) -> None:
    """Dump every rating (question, answer, citations, model, user, time) as one JSON object a line."""
    from slm.cli.common import parse_audiences
    from slm.answering.feedback import FeedbackStore, visible_to

    settings = settings_from(kb, config)
    store = FeedbackStore.for_kb(settings.kb)
    audiences = parse_audiences(audience)
    visible = None
    if audiences is not None:
        from slm.kb.store import Store

        kb_store = Store(settings.kb / "store.sqlite")
        try:
            docs = kb_store.documents()
        finally:
            kb_store.close()
        visible = visible_to(audiences, {d.id: d.audiences for d in docs})
    if out is None:
        count = store.export_jsonl(sys.stdout, visible=visible)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            count = store.export_jsonl(handle, visible=visible)
        tmp.replace(out)
    typer.echo(f"exported {count} feedback record(s)" + (f" to {out}" if out else ""), err=True)
