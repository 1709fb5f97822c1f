"""Fakes for the API unit tests: an answerer with the Answerer interface, a registry, and app builders."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from slm.config import DEFAULT_GENERATOR, Settings
from slm.api.keys import KeyStore
from slm.types import Answer, Chunk, Citation, Hit, Timings

CHUNK = Chunk(id="guide.md::0000", doc_id="guide.md", text="Refunds are accepted within 30 days.", start=0, end=36,
              section=("Refunds",), anchor="refunds", title="Guide", source="guide.md", audiences=("customers",))


class FakeAnswerer:
    """Answers "<adapter>: <question>" word by word and cites one passage; records every call."""

    def __init__(self, adapter: str | None = None, *, delay_s: float = 0.0, gate: threading.Event | None = None):
        self.adapter = adapter
        self.delay_s = delay_s
        self.gate = gate  # when set, generation waits for it (to hold a queue slot)
        self.calls: list[dict] = []
        self.cancelled = threading.Event()
        self.finished = threading.Event()

    def _final(self, question: str, text: str, generated: int) -> Answer:
        citation = Citation(marker=1, chunk_id=CHUNK.id, doc_id=CHUNK.doc_id, title=CHUNK.title, source=CHUNK.source,
                            section=CHUNK.section, anchor=CHUNK.anchor, page=None, start=CHUNK.start, end=CHUNK.end,
                            snippet=CHUNK.text)
        return Answer(question=question, text=text, citations=(citation,), passages=(Hit(CHUNK, 0.9, dense=0.9),),
                      model="fake-base", adapter=self.adapter,
                      timings=Timings(retrieval_s=0.001, first_token_s=0.002, total_s=0.003, generated_tokens=generated))

    def _words(self, question: str) -> list[str]:
        return f"{self.adapter or 'base'} says {question} [1]".split(" ")

    def answer(self, question, *, history=(), audiences=None, k=None, rerank=None, max_new_tokens=None, cancel=None):
        self.calls.append({"question": question, "history": tuple(history), "audiences": audiences,
                           "max_new_tokens": max_new_tokens})
        if self.gate is not None:
            self.gate.wait(10)
        words = self._words(question)
        self.finished.set()
        return self._final(question, " ".join(words), len(words))

    def stream(self, question, *, history=(), audiences=None, k=None, rerank=None, max_new_tokens=None, cancel=None):
        self.calls.append({"question": question, "history": tuple(history), "audiences": audiences,
                           "max_new_tokens": max_new_tokens, "cancel": cancel})
        if self.gate is not None:
            self.gate.wait(10)
        words = self._words(question)
        for i, word in enumerate(words):
            if cancel is not None and cancel.is_set():
                self.cancelled.set()
                return
            yield word if i == 0 else " " + word
            time.sleep(self.delay_s)
        self.finished.set()
        yield self._final(question, " ".join(words), len(words))


class NoCancelAnswerer(FakeAnswerer):
    """Like the real Answerer: `stream` takes no cancel event; stopping means closing the iterator."""

    def stream(self, question, *, history=(), audiences=None, k=None, rerank=None):
        try:
            yield from FakeAnswerer.stream(self, question, history=history, audiences=audiences)
        except GeneratorExit:
            self.cancelled.set()
            raise


@dataclass(frozen=True)
class FakeVersion:
    version: str
    audiences: tuple[str, ...]
    status: str = "candidate"
    created: str = "2025-01-01T00:00:00+00:00"
    path: str = ""
    base: str = DEFAULT_GENERATOR
    metrics: dict = field(default_factory=dict)


class FakeRegistry:
    def __init__(self, versions: list[FakeVersion], current: str | None = None):
        self._versions = versions
        self.current_version = current

    def versions(self):
        return list(self._versions)

    def current(self):
        return next((v for v in self._versions if v.version == self.current_version), None)


class Factory:
    """answerer_factory for create_app: one FakeAnswerer per adapter, kept for assertions."""

    def __init__(self, answerer_class=FakeAnswerer, **kwargs):
        self.answerer_class = answerer_class
        self.kwargs = kwargs
        self.built: dict[str | None, FakeAnswerer] = {}
        self.release = threading.Event()  # for tests that hold start-up
        self.hold_start = False

    def __call__(self, adapter: str | None) -> FakeAnswerer:
        if self.hold_start:
            self.release.wait(10)
        answerer = self.answerer_class(adapter, **self.kwargs)
        self.built[adapter] = answerer
        return answerer


def make_settings(tmp_path, **serve) -> Settings:
    settings = Settings(kb=tmp_path / "kb")
    settings.kb.mkdir(parents=True, exist_ok=True)
    for name, value in serve.items():
        setattr(settings.serve, name, value)
    return settings


def make_key(settings: Settings, name: str = "bot", audiences=("customers",)) -> str:
    return KeyStore.for_kb(settings.kb).create(name, audiences).secret
