"""The LoRA loop in 2 processes (torchrun, gloo on this CPU): DDP and FSDP2 give the 1-process result with the same
global batch, write a plain peft adapter from rank 0, and resume from a checkpoint after the run is SIGKILLed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from slm.errors import TrainingError
from slm.generation.loading import load_causal_lm
from slm.training.data import encode_examples
from slm.training.lora import LoopConfig, LoopResult, LoraSpec, latest_checkpoint
from slm.training.prepared import train_prepared, write_plan
from slm.training.raft import RaftExample
from slm.types import Chunk

REPO = Path(__file__).resolve().parents[2]

# One rank: the product's prepared loop, then this rank's (gathered) LoRA weights for the test to compare.
WORKER = r"""
import sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
import slm.training.lora as lora
from slm.training.prepared import train_prepared

run_dir, delay = Path(sys.argv[1]), float(sys.argv[2])
models = []
attach = lora.attach_lora

def attach_and_keep(*args, **kwargs):
    model = attach(*args, **kwargs)
    if delay:  # slow steps, so the test can kill the run between checkpoints
        model.register_forward_pre_hook(lambda *_: time.sleep(delay))
    models.append(model)
    return model

lora.attach_lora = attach_and_keep
result = train_prepared(run_dir, progress=False)
weights = {name: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone()
           for name, p in models[0].named_parameters() if p.requires_grad}
rank = torch.distributed.get_rank()
torch.save({"weights": weights, "finished": result.finished}, run_dir / f"rank{rank}.pt")
torch.distributed.destroy_process_group()
"""

LOOP = LoopConfig(epochs=3, learning_rate=1e-2, batch_size=2, grad_accum=1, warmup_ratio=0.0, save_every=2, seed=3,
                  gradient_checkpointing=False)


@pytest.fixture(scope="module")
def tokenizer(tiny_lm_dir):
    return load_causal_lm(str(tiny_lm_dir))[1]


def _prepare(run_dir: Path, base: Path, tokenizer, loop: LoopConfig) -> Path:
    """A prepared run (what `slm train --prepare-only` writes): 8 examples, 4 micro-batches of 2 per epoch."""
    raft = []
    for i in range(8):
        chunks = tuple(Chunk(id=f"d{j}::0000", doc_id=f"d{j}", text=f"Policy {j}: refunds take {j + 10} days.",
                             start=0, end=30) for j in range(i, i + 3))
        raft.append(RaftExample(id=f"e{i}", question=f"How long do refunds take under policy {i}?",
                                passages=chunks, gold=0, answer=f"Refunds take {i + 10} days."))
    encoded, _ = encode_examples(raft, tokenizer, max_seq_len=1024)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_plan(run_dir, encoded, base=str(base), lora=LoraSpec(r=4, alpha=8, dropout=0.0), loop=loop,
               pad_id=tokenizer.pad_token_id)
    return run_dir


def _torchrun(tmp_path: Path, run_dir: Path, *, delay: float = 0.0) -> subprocess.Popen:
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    log = open(run_dir / "torchrun.log", "a")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             str(worker), str(run_dir), str(delay)], env=env, cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT)


def _finish(process: subprocess.Popen, run_dir: Path) -> None:
    assert process.wait(timeout=600) == 0, (run_dir / "torchrun.log").read_text()[-4000:]


def _one_process(tmp_path: Path, base: Path, tokenizer, loop: LoopConfig) -> LoopResult:
    """The reference: one process, grad_accum doubled, so its global batch equals the 2-process run's."""
    torch.set_num_threads(1)
    run_dir = _prepare(tmp_path / "one-process", base, tokenizer, replace(loop, grad_accum=2 * loop.grad_accum))
    return train_prepared(run_dir, progress=False)


