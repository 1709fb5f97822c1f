"""Issue 14's unbounded questions (3) and histories (7) against the real Answerer with a tiny real model, and
through every entry point: the API (uvicorn on loopback), the UI's chat controller, the CLI and LangChain.
One budget (answering.max_question_chars, max_prompt_tokens, max_rewrite_tokens) refuses or trims them."""

from __future__ import annotations

import io
import sys
import time

import httpx
import pytest
import yaml

from slm.answering.answerer import Answerer
from slm.config import AnsweringSettings, GenerationSettings, RetrievalSettings
from slm.errors import RequestTooLarge
from slm.answering.prompting import Turn, build_messages
from tests.unit.test_answering import CHUNKS, ListRetriever, ScriptedGenerator

ATTACK_CHARS = 400_000  # the question that drove the UI to 13 GB
TURN = "The refund policy allows returns within 30 days of purchase with a receipt. "
# issue 14, hole 7: 15 history turns of 3,900 characters, within every API limit
LONG_HISTORY = tuple(Turn("user" if i % 2 == 0 else "assistant", (f"turn {i}: " + TURN * 52)[:3900]) for i in range(15))


class Recording:
    """A real generator, recording the prompt size (in its own tokens) of every call and who made it."""

    def __init__(self, inner):
        self.inner = inner
        self.name, self.adapter = inner.name, None
        self.prompts: list[tuple[str, int, list[dict]]] = []
        self.counted = 0

    def prompt_tokens(self, messages):
        self.counted += 1
        return self.inner.prompt_tokens(messages)

    def count_tokens(self, text):
        return self.inner.count_tokens(text)

    def last_generated_tokens(self):
        return self.inner.last_generated_tokens()

    def generate(self, messages, settings):
        self.prompts.append(("rewrite", self.inner.prompt_tokens(messages), messages))
        return self.inner.generate(messages, settings)

    def stream(self, messages, settings):
        self.prompts.append(("answer", self.inner.prompt_tokens(messages), messages))
        yield from self.inner.stream(messages, settings)


@pytest.fixture(scope="module")
def tiny_generator(tiny_lm_dir):
    from slm.generation.backends import load_generator

    return load_generator(GenerationSettings(model=str(tiny_lm_dir)))


def _real(tiny_generator, **answering):
    gen = Recording(tiny_generator)
    retriever = ListRetriever(list(CHUNKS))
    settings = AnsweringSettings(min_evidence=-1.0, **answering)
    answerer = Answerer(retriever, gen, settings, RetrievalSettings(), GenerationSettings(max_new_tokens=8))
    return answerer, retriever, gen


# ---------------------------------------------------------------- the Answerer


