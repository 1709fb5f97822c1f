"""`slm serve` (the HTTP API) and `slm keys create|list|revoke` (API keys bound to audiences)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from slm.cli.common import ConfigOption, KbOption, settings_from


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: Optional[str] = typer.Option(None, "--host", help="Address to bind (else serve.host, 127.0.0.1)."),
        port: Optional[int] = typer.Option(None, "--port", help="Port (else serve.port, 8000)."),
        log_level: str = typer.Option("info", "--log-level", help="debug | info | warning | error"),
        kb: Optional[Path] = KbOption,
        config: Optional[Path] = ConfigOption,
    ) -> None:
        """Serve the OpenAI-compatible API with citations (keys from `slm keys create`)."""
        import uvicorn

        from slm.api.app import create_app
        from slm.api.metrics import configure_json_logging
        from slm.api.server import uvicorn_config
        from slm.api.keys import KeyStore

        settings = settings_from(kb, config, {"serve.host": host, "serve.port": port})
        if not Path(settings.kb).is_dir():
            from slm.errors import KnowledgeBaseError

            raise KnowledgeBaseError(f"no knowledge base at {settings.kb}: run `slm ingest ROOT` first or pass --kb")
        configure_json_logging(log_level)
        if not KeyStore.for_kb(settings.kb).list(include_revoked=False):
            typer.secho("warning: no active API keys; every request will get 401. Create one with "
                        "`slm keys create --name NAME --audience LABELS`", fg="yellow", err=True)
        uvicorn.Server(uvicorn_config(create_app(settings), settings.serve, log_level=log_level)).run()

    keys_app = typer.Typer(help="API keys for `slm serve`, each bound to audience labels.", no_args_is_help=True)
    app.add_typer(keys_app, name="keys")

    @keys_app.command("create")
    def keys_create(
        name: str = typer.Option(..., "--name", help="A name to recognise the key by (unique among active keys)."),
        audience: str = typer.Option(..., "--audience", help="Comma-separated audience labels; `*` sees all."),
        kb: Optional[Path] = KbOption,
        config: Optional[Path] = ConfigOption,
    ) -> None:
        """Create a key and print it once (only its hash is stored)."""
        from slm.api.keys import KeyStore

        settings = settings_from(kb, config)
        new = KeyStore.for_kb(settings.kb).create(name, audience.split(","))
        typer.echo(new.secret)
        typer.secho(f"created {new.key.id} '{new.key.name}' for audiences {', '.join(new.key.audiences)}; "
                    "store the key now: it is not shown again", err=True, fg="green")

    @keys_app.command("list")
    def keys_list(
        all_keys: bool = typer.Option(False, "--all", help="Include revoked keys."),
        kb: Optional[Path] = KbOption,
        config: Optional[Path] = ConfigOption,
    ) -> None:
        """List keys (never the secrets), one a line, tab-separated."""
        from slm.api.keys import KeyStore

        settings = settings_from(kb, config)
        keys = KeyStore.for_kb(settings.kb).list(include_revoked=all_keys)
        if not keys:
            typer.echo("no API keys" + ("" if all_keys else " (active)"))
            return
        typer.echo("\t".join(("id", "name", "starts with", "audiences", "created", "revoked")))
        for k in keys:
            typer.echo("\t".join((k.id, k.name, k.prefix + "…", ",".join(k.audiences), k.created, k.revoked or "-")))

    @keys_app.command("revoke")
    def keys_revoke(
        name_or_id: str = typer.Argument(..., metavar="NAME|ID"),
        kb: Optional[Path] = KbOption,
        config: Optional[Path] = ConfigOption,
    ) -> None:
        """Revoke a key; a running server refuses it from the next request on."""
        from slm.api.keys import KeyStore

        settings = settings_from(kb, config)
        key = KeyStore.for_kb(settings.kb).revoke(name_or_id)
        typer.echo(f"revoked {key.id} '{key.name}'")
