"""What separates the RAFT answer examples from the abstain examples, and where real questions fall.

    python bench/abstain_overlap.py --kb /tmp/kb --qa ../shared/eval/python_faq_qa.jsonl \
        [--data teacher.jsonl ...] [--chunks 300]

For each set it prints the distribution (p10/p50/p90, share < 0.5) of the *best passage overlap*: the
share of a question's content words found in the passage that overlaps it most. Sets: rule-written
training questions vs their gold chunk (what "answer" looks like in training), the passages of the abstain
examples build_raft_examples makes for them (what "abstain" looks like), the evaluation questions vs their
gold passage (what a user asks), and any --data file of generated questions (e.g. a model teacher's).
A model that learned "answer when the question's words are in a passage" abstains on real questions whose
overlap sits between the first two. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def overlap(question: str, text: str) -> float:
    from slm.training.questions import content_words

    words = set(content_words(question))
    return len(words & set(content_words(text))) / len(words) if words else 0.0


def describe(name: str, values: list[float]) -> dict:
    values = sorted(values)
    if not values:
        return {"set": name, "n": 0}
    q = statistics.quantiles(values, n=10) if len(values) > 1 else [values[0]] * 9
    return {"set": name, "n": len(values), "p10": round(q[0], 2), "p50": round(statistics.median(values), 2),
            "p90": round(q[8], 2), "below_0.5": round(sum(v < 0.5 for v in values) / len(values), 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kb", type=Path, required=True)
    parser.add_argument("--qa", type=Path, required=True)
    parser.add_argument("--data", type=Path, action="append", default=[])
    parser.add_argument("--chunks", type=int, default=300)
    args = parser.parse_args()

    from slm.config import load_settings
    from slm.evaluation.dataset import load_qa
    from slm.kb.local import KnowledgeBase
    from slm.training.questions import QuestionPolicy, generate_examples, read_examples, sample_chunks
    from slm.training.raft import build_raft_examples

    settings = load_settings(None, kb=args.kb)
    kb = KnowledgeBase.open(args.kb, settings)
    visible = list(kb.all_chunks())
    by_id = {c.id: c for c in visible}
    shown = settings.answering.max_passage_chars
    chunks, _ = sample_chunks(visible, args.chunks, seed=settings.training.seed)
    policy = QuestionPolicy(max_passage_chars=shown, question_context_chars=shown,
                            strip_heading=settings.training.strip_heading)
    rules, _ = generate_examples(chunks, None, policy=policy, progress=False)
    retriever = kb.retriever()

    def retrieve(question: str, k: int):
        return [h.chunk for h in retriever.retrieve(question, k=k)]

    raft, _ = build_raft_examples(rules, by_id, retrieve, distractors=settings.training.distractors,
                                  abstain_share=settings.training.abstain_share, seed=settings.training.seed,
                                  progress=False)
    rows = [
        describe("rules: question vs its gold chunk", [overlap(e.question, by_id[e.gold_chunk_ids[0]].text[:shown])
                                                       for e in rules]),
        describe("RAFT answer examples: best passage", [max(overlap(r.question, p.text[:shown]) for p in r.passages)
                                                        for r in raft if r.gold is not None]),
        describe("RAFT abstain examples: best passage", [max(overlap(r.question, p.text[:shown]) for p in r.passages)
                                                         for r in raft if r.gold is None]),
    ]
    questions, _ = load_qa(args.qa)
    gold = []
    for q in questions:
        hits = [c for c in visible if q.source and c.source == q.source and (not q.anchor or c.anchor == q.anchor)]
        if hits:
            gold.append(max(overlap(q.question, c.text[:shown]) for c in hits))
    rows.append(describe(f"eval {args.qa.name}: question vs its gold section", gold))
    for path in args.data:
        if not path.is_file():
            print(f"skip {path}: no such file")
            continue
        data = [e for e in read_examples(path) if e.gold_chunk_ids and e.gold_chunk_ids[0] in by_id]
        rows.append(describe(f"{path.name}: question vs its gold chunk",
                             [overlap(e.question, by_id[e.gold_chunk_ids[0]].text[:shown]) for e in data]))
    for row in rows:
        print(json.dumps(row, ensure_ascii=False))


if __name__ == "__main__":
    main()
