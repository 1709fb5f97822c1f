"""CPU LoRA cost of a student through the product's loop: 3 optimizer steps of 2 synthetic RAFT examples.

    python bench/lora_cpu_cost.py package:qwen2.5-0.5b

Prints load time, tokens/s and peak RSS; asserts nothing.
"""
import resource, time, tempfile, sys
from pathlib import Path
import torch
from slm.generation.loading import load_causal_lm
from slm.training.data import encode_examples
from slm.training.lora import LoopConfig, LoraSpec, attach_lora, train_lora
from slm.training.raft import RaftExample
from slm.types import Chunk
torch.set_num_threads(2)
spec = sys.argv[1]
t0 = time.perf_counter(); model, tok = load_causal_lm(spec); load_s = time.perf_counter() - t0
text = ("The standard library provides iterators and generators; a class becomes iterable when it defines "
        "__iter__ returning an object with __next__. ") * 5
raft = [RaftExample(id=f"e{i}", question=f"How do I make class {i} iterable?",
                    passages=tuple(Chunk(id=f"d{j}::0", doc_id=f"d{j}", start=0, end=len(text), text=text) for j in range(4)),
                    gold=0, answer="Define __iter__ returning an iterator with __next__.") for i in range(6)]
encoded, _ = encode_examples(raft, tok, max_seq_len=768, max_passage_chars=600)
peft = attach_lora(model, LoraSpec(), gradient_checkpointing=False)
cfg = LoopConfig(epochs=1, batch_size=2, save_every=0, gradient_checkpointing=False, max_steps=3)
t1 = time.perf_counter()
res = train_lora(peft, encoded, cfg, Path(tempfile.mkdtemp()), pad_id=tok.pad_token_id, progress=False)
train_s = time.perf_counter() - t1
tokens = sum(len(e.input_ids) for e in encoded[:6])
print(f"{spec}: load {load_s:.0f} s; {res.steps} steps, {res.tokens} tokens in {train_s:.0f} s = {res.tokens/train_s:.1f} tokens/s; "
      f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1e6:.2f} GB; {len(encoded[0].input_ids)} tokens/example")
