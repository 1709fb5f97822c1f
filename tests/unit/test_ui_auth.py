"""Login modes, the bind check, and users → audiences."""

from __future__ import annotations

import pytest

from slm.config import AccessSettings, UISettings
from slm.errors import AccessDenied, ConfigError
from slm.webui.auth import check_bind, header_user, login_mode, viewer_for


def test_no_login_only_on_loopback():
    for host in ["127.0.0.1", "localhost", "::1", "127.0.0.2"]:
        check_bind(UISettings(), host)
    for host in ["0.0.0.0", "::", "192.168.1.5"]:
        with pytest.raises(ConfigError, match="without a login"):
            check_bind(UISettings(), host)
    check_bind(UISettings(auth={"a": "b"}), "0.0.0.0")
    check_bind(UISettings(trusted_header="X-User"), "0.0.0.0")


def test_both_logins_at_once_is_a_config_error():
    with pytest.raises(ConfigError, match="not both"):
        login_mode(UISettings(auth={"a": "b"}, trusted_header="X-User"))


def test_viewers():
    access = AccessSettings(default_audiences=["employees"])
    assert viewer_for(None, UISettings(), access).audiences is None  # local owner is trusted
    ui = UISettings(auth={"ed": "x", "hanna": "y"}, user_audiences={"hanna": ["HR", "employees"]})
    assert viewer_for("hanna", ui, access).audiences == frozenset({"hr", "employees"})
    assert viewer_for("ed", ui, access).audiences == frozenset({"employees"})
    with pytest.raises(AccessDenied):
        viewer_for(None, ui, access)
    with pytest.raises(AccessDenied):
        viewer_for("mallory", ui, access)
    header = UISettings(trusted_header="X-User")
    assert viewer_for("anyone", header, access).audiences == frozenset({"employees"})


def test_header_user_rejects_junk():
    assert header_user({"X-User": " ed "}, "X-User") == "ed"
    assert header_user({}, "X-User") is None
    assert header_user({"X-User": "a" * 500}, "X-User") is None


def test_cli_ui_refuses_an_open_bind_before_loading_anything(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from slm.cli.main import app

    monkeypatch.delenv("SLM_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["ui", "--host", "0.0.0.0", "--kb", str(tmp_path / "kb")])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError) and "without a login" in str(result.exception)
