"""Abstention: detecting a model's decline, the evidence score, and a threshold calibrated on data."""

from __future__ import annotations

import random

import pytest

from slm.answering.abstention import (
    Calibration,
    LabelledQuestion,
    balanced_accuracy,
    calibrate,
    choose_threshold,
    evidence_score,
    evidence_threshold,
    is_abstention,
    load_calibration,
    question_from_chunk,
    questions_from_chunks,
    split_questions,
)
from slm.answering.off_topic import OFF_TOPIC_QUESTIONS, off_topic_questions
from slm.config import DEFAULT_EMBEDDER, MIN_EVIDENCE_DEFAULTS, MULTILINGUAL_EMBEDDER
from slm.errors import KnowledgeBaseError
from slm.text.language import detect_language
from slm.answering.prompting import ABSTAIN_TEXT
from slm.types import Chunk, Hit


@pytest.mark.parametrize("text", [
    ABSTAIN_TEXT, "I don't know.", "I do not know the answer [1].", "I dont know", "I can't answer that from these.",
    "The passages do not mention a refund deadline.", "The documents don't say.", "This is not covered in the passages.",
    "There is no information about rockets.", "", "   ",
])
def test_declines_are_detected(text):
    assert is_abstention(text)


@pytest.mark.parametrize("text", [
    "Refunds are accepted within 30 days [1].",
    "Use a generator to make a class iterable; the tutorial shows how to write __iter__ and __next__ in detail, "
    "and notes that if you don't know the length in advance, a generator is simplest [2].",
])
def test_answers_are_not_declines(text):
    assert not is_abstention(text)


def _hit(dense, score=1.0):
    chunk = Chunk(id="d::0000", doc_id="d", text="t", start=0, end=1)
    return Hit(chunk=chunk, score=score, dense=dense)


def test_evidence_is_the_best_dense_score_not_the_rank_order():
    assert evidence_score([_hit(0.2), _hit(0.7), _hit(None)]) == pytest.approx(0.7)
    assert evidence_score([]) == 0.0
    assert evidence_score([_hit(None, score=0.4)]) == pytest.approx(0.4)


def test_threshold_separates_separable_scores_at_the_gap():
    threshold, acc = choose_threshold([0.6, 0.7, 0.8], [0.1, 0.2, 0.3])
    assert acc == 1.0 and 0.3 < threshold <= 0.6


def test_threshold_maximises_balanced_accuracy_under_overlap_and_imbalance():
    rng = random.Random(0)
    pos = [rng.gauss(0.6, 0.1) for _ in range(200)]
    neg = [rng.gauss(0.3, 0.1) for _ in range(20)]
    threshold, acc = choose_threshold(pos, neg)
    grid = [i / 100 for i in range(101)]
    assert acc >= max(balanced_accuracy(pos, neg, t) for t in grid) - 1e-9
    assert 0.35 < threshold < 0.55  # a plain accuracy optimum would sit far lower with 10:1 imbalance
    with pytest.raises(ValueError):
        choose_threshold(pos, [])


def test_split_is_stratified_and_disjoint():
    qs = [LabelledQuestion(f"p{i}", True, id=f"p{i}") for i in range(10)] + \
         [LabelledQuestion(f"n{i}", False, id=f"n{i}") for i in range(6)]
    tune, held = split_questions(qs, 0.5, seed=1)
    assert {q.id for q in tune}.isdisjoint(q.id for q in held) and len(tune) + len(held) == 16
    assert sum(q.answerable for q in held) == 5 and sum(not q.answerable for q in held) == 3


class ScoreRetriever:
    """Returns one hit whose dense score is looked up per question text."""

    def __init__(self, scores):
        self.scores = scores
        self.calls = []

    def retrieve(self, query, k=5, *, audiences=None, **kw):
        self.calls.append((query, k, audiences))
        return [_hit(self.scores[query])]


def test_calibrate_tunes_on_one_split_and_reports_the_other(tmp_path):
    rng = random.Random(3)
    questions, scores = [], {}
    for i in range(40):
        answerable = i % 2 == 0
        text = f"q{i}"
        scores[text] = rng.uniform(0.45, 0.9) if answerable else rng.uniform(0.05, 0.5)
        questions.append(LabelledQuestion(text, answerable, id=f"id{i}"))
    retriever = ScoreRetriever(scores)
    cal = calibrate(retriever, questions, passages=3, audiences=frozenset({"a"}), heldout_share=0.5, seed=0,
                    sources=["test"], embedder="emb")
    assert {c[1] for c in retriever.calls} == {3} and {c[2] for c in retriever.calls} == {frozenset({"a"})}
    assert 0.4 < cal.threshold < 0.55 and cal.calibration_balanced_accuracy >= 0.85
    assert 0.7 <= cal.heldout_balanced_accuracy <= 1.0
    assert cal.positives == cal.negatives == 20 and len(cal.tuned_question_ids) == 20
    cal.save(tmp_path)
    assert load_calibration(tmp_path) == cal
    assert load_calibration(tmp_path / "nowhere") is None
    with pytest.raises(ValueError):
        calibrate(retriever, [q for q in questions if q.answerable])


def test_damaged_calibration_file_is_a_clear_error(tmp_path):
    (tmp_path / "calibration.json").write_text("{not json")
    with pytest.raises(KnowledgeBaseError, match="slm calibrate"):
        load_calibration(tmp_path)


