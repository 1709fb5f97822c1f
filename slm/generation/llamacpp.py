"""Generation with llama.cpp (llama-cpp-python) from one GGUF file: the fast path on a CPU.

The prompt is the GGUF's chat template rendered as transformers renders it (`render_chat_template`),
tokenized without an added BOS as the transformers backend does; the same StopScanner cuts the answer;
the repetition penalty sees the answer's own tokens only (llama.cpp's penalty sampler only counts tokens
it sampled, never the prompt), as in the transformers backend.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any, Iterator

from slm.config import GenerationSettings
from slm.generation.decoding import StopScanner, gate_abstention, stop_sequences
from slm.errors import GenerationError, ModelLoadError
from slm.generation.loading import available_cores, model_state
from slm.answering.prompting import ABSTAIN_TEXT, render_chat_template

log = logging.getLogger(__name__)

_LLAMAS: dict[tuple[str, int, int], Any] = {}
_LOCK = threading.Lock()
# llama.cpp's penalty sampler looks back this many sampled tokens: more than any answer, so it covers all of it.
PENALTY_WINDOW = 2048


def _llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelLoadError(
            "generation.backend 'llamacpp' needs llama-cpp-python: pip install 'slm[llamacpp]' "
            "(it compiles llama.cpp, ~10 min on 2 cores) or bash scripts/install.sh"
        ) from exc
    return llama_cpp


def load_llama(path: Path, *, context_tokens: int = 0, threads: int | None = None) -> Any:
    """One shared llama_cpp.Llama per (file, context, threads); `context_tokens=0`: the model's own window."""
    llama_cpp = _llama_cpp()
    threads = threads or available_cores()
    key = (str(Path(path).resolve()), context_tokens, threads)
    with _LOCK:
        if key not in _LLAMAS:
            try:
                llm = llama_cpp.Llama(
                    model_path=str(path), n_ctx=context_tokens, n_threads=threads, n_threads_batch=threads,
                    last_n_tokens_size=PENALTY_WINDOW, verbose=False,
                )
            except (ValueError, RuntimeError, OSError) as exc:
                raise ModelLoadError(f"llama.cpp cannot load {path}: {exc}") from exc
            _LLAMAS[key] = llm
        return _LLAMAS[key]


class LlamaCppGenerator:
    """Streams from a GGUF model in llama.cpp; one generation at a time per loaded model."""

    def __init__(self, llama: Any, *, name: str, adapter: str | None = None):
        self.llama = llama
        self.name = name
        meta = dict(getattr(llama, "metadata", {}) or {})
        # An exported merge records its adapter: the answerer then treats the weights as tuned (no demo).
        self.adapter = adapter or meta.get("slm.adapter")
        self.template = meta.get("tokenizer.chat_template")
        self.special_tokens = {
            f"{kind}_token": self._token_text(meta.get(f"tokenizer.ggml.{key}_token_id"))
            for kind, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding"))
        }
        self._lock = model_state(llama).generate_lock  # one generation at a time per loaded model
        self._usage = threading.local()

    def _token_text(self, token_id: Any) -> str:
        if token_id is None:
            return ""
        return self.llama.detokenize([int(token_id)], special=True).decode("utf-8", "replace")

    # ------------------------------------------------------------ the prompt
    def render(self, messages: list[dict]) -> str:
        return render_chat_template(self.template, messages, **self.special_tokens)

    def tokenize(self, text: str) -> list[int]:
        return self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True) if text else []

    def count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0

    def prompt_tokens(self, messages: list[dict]) -> int:
        return len(self.tokenize(self.render(messages)))

    def last_generated_tokens(self) -> int:
        """Tokens the model produced in this thread's last finished (or closed) stream."""
        return getattr(self._usage, "tokens", 0)

    # ------------------------------------------------------------ generation
    def generate(self, messages: list[dict], settings: GenerationSettings) -> str:
        return "".join(self.stream(messages, settings))

    def stream(self, messages: list[dict], settings: GenerationSettings) -> Iterator[str]:
        import llama_cpp

        prompt = self.tokenize(self.render(messages))
        room = self.llama.n_ctx() - len(prompt)
        if room < 1:
            raise GenerationError(
                f"the prompt has {len(prompt)} tokens but the context holds {self.llama.n_ctx()}: "
                "raise generation.context_tokens or send fewer/shorter passages"
            )
        budget = min(settings.max_new_tokens, room)
        sampling: dict[str, Any] = dict(repeat_penalty=settings.repetition_penalty or 1.0, top_k=0, min_p=0.0, typical_p=1.0)
        if settings.temperature > 0:
            sampling.update(temp=settings.temperature, top_p=settings.top_p)
        else:
            sampling.update(temp=0.0, top_p=1.0)
        gate = _abstention_gate(settings, self.tokenize(ABSTAIN_TEXT)[:1], len(prompt))
        if gate is not None:
            sampling["logits_processor"] = llama_cpp.LogitsProcessorList([gate])
        vocab = self.llama._model.vocab
        scanner = StopScanner(stop_sequences(settings))
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._usage.tokens = 0
        produced: list[int] = []
        with self._lock:
            tokens = self.llama.generate(prompt, **sampling)
            try:
                for token in tokens:
                    if llama_cpp.llama_vocab_is_eog(vocab, token):
                        break
                    produced.append(token)
                    piece = decoder.decode(self.llama.detokenize([token], prev_tokens=produced[:-1]))
                    out = scanner.feed(piece) if piece else ""
                    if out:
                        yield out
                    if scanner.stopped or len(produced) >= budget:
                        break
                if not scanner.stopped:
                    tail = scanner.feed(decoder.decode(b"", final=True)) + scanner.flush()
                    if tail:
                        yield tail
            except RuntimeError as exc:
                raise GenerationError(f"llama.cpp failed while generating with {self.name}: {exc}") from exc
            finally:
                tokens.close()
                self._usage.tokens = len(produced)


