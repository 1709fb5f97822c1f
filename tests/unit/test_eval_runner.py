"""The eval run end to end on a fake knowledge base, real answerers with fake generators, real reports."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from slm.answering.answerer import Answerer, ExtractiveAnswerer
from slm.config import Settings
from slm.evaluation.evaluate import evaluate
from slm.evaluation.records import ModelIdentity
from slm.evaluation.runner import EvalOptions
from slm.types import Chunk, Hit
from tests.helpers.generators import EstimatedTokens

DOCS = {
    "faq/refunds.html": ("refunds", "Refunds are paid within 30 days of a return with a receipt.", ("employees",)),
    "faq/leave.html": ("leave", "Employees take 25 days of annual leave through the HR portal.", ("employees",)),
    "hr/salary.html": ("pay", "Salary bands are secret: the top band earns 90000 euros.", ("hr",)),
}
WORD = re.compile(r"[a-z0-9]+")


def words(text):
    return set(WORD.findall(text.lower())) - {"the", "a", "of", "are", "is", "do", "how", "what", "with"}


@dataclass(frozen=True)
class DocInfo:
    id: str
    source: str
    audiences: tuple
    content_hash: str = "h"
    chunk_count: int = 1


class FakeRetriever:
    def __init__(self):
        self.calls = []
        self.chunks = [
            Chunk(id=f"{doc}::0000", doc_id=doc, text=text, start=0, end=len(text), anchor=anchor,
                  source=doc, title=doc, audiences=aud)
            for doc, (anchor, text, aud) in DOCS.items()
        ]

    def retrieve(self, query, k=5, *, audiences=None, mode=None, rerank=None):
        self.calls.append((query, mode))
        q = words(query)
        visible = [c for c in self.chunks if audiences is None or set(c.audiences) & audiences]
        scored = sorted(visible, key=lambda c: (-len(q & words(c.text)), c.id))
        if mode == "dense":  # a deliberately worse ranking, so settings differ
            scored = scored[::-1]
        return [Hit(c, score=1.0, dense=len(q & words(c.text)) / max(len(q), 1)) for c in scored[:k]]


class FakeKB:
    path = None

    def __init__(self, path):
        self.path = path
        self.inner = FakeRetriever()

    def retriever(self):
        return self.inner

    def documents(self):
        return [DocInfo(doc, doc, aud) for doc, (_, _, aud) in DOCS.items()]

    def close(self):
        pass


class QuoteGenerator(EstimatedTokens):
    """Answers with passage 1's text and cites it; a stand-in for a model, no weights."""

    def __init__(self, name):
        self.name = name
        self.adapter = None
        self.calls = 0

    def stream(self, messages, settings):
        self.calls += 1
        user = messages[-1]["content"]
        if "<passage" not in user:  # closed book: knows nothing
            yield "I don't know from the documents."
            return
        body = user.split(">\n", 1)[1].split("\n</passage>", 1)[0]
        for word in body.split(" "):
            yield word + " "
        yield "[1]"

    def generate(self, messages, settings):
        return "".join(self.stream(messages, settings))


def make_factory(settings, generators):
    def factory(spec, retriever):
        if spec.generator == "extractive":
            return ExtractiveAnswerer(retriever, settings.answering, settings.retrieval, min_evidence=0.3), ModelIdentity("extractive")
        name = "base" if spec.generator in ("base", "current") else spec.generator
        gen = generators.setdefault(name, QuoteGenerator(name))
        answerer = Answerer(retriever, gen, settings.answering, settings.retrieval, settings.generation, min_evidence=0.3)
        return answerer, ModelIdentity("fake", adapter=None if name == "base" else name, adapter_path=None if name == "base" else name)
    return factory


