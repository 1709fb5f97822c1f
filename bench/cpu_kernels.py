"""Raw prefill and decode speed of a SmolLM2-135M-shaped llama: transformers (fp32) vs llama.cpp (GGUF q4_1,
q8_0, f16, f32), 1 and 2 threads. Random weights from the config (speed is the same as the real model's), so it
runs anywhere, e.g. on an idle machine pinned to 2 cores:

    taskset -c 0,1 .venv/bin/python bench/cpu_kernels.py      # P=400 prompt tokens; OUT=dir for speed.json

Best of 3 per row; prints numbers, asserts nothing.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from tests.helpers.tiny_models import _fast_tokenizer
from slm.adapters.gguf_export import write_gguf, quantize_gguf
out = os.environ.get("OUT", "/tmp")
work = os.environ.get("WORK", "/tmp")
torch.manual_seed(0)
tok = _fast_tokenizer()
cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                  num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5,
                  tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
model = LlamaForCausalLM(cfg).eval()
t = time.time(); write_gguf(model, tok, f"{work}/r.f32.gguf", dtype="f32"); print("write f32", time.time() - t, flush=True)
write_gguf(model, tok, f"{work}/r.f16.gguf", dtype="f16")
for q in ("q8_0", "q4_1"):
    quantize_gguf(f"{work}/r.f32.gguf", f"{work}/r.{q}.gguf", q, threads=2)
from llama_cpp import Llama
P, N = int(os.environ.get("P", 400)), 64
ids = [int(i) for i in torch.randint(3, 500, (P,))]
rows = []
def bench_llama(name, path, th):
    l = Llama(model_path=path, n_ctx=2048, n_threads=th, n_threads_batch=th, verbose=False)
    best_pre = best_dec = 1e9
    for _ in range(3):
        l.reset(); t = time.time(); l.eval(ids); best_pre = min(best_pre, time.time() - t)
        g = l.generate(ids + [5], temp=0.0, reset=True); t = time.time()
        for i, x in enumerate(g):
            if i == 0: t = time.time()
            if i >= N: break
        best_dec = min(best_dec, time.time() - t)
    rows.append(dict(backend="llama.cpp", weights=name, threads=th, prefill_tok_s=P / best_pre, decode_tok_s=N / best_dec))
    print(rows[-1], flush=True)
def bench_hf(th):
    torch.set_num_threads(th)
    x = torch.tensor([ids]); best_pre = best_dec = 1e9
    with torch.inference_mode():
        for _ in range(3):
            t = time.time(); o = model(input_ids=x, use_cache=True); best_pre = min(best_pre, time.time() - t)
            kv, nxt = o.past_key_values, o.logits[:, -1:].argmax(-1); t = time.time()
            for _ in range(N):
                o = model(input_ids=nxt, past_key_values=kv, use_cache=True); kv, nxt = o.past_key_values, o.logits[:, -1:].argmax(-1)
            best_dec = min(best_dec, time.time() - t)
    rows.append(dict(backend="transformers", weights="fp32", threads=th, prefill_tok_s=P / best_pre, decode_tok_s=N / best_dec))
    print(rows[-1], flush=True)
for th in (1, 2):
    bench_hf(th)
    for q in ("q4_1", "q8_0", "f16", "f32"):
        bench_llama(q, f"{work}/r.{q}.gguf", th)
import platform, subprocess
cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout.strip()
json.dump({"cpu": cpu, "prompt_tokens": P, "rows": rows, "torch": torch.__version__}, open(f"{out}/speed.json", "w"), indent=1)
print(cpu)