def _abstention_gate(settings: GenerationSettings, first: list[int], prompt_length: int) -> Any:
    """llama.cpp form of the transformers gate (slm.generation.backends._abstention_gate): at the answer's first
    position, rule out the abstention's first token when the model gives it less than abstain_min_prob."""
    import numpy as np

    if settings.abstain_min_prob <= 0 or not first:
        return None
    token = first[0]

    def gate(input_ids: Any, scores: Any) -> Any:
        if len(input_ids) != prompt_length:
            return scores
        shifted = np.exp(scores - scores.max())
        if gate_abstention(float(shifted[token] / shifted.sum()), settings):
            scores = scores.copy()
            scores[token] = -np.inf
        return scores

    return gate


# ---------------------------------------------------------------- which GGUF file to serve


def gguf_to_serve(settings: GenerationSettings, adapter: str | Path | None) -> Path:
    """The GGUF file for `settings.model` (+ `adapter`): the model's own file when it is a GGUF and no
    adapter is asked for, else a merged export (built once, then reused from cache_root()/gguf)."""
    from slm.models import cache_root, resolve_model

    resolved = resolve_model(settings.model)
    if adapter is None and resolved.gguf_file:
        path = Path(resolved.location) / resolved.gguf_file
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        return path
    cache = Path(os.environ.get("SLM_GGUF_CACHE") or cache_root() / "gguf")
    out = cache / f"{_export_key(settings.model, adapter, settings.gguf_quant)}.{settings.gguf_quant}.gguf"
    if out.is_file():
        return out
    from slm.adapters.gguf_export import export_gguf

    log.warning("exporting %s%s to %s for llama.cpp (once; about a minute for a small model)",
                settings.model, f" + {adapter}" if adapter else "", out)
    export_gguf(settings.model, adapter, out, quant=settings.gguf_quant, label=Path(adapter).name if adapter else None)
    return out


def _export_key(model: str, adapter: str | Path | None, quant: str) -> str:
    digest = hashlib.sha256(f"{model}\0{quant}".encode())
    if adapter is not None:
        folder = Path(adapter)
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            if (folder / name).is_file():
                digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:16]


def load_llamacpp_generator(settings: GenerationSettings, adapter: str | Path | None = None) -> LlamaCppGenerator:
    if settings.no_repeat_ngram_size:
        log.warning("generation.no_repeat_ngram_size is not applied by the llamacpp backend")
    path = gguf_to_serve(settings, adapter)
    llama = load_llama(path, context_tokens=settings.context_tokens, threads=settings.threads)
    return LlamaCppGenerator(llama, name=settings.model, adapter=str(adapter) if adapter else None)