QUESTIONS = [
    {"id": "r1", "question": "When are refunds paid?", "answer": "Refunds are paid within 30 days.",
     "source": "faq/refunds.html", "anchor": "refunds"},
    {"id": "l1", "question": "How many days of annual leave do employees take?",
     "answer": "25 days of annual leave.", "source": "faq/leave.html", "anchor": "leave"},
    {"id": "s1", "question": "What does the top salary band earn?", "answer": "90000 euros.",
     "source": "hr/salary.html", "anchor": "pay"},
    {"id": "x1", "question": "<script>alert(1)</script> Who painted the Mona Lisa?", "answer": "Leonardo"},
]
OOD = [{"id": "o1", "question": "How do I rebase a git branch?", "answerable": False},
       {"id": "o2", "question": "What is a Django migration?", "answerable": False}]


@pytest.fixture()
def qa_files(tmp_path):
    a = tmp_path / "qa.jsonl"
    a.write_text("\n".join(json.dumps(q) for q in QUESTIONS) + "\n{broken\n", encoding="utf-8")
    b = tmp_path / "ood.jsonl"
    b.write_text("\n".join(json.dumps(q) for q in OOD) + "\n", encoding="utf-8")
    return [a, b]


def run(tmp_path, qa_files, variants, audiences=None, **opts):
    settings = Settings(kb=tmp_path / "kb")
    kb = FakeKB(tmp_path / "kb")
    generators = {}
    limit = opts.pop("limit", None)
    opts.setdefault("closed_book", None)
    options = EvalOptions(resamples=200, progress=False, **opts)
    result = evaluate(settings, qa_files, variants, tmp_path / "out", audiences=audiences, options=options, limit=limit,
                      kb=kb, factory=make_factory(settings, generators), command="slm eval test")
    return result, kb, generators


def test_full_run_writes_every_report(tmp_path, qa_files):
    result, kb, generators = run(tmp_path, qa_files, "extractive,base,v2,dense")
    out = tmp_path / "out"
    for name in ("summary.json", "report.md", "report.html", "per_question.jsonl", "quality.png", "retrieval.png"):
        assert (out / name).is_file(), name
    s = json.loads((out / "summary.json").read_text())
    assert s["schema"] == "slm.eval/1"
    assert s["qa"]["questions"] == 6 and s["qa"]["answerable"] == 4 and s["qa"]["unanswerable"] == 2
    assert len(s["qa"]["bad_lines"]) == 1 and s["qa"]["bad_lines"][0].endswith(":5: not valid JSON (Expecting property name enclosed in double quotes at column 2)")
    assert set(s["variants"]) == {"extractive", "base", "v2", "dense"}
    assert s["kb"]["documents"] == 3 and s["machine"]["cpu_count"]
    base = s["variants"]["base"]
    # the quote generator answers every answerable question from the right source
    assert base["metrics"]["source_hit@1"] == 1.0 and base["metrics"]["anchor_mrr"] == 1.0
    assert base["metrics"]["citation_accuracy"] == 1.0 and base["metrics"]["citation_precision"] == 1.0
    # ... except the Mona Lisa question, which no passage covers: it abstains there
    assert base["metrics"]["answer_rate"] == 0.75
    assert 0 < base["metrics"]["answer_f1"] < 1
    assert base["ci95"]["answer_f1"][0] <= base["metrics"]["answer_f1"] <= base["ci95"]["answer_f1"][1]
    # the unanswerable questions share no words with any passage: abstained on both (and on Mona Lisa)
    assert base["metrics"]["abstention_recall"] == 1.0
    assert base["metrics"]["abstention_precision"] == pytest.approx(2 / 3)
    assert base["metrics"]["closed_book_f1"] == 0.0 and base["counts"]["closed_book"] == 4
    assert base["latency"]["latency_total_p50_s"] is not None
    # dense mode ranks worst-first in the fake: retrieval-only variant, lower MRR, no answer metrics
    dense = s["variants"]["dense"]
    assert dense["metrics"]["source_mrr"] < 1.0 and "answer_f1" not in dense["metrics"]
    assert s["baseline"] == "base"
    compared = {(c["a"], c["metric"]) for c in s["comparisons"]}
    assert ("dense", "source_mrr") in compared
    # v2's fake generator answers exactly as base's: identical question by question, so not compared
    assert not any(a == "v2" for a, _ in compared)
    rows = [json.loads(line) for line in (out / "per_question.jsonl").read_text().splitlines()]
    assert len(rows) == 6 * 4
    assert {r["variant"] for r in rows} == {"extractive", "base", "v2", "dense"}