def test_400k_question_is_refused_before_anything_is_tokenised(tiny_generator):
    answerer, retriever, gen = _real(tiny_generator)
    start = time.perf_counter()
    with pytest.raises(RequestTooLarge, match="answering.max_question_chars") as info:
        answerer.answer("how do refunds work? " * (ATTACK_CHARS // 21))
    assert time.perf_counter() - start < 0.5
    assert info.value.code == "question_too_long"
    assert gen.counted == 0 and gen.prompts == [] and retriever.queries == []


def test_question_at_the_char_limit_but_over_the_token_budget_is_refused_before_retrieval(tiny_generator):
    """Rare characters are several tokens each: 2,000 of them are under the character limit but far over the
    prompt budget. Refused before the rewrite and the retrieval spend anything."""
    answerer, retriever, gen = _real(tiny_generator)
    question = "ж" * answerer.answering.max_question_chars
    with pytest.raises(RequestTooLarge, match="answering.max_prompt_tokens") as info:
        answerer.answer(question, history=[Turn("user", "refunds?"), Turn("assistant", "30 days [1].")])
    assert info.value.code == "prompt_too_long"
    assert retriever.queries == [] and gen.prompts == []


def test_question_that_fits_alone_but_not_with_its_passages_is_refused_before_generating(tiny_generator):
    answerer, _, gen = _real(tiny_generator)
    question = "How many days do I have to return a product for a refund?"
    alone = tiny_generator.prompt_tokens(build_messages(question, [], (), 600, demo=True))
    answerer, retriever, gen = _real(tiny_generator, max_prompt_tokens=alone + 5)
    with pytest.raises(RequestTooLarge, match="passages"):
        answerer.answer(question)
    assert retriever.queries and not [p for p in gen.prompts if p[0] == "answer"]


def test_long_history_is_trimmed_to_the_budget_oldest_first(tiny_generator):
    """Hole 7: 15 turns of 3,900 characters. Every prompt the model is fed stays within its budget; what
    is dropped is the oldest history; the answer still comes."""
    answerer, _, gen = _real(tiny_generator)
    budget = answerer.answering
    answer = answerer.answer("and what about receipts?", history=LONG_HISTORY)
    assert answer.text or answer.abstained
    kinds = [kind for kind, _, _ in gen.prompts]
    assert kinds == ["rewrite", "answer"]
    for kind, tokens, _ in gen.prompts:
        assert tokens <= (budget.max_rewrite_tokens if kind == "rewrite" else budget.max_prompt_tokens), kind
    unbounded = tiny_generator.prompt_tokens(build_messages("and what about receipts?", [h.chunk for h in answer.passages],
                                                             list(LONG_HISTORY[-8:]), 600, demo=True))
    assert unbounded > 3 * budget.max_prompt_tokens  # the attack was real: 8 turns alone are far over
    answer_messages = gen.prompts[-1][2]
    kept = [m["content"] for m in answer_messages[3:-1]]  # after system + worked example, before the question
    newest = [t.content for t in LONG_HISTORY]
    assert 1 <= len(kept) < 8 and kept == newest[len(newest) - len(kept):]  # a suffix: only the oldest went


def test_short_history_is_kept_whole(tiny_generator):
    answerer, _, gen = _real(tiny_generator)
    history = [Turn("user", "How long do refunds take?"), Turn("assistant", "Refunds take 30 days [1].")]
    answerer.answer("and do I need a receipt?", history=history)
    kept = [m["content"] for m in gen.prompts[-1][2][3:-1]]
    assert kept == ["How long do refunds take?", "Refunds take 30 days."]


# ---------------------------------------------------------------- entry points


def test_ui_chat_controller_shows_the_budget_error_without_answering():
    from slm.webui.chat import ChatController, Owner

    retriever = ListRetriever(list(CHUNKS))
    gen = ScriptedGenerator("never")
    answerer = Answerer(retriever, gen, AnsweringSettings(min_evidence=-1.0), RetrievalSettings(), GenerationSettings())

    class Sink:
        def record(self, *a, **k):
            return 0

    start = time.perf_counter()
    views = list(ChatController(answerer, Sink()).ask(Owner("ed"), "session", "x" * ATTACK_CHARS, audiences=None))
    assert time.perf_counter() - start < 1.0
    entry = views[-1].entries[-1]
    assert entry.answer is None and "answering.max_question_chars" in entry.error
    assert "answering.max_question_chars" in views[-1].messages[-1]["content"].replace("\\", "")  # shown
    assert all(len(v.messages[0]["content"]) < 3000 for v in views)  # the question is not echoed whole
    assert retriever.queries == [] and gen.calls == []


def test_langchain_retriever_refuses_an_oversized_query():
    from slm.retrieval.langchain import SlmRetriever

    retriever = ListRetriever(list(CHUNKS))
    lc = SlmRetriever(retriever=retriever, k=2)
    with pytest.raises(RequestTooLarge):
        lc.invoke("x" * ATTACK_CHARS)
    assert retriever.queries == []
    assert lc.invoke("refunds accepted days")  # a normal query still works


@pytest.fixture(scope="module")
def cli_kb(tmp_path_factory, tiny_embedder_dir):
    from slm.config import load_settings
    from slm.kb.ingest import ingest
    from slm.kb.local import KnowledgeBase
    from tests.helpers.kb import write_corpus

    base = tmp_path_factory.mktemp("budget-cli")
    config = base / "slm.yaml"
    config.write_text(yaml.safe_dump({
        "kb": str(base / "kb"), "embedder": {"model": str(tiny_embedder_dir), "batch_size": 8, "max_seq_length": 128},
        "answering": {"min_evidence": -1.0},
    }))
    settings = load_settings(config)
    with KnowledgeBase.open(settings.kb, settings, create=True) as kb:
        ingest(write_corpus(base / "docs"), kb, progress=False)
    return config


def _main(monkeypatch, *args) -> int:
    from slm.cli.main import main

    monkeypatch.setattr(sys, "argv", ["slm", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_ask_refuses_an_oversized_question_with_exit_code_3(cli_kb, monkeypatch, capsys):
    code = _main(monkeypatch, "ask", "x" * 5000, "-c", str(cli_kb), "--extractive")
    err = capsys.readouterr().err
    assert code == RequestTooLarge.exit_code == 3
    assert "answering.max_question_chars" in err


def test_cli_chat_refuses_one_question_and_goes_on(cli_kb, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("x" * 5000 + "\nHow many days do customers have for a refund?\n"))
    code = _main(monkeypatch, "chat", "-c", str(cli_kb), "--extractive")
    out = capsys.readouterr()
    assert code == 0
    assert "answering.max_question_chars" in out.err
    assert "[1]" in out.out  # the next question was answered


# ---------------------------------------------------------------- the real server with the real answerer


def test_api_long_history_is_bounded_on_the_real_server(tmp_path, tiny_generator):
    """Hole 7 over HTTP: the request that held the only slot for 104 s, against uvicorn on loopback with the
    real Answerer and a tiny real model: 200, and every prompt within the budget."""
    from slm.api.app import create_app
    from tests.security.loopback import LoopbackServer
    from tests.unit.api_fakes import FakeRegistry, make_key, make_settings

    built: list = []

    def factory(adapter):
        answerer, _, gen = _real(tiny_generator)
        built.append(gen)
        return answerer

    settings = make_settings(tmp_path)
    app = create_app(settings, answerer_factory=factory, registry=FakeRegistry([]))
    messages = [{"role": t.role, "content": t.content} for t in LONG_HISTORY] + [
        {"role": "user", "content": "and what about receipts?"}]
    with LoopbackServer(app, settings.serve) as server:
        key = make_key(settings, audiences=("employees",))  # the audience the test chunks are for
        r = httpx.post(f"{server.url}/v1/chat/completions", json={"messages": messages}, timeout=60,
                       headers={"Authorization": f"Bearer {key}"})
        too_long = httpx.post(f"{server.url}/v1/chat/completions", timeout=60,
                              json={"messages": [{"role": "user", "content": "ж" * 1999}]},
                              headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    answering = settings.answering
    prompts = [p for gen in built for p in gen.prompts][:2]
    assert [kind for kind, _, _ in prompts] == ["rewrite", "answer"]
    assert all(n <= (answering.max_rewrite_tokens if kind == "rewrite" else answering.max_prompt_tokens)
               for kind, n, _ in prompts)
    assert too_long.status_code == 422 and too_long.json()["error"]["code"] == "prompt_too_long", too_long.text
