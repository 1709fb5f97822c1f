"""`slm ask`, `slm chat`, `slm calibrate` on a tiny KB (tiny random embedder; extractive or scripted answers)."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from slm.cli.main import app
from slm.config import load_settings
from slm.kb.ingest import ingest
from slm.kb.local import KnowledgeBase
from tests.helpers.kb import write_corpus


@pytest.fixture(scope="module")
def kb_config(tmp_path_factory, tiny_embedder_dir):
    base = tmp_path_factory.mktemp("answer-cli")
    config = base / "slm.yaml"
    config.write_text(yaml.safe_dump({
        "kb": str(base / "kb"),
        "embedder": {"model": str(tiny_embedder_dir), "batch_size": 8, "max_seq_length": 128},
        "access": {"rules": {"secret/**": ["hr"]}, "default_audiences": ["employees"]},
        "answering": {"min_evidence": -1.0},
    }))
    settings = load_settings(config)
    with KnowledgeBase.open(settings.kb, settings, create=True) as kb:
        ingest(write_corpus(base / "docs", secret_docs=1), kb, progress=False)
    return config


def _run(*args):
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result


def test_ask_prints_the_answer_then_cited_sources(kb_config):
    result = _run("ask", "How many days do customers have to return a product for a refund?", "-c", str(kb_config),
                  "--extractive")
    assert result.exit_code == 0, result.output
    out = result.output
    answer, sources = out.split("Sources:")
    assert answer.strip().endswith("[1]")
    first = sources.strip().splitlines()
    assert first[0].startswith("[1] About ") and first[1].strip().startswith('"')
    assert ".md#" in first[2] and "[chars " in first[2]


def test_ask_json_and_audience_filter(kb_config):
    result = _run("ask", "Confidential refunds note", "-c", str(kb_config), "--extractive", "--json",
                  "--audience", "employees", "--k", "5")
    data = json.loads(result.output)
    assert data["citations"] and all(not p["chunk_id"].startswith("secret/") for p in data["passages"])
    assert len(data["passages"]) == 5


def test_chat_keeps_the_conversation(kb_config, monkeypatch):
    from slm.answering.answerer import Answerer
    from slm.config import AnsweringSettings, GenerationSettings, RetrievalSettings
    from tests.unit.test_answering import CHUNKS, ListRetriever, ScriptedGenerator

    gen = ScriptedGenerator(["Refunds are accepted within 30 days [1].", "How long do refunds take?",
                             "Thirty days [1]."])
    answerer = Answerer(ListRetriever(list(CHUNKS)), gen, AnsweringSettings(min_evidence=0.0), RetrievalSettings(),
                        GenerationSettings())
    monkeypatch.setattr("slm.answering.service.build_answerer", lambda settings, **kw: answerer)
    result = CliRunner().invoke(app, ["chat", "-c", str(kb_config)],
                                input="What about refunds?\nand how long?\n/reset\n/quit\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("Sources:") == 2 and "(conversation forgotten)" in result.output
    # the second question was rewritten with the first exchange as context
    assert "Conversation:\nuser: What about refunds?\nassistant: Refunds are accepted" in gen.calls[1][-1]["content"]


def test_calibrate_stores_a_threshold_the_answerer_uses(kb_config, tmp_path):
    negatives = tmp_path / "neg.txt"
    negatives.write_text("Who won the 1930 World Cup?\n# a comment\n{\"question\": \"What is a quasar?\"}\n")
    result = _run("calibrate", "-c", str(kb_config), "--generated", "10", "--negatives", str(negatives), "--off-topic")
    assert result.exit_code == 0, result.output
    assert "threshold" in result.output and "held-out" in result.output and "stored in" in result.output
    settings = load_settings(kb_config)
    stored = json.loads((settings.kb / "calibration.json").read_text())
    assert stored["negatives"] == 2 + 40 and 0 < stored["positives"] <= 10 and stored["rule"] == "balanced-accuracy"
    assert f"{stored['positives']} questions made from sampled chunks" in result.output
    from slm.answering.service import build_answerer

    with KnowledgeBase.open(settings.kb, settings) as kb:
        settings.generation.backend = "extractive"
        assert build_answerer(settings, kb=kb).min_evidence == pytest.approx(stored["threshold"])
    (settings.kb / "calibration.json").unlink()


def test_calibrate_needs_both_kinds_of_question(kb_config):
    result = CliRunner().invoke(app, ["calibrate", "-c", str(kb_config), "--generated", "5", "--no-off-topic"])
    assert result.exit_code != 0


def test_calibrate_asks_a_chinese_kb_in_chinese(tmp_path, tiny_embedder_dir):
    """Generated answerable questions follow the chunk language and the shipped off-topic ones the KB's
    languages (issue 17: they were English templates, and 24 usable questions came out of a Chinese KB)."""
    config = tmp_path / "slm.yaml"
    config.write_text(yaml.safe_dump({"kb": str(tmp_path / "kb"), "embedder": {"model": str(tiny_embedder_dir)}}))
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, (title, text) in enumerate([("退货政策", "顾客可以在收到商品后三十天内申请退货，并获得全额退款。退款将退回原支付方式。"),
                                       ("配送时间", "包裹从图森仓库发出，通过陆运配送，通常在五个工作日内送达。"),
                                       ("年假", "全职员工每年享有二十五天带薪年假；病假需要医生证明。")]):
        (docs / f"d{i}.md").write_text(f"# 公司制度\n\n## {title}\n\n{text}\n", encoding="utf-8")
    settings = load_settings(config)
    with KnowledgeBase.open(settings.kb, settings, create=True) as kb:
        ingest(docs, kb, progress=False)
    result = _run("calibrate", "-c", str(config), "--generated", "3", "--dry-run", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert "40 shipped off-topic questions in zh (unanswerable)" in result.output
    assert "3 questions made from sampled chunks" in result.output
    from slm.answering.abstention import questions_from_chunks
    from slm.text.language import detect_language

    with KnowledgeBase.open(settings.kb, settings) as kb:
        made = questions_from_chunks(kb.all_chunks(None), 3, seed=1)
    assert len(made) == 3 and all(detect_language(q) == "zh" for q in made), made
