"""`slm eval` end to end: real ingest with MiniLM, a tiny random generator, real reports on disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slm.cli.main import app

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parents[2] / "corpora" / "tiny"

QUESTIONS = [
    {"id": "refund-days", "question": "Within how many days of delivery can a customer return a product for a refund?",
     "answer": "A customer may return any product within 30 days of delivery for a full refund.",
     "source": "refund-policy.md"},
    {"id": "warranty", "question": "Does Acme have a warranty on Roadrunner gadgets?",
     "answer": "Every Roadrunner gadget has a two-year warranty against manufacturing defects.", "source": "faq.txt"},
    {"id": "leave", "question": "How many days of paid annual leave do full-time employees accrue?",
     "answer": "Full-time employees accrue 25 days of paid annual leave per year.", "source": "hr/leave-policy.md"},
]
OUT_OF_DOMAIN = [
    {"id": "ood-1", "question": "How do I undo the last git commit?", "answerable": False},
    {"id": "ood-2", "question": "What is the Django admin site?", "answerable": False},
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_lm_dir):
    root = tmp_path_factory.mktemp("eval-e2e")
    corpus = root / "corpus"
    shutil.copytree(CORPUS, corpus)
    config = root / "slm.yaml"
    config.write_text(f"generation:\n  model: {tiny_lm_dir}\n  max_new_tokens: 8\n", encoding="utf-8")
    kb = root / "kb"
    result = CliRunner().invoke(app, ["ingest", str(corpus), "--kb", str(kb), "--config", str(config), "--quiet"])
    assert result.exit_code == 0, result.output
    qa = root / "qa.jsonl"
    qa.write_text("\n".join(json.dumps(q) for q in QUESTIONS) + "\nnot json at all\n", encoding="utf-8")
    ood = root / "ood.jsonl"
    ood.write_text("\n".join(json.dumps(q) for q in OUT_OF_DOMAIN) + "\n", encoding="utf-8")
    return root, kb, config, qa, ood


def invoke(*args):
    return CliRunner().invoke(app, ["eval", *map(str, args), "--resamples", "200", "--no-progress"])


def test_eval_command_writes_reports(workspace):
    root, kb, config, qa, ood = workspace
    out = root / "out"
    result = invoke("--qa", qa, "--qa", ood, "--variants", "extractive,base,bm25", "--out", out,
                    "--kb", kb, "--config", config, "--max-new-tokens", "8")
    assert result.exit_code == 0, result.output
    assert "1 bad line(s) skipped" in result.output
    for name in ("summary.json", "report.md", "report.html", "per_question.jsonl", "quality.png", "retrieval.png"):
        assert (out / name).stat().st_size > 0, name
    s = json.loads((out / "summary.json").read_text())
    assert s["qa"]["questions"] == 5 and s["qa"]["answerable"] == 3 and s["qa"]["unanswerable"] == 2
    assert s["qa"]["bad_lines"][0].endswith(":4: not valid JSON (Expecting value at column 1)")
    assert s["kb"]["documents"] == 6 and s["kb"]["chunks"] > 6
    assert set(s["variants"]) == {"extractive", "base", "bm25"}
    base = s["variants"]["base"]
    assert base["model"]["model"] == s["settings"]["generation"]["model"]
    assert base["model"]["adapter"] is None
    # real MiniLM finds each gold document among the top 5 of this small corpus
    assert base["metrics"]["source_hit@5"] == 1.0
    assert s["variants"]["extractive"]["metrics"]["source_mrr"] == base["metrics"]["source_mrr"]  # same setting
    assert s["variants"]["bm25"]["retrieval"] == "bm25" and "answer_f1" not in s["variants"]["bm25"]["metrics"]
    for name in ("answer_f1", "answer_rouge_l", "citation_accuracy", "abstention_recall", "closed_book_f1"):
        value = base["metrics"][name]
        assert value is None or 0.0 <= value <= 1.0, name
    assert base["counts"]["answered"] + base["counts"]["abstained"] == 5
    # the extractive baseline quotes the top passage: its citations come from the retrieved gold source
    assert s["variants"]["extractive"]["metrics"]["citation_accuracy"] > 0
    rows = [json.loads(l) for l in (out / "per_question.jsonl").read_text().splitlines()]
    assert len(rows) == 15
    assert s["wall_seconds"] > 0


def test_eval_as_an_audience_hides_restricted_gold(workspace):
    root, kb, config, qa, ood = workspace
    out = root / "out-employees"
    result = invoke("--qa", qa, "--qa", ood, "--variants", "extractive", "--out", out,
                    "--kb", kb, "--config", config, "--audience", "employees")
    assert result.exit_code == 0, result.output
    s = json.loads((out / "summary.json").read_text())
    assert s["audience"] == ["employees"]
    assert s["qa"]["gold_hidden_from_audience"] == 1
    for name in ("report.md", "report.html", "per_question.jsonl", "summary.json"):
        text = (out / name).read_text()
        assert "leave-policy" not in text and "salary" not in text.lower(), name


def test_bad_variant_is_one_clear_error(workspace):
    root, kb, config, qa, _ = workspace
    result = invoke("--qa", qa, "--variants", "gpt5", "--out", root / "bad", "--kb", kb, "--config", config)
    assert result.exit_code != 0
    assert "unknown variant part 'gpt5'" in str(result.exception) + result.output
