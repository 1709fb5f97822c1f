"""Entry point: builds the Typer app from one module per command group, imported lazily-cheap."""

from __future__ import annotations

import importlib
import sys

import typer

from slm.errors import SlmError

app = typer.Typer(
    name="slm",
    help="Turn a folder of company documents into a private model that answers with citations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module defines `register(app)`; heavy imports stay inside the command functions.
COMMAND_MODULES = [
    "slm.cli.kb_commands",  # ingest, search, status
    "slm.cli.answer_commands",  # ask, chat, calibrate
    "slm.cli.fusion_commands",  # calibrate-fusion
    "slm.cli.eval_commands",  # eval
    "slm.cli.train_commands",  # train, models ...
    "slm.cli.serve_commands",  # serve, keys ...
    "slm.cli.ui_commands",  # ui, feedback ...
    "slm.cli.retrain_commands",  # retrain
    "slm.cli.audit_commands",  # audit show / export
]

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(_name)
    except ModuleNotFoundError as exc:  # a command group not built yet
        if exc.name != _name:
            raise
        continue
    _module.register(app)


def main() -> None:
    try:
        app()
    except SlmError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.secho("interrupted", fg="yellow", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
