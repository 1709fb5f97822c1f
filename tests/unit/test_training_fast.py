"""The trainer's fast path on tiny models: packing keeps the loss, masking, and coverage; options train the same."""

from __future__ import annotations

import random

import pytest
import torch

from slm.training.data import IGNORE_INDEX, EncodedExample, collate
from slm.training.fast import SpeedOptions, SpeedPlan, answer_only_loss, decoder_layers
from slm.training.lora import LoopConfig, LoraSpec, attach_lora, train_lora
from slm.training.packing import collate_packed, first_fit, packed_epoch_batches, packing_efficiency


def _examples(n: int, vocab: int, *, seed: int = 0, lo: int = 5, hi: int = 40,
              rule: bool = False) -> list[EncodedExample]:
    """Random prompts and answers; with `rule`, answers alternate two tokens (learnable)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        length = rng.randint(lo, hi)
        prompt = rng.randint(1, length - 1)
        ids = [rng.randrange(3, vocab) for _ in range(length)]
        if rule:
            ids[prompt:] = [3 + (ids[prompt - 1] + k) % 2 for k in range(1, length - prompt + 1)]
        ids = tuple(ids)
        out.append(EncodedExample(f"e{i}", ids, (IGNORE_INDEX,) * prompt + ids[prompt:]))
    return out


def _tiny(arch: str, init: float = 0.02):
    from transformers import AutoModelForCausalLM, LlamaConfig, PhiConfig

    torch.manual_seed(0)
    if arch == "phi":
        config = PhiConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=256, initializer_range=init)
    else:
        config = LlamaConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256,
                             initializer_range=init)
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")


def _lora(arch: str):
    model = attach_lora(_tiny(arch), LoraSpec(r=4, alpha=8, dropout=0.0), gradient_checkpointing=False, seed=0)
    for name, p in model.named_parameters():  # LoRA B starts at zero; make the adapters matter
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    return model


def _reference_loss(model, examples) -> torch.Tensor:
    """Each example alone (no batch, no padding), summed over its answer tokens, averaged over all of them."""
    total, count = 0.0, 0
    for e in examples:
        ids = torch.tensor([e.input_ids])
        labels = torch.tensor(e.labels[1:])
        logits = model(input_ids=ids).logits[0, :-1].float()
        keep = labels != IGNORE_INDEX
        total = total + torch.nn.functional.cross_entropy(logits[keep], labels[keep], reduction="sum")
        count += int(keep.sum())
    return total / count


def test_packed_batches_cover_every_example_once_and_fit_their_rows():
    rng = random.Random(1)
    lengths = [rng.randint(10, 300) for _ in range(500)]
    first = packed_epoch_batches(lengths, 4, seed=3, epoch=0, row_len=512)
    assert first == packed_epoch_batches(lengths, 4, seed=3, epoch=0, row_len=512)  # deterministic
    second = packed_epoch_batches(lengths, 4, seed=3, epoch=1, row_len=512)
    assert second != first and len(second) == len(first)  # reordered per epoch, same count (steps, resume)
    for batches in (first, packed_epoch_batches(lengths, 4, seed=3, epoch=1, row_len=512)):
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(lengths)))
        assert all(len(first_fit([lengths[i] for i in b], 512)) <= 4 for b in batches)
    assert packing_efficiency(lengths, first, 512) > 0.9
    # padded to the longest in a naive batch of 4, the same data wastes far more
    assert packing_efficiency(lengths, first, 512) > sum(lengths) / (len(lengths) * 300) + 0.2


def test_packing_refuses_an_example_longer_than_a_row():
    from slm.errors import TrainingError

    with pytest.raises(TrainingError, match="pack_len"):
        first_fit([10, 600], 512)


def test_collate_packed_restarts_positions_and_keeps_the_loss_mask():
    examples = _examples(7, 97, seed=2)
    batch = collate_packed(examples, 0, row_len=64)
    assert batch["input_ids"].shape[1] == 64
    assert int(batch["attention_mask"].sum()) == sum(len(e.input_ids) for e in examples)
    # only answer tokens carry labels (an example's first token is a prompt token here)
    assert int((batch["labels"] != IGNORE_INDEX).sum()) == sum(e.answer_tokens for e in examples)
    labelled = set(batch["labels"][batch["labels"] != IGNORE_INDEX].tolist())
    assert labelled <= {t for e in examples for t, l in zip(e.input_ids, e.labels) if l != IGNORE_INDEX}
    for row, members in enumerate(first_fit([len(e.input_ids) for e in examples], 64)):
        at = 0
        for index in members:
            n = len(examples[index].input_ids)
            assert batch["position_ids"][row, at : at + n].tolist() == list(range(n))
            assert batch["input_ids"][row, at : at + n].tolist() == list(examples[index].input_ids)
            assert batch["labels"][row, at] == IGNORE_INDEX  # never predicted from the previous example
            at += n


def test_first_token_label_is_dropped_when_an_example_has_no_prompt():
    e = EncodedExample("a", (5, 6, 7), (5, 6, 7))
    batch = collate_packed([e, e], 0, row_len=8)
    assert batch["labels"][0].tolist() == [IGNORE_INDEX, 6, 7, IGNORE_INDEX, 6, 7, IGNORE_INDEX, IGNORE_INDEX]


@pytest.mark.parametrize("arch", ["llama", "phi"])
def test_packed_loss_equals_unpacked_loss_on_the_same_examples(arch):
    torch.manual_seed(0)
    model = _lora(arch)
    model.eval()
    examples = _examples(9, 97, seed=4)
    plan = SpeedPlan(SpeedOptions(packing=True, answer_only_logits=True), row_len=96)
    with torch.no_grad():
        reference = _reference_loss(model, examples)
        padded = model(**collate(examples, 0)).loss  # the plain trainer's batch
        packed_batch = collate_packed(examples, 0, row_len=96)
        packed_full = SpeedPlan(SpeedOptions(packing=True), row_len=96).loss(model, packed_batch)
        packed_answer_only = plan.loss(model, collate_packed(examples, 0, row_len=96))
        unpacked_answer_only = answer_only_loss(model, collate(examples, 0))
    assert len(first_fit([len(e.input_ids) for e in examples], 96)) < len(examples)  # rows really hold several
    for loss in (padded, packed_full, packed_answer_only, unpacked_answer_only):
        assert torch.allclose(loss, reference, rtol=1e-5, atol=1e-5), (float(loss), float(reference))


def test_packing_without_position_resets_would_mix_examples():
    """Control: the same packed rows read as one sequence each (plain causal mask) give a different loss."""
    model = _lora("llama")
    model.eval()
    examples = _examples(9, 97, seed=4)
    batch = collate_packed(examples, 0, row_len=96)
    with torch.no_grad():
        mixed = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
        reference = _reference_loss(model, examples)
    assert abs(float(mixed) - float(reference)) > 1e-3


def test_packed_gradients_match_unpacked():
    model = _lora("phi")
    examples = _examples(6, 97, seed=5)
    grads = []
    for batch, plan in (
        (collate(examples, 0), SpeedPlan(SpeedOptions())),
        (collate_packed(examples, 0, row_len=80), SpeedPlan(SpeedOptions(packing=True, answer_only_logits=True), 80)),
    ):
        model.zero_grad()
        plan.loss(model, batch).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad]))
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_compiled_layers_and_selective_checkpointing_keep_loss_and_gradients():
    torch.manual_seed(0)
    base = _tiny("phi")
    examples = _examples(6, 97, seed=6)
    batch = collate_packed(examples, 0, row_len=80)
    results = []
    for options in (SpeedOptions(packing=True), SpeedOptions(packing=True, answer_only_logits=True, compile=True,
                                                             checkpoint_layers=1, compile_backend="aot_eager")):
        model = _tiny("phi")
        model.load_state_dict(base.state_dict())
        model = attach_lora(model, LoraSpec(r=4, alpha=8, dropout=0.0), gradient_checkpointing=True, seed=0)
        model.train()
        plan = SpeedPlan(options, row_len=80)
        plan.prepare(model, torch.device("cpu"))
        flags = [layer.gradient_checkpointing for layer in decoder_layers(model)]
        assert flags == ([True, True] if options.checkpoint_layers is None else [True, False])
        loss = plan.loss(model, batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((float(loss.detach()), grads))
    assert abs(results[0][0] - results[1][0]) < 1e-5
    for name, grad in results[0][1].items():
        assert torch.allclose(grad, results[1][1][name], rtol=1e-4, atol=1e-6), name


def test_loop_fast_path_trains_on_the_same_tokens(tmp_path):
    torch.set_num_threads(1)
    examples = _examples(24, 97, seed=7, lo=8, hi=30, rule=True)
    results = {}
    for name, extra in (("plain", {}), ("fast", {"packing": True, "pack_len": 64, "answer_only_logits": True,
                                                 "checkpoint_layers": 1})):
        torch.manual_seed(0)
        model = attach_lora(_tiny("llama", init=0.5), LoraSpec(r=8, alpha=16, dropout=0.0), seed=0)
        config = LoopConfig(epochs=15, learning_rate=1e-2, batch_size=4, warmup_ratio=0.0, save_every=0, **extra)
        results[name] = train_lora(model, examples, config, tmp_path / name, pad_id=0, progress=False)
    plain, fast = results["plain"], results["fast"]
    assert fast.tokens == plain.tokens == 15 * sum(len(e.input_ids) for e in examples)
    assert fast.answer_tokens == plain.answer_tokens
    assert fast.total_steps < plain.total_steps  # rows of 64 hold several examples: fewer, fuller steps
    assert sum(fast.losses[-3:]) / 3 < fast.losses[0] - 0.5  # it learns
    assert fast.config["packing"] is True


def test_distillation_refuses_the_answer_only_path():
    from slm.errors import TrainingError

    with pytest.raises(TrainingError, match="distillation"):
        SpeedPlan.from_loop(LoopConfig(packing=True), [10, 20], distiller=object())


def test_data_parallel_shards_are_disjoint_equal_and_the_loss_module_is_the_plan_loss():
    from slm.training.distributed import DistInfo, loss_module, shard

    batches = [[i] for i in range(11)]
    parts = [shard(batches, DistInfo(rank=r, world=3, local_rank=r)) for r in range(3)]
    assert [len(p) for p in parts] == [3, 3, 3]
    assert sorted(b[0] for p in parts for b in p) == list(range(9))
    model = _lora("phi")
    model.eval()
    plan = SpeedPlan(SpeedOptions(packing=True, answer_only_logits=True), row_len=96)
    batch = collate_packed(_examples(5, 97, seed=8), 0, row_len=96)
    with torch.no_grad():
        assert torch.equal(loss_module(model, plan)(**batch), plan.loss(model, batch))


def test_fast_loop_fields_build_a_valid_loop_config():
    from slm.training.fast import fast_loop_fields

    gpu = LoopConfig(**fast_loop_fields(cuda=True, pack_len=2048))
    assert gpu.packing and gpu.answer_only_logits and gpu.compile and not gpu.gradient_checkpointing
    assert SpeedPlan.from_loop(gpu, [100, 300]).row_len == 2048
    cpu = LoopConfig(**fast_loop_fields(cuda=False))
    assert not cpu.compile and cpu.gradient_checkpointing and SpeedPlan.from_loop(cpu, [100, 300]).row_len == 300
