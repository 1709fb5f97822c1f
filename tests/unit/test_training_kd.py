"""Token-level KD from a bigger teacher that shares the student's tokenizer (Qwen2.5 1.5B → 0.5B in the
product), on two tiny random Qwen2 models: the top-k KL loss, and a LoRA loop whose KD term goes down."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from slm.training.distill import TokenDistiller, kd_loss, kd_loss_topk, same_vocabulary  # noqa: E402

LABELS = [[-100, -100, 3, 4, 5, 6], [-100, 1, 2, -100, -100, -100]]


def test_top_k_kd_over_the_whole_vocabulary_is_the_full_kd():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 6, 13), torch.randn(2, 6, 13)
    labels = torch.tensor(LABELS)
    top = teacher.topk(13, dim=-1)
    for temperature in (1.0, 2.0):
        assert kd_loss_topk(student, top.values, top.indices, labels, temperature).item() == pytest.approx(
            kd_loss(student, teacher, labels, temperature).item(), rel=1e-5)


def test_top_k_kd_is_zero_only_where_the_student_matches_and_ignores_prompt_positions():
    torch.manual_seed(0)
    teacher = torch.randn(2, 6, 13)
    labels = torch.tensor(LABELS)
    top = teacher.topk(4, dim=-1)
    assert kd_loss_topk(teacher, *teacher.topk(13, dim=-1), labels).item() == pytest.approx(0.0, abs=1e-6)
    # a student with the teacher's logits still leaves the probability of the other 9 tokens unmatched
    assert kd_loss_topk(teacher, top.values, top.indices, labels).item() > 0
    assert kd_loss_topk(torch.randn(2, 6, 13), top.values, top.indices, labels).item() > 0.01
    assert kd_loss_topk(teacher, top.values, top.indices, torch.full((2, 6), -100)).item() == 0.0


def test_a_student_learns_from_a_bigger_teacher_with_the_same_tokenizer(tiny_qwen2_dir, tmp_path):
    from transformers import AutoTokenizer

    from slm.generation.loading import load_causal_lm
    from slm.training.lora import LoopConfig, LoraSpec, attach_lora, train_lora
    from tests.helpers.tiny_models import tiny_qwen2_lm_dir
    from tests.unit.test_training_loop import _encoded

    torch.set_num_threads(1)
    teacher_dir = tiny_qwen2_lm_dir(tmp_path / "teacher", seed=1, hidden_size=48, layers=3)
    teacher, _ = load_causal_lm(str(teacher_dir))
    student, tokenizer = load_causal_lm(str(tiny_qwen2_dir))
    assert same_vocabulary(tokenizer, AutoTokenizer.from_pretrained(teacher_dir))
    peft_model = attach_lora(student, LoraSpec(r=8, alpha=16, dropout=0.0), seed=0)
    distiller = TokenDistiller.from_model(teacher, kd_weight=1.0, top_k=16)  # KD only: the loss is the KL
    config = LoopConfig(epochs=4, batch_size=3, learning_rate=3e-2, warmup_ratio=0.0, schedule="constant", save_every=0)
    result = train_lora(peft_model, _encoded(tokenizer), config, tmp_path / "kd", pad_id=tokenizer.pad_token_id,
                        distiller=distiller, progress=False)
    assert result.steps == 8
    # the KL to the teacher falls step after step (a rank-8 LoRA on a 32-wide random model: slowly, ~4% here)
    losses = result.losses
    assert all(later < earlier for earlier, later in zip(losses[:4], losses[1:5])), losses
    assert losses[-1] < 0.98 * losses[0], losses
