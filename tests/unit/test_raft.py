"""RAFT builder: gold among hard distractors, marker follows the gold position, abstain share."""

from __future__ import annotations

from slm.answering.prompting import ABSTAIN_TEXT
from slm.training.raft import build_raft_examples
from slm.types import Chunk, QAExample


def _chunk(doc: str, i: int, text: str, start: int = 0) -> Chunk:
    return Chunk(id=f"{doc}::{i:04d}", doc_id=doc, text=text, start=start, end=start + len(text), title=doc)


CHUNKS = [
    _chunk("refunds.md", 0, "Refunds are paid within 30 days of the request. Keep the receipt."),
    _chunk("refunds.md", 1, "Keep the receipt. Store credit is offered for items without a receipt.", start=50),
    _chunk("refunds.md", 2, "Gift cards cannot be refunded under any circumstances at all.", start=500),
    _chunk("leave.md", 0, "Employees get 25 days of annual leave, booked in the HR portal."),
    _chunk("travel.md", 0, "Travel must be booked through the travel desk two weeks ahead."),
    _chunk("copy.md", 0, "As the policy says: Refunds are paid within 30 days of the request."),
    _chunk("it.md", 0, "Laptops are replaced every four years by the IT department."),
]
BY_ID = {c.id: c for c in CHUNKS}


def retrieve(question: str, k: int):
    """Word-overlap retrieval: hard negatives share words with the question."""
    words = set(question.lower().split())
    ranked = sorted(CHUNKS, key=lambda c: (-len(words & set(c.text.lower().split())), c.id))
    return ranked[:k]


EXAMPLE = QAExample("When are refunds paid?", "Refunds are paid within 30 days of the request.",
                    gold_chunk_ids=("refunds.md::0000",), id="q1")


def test_gold_is_among_distractors_and_the_marker_points_at_it():
    examples, skipped = build_raft_examples([EXAMPLE] * 5, BY_ID, retrieve, distractors=3, abstain_share=0.0, seed=1)
    assert skipped == 0 and len(examples) == 5
    for ex in examples:
        ids = [c.id for c in ex.passages]
        assert len(ids) == 4 and len(set(ids)) == 4
        assert ids[ex.gold] == "refunds.md::0000"
        assert ex.target == f"{EXAMPLE.answer} [{ex.gold + 1}]"
        # never the overlapping neighbour, never a chunk that also contains the answer
        assert "refunds.md::0001" not in ids and "copy.md::0000" not in ids
    assert len({ex.gold for ex in examples}) > 1  # order is shuffled


def test_abstain_examples_show_no_gold_document_and_target_abstention():
    examples, _ = build_raft_examples([EXAMPLE] * 10, BY_ID, retrieve, distractors=3, abstain_share=0.3, seed=0)
    abstain = [ex for ex in examples if ex.gold is None]
    assert len(abstain) == 3
    for ex in abstain:
        assert ex.target == ABSTAIN_TEXT
        assert all(c.doc_id != "refunds.md" for c in ex.passages)
        # every chunk left once the gold document and answer copies are out
        assert {c.doc_id for c in ex.passages} == {"leave.md", "travel.md", "it.md"}


def test_unknown_gold_chunk_is_skipped():
    missing = QAExample("q?", "a", gold_chunk_ids=("nope::0000",))
    examples, skipped = build_raft_examples([missing], BY_ID, retrieve)
    assert examples == [] and skipped == 1


def test_dropping_a_distractor_renumbers_the_gold_marker():
    (ex,), _ = build_raft_examples([EXAMPLE], BY_ID, retrieve, distractors=3, abstain_share=0.0, seed=3)
    smaller = ex.drop_one_distractor()
    assert len(smaller.passages) == 3
    assert smaller.passages[smaller.gold].id == "refunds.md::0000"
    alone = smaller.drop_one_distractor().drop_one_distractor()
    assert [c.id for c in alone.passages] == ["refunds.md::0000"] and alone.target.endswith("[1]")
    assert alone.drop_one_distractor() is None


def test_abstain_passages_are_retrieved_for_another_question():
    leave = QAExample("How many days of annual leave do employees get?", "Employees get 25 days of annual leave.",
                      gold_chunk_ids=("leave.md::0000",), id="q2")
    asked: list[str] = []

    def spy(question, k):
        asked.append(question)
        return retrieve(question, k)

    examples, _ = build_raft_examples([EXAMPLE, leave], BY_ID, spy, distractors=2, abstain_share=1.0, seed=0)
    assert asked == [leave.question, EXAMPLE.question]  # each abstain example uses the other's retrieval
    refunds_abstain = next(ex for ex in examples if ex.id == "q1")
    assert all(c.doc_id != "refunds.md" for c in refunds_abstain.passages)
    assert refunds_abstain.target == ABSTAIN_TEXT


def test_a_retrieval_order_share_keeps_the_retrievers_order():
    examples, _ = build_raft_examples([EXAMPLE] * 10, BY_ID, retrieve, distractors=3, abstain_share=0.0,
                                      retrieval_order_share=0.5, seed=0)
    ranked = [c.id for c in retrieve(EXAMPLE.question, 20)]
    in_order = [ex for ex in examples if [p.id for p in ex.passages] == sorted((p.id for p in ex.passages),
                                                                               key=ranked.index)]
    assert len(in_order) >= 5  # the ordered half, plus any shuffle that happens to match
    for ex in in_order:
        assert ex.passages[ex.gold].id == "refunds.md::0000"
    none, _ = build_raft_examples([EXAMPLE] * 10, BY_ID, retrieve, distractors=3, abstain_share=0.0, seed=0)
    assert len({tuple(p.id for p in ex.passages) for ex in none}) > 1  # share 0: shuffled
