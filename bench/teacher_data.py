"""Compare who writes the training data on a sample of a corpus's chunks: the rules vs a model teacher through
llama.cpp (questions AND answers), through the product's own generate_examples and filters.

    python bench/teacher_data.py corpora/python-docs --chunks 40 --teacher package:qwen2.5-1.5b \
        --judge package:qwen2.5-1.5b --out /tmp/teacher-bench

Prints, per writer: seconds per chunk, examples kept, teacher questions/answers kept vs rule fallbacks,
duplicate and near-duplicate questions, generic template questions, and (with --judge) the share of
questions a model judges answerable from their own chunk. Writes each writer's examples as JSONL.
No timings are asserted; this is a measurement.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

JUDGE_PROMPT = ("Read the text and the question. Does the text itself contain the answer to the question? "
                "Reply with one word: yes or no.")
GENERIC = ("What does the documentation say about", "Can you explain", "What should I know about", "How does")


def load_chunks(root: Path, settings) -> list:
    from slm.kb.chunking import chunk_document
    from slm.kb.documents import discover, load_document

    chunks = []
    for path in discover(root, settings.ingest.include, settings.ingest.exclude):
        try:
            doc = load_document(path, root, max_bytes=int(settings.ingest.max_file_mb * 1e6))
        except Exception as exc:  # a bad file is one logged failure
            print(f"skip {path}: {exc}")
            continue
        chunks += chunk_document(doc, chunk_chars=settings.ingest.chunk_chars, overlap=settings.ingest.chunk_overlap,
                                 min_chars=settings.ingest.min_chunk_chars)
    return chunks


def near_duplicates(questions: list[str], threshold: float = 0.8) -> int:
    """Questions whose content words overlap an earlier question's by Jaccard >= threshold."""
    from slm.training.questions import content_words

    seen: list[set[str]] = []
    count = 0
    for question in questions:
        words = set(content_words(question))
        if any(words and len(words & other) / len(words | other) >= threshold for other in seen):
            count += 1
        seen.append(words)
    return count


def judge(teacher, examples, chunks_by_id, max_chars: int) -> list[bool]:
    batch = []
    for example in examples:
        chunk = chunks_by_id[example.gold_chunk_ids[0]]
        text = chunk.text[:max_chars].strip()
        batch.append([{"role": "system", "content": JUDGE_PROMPT},
                      {"role": "user", "content": f"Text:\n{text}\n\nQuestion: {example.question}"}])
    return [reply.strip().lower().startswith("yes") for reply in teacher.complete_many(batch, max_new_tokens=2)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--teacher", action="append", default=[], help="model spec (repeatable); rules always run")
    parser.add_argument("--judge", default=None, help="model spec that judges answerability (llama.cpp)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/teacher-bench"))
    args = parser.parse_args()

    from slm.config import Settings
    from slm.training.questions import QuestionPolicy, example_to_json, generate_examples, sample_chunks
    from slm.training.teacher import LlamaCppTeacher

    settings = Settings()
    chunks, _ = sample_chunks(load_chunks(args.corpus, settings), args.chunks, seed=0)
    by_id = {c.id: c for c in chunks}
    shown = settings.answering.max_passage_chars
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{len(chunks)} chunks sampled from {args.corpus} (seed 0), {shown} chars shown")
    judge_model = LlamaCppTeacher.load(args.judge, threads=args.threads) if args.judge else None
    rows = []
    for spec in [None, *args.teacher]:
        teacher = LlamaCppTeacher.load(spec, threads=args.threads) if spec else None
        policy = QuestionPolicy(teacher_answers=teacher is not None, max_passage_chars=shown,
                                question_context_chars=shown, strip_heading=settings.training.strip_heading)
        t0 = time.perf_counter()
        examples, stats = generate_examples(chunks, teacher, policy=policy, progress=False)
        seconds = time.perf_counter() - t0
        name = spec or "rules"
        with (args.out / f"{name.replace(':', '_').replace('/', '_')}.jsonl").open("w") as handle:
            for example in examples:
                handle.write(json.dumps(example_to_json(example), ensure_ascii=False) + "\n")
        questions = [e.question for e in examples]
        row = {
            "writer": name, "chunks": len(chunks), "seconds": round(seconds, 1),
            "s_per_chunk": round(seconds / max(len(chunks), 1), 2), "examples": len(examples),
            "teacher_questions": stats.teacher_questions, "rule_questions": sum(stats.rule_questions.values()),
            "fallback_questions": stats.fallback_questions, "teacher_answers": stats.teacher_answers,
            "extractive_answers": stats.extractive_answers, "rejected": dict(stats.rejected),
            "exact_duplicates": len(questions) - len({q.lower() for q in questions}),
            "near_duplicates": near_duplicates(questions),
            "generic_template": sum(q.startswith(GENERIC) for q in questions),
        }
        if judge_model is not None and examples:
            t1 = time.perf_counter()
            verdicts = judge(judge_model, examples, by_id, shown)
            row["judged_answerable"] = round(sum(verdicts) / len(verdicts), 3)
            row["judge_seconds"] = round(time.perf_counter() - t1, 1)
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
    (args.out / "summary.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
