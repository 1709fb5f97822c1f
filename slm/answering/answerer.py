"""Answer a question from the knowledge base: retrieve → abstain on weak evidence → generate → cite.

`Answerer` uses a generator; `ExtractiveAnswerer` quotes the best passage (no model, a baseline).
Both stream text deltas and end with exactly one `Answer`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable, Iterator, Protocol, Sequence

from slm.access.labels import may_use_adapter
from slm.answering.abstention import evidence_score, evidence_threshold, is_abstention
from slm.answering.citations import (
    MarkerFilter, MarkerVerifier, attribute, best_snippet, nearest_sources, parse_citations, strip_markers,
)
from slm.config import AnsweringSettings, GenerationSettings, RetrievalSettings
from slm.errors import RequestTooLarge, SlmError
from slm.generation.backends import Generator
from slm.answering.prompting import ABSTAIN_TEXT, REWRITE_TURNS, Turn, build_messages, rewrite_prompt
from slm.text.messages import answer_language, message
from slm.text.words import collapse_spaces, content_words
from slm.types import Answer, Hit, Timings

CLOSED_BOOK_SYSTEM = (
    "Answer the question in one to three sentences. "
    f"If you do not know the answer, reply exactly: {ABSTAIN_TEXT}"
)


class Retriever(Protocol):
    def retrieve(
        self, query: str, k: int = 5, *, audiences: frozenset[str] | None = None, mode: str | None = None,
        rerank: bool | None = None,
    ) -> list[Hit]: ...


def check_question(question: str, max_chars: int) -> str:
    """The stripped question; RequestTooLarge over `max_chars` (answering.max_question_chars), checked by
    length alone so an oversized question costs nothing before it is refused."""
    if len(question) > max_chars and len(question.strip()) > max_chars:
        raise RequestTooLarge(
            f"the question is {len(question.strip())} characters; the limit is {max_chars} "
            "(answering.max_question_chars): ask a shorter question", code="question_too_long")
    question = question.strip()
    if not question:
        raise SlmError("the question is empty")
    return question


def with_context(last_user: str, question: str, max_chars: int) -> str:
    """The previous question joined to a follow-up, for retrieval; the follow-up alone when that is too long."""
    joined = f"{last_user} {question}".strip()
    return joined if len(joined) <= max_chars else question


def fit_history(
    make: Callable[[list[Turn]], list[dict[str, str]]], turns: Sequence[Turn], budget: int, generator: Generator
) -> list[dict[str, str]] | None:
    """`make(turns)` with the oldest turns dropped until its prompt is at most `budget` tokens; None when it is
    over even with no history. While the turns hold over 8 characters a budget token, they are dropped untokenised."""
    kept = list(turns)
    # Conversation text averages ~4 characters a token; over 8 a token, drop turns before tokenising them
    # (tokenising is part of the cost being bounded).
    while kept and sum(len(t.content) for t in kept) > 8 * budget:
        kept.pop(0)
    while True:
        messages = make(kept)
        if generator.prompt_tokens(messages) <= budget:
            return messages
        if not kept:
            return None
        kept.pop(0)


class _Base:
    """Retrieval and abstention shared by the generative and extractive answerers."""

    model_name = ""
    adapter: str | None = None
    answer_language = "auto"  # generation.answer_language (the extractive baseline follows the question)

    def __init__(
        self,
        retriever: Retriever,
        answering: AnsweringSettings,
        retrieval: RetrievalSettings,
        *,
        min_evidence: float | None = None,
    ):
        self.retriever = retriever
        self.answering = answering
        self.retrieval = retrieval
        # The service passes the KB's threshold (slm.answering.service.evidence_threshold_for); built without
        # one, the settings' value or the packaged embedder's default applies.
        self.min_evidence = evidence_threshold(answering.min_evidence, calibrated=min_evidence)

    def check_question(self, question: str) -> str:
        """The stripped question, or RequestTooLarge (answering.max_question_chars) / SlmError (empty)."""
        return check_question(question, self.answering.max_question_chars)

    def retrieve(
        self, query: str, *, audiences: frozenset[str] | None, k: int | None, rerank: bool | None
    ) -> tuple[Hit, ...]:
        n = k or self.answering.passages
        hits = self.retriever.retrieve(query, k=n, audiences=audiences, rerank=rerank)
        return tuple(hits[:n])

    def weak_evidence(self, passages: Sequence[Hit]) -> bool:
        return not passages or evidence_score(passages) < self.min_evidence

    def answer_language_for(self, question: str) -> str:
        return answer_language(self.answer_language, question)

    def abstain_text(self, question: str) -> str:
        """"I don't know from the documents." in the answer's language."""
        return message("abstain", self.answer_language_for(question))

    def abstain(self, question: str, passages: tuple[Hit, ...], timings: Timings) -> Answer:
        return Answer(
            question=question,
            text=self.abstain_text(question),
            citations=nearest_sources(passages, question),
            passages=passages,
            abstained=True,
            model=self.model_name,
            adapter=self.adapter,
            timings=timings,
            language=self.answer_language_for(question),
        )

    def answer(
        self,
        question: str,
        *,
        history: Sequence[Turn] = (),
        audiences: frozenset[str] | None = None,
        k: int | None = None,
        rerank: bool | None = None,
        max_new_tokens: int | None = None,
    ) -> Answer:
        final = None
        extra = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
        for item in self.stream(question, history=history, audiences=audiences, k=k, rerank=rerank, **extra):
            if isinstance(item, Answer):
                final = item
        assert final is not None
        return final

    def stream(self, question: str, **kwargs: Any) -> Iterator[str | Answer]:  # pragma: no cover - abstract
        raise NotImplementedError


