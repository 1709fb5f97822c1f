"""`slm audit show` and `slm audit export`: who asked what with which audiences, and what was cited."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer

from slm.cli.common import ConfigOption, KbOption, settings_from

audit_app = typer.Typer(help="The audit log of answers (who asked, audiences, cited documents).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")


def _since(value: Optional[str]) -> float | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise typer.BadParameter(f"--since takes an ISO date or time such as 2026-01-31 or 2026-01-31T09:00, not {value!r}")


def _open(kb: Optional[Path], config: Optional[Path]):
    from slm.access.audit import AuditLog

    settings = settings_from(kb, config)
    return AuditLog.for_kb(settings.kb)


@audit_app.command("show")
def audit_show_command(
    last: int = typer.Option(20, "--last", "-n", help="How many of the latest entries."),
    who: Optional[str] = typer.Option(None, "--who", help="Only this caller (key:<name>, a chat user, cli:<user>)."),
    doc: Optional[str] = typer.Option(None, "--doc", help="Only answers that read or cited this document id."),
    since: Optional[str] = typer.Option(None, "--since", help="Only entries at or after this ISO date/time."),
    kb: Optional[Path] = KbOption,
    config: Optional[Path] = ConfigOption,
) -> None:
    """Print the latest answers: time, channel, caller, audiences, model, cited documents."""
    from slm.access.audit import audiences_label

    events = list(_open(kb, config).events(since=_since(since), who=who, doc=doc))[-last:] if last > 0 else []
    if not events:
        typer.echo("no audit entries", err=True)
    for e in events:
        stamp = datetime.fromtimestamp(e.time).isoformat(sep=" ", timespec="seconds")
        model = e.model + (f"+{e.adapter}" if e.adapter else "")
        cited = ", ".join(e.cited_docs) or ("(abstained)" if e.abstained else "(none)")
        typer.echo(f"{stamp} {e.channel:4} {e.who}  [{audiences_label(e.audiences)}]  {model}  cited: {cited}")


@audit_app.command("export")
def audit_export_command(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="JSONL file to write (default: stdout)."),
    who: Optional[str] = typer.Option(None, "--who", help="Only this caller."),
    doc: Optional[str] = typer.Option(None, "--doc", help="Only answers that read or cited this document id."),
    since: Optional[str] = typer.Option(None, "--since", help="Only entries at or after this ISO date/time."),
    kb: Optional[Path] = KbOption,
    config: Optional[Path] = ConfigOption,
) -> None:
    """Write the audit log as JSON lines (one answer a line)."""
    audit = _open(kb, config)
    filters = {"since": _since(since), "who": who, "doc": doc}
    if out is None:
        count = audit.export_jsonl(sys.stdout, **filters)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            count = audit.export_jsonl(handle, **filters)
        tmp.replace(out)
    typer.echo(f"exported {count} audit record(s)" + (f" to {out}" if out else ""), err=True)