def _adapter(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


def _check_two_rank_result(run_dir: Path, reference: LoopResult, base: Path) -> LoopResult:
    """Both ranks hold the same LoRA weights; rank 0's adapter loads with plain peft and equals the reference's."""
    from peft import PeftModel

    ranks = [torch.load(run_dir / f"rank{r}.pt") for r in (0, 1)]
    assert all(r["finished"] for r in ranks)
    weights = ranks[0]["weights"]
    assert weights.keys() == ranks[1]["weights"].keys() and len(weights) == 2 * 7 * 2  # A, B x 7 targets x 2 layers
    for name, value in weights.items():
        assert torch.equal(value, ranks[1]["weights"][name]), name
    assert any(v.abs().sum() > 0 for n, v in weights.items() if "lora_B" in n)  # B starts at zero: it trained

    loaded = PeftModel.from_pretrained(load_causal_lm(str(base))[0], str(run_dir / "adapter"))
    plain = {n: p for n, p in loaded.named_parameters() if "lora_" in n}
    assert plain.keys() == weights.keys()
    for name, value in plain.items():
        assert torch.equal(value, weights[name]), name

    ours, theirs = _adapter(run_dir), _adapter(reference.adapter_dir.parent)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.allclose(ours[key], theirs[key], atol=1e-6), key
    result = LoopResult.load(run_dir)
    assert result.world == 2 and result.steps == reference.steps == result.total_steps
    assert result.losses == pytest.approx(reference.losses, abs=1e-6)
    if not result.resumed_from:  # tokens of this launch, summed over both ranks: each example once per epoch
        assert result.tokens == reference.tokens
    return result


def test_ddp_matches_one_process_with_the_same_global_batch(tiny_lm_dir, tokenizer, tmp_path):
    reference = _one_process(tmp_path, tiny_lm_dir, tokenizer, LOOP)
    run_dir = _prepare(tmp_path / "ddp", tiny_lm_dir, tokenizer, LOOP)
    _finish(_torchrun(tmp_path, run_dir), run_dir)
    result = _check_two_rank_result(run_dir, reference, tiny_lm_dir)
    assert result.steps == 6 and result.config["distributed"] == "ddp"


def test_fsdp_shards_trains_resumes_and_saves_a_plain_adapter(tiny_lm_dir, tokenizer, tmp_path):
    loop = replace(LOOP, distributed="fsdp", gradient_checkpointing=True)
    reference = _one_process(tmp_path, tiny_lm_dir, tokenizer, loop)
    run_dir = _prepare(tmp_path / "fsdp", tiny_lm_dir, tokenizer, replace(loop, stop_after=2))
    _finish(_torchrun(tmp_path, run_dir), run_dir)  # stops after step 2, as if interrupted
    assert latest_checkpoint(run_dir).name == "step-000002" and not (run_dir / "adapter").exists()
    state = torch.load(latest_checkpoint(run_dir) / "trainer_state.pt", weights_only=False)
    assert state["strategy"] == "fsdp" and len(state["rng_by_rank"]) == 2
    assert len(state["optimizer"]["state"]) == 28  # gathered by name from both ranks' shards

    _prepare(run_dir, tiny_lm_dir, tokenizer, loop)  # the same run, no longer stopped early
    _finish(_torchrun(tmp_path, run_dir), run_dir)
    result = _check_two_rank_result(run_dir, reference, tiny_lm_dir)
    assert result.resumed_from == 2 and result.config["distributed"] == "fsdp"


def test_sigkilled_two_process_run_resumes_from_its_checkpoint(tiny_lm_dir, tokenizer, tmp_path):
    import psutil

    loop = replace(LOOP, epochs=4)
    reference = _one_process(tmp_path, tiny_lm_dir, tokenizer, loop)
    run_dir = _prepare(tmp_path / "ddp", tiny_lm_dir, tokenizer, loop)
    victim = _torchrun(tmp_path, run_dir, delay=1.0)
    deadline = time.time() + 300
    while latest_checkpoint(run_dir) is None and time.time() < deadline and victim.poll() is None:
        time.sleep(0.05)
    launcher = psutil.Process(victim.pid)
    for process in [launcher, *launcher.children(recursive=True)]:  # the workers run in sessions of their own
        process.kill()
    victim.wait()
    assert latest_checkpoint(run_dir) is not None and not (run_dir / "adapter").exists()

    with pytest.raises(TrainingError, match="written by 2 process"):  # a 2-process checkpoint needs 2 processes
        train_prepared(run_dir, progress=False)

    _finish(_torchrun(tmp_path, run_dir), run_dir)
    result = _check_two_rank_result(run_dir, reference, tiny_lm_dir)
    assert result.resumed_from >= 2 and result.steps == 8


def test_unknown_strategy_is_a_clear_error(tiny_lm_dir, tokenizer, tmp_path):
    run_dir = _prepare(tmp_path / "run", tiny_lm_dir, tokenizer, replace(LOOP, distributed="zero3"))
    with pytest.raises(TrainingError, match="training.distributed must be one of ddp, fsdp"):
        train_prepared(run_dir, progress=False)