class Answerer(_Base):
    """Retrieval-augmented answers from a generator, with [n] citations, abstention and timings."""

    def __init__(
        self,
        retriever: Retriever,
        generator: Generator,
        answering: AnsweringSettings,
        retrieval: RetrievalSettings,
        generation: GenerationSettings,
        *,
        min_evidence: float | None = None,
        adapter_audiences: Sequence[str] | None = None,
        base_generator: Callable[[], Generator] | None = None,
    ):
        super().__init__(retriever, answering, retrieval, min_evidence=min_evidence)
        self.generator = generator
        self.generation = generation
        self.answer_language = generation.answer_language
        self.model_name = generator.name
        self.adapter = generator.adapter
        # An adapter has learned its training documents: a caller who may not see all of them gets
        # the base model instead (`base_generator` loads it on first need).
        self.adapter_audiences = tuple(adapter_audiences) if adapter_audiences is not None else None
        self._base_factory = base_generator

    def generator_for(self, audiences: frozenset[str] | None) -> Generator:
        """The tuned generator, unless the caller lacks an audience its adapter was trained on."""
        if may_use_adapter(self.adapter_audiences, audiences):
            return self.generator
        if self._base_factory is None:
            from slm.errors import AccessDenied

            raise AccessDenied("the model was tuned on documents this caller may not see, and no base model is configured")
        return self._base_factory()

    def use_demo(self, generator: Generator) -> bool:
        """Whether the prompt starts with the worked example (see AnsweringSettings.demo)."""
        mode = self.answering.demo
        return mode == "always" or (mode == "auto" and generator.adapter is None)

    # ------------------------------------------------------------ conversation

    def history_for_prompt(self, history: Sequence[Turn]) -> list[Turn]:
        """The last turns, with old [n] markers removed (they named passages the model no longer sees)."""
        keep = list(history)[-2 * self.answering.history_turns :] if self.answering.history_turns else []
        return [Turn(t.role, strip_markers(t.content)) for t in keep]

    def standalone_question(self, question: str, history: Sequence[Turn], *, generator: Generator | None = None) -> str:
        """Rewrite a follow-up ("and for lists?") into a question retrieval can use on its own."""
        question = self.check_question(question)
        if not history:
            return question
        last_user = next((t.content for t in reversed(history) if t.role == "user"), "")
        fallback = with_context(last_user, question, self.answering.max_question_chars)
        settings = replace(self.generation, max_new_tokens=48, temperature=0.0, abstain_min_prob=0.0)
        generator = generator or self.generator
        prompt = fit_history(lambda turns: rewrite_prompt(question, turns), list(history)[-REWRITE_TURNS:],
                             self.answering.max_rewrite_tokens, generator)
        if prompt is None:  # the question alone fills the rewrite's budget: it stands as it is
            return question
        try:
            rewritten = generator.generate(prompt, settings)
        except SlmError:
            return fallback
        rewritten = " ".join(rewritten.strip().strip('"').split())
        context_words = content_words(question + " " + " ".join(t.content for t in history))
        plausible = 3 <= len(rewritten) <= 300 and not is_abstention(rewritten) and content_words(rewritten) & context_words
        return rewritten if plausible else fallback

    # ------------------------------------------------------------ the request budget

    def check_prompt_room(self, question: str, generator: Generator) -> None:
        """RequestTooLarge when the question with the fixed prompt alone is over answering.max_prompt_tokens:
        refused before the rewrite and retrieval spend anything on it."""
        budget = self.answering.max_prompt_tokens
        n = generator.prompt_tokens(build_messages(question, [], (), self.answering.max_passage_chars,
                                                    demo=self.use_demo(generator),
                                                    answer_language=self.answer_language_for(question)))
        if n > budget:
            raise RequestTooLarge(f"the question makes a prompt of {n} tokens; the limit is {budget} "
                                  "(answering.max_prompt_tokens): ask a shorter question")

    def prompt_for(self, query: str, passages: Sequence[Hit], history: Sequence[Turn], generator: Generator,
                   answer_language: str = "auto") -> list[dict[str, str]]:
        """The answer prompt within answering.max_prompt_tokens: the oldest history turns are dropped to fit;
        RequestTooLarge when the question and its passages do not fit even without history."""
        chunks = [h.chunk for h in passages]
        demo = self.use_demo(generator)
        budget = self.answering.max_prompt_tokens
        messages = fit_history(
            lambda turns: build_messages(query, chunks, turns, self.answering.max_passage_chars, demo=demo,
                                         answer_language=answer_language),
            self.history_for_prompt(history), budget, generator)
        if messages is None:
            raise RequestTooLarge(f"the question and its {len(chunks)} passages make a prompt over {budget} tokens "
                                  "(answering.max_prompt_tokens): ask a shorter question")
        return messages

    # ------------------------------------------------------------ answering

    def stream(
        self,
        question: str,
        *,
        history: Sequence[Turn] = (),
        audiences: frozenset[str] | None = None,
        k: int | None = None,
        rerank: bool | None = None,
        max_new_tokens: int | None = None,
    ) -> Iterator[str | Answer]:
        """Text deltas as the model writes them, then exactly one final Answer.

        `max_new_tokens` caps this answer's length (the API's `max_tokens`); None keeps the setting.
        """
        t0 = time.perf_counter()
        generation = self.generation if max_new_tokens is None else replace(self.generation, max_new_tokens=max_new_tokens)
        question = self.check_question(question)
        generator = self.generator_for(audiences)
        self.check_prompt_room(question, generator)
        query = self.standalone_question(question, history, generator=generator)
        passages = self.retrieve(query, audiences=audiences, k=k, rerank=rerank)
        retrieval_s = time.perf_counter() - t0
        if self.weak_evidence(passages):
            yield self.abstain_text(question)
            yield self.abstain(question, passages, Timings(retrieval_s=retrieval_s, total_s=time.perf_counter() - t0))
            return
        messages = self.prompt_for(query, passages, history, generator, self.answer_language_for(question))
        markers = MarkerFilter(len(passages))
        verifier = MarkerVerifier(passages, query) if self.answering.verify_citations else None
        parts: list[str] = []
        first_token_s = None
        raw: list[str] = []
        for delta in generator.stream(messages, generation):
            raw.append(delta)
            out = markers.feed(delta)
            if verifier is not None:
                out = verifier.feed(out)
            if not parts:
                out = out.lstrip()
            if out:
                first_token_s = first_token_s if first_token_s is not None else time.perf_counter() - t0
                parts.append(out)
                yield out
        tail = markers.flush()
        if verifier is not None:
            tail = verifier.feed(tail)
        if tail.strip() or (parts and tail):
            parts.append(tail)
            yield tail
        text, citations = parse_citations("".join(parts), passages)
        if not citations and self.answering.attribute_uncited:
            text, citations = parse_citations(attribute(text, passages, query), passages)
        timings = Timings(
            retrieval_s=retrieval_s,
            first_token_s=first_token_s,
            total_s=time.perf_counter() - t0,
            generated_tokens=_count_tokens(generator, "".join(raw)),
        )
        model, adapter = generator.name, generator.adapter
        if is_abstention(text):
            if not parts:
                yield self.abstain_text(question)
            # the model's own English "I don't know …" becomes the message in the question's language
            shown = self.abstain_text(question) if text.strip() in ("", ABSTAIN_TEXT) else text
            yield replace(self.abstain(question, passages, timings), text=shown, model=model, adapter=adapter)
            return
        yield Answer(
            question=question,
            text=text,
            citations=citations,
            passages=passages,
            abstained=False,
            uncited=not citations,
            model=model,
            adapter=adapter,
            timings=timings,
            language=self.answer_language_for(question),
        )

    def stream_closed_book(self, question: str) -> Iterator[str | Answer]:
        """The model alone, no passages: what it knows without the knowledge base (a baseline)."""
        t0 = time.perf_counter()
        question = self.check_question(question)
        messages = [{"role": "system", "content": CLOSED_BOOK_SYSTEM}, {"role": "user", "content": question}]
        if self.generator.prompt_tokens(messages) > self.answering.max_prompt_tokens:
            raise RequestTooLarge(f"the question is over {self.answering.max_prompt_tokens} tokens "
                                  "(answering.max_prompt_tokens): ask a shorter question")
        parts: list[str] = []
        first_token_s = None
        for delta in self.generator.stream(messages, self.generation):
            out = delta.lstrip() if not parts else delta
            if out:
                first_token_s = first_token_s if first_token_s is not None else time.perf_counter() - t0
                parts.append(out)
                yield out
        text = "".join(parts).strip()
        yield Answer(
            question=question,
            text=text or ABSTAIN_TEXT,
            abstained=is_abstention(text),
            model=self.model_name,
            adapter=self.adapter,
            timings=Timings(
                first_token_s=first_token_s,
                total_s=time.perf_counter() - t0,
                generated_tokens=_count_tokens(self.generator, text),
            ),
        )

    def answer_closed_book(self, question: str) -> Answer:
        return [item for item in self.stream_closed_book(question) if isinstance(item, Answer)][-1]


