"""Token-level distillation: KL from the teacher's next-token distribution on the answer tokens.

Only meaningful when teacher and student share a tokenizer (same vocabulary, same ids); otherwise
distillation stays sequence-level (training on the teacher's answers), which always happens.
"""

from __future__ import annotations

from typing import Any, Callable

from slm.training.data import IGNORE_INDEX


def same_vocabulary(student_tokenizer: Any, teacher_tokenizer: Any) -> bool:
    """True when both tokenizers map every token to the same id."""
    return student_tokenizer.get_vocab() == teacher_tokenizer.get_vocab()


def kd_loss(student_logits: Any, teacher_logits: Any, labels: Any, temperature: float = 1.0) -> Any:
    """Mean KL(teacher || student) over positions that predict an answer token (labels != IGNORE_INDEX)."""
    import torch.nn.functional as F

    # logits at position t predict token t+1, like the causal LM loss
    s = student_logits[:, :-1, :].float() / temperature
    t = teacher_logits[:, :-1, : s.shape[-1]].float() / temperature
    mask = labels[:, 1:] != IGNORE_INDEX
    if not mask.any():
        return student_logits.sum() * 0.0
    s_log = F.log_softmax(s[mask], dim=-1)
    t_log = F.log_softmax(t[mask], dim=-1)
    kl = F.kl_div(s_log, t_log, log_target=True, reduction="batchmean")
    return kl * temperature**2


def kd_loss_topk(student_logits: Any, teacher_values: Any, teacher_ids: Any, labels: Any, temperature: float = 1.0) -> Any:
    """Mean KL(teacher || student) over answer positions, the teacher given as its top-k logits per position.

    `teacher_values`/`teacher_ids` (batch, seq, k) are what `torch.topk` returns on the teacher's logits; the
    teacher's distribution is renormalised over those k tokens and compared with the student's full-vocabulary
    probabilities of the same tokens. k values per position can be stored (computed once by a big teacher, or by
    another backend) where a whole vocabulary (151k for Qwen2.5) cannot. With k = vocabulary it equals kd_loss.
    """
    import torch.nn.functional as F

    s = student_logits[:, :-1, :].float() / temperature
    values = teacher_values[:, :-1, :].float() / temperature
    ids = teacher_ids[:, :-1, :].long()
    mask = labels[:, 1:] != IGNORE_INDEX
    if not mask.any():
        return student_logits.sum() * 0.0
    s_log = F.log_softmax(s[mask], dim=-1).gather(-1, ids[mask])
    t_log = F.log_softmax(values[mask], dim=-1)
    kl = (t_log.exp() * (t_log - s_log)).sum(-1).mean()
    return kl * temperature**2


class TokenDistiller:
    """Mixes the teacher's KL term into the student's loss: (1 - kd_weight) * CE + kd_weight * KL.

    `top_k` > 0 compares only the teacher's k most likely tokens per position (kd_loss_topk); 0: the whole
    distribution (kd_loss).
    """

    def __init__(self, teacher_forward: Callable[[dict], Any], kd_weight: float, temperature: float = 1.0,
                 top_k: int = 0):
        self.teacher_forward = teacher_forward  # batch -> teacher logits (called under no_grad)
        self.kd_weight = kd_weight
        self.temperature = temperature
        self.top_k = top_k

    @classmethod
    def from_model(cls, teacher_model: Any, kd_weight: float, temperature: float = 1.0, top_k: int = 0) -> "TokenDistiller":
        """A separate (frozen) teacher model."""
        teacher_model.eval()
        for p in teacher_model.parameters():
            p.requires_grad_(False)

        def forward(batch: dict) -> Any:
            device = next(teacher_model.parameters()).device
            return teacher_model(
                input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
            ).logits

        return cls(forward, kd_weight, temperature, top_k)

    @classmethod
    def self_distill(cls, peft_model: Any, kd_weight: float, temperature: float = 1.0) -> "TokenDistiller":
        """The teacher is the student's own base (LoRA switched off): keeps the tuned model close to it."""

        def forward(batch: dict) -> Any:
            with peft_model.disable_adapter():
                return peft_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits

        return cls(forward, kd_weight, temperature)

    def loss(self, ce_loss: Any, student_logits: Any, batch: dict) -> Any:
        import torch

        with torch.no_grad():
            teacher_logits = self.teacher_forward(batch).to(student_logits.device)
            if self.top_k:
                top = teacher_logits[..., : student_logits.shape[-1]].topk(self.top_k, dim=-1)
        if self.top_k:
            kd = kd_loss_topk(student_logits, top.values, top.indices, batch["labels"], self.temperature)
        else:
            kd = kd_loss(student_logits, teacher_logits, batch["labels"], self.temperature)
        return (1 - self.kd_weight) * ce_loss + self.kd_weight * kd
