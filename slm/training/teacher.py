"""The teacher that writes training data: a local model (a GGUF through llama.cpp, or any spec through
transformers) or an OpenAI-compatible endpoint."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Protocol, Sequence

from slm.errors import TrainingError

Messages = list[dict[str, str]]


class Teacher(Protocol):
    name: str
    writes_answers: bool  # strong enough to write the grounded answers too (still checked against the chunk)

    def complete_many(self, batch: Sequence[Messages], *, max_new_tokens: int = 48) -> list[str]: ...


class LocalTeacher:
    """A local causal LM; batches prompts (left padding) because one-at-a-time is slow on CPU."""

    writes_answers = False  # the student teaching itself (135M): its answers are worse than quoting the chunk

    def __init__(self, model: Any, tokenizer: Any, *, name: str, batch_size: int = 8):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size

    @classmethod
    def load(cls, spec: str, **kwargs: Any) -> "LocalTeacher":
        from slm.generation.loading import load_causal_lm

        model, tokenizer = load_causal_lm(spec)
        return cls(model, tokenizer, name=spec, **kwargs)

    def complete_many(self, batch: Sequence[Messages], *, max_new_tokens: int = 48) -> list[str]:
        import torch

        from slm.answering.prompting import render_prompt

        out: list[str] = []
        tok = self.tokenizer
        side = tok.padding_side
        tok.padding_side = "left"
        try:
            for start in range(0, len(batch), self.batch_size):
                prompts = [render_prompt(tok, list(m)) for m in batch[start : start + self.batch_size]]
                enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.model.device)
                with torch.inference_mode():
                    gen = self.model.generate(
                        **enc,
                        max_new_tokens=max_new_tokens,
                        do_sample=False,
                        temperature=None,
                        top_p=None,
                        top_k=None,
                        repetition_penalty=1.2,
                        pad_token_id=tok.pad_token_id,
                    )
                new = gen[:, enc["input_ids"].shape[1] :]
                out.extend(t.strip() for t in tok.batch_decode(new, skip_special_tokens=True))
        finally:
            tok.padding_side = side
        return out


class LlamaCppTeacher:
    """A GGUF model through llama.cpp (greedy): on a CPU the fast way to let a 0.5B-1.5B instruct model write
    questions and answers (transformers would first dequantise it to fp32: 9 GB and slower for the 1.5B)."""

    writes_answers = True
    # A chunk (600 chars) + instructions + three worked examples fit in ~1k tokens; a small window keeps the
    # KV cache small (the GGUF's own 32k window would cost ~1 GB for the 1.5B).
    CONTEXT_TOKENS = 4096

    def __init__(self, generator: Any, *, name: str, repeat_penalty: float = 1.1):
        self.generator = generator  # slm.generation.llamacpp.LlamaCppGenerator: its chat template and tokenizer
        self.name = name
        self.repeat_penalty = repeat_penalty

    @classmethod
    def load(cls, spec: str, *, threads: int | None = None, **kwargs: Any) -> "LlamaCppTeacher":
        from slm.generation.llamacpp import LlamaCppGenerator, load_llama
        from slm.models import resolve_model

        resolved = resolve_model(spec)
        if not resolved.gguf_file:
            raise TrainingError(f"teacher {spec} is not a GGUF file: llama.cpp cannot load it")
        llama = load_llama(Path(resolved.location) / resolved.gguf_file, context_tokens=cls.CONTEXT_TOKENS,
                           threads=threads)
        return cls(LlamaCppGenerator(llama, name=spec), name=spec, **kwargs)

    def complete_many(self, batch: Sequence[Messages], *, max_new_tokens: int = 48) -> list[str]:
        llama = self.generator.llama
        out: list[str] = []
        for messages in batch:
            prompt = self.generator.tokenize(self.generator.render(list(messages)))
            room = llama.n_ctx() - len(prompt)
            if room < 8:
                out.append("")  # a chunk too long for the window: the rules write this one
                continue
            # llama-cpp-python keeps the evaluated prefix: the shared instructions and examples are computed once.
            result = llama.create_completion(prompt, max_tokens=min(max_new_tokens, room), temperature=0.0,
                                             top_k=1, repeat_penalty=self.repeat_penalty)
            out.append((result["choices"][0]["text"] or "").strip())
        return out


class EndpointTeacher:
    """Any OpenAI-compatible chat endpoint (`http(s)://host/v1`), e.g. a big model the company runs."""

    writes_answers = True

    def __init__(self, base_url: str, *, model: str | None = None, api_key: str | None = None, timeout: float = 120.0):
        self.base_url = base_url.rstrip("/")
        self.model = model or os.environ.get("SLM_TEACHER_MODEL", "default")
        self.api_key = api_key or os.environ.get("SLM_TEACHER_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self.timeout = timeout
        self.name = f"{self.base_url} ({self.model})"

    def complete_many(self, batch: Sequence[Messages], *, max_new_tokens: int = 48) -> list[str]:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        out: list[str] = []
        with httpx.Client(timeout=self.timeout, headers=headers) as client:
            for messages in batch:
                payload = {"model": self.model, "messages": list(messages), "max_tokens": max_new_tokens, "temperature": 0}
                try:
                    response = client.post(f"{self.base_url}/chat/completions", json=payload)
                    response.raise_for_status()
                    out.append((response.json()["choices"][0]["message"]["content"] or "").strip())
                except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
                    raise TrainingError(f"teacher endpoint {self.base_url} failed: {exc}") from exc
        return out


def load_teacher(spec: str, *, model: str | None = None, api_key: str | None = None) -> Teacher:
    """`http(s)://.../v1` → EndpointTeacher (model name from `model` or $SLM_TEACHER_MODEL); a GGUF spec
    (package:qwen2.5-1.5b, a .gguf file) → LlamaCppTeacher where llama-cpp-python is installed; else LocalTeacher.

    An endpoint may also be written `http://host/v1#model-name`.
    """
    if spec.startswith(("http://", "https://")):
        url, _, named = spec.partition("#")
        return EndpointTeacher(url, model=model or named or None, api_key=api_key)
    from slm.models import resolve_model

    if resolve_model(spec).gguf_file and importlib.util.find_spec("llama_cpp") is not None:
        return LlamaCppTeacher.load(spec)
    return LocalTeacher.load(spec)
