"""Choosing the index backend: settings checks and the errors a user sees before any database is involved."""

from __future__ import annotations

import socket

import pytest

from slm.config import IndexSettings, Settings, load_settings
from slm.errors import ConfigError, KnowledgeBaseError
from slm.kb.index.pg import check_settings, connect, safe_dsn
from slm.kb.local import open_for_serving


def test_faiss_is_the_default_and_pgvector_is_chosen_by_config(tmp_path):
    assert check_settings(Settings().index) == "faiss"
    config = tmp_path / "slm.yaml"
    config.write_text("index:\n  backend: pgvector\n  dsn: postgresql://slm@db/slm\n  search: hnsw\n")
    settings = load_settings(config, environ={})
    assert check_settings(settings.index) == "pgvector"
    assert settings.index.search == "hnsw" and settings.index.schema == "slm"


def test_environment_selects_the_backend_and_dsn():
    settings = load_settings(environ={"SLM_INDEX__BACKEND": "pgvector", "SLM_INDEX__DSN": "host=db dbname=slm"})
    assert settings.index.backend == "pgvector" and settings.index.dsn == "host=db dbname=slm"


@pytest.mark.parametrize("index, message", [
    (IndexSettings(backend="milvus"), "unknown backend 'milvus'"),
    (IndexSettings(backend="pgvector"), "index.dsn is not set"),
    (IndexSettings(backend="pgvector", dsn="host=db", search="ivf"), "unknown search 'ivf'"),
])
def test_bad_index_settings_name_the_setting(index, message):
    with pytest.raises(ConfigError, match=message):
        check_settings(index)


def test_serving_without_a_dsn_is_a_config_error_not_a_crash(tmp_path):
    settings = Settings(kb=tmp_path / "kb", index=IndexSettings(backend="pgvector"))
    with pytest.raises(ConfigError, match="index.dsn"):
        open_for_serving(settings)


def test_unreachable_database_says_where_without_the_password():
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dsn = f"postgresql://slm:hunter2@127.0.0.1:{port}/slm"
    with pytest.raises(KnowledgeBaseError, match="cannot reach PostgreSQL") as caught:
        connect(IndexSettings(backend="pgvector", dsn=dsn))
    assert "hunter2" not in str(caught.value) and str(port) in str(caught.value)
    assert "hunter2" not in safe_dsn(dsn)