def test_retrieval_runs_once_per_setting_and_query(tmp_path, qa_files):
    result, kb, _ = run(tmp_path, qa_files, "extractive,base,v2,dense,base+dense")
    calls = [c for c in kb.inner.calls if c[0] != "warm up"]
    assert len(calls) == len(set(calls))  # no question retrieved twice with the same setting
    assert {m for _, m in calls} == {"hybrid", "dense"}
    assert len(calls) == 2 * 6


def test_same_weights_are_not_run_twice(tmp_path, qa_files):
    result, _, generators = run(tmp_path, qa_files, "base,current", closed_book=0)
    assert set(generators) == {"base"}
    answered = sum(1 for r in result.run.answers["base"].values() if not r.abstained)
    assert generators["base"].calls == answered  # `current` reused base's answers
    assert any("reused" in n for n in result.summary["notes"])
    assert result.summary["variants"]["current"]["metrics"] == result.summary["variants"]["base"]["metrics"]


def test_audience_run_hides_what_the_audience_may_not_see(tmp_path, qa_files):
    result, kb, _ = run(tmp_path, qa_files, "extractive,base", audiences=frozenset({"employees"}))
    out = tmp_path / "out"
    s = json.loads((out / "summary.json").read_text())
    assert s["audience"] == ["employees"]
    assert s["qa"]["gold_hidden_from_audience"] == 1 and s["qa"]["answerable"] == 3
    assert s["kb"]["documents"] == 2
    for name in ("report.md", "report.html", "per_question.jsonl", "summary.json"):
        text = (out / name).read_text()
        assert "90000" not in text and "hr/salary.html" not in text, name
    salary = [json.loads(l) for l in (out / "per_question.jsonl").read_text().splitlines() if '"s1"' in l]
    assert salary and all(r["gold_source"] == "(restricted)" and r["answerable"] is False for r in salary)


def test_html_escapes_question_text(tmp_path, qa_files):
    run(tmp_path, qa_files, "base")
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_no_answerable_questions_gives_undefined_not_crash(tmp_path):
    ood = tmp_path / "ood.jsonl"
    ood.write_text("\n".join(json.dumps(q) for q in OOD) + "\n", encoding="utf-8")
    result, _, _ = run(tmp_path, [ood], "extractive")
    m = result.summary["variants"]["extractive"]["metrics"]
    assert m["answer_f1"] is None and m["source_mrr"] is None and m["citation_accuracy"] is None
    assert m["abstention_recall"] == 1.0
    assert "n/a" in (tmp_path / "out" / "report.md").read_text()


def test_limit_applies_per_file(tmp_path, qa_files):
    result, _, _ = run(tmp_path, qa_files, "extractive", limit=1)
    assert [q.id for q in result.run.questions] == ["r1", "o1"]


def test_closed_book_sample_spreads_over_the_answerable_questions():
    from slm.evaluation.records import EvalQuestion
    from slm.evaluation.runner import closed_book_sample
    from slm.types import QAExample

    qs = [EvalQuestion(QAExample(f"q{i}", "a", id=f"q{i}"), answerable=i % 5 != 4) for i in range(20)]
    pool = [q.id for q in qs if q.answerable]
    assert closed_book_sample(qs, None) == set(pool) == closed_book_sample(qs, 100)
    assert closed_book_sample(qs, 0) == set()
    picked = closed_book_sample(qs, 4)
    assert len(picked) == 4 and picked <= set(pool)
    assert {"q0", "q15"} <= picked  # from the start and the end, not just the first four


