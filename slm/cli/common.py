"""Options and helpers every command group shares (config file, knowledge-base folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import typer

from slm.config import Settings, load_settings

KbOption = typer.Option(None, "--kb", help="Knowledge-base folder (else config `kb`, else $SLM_HOME, else ./.slm).")
ConfigOption = typer.Option(None, "--config", "-c", help="YAML config file (else $SLM_CONFIG, else ./slm.yaml).")


def settings_from(kb: Optional[Path], config: Optional[Path], overrides: Mapping[str, Any] | None = None) -> Settings:
    """The command's settings; `overrides` maps "section.setting" to a flag's value (None: not given)."""
    return load_settings(config_file=config, kb=kb, overrides=overrides)


def parse_audiences(value: Optional[str]) -> frozenset[str] | None:
    """`--audience a,b` → {"a", "b"}; None means the CLI user is trusted with everything."""
    if value is None:
        return None
    from slm.access.labels import normalize_labels

    return normalize_labels(value.split(","))
