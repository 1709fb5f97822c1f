"""load_settings: the file, the environment and command-line overrides, all checked by the one coercer."""

from __future__ import annotations

from pathlib import Path

import pytest

from slm.config import load_settings
from slm.errors import ConfigError


@pytest.fixture()
def config(tmp_path):
    path = tmp_path / "slm.yaml"
    path.write_text("generation:\n  max_new_tokens: 100\nserve:\n  port: 9000\n", encoding="utf-8")
    return path


def test_overrides_come_last_and_a_none_leaves_the_setting_alone(config):
    env = {"SLM_GENERATION__MAX_NEW_TOKENS": "150", "SLM_SERVE__HOST": "0.0.0.0"}
    settings = load_settings(config, environ=env, overrides={
        "generation.max_new_tokens": 200, "serve.port": None, "training.epochs": 2, "ui.host": "::1"})
    assert settings.generation.max_new_tokens == 200  # flag over environment over file
    assert settings.serve.port == 9000 and settings.serve.host == "0.0.0.0"  # not given: file and environment stand
    assert settings.training.epochs == 2.0 and isinstance(settings.training.epochs, float)
    assert settings.ui.host == "::1"


def test_overrides_are_checked_like_the_file(config):
    with pytest.raises(ConfigError, match="generation.max_new_tokens: expected int, got 'many'"):
        load_settings(config, environ={}, overrides={"generation.max_new_tokens": "many"})
    with pytest.raises(ConfigError, match="training.epochs: expected float, got True"):
        load_settings(config, environ={}, overrides={"training.epochs": True})
    with pytest.raises(ConfigError, match="no settings section 'generaton'"):
        load_settings(config, environ={}, overrides={"generaton.model": "x"})
    with pytest.raises(ConfigError, match="section 'serve' has no setting 'prot'"):
        load_settings(config, environ={}, overrides={"serve.prot": 1})
    with pytest.raises(ConfigError, match="no settings section 'kb'"):  # the folder has its own argument
        load_settings(config, environ={}, overrides={"kb.path": "x"})


def test_the_environment_uses_the_same_lookup(config):
    with pytest.raises(ConfigError, match="environment variable SLM_SERVE__PROT: section 'serve' has no setting"):
        load_settings(config, environ={"SLM_SERVE__PROT": "1"})
    assert load_settings(config, environ={}, kb="elsewhere").kb == Path("elsewhere")


def test_train_kd_weight_flag_reaches_the_training_settings(tmp_path, monkeypatch):
    """`slm train --kd-weight` sets training.kd_weight over the file's; without it the file's value stands."""
    from typer.testing import CliRunner

    from slm.cli.main import app

    config = tmp_path / "slm.yaml"
    config.write_text("training:\n  kd_weight: 0.1\n", encoding="utf-8")
    seen = []

    def fake_run_training(settings, options, **kwargs):
        seen.append(settings.training.kd_weight)
        raise SystemExit(0)

    monkeypatch.setattr("slm.training.recipe.run_training", fake_run_training)
    result = CliRunner().invoke(app, ["train", "-c", str(config), "--kd-weight", "0.25"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["train", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert seen == [0.25, 0.1]
    result = CliRunner().invoke(app, ["train", "-c", str(config), "--kd-weight", "half"])
    assert result.exit_code == 2 and seen == [0.25, 0.1]  # not a number: refused before training


def test_cli_flags_reach_the_settings_through_overrides(config, monkeypatch):
    """`slm serve --port`, `slm ask --max-new-tokens --extractive`, `slm train --epochs`: one path, load_settings."""
    from typer.testing import CliRunner

    from slm.cli.main import app

    seen = {}

    def fake_run_training(settings, options, **kwargs):
        seen["training"] = settings.training
        raise SystemExit(0)

    monkeypatch.setattr("slm.training.recipe.run_training", fake_run_training)
    result = CliRunner().invoke(app, ["train", "-c", str(config), "--epochs", "2.5", "--max-chunks", "7",
                                      "--base", "some/model", "--teacher", "base"])
    assert result.exit_code == 0, result.output
    training = seen["training"]
    assert (training.epochs, training.max_chunks, training.base, training.teacher) == (2.5, 7, "some/model", "base")

    def fake_build_answerer(settings, **kwargs):
        seen["generation"] = settings.generation
        raise SystemExit(0)

    monkeypatch.setattr("slm.answering.service.build_answerer", fake_build_answerer)
    result = CliRunner().invoke(app, ["ask", "q", "-c", str(config), "--extractive", "--max-new-tokens", "12"])
    assert result.exit_code == 0, result.output
    assert seen["generation"].backend == "extractive" and seen["generation"].max_new_tokens == 12
    result = CliRunner().invoke(app, ["ask", "q", "-c", str(config)])
    assert seen["generation"].backend != "extractive" and seen["generation"].max_new_tokens == 100  # the file's