def test_closed_book_limit_counts(tmp_path, qa_files):
    result, _, _ = run(tmp_path, qa_files, "base", closed_book=2)
    assert result.summary["variants"]["base"]["counts"]["closed_book"] == 2
    assert result.summary["variants"]["base"]["n"]["closed_book_f1"] == 2


def test_training_notes_say_whether_gold_pages_were_trained_on(tmp_path):
    from pathlib import Path

    from slm.evaluation.evaluate import training_notes
    from slm.evaluation.records import EvalQuestion
    from slm.evaluation.runner import EvalRun
    from slm.types import QAExample

    qs = [EvalQuestion(QAExample("q", "a", source=s, id=s), True) for s in ("faq/a.html", "faq/b.html", "lib/c.html")]
    run = EvalRun(qs, [], EvalOptions(), None)
    run.identities["current"] = ModelIdentity("m", adapter="v3", adapter_path="/x", registry={
        "exclude_docs": ["faq/*"], "eval_qa_guarded": ["/somewhere/qa.jsonl"]})
    run.identities["base"] = ModelIdentity("m")
    docs = [SimpleNamespace(id=d, source=d) for d in ("faq/a.html", "faq/b.html", "lib/c.html")]
    (note,) = training_notes(run, [Path("qa.jsonl"), Path("ood.jsonl")], docs)
    assert "1 of 3 gold source page(s)" in note and "ood.jsonl were not checked" in note


def test_training_notes_resolve_gold_file_names_to_documents_before_matching_exclude_globs():
    """The issue's case: gold `choosing.en.html` vs `exclude_docs: [debian-faq/*]` said 7 of 7 trained on."""
    from pathlib import Path

    from slm.evaluation.evaluate import training_notes
    from slm.evaluation.records import EvalQuestion
    from slm.evaluation.runner import EvalRun
    from slm.types import QAExample

    gold = ("choosing.en.html", "basic-defs.en.html", "nowhere.html")
    qs = [EvalQuestion(QAExample("q", "a", source=s, id=s), True) for s in gold]
    run = EvalRun(qs, [], EvalOptions(), None)
    run.identities["current"] = ModelIdentity("m", adapter="v1", adapter_path="/x", registry={
        "exclude_docs": ["debian-faq/*"], "eval_qa_guarded": []})
    docs = [SimpleNamespace(id=f"debian-faq/{g}", source=f"debian-faq/{g}") for g in gold[:2]]
    docs.append(SimpleNamespace(id="reference/ch01.en.html", source="reference/ch01.en.html"))
    (note,) = training_notes(run, [Path("qa.jsonl")], docs)
    assert "0 of 3 gold source page(s)" in note


def test_identical_variants_are_not_listed_as_comparisons(tmp_path, qa_files):
    result, _, _ = run(tmp_path, qa_files, "base,current,extractive", closed_book=0)
    pairs = {(d.a, d.metric) for d in result.comparisons}
    assert not any(a == "current" for a, _ in pairs)  # current reused base's answers: identical
    assert all(d.diff != 0 or d.low != d.high for d in result.comparisons)
    assert "Examples (current)" in (tmp_path / "out" / "report.md").read_text()


def test_the_report_says_when_the_abstention_gate_was_on(tmp_path, qa_files):
    from slm.evaluation.report import _abstention_gate_note

    run(tmp_path, qa_files, "base")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["settings"]["generation"]["abstain_min_prob"] == 0.0
    assert "abstains only" not in (tmp_path / "out" / "report.md").read_text()  # off by default: not mentioned
    assert _abstention_gate_note({"abstain_min_prob": 0.5}) == ", abstains only at p ≥ 0.5 (generation.abstain_min_prob)"
