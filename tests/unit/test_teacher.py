"""The llama.cpp teacher on a tiny GGUF: chosen for GGUF specs, greedy and deterministic, its replies go through
the same filters as any teacher's, and the rules write what it fails to."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'slm[llamacpp]')")

from slm.training.questions import QuestionPolicy, generate_examples, question_messages  # noqa: E402
from slm.types import Chunk  # noqa: E402

TEXT = ("Employees may take 25 days of annual leave each year. Requests go through the HR portal and need the "
        "approval of a manager. Unused days can be carried over to the next year, up to five days, and expire "
        "after March. Part-time staff receive leave in proportion to their hours.")


@pytest.fixture(scope="module")
def tiny_gguf(tiny_lm_dir, tmp_path_factory):
    from slm.adapters.gguf_export import export_gguf

    return export_gguf(str(tiny_lm_dir), None, tmp_path_factory.mktemp("teacher") / "tiny.gguf", quant="f32").path


def test_a_gguf_spec_gets_the_llama_cpp_teacher_which_writes_answers_too(tiny_gguf):
    from slm.training.teacher import LlamaCppTeacher, LocalTeacher, load_teacher

    teacher = load_teacher(str(tiny_gguf))
    assert isinstance(teacher, LlamaCppTeacher) and teacher.writes_answers
    assert not LocalTeacher.writes_answers  # the 135M student teaching itself only writes questions
    chunk = Chunk(id="hr::0", doc_id="hr", start=0, end=len(TEXT), text=TEXT, section=("Leave",))
    batch = [question_messages(chunk), question_messages(chunk, n=2)]
    first = teacher.complete_many(batch, max_new_tokens=12)
    assert len(first) == 2 and all(isinstance(r, str) for r in first)
    assert teacher.complete_many(batch, max_new_tokens=12) == first  # greedy: the same data every run
    prompt = teacher.generator.render(batch[0])
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")


def test_generate_examples_with_the_llama_cpp_teacher_stays_grounded(tiny_gguf):
    from slm.training.teacher import load_teacher

    chunks = [Chunk(id=f"hr::{i}", doc_id=f"hr{i}", start=0, end=len(TEXT), text=TEXT, section=(f"Leave {i}",))
              for i in range(3)]
    teacher = load_teacher(str(tiny_gguf))
    examples, stats = generate_examples(chunks, teacher, policy=QuestionPolicy(teacher_answers=True), progress=False)
    # a random model writes no usable question: every chunk still gets one, from the rules
    assert stats.chunks == 3
    assert stats.teacher_questions + sum(stats.rule_questions.values()) + stats.fallback_questions == 3
    assert examples and all(e.answer and e.gold_chunk_ids for e in examples)
    quoted = [e for e in examples if e.answer in TEXT]
    assert len(quoted) == len(examples) - stats.teacher_answers  # the rest passed the support filter
    assert stats.teacher_answers + stats.extractive_answers == len(examples) + stats.rejected["duplicate answer"]
