"""A small corpus whose chunks are long enough to write training questions for (retraining tests)."""

from __future__ import annotations

from pathlib import Path

from slm.config import Settings
from tests.helpers.kb import kb_settings

FILLER = ("Staff should read this page before asking the help desk, and managers should point new colleagues to it. "
          "The rules apply to every office and every team, including contractors working on site. ")

PAGES = {
    "refunds.md": ("Refund policy", "Customers may return a product within 30 days of purchase for a full refund. "
                   "Refunds go back to the original payment method and need the receipt."),
    "shipping.md": ("Shipping", "Parcels ship from the Tucson warehouse by ground freight and arrive within five "
                    "business days. Express shipping costs twelve dollars per parcel."),
    "leave.md": ("Annual leave", "Employees accrue twenty five days of paid annual leave per year. Requests go "
                 "through the HR portal two weeks ahead."),
    "laptops.md": ("Laptops", "Every new hire receives a laptop and a badge from the front desk on the first day. "
                   "Laptops are replaced every three years."),
}
ADDED = ("parking.md", "Parking", "The staff car park opens at 6 am and the visitor spaces are on level two. "
         "Parking permits are issued by facilities and cost forty dollars a month.")


def page(title: str, fact: str) -> str:
    return f"# {title}\n\n## Overview\n\n{fact} {FILLER}\n\n## Details\n\n{FILLER}{fact}\n"


def write_pages(root: Path, pages: dict[str, tuple[str, str]] = PAGES) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, (title, fact) in pages.items():
        (root / name).write_text(page(title, fact), encoding="utf-8")
    return root


def retrain_settings(kb: Path, embedder: Path | str, lm: Path | str) -> Settings:
    """Tiny models everywhere, a couple of training steps, a small gate."""
    s = kb_settings(kb, embedder)
    s.generation.model = str(lm)
    s.generation.max_new_tokens = 8
    s.answering.min_evidence = -1.0  # random embeddings: never abstain on weak evidence
    s.training.base = str(lm)
    s.training.teacher = "none"
    s.training.batch_size = 2
    s.training.max_seq_len = 2048  # the tiny byte-level tokenizer spends many tokens per word
    s.answering.max_passage_chars = 500
    s.training.distractors = 1
    s.training.save_every = 1
    s.retrain.max_steps = 2
    s.retrain.eval_questions = 4
    s.retrain.eval_max_new_tokens = 8
    s.retrain.min_new_documents = 1
    s.retrain.tolerance = 0.5
    return s


def answering_adapter(lm_dir: Path | str, folder: Path, word: str = " and") -> Path:
    """A real LoRA adapter (bias only, last MLP) that steers the tiny random model to repeat `word`:
    its answers are never empty, so it answers where the plain tiny model abstains."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(lm_dir)
    model = AutoModelForCausalLM.from_pretrained(lm_dir)
    last = model.config.num_hidden_layers - 1
    config = LoraConfig(r=1, lora_alpha=1, target_modules=["down_proj"], layers_to_transform=[last], lora_bias=True)
    peft_model = get_peft_model(model, config)
    direction = model.get_input_embeddings().weight.detach()[tokenizer.encode(word)[-1]]
    for module in peft_model.modules():
        if hasattr(module, "lora_B") and "default" in module.lora_B:
            with torch.no_grad():
                module.lora_A["default"].weight.zero_()
                module.lora_B["default"].weight.zero_()
                module.lora_B["default"].bias.copy_(direction / direction.norm() * 50)
    peft_model.save_pretrained(folder)
    return folder