def test_questions_from_chunks_use_headings_or_text():
    chunks = [
        Chunk(id="a::0", doc_id="a", text="x" * 50, start=0, end=50, section=("FAQ", "How do I copy a file?")),
        Chunk(id="b::0", doc_id="b", text="y" * 50, start=0, end=50, section=("3.1. Using Python as a Calculator",)),
        Chunk(id="c::0", doc_id="c", text="Refund requests require original receipts within thirty calendar days",
              start=0, end=70),
        Chunk(id="d::0", doc_id="d", text="too short", start=0, end=9),
    ]
    rng = random.Random(0)
    assert question_from_chunk(chunks[0], rng) == "How do I copy a file?"
    assert "Using Python as a Calculator" in question_from_chunk(chunks[1], rng)
    assert "3.1" not in question_from_chunk(chunks[1], rng)
    assert "receipts" in question_from_chunk(chunks[2], rng) or "Refund" in question_from_chunk(chunks[2], rng)
    assert question_from_chunk(chunks[3], rng) is None
    qs = questions_from_chunks(iter(chunks), 10, seed=0)
    assert len(qs) == len(set(qs)) == 3


def test_calibration_questions_follow_the_chunk_language():
    """`slm calibrate` on a Chinese or Indonesian KB asks in that language (it asked English templates only, and
    found 24 usable questions in a Chinese KB: its keyword questions took Latin words only)."""
    chunks = [
        Chunk(id="z::0", doc_id="z", text="顾客可以在收到商品后三十天内申请退货，并获得全额退款。", start=0, end=27,
              section=("退货政策", "退货期限"), title="退货政策", language="zh"),
        Chunk(id="z::1", doc_id="z", text="包裹从图森仓库发出，通过陆运配送，通常在五个工作日内送达。", start=0, end=29,
              language="zh"),  # no heading: a question about a phrase of its text
        Chunk(id="z::2", doc_id="z", text="全职员工每年享有二十五天带薪年假。", start=0, end=17,
              section=("常见问题", "年假有多少天？"), language="zh"),
        Chunk(id="i::0", doc_id="i", text="Karyawan penuh waktu mendapat dua puluh lima hari cuti.", start=0, end=56,
              section=("Kebijakan", "Cuti tahunan"), title="Kebijakan", language="id"),
        Chunk(id="i::1", doc_id="i", text="Paket dikirim dari gudang Tucson melalui jalur darat dan biasanya tiba dalam "
              "lima hari kerja setelah pembayaran diterima oleh bagian keuangan", start=0, end=140, language="id"),
    ]
    for seed in range(5):
        rng = random.Random(seed)
        made = [question_from_chunk(c, rng) for c in chunks]
        assert "退货期限" in made[0] and detect_language(made[0]) == "zh"
        assert detect_language(made[1]) == "zh" and any(p in made[1] for p in ("包裹从图森仓库发出", "通过陆运配送",
                                                                               "通常在五个工作日内送达"))
        assert made[2] == "年假有多少天？"
        assert "Cuti tahunan" in made[3] and detect_language(made[3]) == "id"
        topic = made[4].removeprefix("Apa yang dikatakan dokumentasi tentang ").rstrip("?").split()
        assert 4 <= len(topic) and set(topic) <= set(chunks[4].text.split())  # its words, stop words left out
        assert not {"dan", "dari", "dalam", "oleh"} & set(topic)
        assert all(not q.startswith(("What", "How")) for q in made)
    assert len(questions_from_chunks(iter(chunks), 10, seed=0)) == 5


def test_shipped_off_topic_questions_in_the_kbs_languages():
    assert set(OFF_TOPIC_QUESTIONS) == {"en", "zh", "id"}
    for language, questions in OFF_TOPIC_QUESTIONS.items():
        assert len(questions) == len(set(questions)) >= 30
        assert all(detect_language(q, default=language) == language for q in questions), language
    assert off_topic_questions({"zh": 1300, "en": 50}) == OFF_TOPIC_QUESTIONS["en"] + OFF_TOPIC_QUESTIONS["zh"]
    assert off_topic_questions(["id"]) == OFF_TOPIC_QUESTIONS["id"]
    assert off_topic_questions({"": 10, "other": 3}) == OFF_TOPIC_QUESTIONS["en"]  # KBs before languages


def test_evidence_threshold_rule():
    """Calibrated, else the setting, else the embedder's measured default (an unknown embedder: MiniLM's)."""
    assert evidence_threshold(None, MULTILINGUAL_EMBEDDER) == MIN_EVIDENCE_DEFAULTS[MULTILINGUAL_EMBEDDER]
    assert evidence_threshold(None, DEFAULT_EMBEDDER) == evidence_threshold(None, "my/embedder") == 0.35
    assert evidence_threshold(0.6, MULTILINGUAL_EMBEDDER) == 0.6
    assert evidence_threshold(0.6, MULTILINGUAL_EMBEDDER, calibrated=0.83) == 0.83
    assert evidence_threshold(-1.0, DEFAULT_EMBEDDER, calibrated=None) == -1.0


def test_recall_rule_raises_a_threshold_that_easy_negatives_leave_too_low():
    pos = {f"p{i}": 0.4 + i * 0.01 for i in range(40)}  # 0.40 .. 0.79
    neg = {f"n{i}": 0.05 + i * 0.005 for i in range(20)}  # far below: any cut in the gap separates
    questions = [LabelledQuestion(q, True) for q in pos] + [LabelledQuestion(q, False) for q in neg]
    retriever = ScoreRetriever({**pos, **neg})
    plain = calibrate(retriever, questions, heldout_share=0.25, seed=0)
    cautious = calibrate(retriever, questions, heldout_share=0.25, seed=0, recall=0.9)
    assert plain.rule == "balanced-accuracy" and plain.threshold < 0.4
    assert cautious.rule == "recall>=0.9" and cautious.threshold > plain.threshold
    kept = sum(s >= cautious.threshold for s in pos.values()) / len(pos)
    assert 0.8 <= kept < 1.0 and cautious.calibration_balanced_accuracy >= 0.9