def _count_tokens(generator: Generator, text: str) -> int:
    """Exact where the generator counted its stream (local models), else its count of the text."""
    return generator.last_generated_tokens() or generator.count_tokens(text)


class ExtractiveAnswerer(_Base):
    """No model: answers with the sentences of the top passage that best match the question, citing [1]."""

    model_name = "extractive"

    def stream(
        self,
        question: str,
        *,
        history: Sequence[Turn] = (),
        audiences: frozenset[str] | None = None,
        k: int | None = None,
        rerank: bool | None = None,
    ) -> Iterator[str | Answer]:
        t0 = time.perf_counter()
        question = self.check_question(question)
        last_user = next((t.content for t in reversed(history) if t.role == "user"), "")
        query = with_context(last_user, question, self.answering.max_question_chars) if history else question
        passages = self.retrieve(query, audiences=audiences, k=k, rerank=rerank)
        retrieval_s = time.perf_counter() - t0
        if self.weak_evidence(passages):
            yield self.abstain_text(question)
            yield self.abstain(question, passages, Timings(retrieval_s=retrieval_s, total_s=time.perf_counter() - t0))
            return
        top = passages[0].chunk.text
        start, end = best_snippet(top, query)
        text = collapse_spaces(top[start:end]) + " [1]"
        yield text
        clean, citations = parse_citations(text, passages)
        total = time.perf_counter() - t0
        yield Answer(
            question=question,
            text=clean,
            citations=citations,
            passages=passages,
            model=self.model_name,
            timings=Timings(retrieval_s=retrieval_s, first_token_s=total, total_s=total),
            language=self.answer_language_for(question),
        )

    def answer_closed_book(self, question: str) -> Answer:
        """Without retrieval an extractive answerer has nothing to quote: it abstains."""
        return Answer(question=self.check_question(question), text=ABSTAIN_TEXT, abstained=True, model=self.model_name)
