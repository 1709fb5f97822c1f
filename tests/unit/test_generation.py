"""Generators: stop sequences, the local transformers backend (tiny model), adapters, the OpenAI backend."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from slm.config import GenerationSettings
from slm.errors import GenerationError, ModelLoadError
from slm.generation.backends import Generator, OpenAIGenerator, TransformersGenerator, load_generator
from slm.generation.decoding import StopScanner
from slm.generation.loading import load_causal_lm

MESSAGES = [{"role": "system", "content": "Answer."}, {"role": "user", "content": "What is the refund policy?"}]


# ---------------------------------------------------------------- stop sequences


def _scan(pieces, stops):
    scanner = StopScanner(stops)
    out = [scanner.feed(p) for p in pieces]
    return "".join(out) + scanner.flush(), scanner.stopped


def test_stop_scanner_cuts_at_a_stop_split_across_deltas():
    text, stopped = _scan(["Refunds take 30 days [1].\nQue", "stion: what about", " leave?"], ["Question:"])
    assert text == "Refunds take 30 days [1].\n" and stopped


def test_stop_scanner_releases_held_text_that_was_not_a_stop():
    scanner = StopScanner(["Question:"])
    assert scanner.feed("Answer: Que") == "Answer: "  # "Que" might begin "Question:"
    assert scanner.feed("ue") == "Queue"
    assert scanner.flush() == ""


def test_stop_scanner_drops_leading_blank_lines_so_a_paragraph_stop_waits_for_text():
    assert _scan(["\n\n", "  Refunds", " take 30 days.", "\n\nMore"], ["\n\n"]) == ("Refunds take 30 days.", True)


def test_stop_scanner_without_stop_passes_everything():
    assert _scan(["a", "b", "<pass"], ["<passage"]) == ("ab<pass", False)


# ---------------------------------------------------------------- transformers backend (tiny random model)


@pytest.fixture(scope="module")
def tiny_settings(tiny_lm_dir):
    # A random model's greedy output is often one repeated blank token; seeded sampling gives real text.
    return GenerationSettings(model=str(tiny_lm_dir), max_new_tokens=12, threads=1, temperature=1.0)


def _seeded(fn, *args):
    import torch

    torch.manual_seed(1234)
    return fn(*args)


def test_transformers_generator_streams_at_most_max_new_tokens(tiny_settings):
    gen = load_generator(tiny_settings)
    assert isinstance(gen, TransformersGenerator) and isinstance(gen, Generator) and gen.name == tiny_settings.model
    assert gen.adapter is None and gen.last_generated_tokens() == 0  # nothing streamed yet in this thread
    pieces = _seeded(lambda: list(gen.stream(MESSAGES, tiny_settings)))
    text = "".join(pieces)
    assert pieces and all(isinstance(p, str) for p in pieces)
    assert 0 < gen.last_generated_tokens() <= tiny_settings.max_new_tokens
    assert _seeded(gen.generate, MESSAGES, tiny_settings) == text  # same seed, same text


def test_stop_setting_cuts_the_output(tiny_settings):
    gen = load_generator(tiny_settings)
    full = _seeded(gen.generate, MESSAGES, tiny_settings)
    assert len(full.strip()) >= 3
    stop = full.strip()[1:3]
    cut = _seeded(gen.generate, MESSAGES, GenerationSettings(**{**tiny_settings.__dict__, "stop": [stop]}))
    assert cut == full[: full.find(stop)]


def test_sampling_settings_run(tiny_settings):
    gen = load_generator(tiny_settings)
    settings = GenerationSettings(**{**tiny_settings.__dict__, "temperature": 0.0, "no_repeat_ngram_size": 2})
    assert isinstance(gen.generate(MESSAGES, settings), str)


def test_closing_the_stream_early_releases_the_model(tiny_settings):
    gen = load_generator(tiny_settings)
    settings = GenerationSettings(**{**tiny_settings.__dict__, "max_new_tokens": 200})
    __import__("torch").manual_seed(7)
    stream = gen.stream(MESSAGES, settings)
    assert next(stream)
    stream.close()  # stops generation and joins the worker thread
    assert not gen._lock.locked()
    assert not [t for t in threading.enumerate() if t.name == "slm-generate"]


def test_models_are_cached_per_spec_and_adapter(tiny_settings):
    a, b = load_generator(tiny_settings), load_generator(tiny_settings)
    assert a.model is b.model
    fresh, _ = load_causal_lm(tiny_settings.model)  # cache=False: a private copy (training mutates it)
    assert fresh is not a.model


def test_adapter_is_loaded_on_top(tiny_lm_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    model, _ = load_causal_lm(str(tiny_lm_dir))
    import torch
    from peft import PeftModel

    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():  # LoRA B starts at zero (a no-op); make the adapter change something
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.fill_(0.5)
    peft_model.save_pretrained(tmp_path / "adapter")
    loaded, _ = load_causal_lm(str(tiny_lm_dir), adapter=tmp_path / "adapter")
    assert isinstance(loaded, PeftModel)
    lora_b = [p for n, p in loaded.named_parameters() if "lora_B" in n]
    assert lora_b and all(torch.all(p == 0.5) for p in lora_b)
    gen = load_generator(GenerationSettings(model=str(tiny_lm_dir), max_new_tokens=4), tmp_path / "adapter")
    assert gen.adapter == str(tmp_path / "adapter") and isinstance(gen.generate(MESSAGES, GenerationSettings(max_new_tokens=4)), str)


def test_load_errors_are_actionable(tmp_path, tiny_lm_dir):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_causal_lm(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="cannot load model"):
        load_causal_lm(str(tmp_path / "empty"))
    with pytest.raises(ModelLoadError, match="adapter_config.json"):
        load_causal_lm(str(tiny_lm_dir), adapter=tmp_path / "empty")
    with pytest.raises(ModelLoadError, match="base_url"):
        load_generator(GenerationSettings(backend="openai"))
    with pytest.raises(ModelLoadError, match="backend"):
        load_generator(GenerationSettings(backend="tea-leaves"))


# ---------------------------------------------------------------- OpenAI-compatible backend (fake server)


class _FakeOpenAI(BaseHTTPRequestHandler):
    requests: list[dict] = []
    deltas = ["Refunds ", "take 30 days [1].", "\nQuestion: next?", " more"]

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if body["model"] == "broken":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b'{"error": "model exploded"}')
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for d in self.deltas:
            event = {"choices": [{"index": 0, "delta": {"content": d}}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_openai():
    _FakeOpenAI.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


PROTOCOL = ("name", "adapter", "stream", "generate", "prompt_tokens", "count_tokens", "last_generated_tokens")


def test_every_backend_implements_the_whole_protocol():
    from slm.generation.llamacpp import LlamaCppGenerator  # llama_cpp itself is imported only to load a model

    for backend in (TransformersGenerator, OpenAIGenerator, LlamaCppGenerator):
        for method in PROTOCOL[2:]:
            assert callable(getattr(backend, method, None)), (backend.__name__, method)
    declared = set(Generator.__annotations__) | {m for m in vars(Generator) if not m.startswith("_")}
    assert declared == set(PROTOCOL)  # the protocol declares exactly these: a new member is added here too


def test_backends_are_one_table_and_an_unknown_one_names_them():
    from slm.generation.backends import BACKENDS

    assert set(BACKENDS) == {"transformers", "llamacpp", "openai"}
    with pytest.raises(ModelLoadError, match="unknown generation.backend 'vllm'; use transformers, llamacpp, openai"):
        load_generator(GenerationSettings(backend="vllm"))
    with pytest.raises(ModelLoadError, match="base_url is not set"):
        load_generator(GenerationSettings(backend="openai"))


def test_openai_generator_estimates_what_it_cannot_tokenise():
    gen = OpenAIGenerator("http://127.0.0.1:9/v1", "served-model")
    assert isinstance(gen, Generator) and gen.adapter is None
    # 30 characters: 10 tokens at 3 a token, + 8 for the message's chat markers (an over-estimate on purpose)
    assert gen.prompt_tokens([{"role": "user", "content": "x" * 30}]) == 18
    assert gen.count_tokens("three small words") == 3 and gen.count_tokens("") == 0
    assert gen.last_generated_tokens() == 0


def test_openai_generator_streams_sse_and_stops(fake_openai):
    settings = GenerationSettings(backend="openai", base_url=fake_openai, model="served-model", api_key="k1",
                                  max_new_tokens=33, temperature=0.0)
    gen = load_generator(settings)
    assert isinstance(gen, OpenAIGenerator)
    pieces = list(gen.stream(MESSAGES, settings))
    assert "".join(pieces) == "Refunds take 30 days [1].\n"
    (request,) = _FakeOpenAI.requests
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer k1"
    body = request["body"]
    assert body["model"] == "served-model" and body["stream"] is True and body["max_tokens"] == 33
    assert body["messages"] == MESSAGES and 0 < len(body["stop"]) <= 4


def test_openai_generator_reports_server_errors(fake_openai):
    settings = GenerationSettings(backend="openai", base_url=fake_openai, model="broken")
    with pytest.raises(GenerationError, match="500"):
        load_generator(settings).generate(MESSAGES, settings)
    unreachable = GenerationSettings(backend="openai", base_url="http://127.0.0.1:9/v1", model="m")
    with pytest.raises(GenerationError, match="cannot reach"):
        load_generator(unreachable).generate(MESSAGES, unreachable)


def test_repetition_controls_look_at_the_answer_only():
    import torch

    from slm.generation.backends import _anti_repetition

    prompt = [5, 6, 7, 5, 6]
    answer = [8, 9, 8]
    ids = torch.tensor([prompt + answer])
    scores = torch.ones(1, 12)
    out = _anti_repetition(GenerationSettings(repetition_penalty=2.0, no_repeat_ngram_size=2), len(prompt))(ids, scores.clone())
    assert out[0, 5] == out[0, 6] == out[0, 7] == 1.0  # prompt words (passages) stay free to copy
    assert out[0, 8] == 0.5  # an answer token already used is penalised
    assert out[0, 9] == float("-inf")  # "8 9" already in the answer: after 8, 9 is banned
    untouched = _anti_repetition(GenerationSettings(repetition_penalty=1.0, no_repeat_ngram_size=0), len(prompt))
    assert torch.equal(untouched(ids, scores.clone()), scores)


def test_prefix_cache_reuses_the_fixed_prompt_start_without_changing_the_output(tiny_settings):
    from slm.answering.prompting import build_messages
    from slm.types import Chunk

    gen = load_generator(tiny_settings)
    chunk = Chunk(id="a::0", doc_id="a", text="Refunds are accepted within 30 days of purchase.", start=0, end=48)
    messages = build_messages("What is the refund policy?", [chunk], demo=True)
    gen.use_prefix_cache = False
    plain = _seeded(gen.generate, messages, tiny_settings)
    gen.use_prefix_cache = True
    try:
        cached = [_seeded(gen.generate, messages, tiny_settings) for _ in range(2)]
        from slm.generation.loading import model_state

        store = model_state(gen.model).prefix_cache
        assert any("cafeteria" in key for key in store) and cached == [plain, plain]
        size = len(store)
        other = build_messages("Another question?", [chunk], demo=True)
        _seeded(gen.generate, other, tiny_settings)
        assert len(store) == size  # same system prompt + worked example: same prefix entry
    finally:
        gen.use_prefix_cache = TransformersGenerator.use_prefix_cache


def test_generators_of_one_model_share_its_lock_and_the_state_goes_with_the_model(tiny_settings):
    import gc

    import torch

    from slm.generation.loading import _MODEL_STATE, model_state

    first, second = load_generator(tiny_settings), load_generator(tiny_settings)  # the cached model, twice
    assert first.model is second.model and first._lock is second._lock
    assert not any(k.startswith("_slm") for k in vars(first.model))  # nothing pinned onto the library object
    other = torch.nn.Linear(2, 2)
    assert model_state(other).generate_lock is not first._lock and model_state(other) is model_state(other)
    before = len(_MODEL_STATE)
    del other
    gc.collect()
    assert len(_MODEL_STATE) == before - 1


def test_a_blank_line_ends_the_answer_only_after_a_finished_sentence():
    stops = ["\n\n", "Question:"]
    assert _scan(["The answer is:", "\n\n", "Use reversed() [1].", "\n\nAlso"], stops) == (
        "The answer is:\n\nUse reversed() [1].", True)
    assert _scan(["Done [2].\n", "\nMore text"], stops) == ("Done [2].", True)
    assert _scan(["Steps:\n\n1. open\n\n", "2. close."], stops) == ("Steps:\n\n1. open\n\n2. close.", False)


# ---------------------------------------------------------------- the abstention gate


class _Tokenizer:
    def encode(self, text, add_special_tokens=False):
        return [3, 9, 4] if text.startswith("I don't know") else [5]


def _first_step_scores(abstain_probability):
    """Logits over 6 tokens where token 3 (the abstention's first) has `abstain_probability` and is still the
    single likeliest (the rest share what is left)."""
    import torch

    rest = (1 - abstain_probability) / 5
    probs = torch.full((1, 6), rest)
    probs[0, 3] = abstain_probability
    return torch.log(probs)


@pytest.mark.parametrize("probability, banned", [(0.3, True), (0.49, True), (0.51, False), (0.8, False)])
def test_the_model_abstains_only_when_it_puts_half_its_probability_on_it(probability, banned):
    import torch

    from slm.generation.backends import _abstention_gate

    gate = _abstention_gate(GenerationSettings(abstain_min_prob=0.5), _Tokenizer(), prompt_length=4)
    prompt = torch.zeros((1, 4), dtype=torch.long)
    scores = gate(prompt, _first_step_scores(probability))
    assert bool(scores[0, 3] == -float("inf")) is banned
    assert int(scores.argmax()) != 3 if banned else int(scores.argmax()) == 3


def test_the_gate_leaves_later_tokens_alone_and_can_be_turned_off():
    import torch

    from slm.generation.backends import _abstention_gate

    later = torch.zeros((1, 5), dtype=torch.long)  # one answer token already written
    gate = _abstention_gate(GenerationSettings(abstain_min_prob=0.5), _Tokenizer(), prompt_length=4)
    assert torch.equal(gate(later, _first_step_scores(0.3)), _first_step_scores(0.3))
    assert len(_abstention_gate(GenerationSettings(abstain_min_prob=0.0), _Tokenizer(), prompt_length=4)) == 0


def test_the_llamacpp_gate_decides_like_the_transformers_one():
    import numpy as np

    from slm.generation.llamacpp import _abstention_gate

    gate = _abstention_gate(GenerationSettings(abstain_min_prob=0.5), [3], prompt_length=4)
    prompt = np.zeros(4, dtype=np.intc)
    low = gate(prompt, _first_step_scores(0.3).numpy()[0])
    high = gate(prompt, _first_step_scores(0.6).numpy()[0])
    assert low[3] == -np.inf and int(low.argmax()) != 3 and int(high.argmax()) == 3
    assert np.array_equal(gate(np.zeros(5, dtype=np.intc), _first_step_scores(0.3).numpy()[0]),
                          _first_step_scores(0.3).numpy()[0])
    assert _abstention_gate(GenerationSettings(abstain_min_prob=0.0), [3], prompt_length=4) is None


def test_model_loads_take_turns_in_one_process(tiny_lm_dir, tiny_embedder_dir, monkeypatch):
    """transformers loads through process-wide switches: two loads at once (an ingest thread opening the embedder
    while a server loads an adapter) left meta tensors behind. Every loader runs under slm.models.LOAD_LOCK."""
    import sentence_transformers
    import transformers

    from slm.config import EmbedderSettings
    from slm.kb.embedding import _load as load_embedder
    from slm.models import LOAD_LOCK

    held = []
    real_lm = transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: held.append(LOAD_LOCK._is_owned()) or real_lm(*a, **k))
    real_st = sentence_transformers.SentenceTransformer
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer",
                        lambda *a, **k: held.append(LOAD_LOCK._is_owned()) or real_st(*a, **k))
    load_causal_lm(str(tiny_lm_dir))
    load_embedder(EmbedderSettings(model=str(tiny_embedder_dir), backend="torch"))  # the torch path (ONNX may be cached)
    assert held == [True, True]
