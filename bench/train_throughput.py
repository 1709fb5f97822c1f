"""GPU LoRA training throughput: a plain transformers + peft loop against our trainer's fast path, in one process.

    python bench/train_throughput.py                       # Phi-2-sized random model, all variants
    python bench/train_throughput.py --model tiny --device cpu --steps 2 --warmup 1 --compile-backend aot_eager
    torchrun --nproc_per_node=N bench/train_throughput.py --ddp   # data-parallel scaling of the fast path

Model: PhiConfig(hidden 2560, 32 layers, 32 heads, intermediate 10240, vocab 51200), random bf16 weights built
from the config (no download). LoRA r=16, alpha=32, dropout 0.05 on every linear layer of the blocks
(q_proj, k_proj, v_proj, dense, fc1, fc2). Data: synthetic encoded examples (random ids) whose lengths are
uniform in [--min-len, --seq], the answer being the last 5-25% of each (the prompt is masked out of the loss).

Variants (same model config, same LoRA, same examples, same optimizer and bf16 autocast):
  baseline        the plain loop: 16 examples per step padded to --seq ("16 x 1024"), model(**batch).loss,
                  gradient checkpointing on every layer, peft as it comes
  packed_gc       our trainer (train_lora): packing + answer-only logits, checkpointing kept, no compile
  fast            our trainer (train_lora): packing + answer-only logits + compiled layers, no checkpointing,
                  micro-batch of --fast-rows rows x grad_accum so one step still holds 16 x --seq slots
  fast_eager      fast without torch.compile;  fast_rows16: fast with 16 rows per micro-batch, no accumulation
  *_dense         the same on examples that are all exactly --seq long (no padding anywhere): compute speed alone
Throughput counts real tokens (prompt + answer, no padding); the baseline also shows slots (padding counted).
MFU = 6 * N * tokens/s / peak, N = every parameter of the model (frozen base + LoRA), attention's
seq-dependent FLOPs left out; peak bf16 dense: 989 TFLOP/s (H100/H200 SXM datasheet), and the measured
8192^3 bf16 matmul rate of this device is printed beside it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slm.training.data import IGNORE_INDEX, EncodedExample  # noqa: E402

PHI2 = dict(vocab_size=51200, hidden_size=2560, num_hidden_layers=32, num_attention_heads=32,
            intermediate_size=10240, max_position_embeddings=2048)
TINY = dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            max_position_embeddings=2048)
PHI_TARGETS = ("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2")
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


@dataclass
class Row:
    variant: str
    data: str
    tokens_per_s: float = 0.0
    slots_per_s: float = 0.0  # padded positions processed per second (baseline only)
    step_s: float = 0.0
    peak_alloc_gib: float = 0.0
    peak_reserved_gib: float = 0.0
    mfu: float = 0.0
    mfu_slots: float = 0.0
    loss_first: float = 0.0
    loss_last: float = 0.0
    note: str = ""


# ------------------------------------------------------------------ data and model
def make_examples(n: int, *, vocab: int, min_len: int, max_len: int, seed: int) -> list[EncodedExample]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        length = rng.randint(min_len, max_len)
        answer = max(1, int(length * rng.uniform(0.05, 0.25)))
        ids = tuple(rng.randrange(4, vocab) for _ in range(length))
        out.append(EncodedExample(f"x{i}", ids, (IGNORE_INDEX,) * (length - answer) + ids[length - answer:]))
    return out


def build_model(args, device):
    import torch
    from transformers import AutoModelForCausalLM, PhiConfig

    config = PhiConfig(**(PHI2 if args.model == "phi2" else TINY))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model


def lora_spec():
    from slm.training.lora import LoraSpec

    return LoraSpec(r=16, alpha=32, dropout=0.05, target_modules=PHI_TARGETS)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------ measurement helpers
def reset_memory(device) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def memory(device) -> tuple[float, float]:
    import torch

    if device.type != "cuda":
        return 0.0, 0.0
    return torch.cuda.max_memory_allocated() / 2**30, torch.cuda.max_memory_reserved() / 2**30


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_tflops(device) -> float:
    import torch

    if device.type != "cuda":
        return 0.0
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(20):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * 8192**3 * 20 / (start.elapsed_time(end) / 1000) / 1e12


# ------------------------------------------------------------------ (a) the plain baseline
def naive_batches(examples, batch: int, seq: int, pad_id: int):
    """What a naive trainer feeds: consecutive examples, each padded to the full sequence length."""
    import torch

    for start in range(0, len(examples) - batch + 1, batch):
        group = examples[start : start + batch]
        ids = torch.full((batch, seq), pad_id, dtype=torch.long)
        labels = torch.full((batch, seq), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((batch, seq), dtype=torch.long)
        for row, e in enumerate(group):
            n = len(e.input_ids)
            ids[row, :n] = torch.tensor(e.input_ids)
            labels[row, :n] = torch.tensor(e.labels)
            mask[row, :n] = 1
        yield {"input_ids": ids, "attention_mask": mask, "labels": labels}


def run_baseline(args, device, examples, data: str) -> Row:
    import torch
    from peft import LoraConfig, get_peft_model

    model = build_model(args, device)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    spec = lora_spec()
    model = get_peft_model(model, LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                                             target_modules=list(spec.target_modules), task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-4)
    n = n_params(model)
    batches = naive_batches(examples, args.batch, args.seq, pad_id=0)
    losses, real, slots, elapsed = [], 0, 0, 0.0
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            sync(device)
            started = time.perf_counter()
        batch = {k: v.to(device) for k, v in next(batches).items()}
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if step >= args.warmup:
            real += int(batch["attention_mask"].sum())
            slots += batch["input_ids"].numel()
    sync(device)
    elapsed = time.perf_counter() - started
    alloc, reserved = memory(device)
    row = Row("baseline", data, real / elapsed, slots / elapsed, elapsed / args.steps, alloc, reserved,
              loss_first=losses[0], loss_last=losses[-1], note=f"N={n}")
    del model, optimizer, params
    return row


# ------------------------------------------------------------------ (b) our trainer
def run_ours(args, device, examples, data: str, variant: str) -> Row:
    import torch

    from slm.training.lora import LoopConfig, attach_lora, train_lora

    fast = variant.startswith("fast")  # fast, fast_eager (no compile), fast_rows16 (16 rows, no accumulation)
    rows = (16 if "rows16" in variant else args.fast_rows) if fast else args.batch
    accum = max(1, args.batch // rows)
    model = build_model(args, device)
    model = attach_lora(model, lora_spec(), gradient_checkpointing=not fast, seed=0)
    n = n_params(model)
    compiled = fast and args.compile and "eager" not in variant
    options = dict(packing=True, pack_len=args.seq, answer_only_logits=True, compile=compiled)
    with tempfile.TemporaryDirectory() as tmp:
        common = dict(epochs=1.0, learning_rate=2e-4, batch_size=rows, grad_accum=accum, warmup_ratio=0.0,
                      save_every=0, gradient_checkpointing=not fast, **options)
        # warm-up run: compilation, allocator, cuBLAS handles; then the measured run (a fresh loop, same model)
        train_lora(model, examples, LoopConfig(max_steps=args.warmup, **common), Path(tmp) / "warm", pad_id=0,
                   progress=False)
        model.train()
        reset_memory(device)
        result = train_lora(model, examples, LoopConfig(max_steps=args.steps, **common), Path(tmp) / "run",
                            pad_id=0, progress=False)
    alloc, reserved = memory(device)
    note = f"rows={rows}x{args.seq} accum={accum} steps={result.steps} N={n}"
    row = Row(variant, data, result.tokens_per_second, 0.0, result.seconds / result.steps, alloc, reserved,
              loss_first=result.losses[0], loss_last=result.losses[-1], note=note)
    del model
    return row


# ------------------------------------------------------------------ data-parallel scaling of the fast path
def run_ddp(args, device_name: str) -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from slm.training.distributed import init_from_env, loss_module, shard
    from slm.training.fast import SpeedOptions, SpeedPlan
    from slm.training.lora import attach_lora

    info = init_from_env()
    device = torch.device(device_name, info.local_rank) if device_name == "cuda" else torch.device("cpu")
    examples = make_examples(args.examples * info.world, vocab=(PHI2 if args.model == "phi2" else TINY)["vocab_size"],
                             min_len=args.min_len, max_len=args.seq, seed=1)
    model = attach_lora(build_model(args, device), lora_spec(), gradient_checkpointing=False, seed=0)
    lengths = [len(e.input_ids) for e in examples]
    options = SpeedOptions(packing=True, pack_len=args.seq, answer_only_logits=True, compile=args.compile,
                           compile_backend=args.compile_backend)
    plan = SpeedPlan(options, row_len=args.seq)
    plan.prepare(model, device)
    model.train()
    wrapped = DDP(loss_module(model, plan), device_ids=[info.local_rank] if device.type == "cuda" else None,
                  gradient_as_bucket_view=True)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-4)
    accum = max(1, args.batch // args.fast_rows)
    mine = shard(plan.batches(lengths, args.fast_rows, seed=0, epoch=0), info)
    need = (args.warmup + args.steps) * accum
    if len(mine) < need:
        raise SystemExit(f"rank {info.rank}: {len(mine)} micro-batches, need {need}; raise --examples")
    stream = iter(mine)
    tokens = 0
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            sync(device)
            dist.barrier() if dist.is_initialized() else None
            reset_memory(device)
            started = time.perf_counter()
        for micro in range(accum):
            batch = plan.collate([examples[i] for i in next(stream)], 0)
            if step >= args.warmup:
                tokens += int(batch["attention_mask"].sum())
            inputs = {k: v.to(device) for k, v in batch.items()}
            context = wrapped.no_sync() if micro < accum - 1 else _null()
            with context, autocast:
                loss = wrapped(**inputs)
            (loss / accum).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync(device)
    elapsed = time.perf_counter() - started
    total = torch.tensor([tokens], device=device, dtype=torch.float64)
    longest = torch.tensor([elapsed], device=device, dtype=torch.float64)
    if dist.is_initialized():
        dist.all_reduce(total)
        dist.all_reduce(longest, op=dist.ReduceOp.MAX)
    alloc, reserved = memory(device)
    if info.main:
        n = n_params(model)
        peak = peak_flops(device)
        tps = float(total) / float(longest)
        line = {"mode": "ddp", "world": info.world, "device": _device_name(device), "tokens_per_s": tps,
                "tokens_per_s_per_gpu": tps / info.world, "step_s": float(longest) / args.steps,
                "mfu_per_gpu": 6 * n * tps / info.world / peak if peak else 0.0, "peak_alloc_gib_rank0": alloc,
                "rows": args.fast_rows, "seq": args.seq, "accum": accum, "steps": args.steps, "N": n}
        print("DDP_RESULT " + json.dumps(line), flush=True)
    if dist.is_initialized():
        dist.destroy_process_group()


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _device_name(device) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def peak_flops(device) -> float:
    name = _device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), 0.0)


# ------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["phi2", "tiny"], default="phi2")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=16, help="sequences (rows) per optimizer step")
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--min-len", type=int, default=384)
    parser.add_argument("--fast-rows", type=int, default=8, help="packed rows per micro-batch on the fast path")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--examples", type=int, default=800)
    parser.add_argument("--variants", default="baseline,packed_gc,fast,baseline_dense,fast_dense")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--json", default="", help="also write the rows here")
    parser.add_argument("--ddp", action="store_true", help="data-parallel fast path (launch with torchrun)")
    args = parser.parse_args()

    import torch

    if args.compile_backend != "inductor":  # smoke runs on CPU: a cheap backend through the same code path
        import slm.training.fast as fast_module

        original = fast_module.compile_layers
        fast_module.compile_layers = lambda layers, backend="inductor": original(layers, backend=args.compile_backend)
    torch.backends.cuda.matmul.allow_tf32 = True
    if args.ddp:
        run_ddp(args, args.device)
        return
    device = torch.device(args.device)
    vocab = (PHI2 if args.model == "phi2" else TINY)["vocab_size"]
    mixed = make_examples(args.examples, vocab=vocab, min_len=args.min_len, max_len=args.seq, seed=1)
    dense = make_examples(args.examples // 2, vocab=vocab, min_len=args.seq, max_len=args.seq, seed=2)
    name, peak = _device_name(device), peak_flops(device)
    measured = matmul_tflops(device)
    print(f"device: {name}; torch {torch.__version__}; peak bf16 {peak / 1e12:.0f} TFLOP/s (datasheet), "
          f"8192^3 bf16 matmul measured {measured:.0f} TFLOP/s", flush=True)
    mean_len = sum(len(e.input_ids) for e in mixed) / len(mixed)
    print(f"data: {len(mixed)} mixed examples, lengths {args.min_len}-{args.seq} (mean {mean_len:.0f}); "
          f"{len(dense)} dense examples of {args.seq}", flush=True)
    rows: list[Row] = []
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        data, examples = ("dense", dense) if variant.endswith("_dense") else ("mixed", mixed)
        kind = variant.removesuffix("_dense")
        reset_memory(device)
        began = time.perf_counter()
        try:
            if kind == "baseline":
                row = run_baseline(args, device, examples, data)
            else:
                row = run_ours(args, device, examples, data, kind)
        except torch.cuda.OutOfMemoryError as exc:
            row = Row(kind, data, note=f"OOM: {str(exc).splitlines()[0][:120]}")
        n = int(row.note.split("N=")[1]) if "N=" in row.note else 0
        if peak and n:
            row.mfu = 6 * n * row.tokens_per_s / peak
            row.mfu_slots = 6 * n * row.slots_per_s / peak
        rows.append(row)
        print(f"[{variant}] {json.dumps(asdict(row))} ({time.perf_counter() - began:.0f}s incl. build/compile)",
              flush=True)
        reset_memory(device)
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=1), encoding="utf-8")


def print_table(rows: list[Row]) -> None:
    base = {r.data: r.tokens_per_s for r in rows if r.variant == "baseline" and r.tokens_per_s}
    print("\nvariant     data   tokens/s  (slots/s)  x baseline  step s  peak alloc GiB  MFU(6N)  (MFU slots)  loss")
    for r in rows:
        speedup = r.tokens_per_s / base[r.data] if base.get(r.data) else 0.0
        slots = f"{r.slots_per_s:9.0f}" if r.slots_per_s else " " * 9
        mfu_slots = f"{r.mfu_slots:6.1%}" if r.mfu_slots else " " * 6
        print(f"{r.variant:<11} {r.data:<6} {r.tokens_per_s:9.0f}  {slots}  {speedup:9.2f}x  {r.step_s:6.2f}  "
              f"{r.peak_alloc_gib:14.1f}  {r.mfu:7.1%}  {mfu_slots:>11}  {r.loss_first:.2f}->{r.loss_last:.2f}"
              f"  {r.note if r.note.startswith('OOM') else ''}")


if __name__ == "__main__":
    main()
