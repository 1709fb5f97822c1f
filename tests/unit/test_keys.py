"""API keys: hashed storage, audiences, revocation, and the `slm keys` commands."""

from __future__ import annotations

import sqlite3

import pytest
from typer.testing import CliRunner

from slm.cli.main import app
from slm.errors import ApiKeyError
from slm.api.keys import KeyStore


@pytest.fixture
def store(tmp_path):
    return KeyStore.for_kb(tmp_path)


def test_created_key_verifies_and_only_its_hash_is_stored(store, tmp_path):
    new = store.create("shop-bot", ["customers", " public ", "customers"])
    assert new.secret.startswith("slm-") and len(new.secret) > 40
    assert new.key.audiences == ("customers", "public")
    found = store.verify(new.secret)
    assert found is not None and found.id == new.key.id and found.caller_audiences == frozenset({"customers", "public"})
    raw = (tmp_path / "keys.sqlite").read_bytes()
    assert new.secret.encode() not in raw
    rows = sqlite3.connect(tmp_path / "keys.sqlite").execute("SELECT hash FROM api_keys").fetchall()
    assert len(rows[0][0]) == 64


def test_unknown_and_revoked_keys_do_not_verify(store):
    new = store.create("a", ["x"])
    assert store.verify(new.secret + "x") is None
    assert store.verify("") is None and store.verify(None) is None and store.verify("not-ours") is None
    revoked = store.revoke("a")
    assert revoked.revoked is not None and not revoked.active
    assert store.verify(new.secret) is None
    assert [k.name for k in store.list()] == ["a"] and store.list(include_revoked=False) == []


def test_revoke_by_id_and_name_reuse_after_revocation(store):
    first = store.create("bot", ["x"])
    with pytest.raises(ApiKeyError, match="active key named 'bot'"):
        store.create("bot", ["y"])
    store.revoke(first.key.id)
    second = store.create("bot", ["y"])
    assert store.verify(second.secret).audiences == ("y",)
    with pytest.raises(ApiKeyError, match="no active key"):
        store.revoke("nobody")


def test_star_key_is_trusted(store):
    assert store.verify(store.create("admin", ["*"]).secret).caller_audiences is None


def test_keys_need_a_name_audiences_and_an_existing_kb(tmp_path, store):
    with pytest.raises(ApiKeyError, match="audience"):
        store.create("x", [" ", ""])
    with pytest.raises(ApiKeyError, match="name"):
        store.create(" ", ["a"])
    with pytest.raises(ApiKeyError, match="does not exist"):
        KeyStore.for_kb(tmp_path / "missing").create("x", ["a"])
    assert KeyStore.for_kb(tmp_path / "missing").list() == []
    assert KeyStore.for_kb(tmp_path / "missing").verify("slm-abc") is None


def test_cli_create_list_revoke(tmp_path):
    runner = CliRunner()
    kb = str(tmp_path)
    result = runner.invoke(app, ["keys", "create", "--name", "shop", "--audience", "customers,public", "--kb", kb])
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip().splitlines()[0]
    assert KeyStore.for_kb(tmp_path).verify(secret).name == "shop"
    listed = runner.invoke(app, ["keys", "list", "--kb", kb])
    assert listed.exit_code == 0 and "shop" in listed.stdout and "customers,public" in listed.stdout
    assert secret not in listed.stdout
    revoked = runner.invoke(app, ["keys", "revoke", "shop", "--kb", kb])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    assert KeyStore.for_kb(tmp_path).verify(secret) is None
    assert "no API keys" in runner.invoke(app, ["keys", "list", "--kb", kb]).stdout
    again = runner.invoke(app, ["keys", "revoke", "shop", "--kb", kb])
    assert again.exit_code != 0
