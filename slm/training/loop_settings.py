"""What the training settings and this machine make of the LoRA loop: its speed and checkpointing fields,
the student's dtype, the token-level distiller, and the GPU memory given back before a multi-GPU launch."""

from __future__ import annotations

from typing import Any

from slm.errors import TrainingError


def release_gpu_memory() -> None:
    """Give back the GPU memory of the model this process loaded for tokenising, before the training ranks start."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def train_dtype():
    """bf16 where the GPU supports it, else fp32 (a CPU trains in fp32)."""
    import torch

    return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32


def check_kd_weight(kd_weight: float) -> None:
    """The loss is (1 - kd_weight) * CE + kd_weight * KL (slm.training.distill): a share outside 0-1 would
    turn one of the terms negative."""
    if not 0.0 <= kd_weight <= 1.0:
        raise TrainingError(f"training.kd_weight (--kd-weight) is the KL term's share of the loss: between 0 and 1, "
                            f"not {kd_weight}")


def speed_fields(speed: str) -> dict[str, Any]:
    """LoopConfig fields for `training.speed`: the plain path, or the measured fast preset."""
    if speed == "plain":
        return {"gradient_checkpointing": True}
    if speed == "fast":
        import torch

        from slm.training.fast import fast_loop_fields

        return fast_loop_fields(cuda=torch.cuda.is_available())
    raise TrainingError(f"training.speed must be 'plain' or 'fast', not {speed!r}")


def checkpointing_field(choice: str) -> dict[str, Any]:
    """`training.gradient_checkpointing`: auto keeps the speed preset's choice on a GPU (memory-bound) and turns
    recomputation off on a CPU (compute-bound: it costs about a third more work per step); on/off force it."""
    if choice == "auto":
        import torch

        return {} if torch.cuda.is_available() else {"gradient_checkpointing": False}
    if choice in ("on", "off"):
        return {"gradient_checkpointing": choice == "on"}
    raise TrainingError(f"training.gradient_checkpointing must be auto, on or off, not {choice!r}")


def distiller_for(peft_model, tokenizer, teacher, teacher_spec: str, base: str, kd_weight: float, top_k: int = 0):
    """(the token-level distiller, or None where the teacher gives no usable logits; the note saying which)."""
    from slm.training.distill import TokenDistiller, same_vocabulary
    from slm.training.teacher import LocalTeacher

    if teacher_spec.startswith(("http://", "https://")) or teacher_spec.lower() == "none":
        return None, "token-level KD skipped: the teacher is an endpoint (no logits); sequence-level only"
    if teacher_spec == base:
        return TokenDistiller.self_distill(peft_model, kd_weight), f"token-level KD on: self-distillation, weight {kd_weight}"
    if not isinstance(teacher, LocalTeacher):
        teacher = LocalTeacher.load(teacher_spec)
    if not same_vocabulary(tokenizer, teacher.tokenizer):
        return None, f"token-level KD skipped: {teacher_spec} and {base} have different vocabularies"
    return TokenDistiller.from_model(teacher.model, kd_weight, top_k=top_k), \
        f"token-level KD on: teacher {teacher_spec}, weight {kd_weight}" + (f", top {top_k} tokens" if top_k else "")
