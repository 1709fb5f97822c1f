"""One answering job, shared by the OpenAI and native routes: conversation → question + history,
limits, model resolution, a queue slot, then `Answerer.answer` or `.stream` on a generation thread."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from fastapi import Request

from slm.api.deps import ApiContext, require_ready
from slm.api.errors import ApiError
from slm.api.limits import Slot, check_max_tokens, check_messages
from slm.api.metrics import CLIENT_CLOSED
from slm.api.runtime import ServedModel
from slm.api.schemas import ChatMessage
from slm.answering.answerer import check_question
from slm.api.streaming import GenerationStream, call_supported
from slm.access.audit import Caller, audit_log_for, audited
from slm.api.keys import ApiKey
from slm.answering.prompting import Turn
from slm.types import Answer



@dataclass(frozen=True)
class Job:
    question: str
    history: tuple[Turn, ...]
    model: ServedModel
    audiences: frozenset[str] | None
    max_tokens: int | None
    caller: str = ""  # who asked, for the audit log: key:<name>


def split_conversation(messages: Sequence[ChatMessage], field: str = "messages") -> tuple[str, tuple[Turn, ...]]:
    """The last message (a user's) is the question; earlier user/assistant messages are the history.
    System, developer and tool messages are ignored: the server's own instructions apply."""
    turns = [m for m in messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user" or messages[-1].role != "user":
        raise ApiError(422, f"{field}: the last message must be the user's question", code="no_question", param=field)
    question = turns[-1].text.strip()
    if not question:
        raise ApiError(422, f"{field}: the last user message is empty", code="no_question", param=field)
    return question, tuple(Turn(role=m.role, content=m.text) for m in turns[:-1])


def prepare(ctx: ApiContext, request: Request, key: ApiKey, *, question: str, history: tuple[Turn, ...],
            requested_model: str | None, max_tokens: int | None, texts: Sequence[str], field: str) -> Job:
    serve = ctx.settings.serve
    check_messages(texts, serve, field)
    check_question(question, ctx.settings.answering.max_question_chars)  # the answerer's own rule, before a slot
    check_max_tokens(max_tokens, serve)
    require_ready(ctx)
    caller = key.caller_audiences
    model = ctx.host.resolve(requested_model, caller)
    request.state.model = model.id
    request.state.question_chars = len(question)
    if serve.log_questions:
        request.state.question = question
    return Job(question, history, model, caller, max_tokens, caller=f"key:{key.name}")


def _kwargs(job: Job, cancel: threading.Event | None = None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"history": job.history, "audiences": job.audiences}
    if job.max_tokens is not None:
        kwargs["max_new_tokens"] = job.max_tokens
    if cancel is not None:
        kwargs["cancel"] = cancel
    return kwargs


async def answer_once(ctx: ApiContext, job: Job, request: Request) -> tuple[Answer, Slot]:
    """Answer on a generation thread (503 at once when the queue is full); stops if the client leaves."""
    stream, slot = start_stream(ctx, job)
    watcher = asyncio.create_task(_stop_on_disconnect(ctx, request, stream.cancel))
    final: Answer | None = None
    try:
        async for item in stream.items():
            if isinstance(item, Answer):
                final = item
    finally:
        watcher.cancel()
        ctx.metrics.queue_depth.set(ctx.queue.depth)
    if final is None:
        raise ApiError(CLIENT_CLOSED, "the client closed the connection; generation stopped", code="client_closed")
    record(ctx, job, final)
    return final, slot


async def _stop_on_disconnect(ctx: ApiContext, request: Request, cancel: threading.Event) -> None:
    # The body has been read, so the next ASGI message is the client's disconnect (if it comes).
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            cancel.set()
            ctx.metrics.cancelled.inc()
            request.state.cancelled = True
            return
        await asyncio.sleep(0.05)  # not expected after the body; never spin


def start_stream(ctx: ApiContext, job: Job) -> tuple[GenerationStream, Slot]:
    slot = ctx.queue.enter()
    ctx.metrics.queue_depth.set(ctx.queue.depth)

    def make_iter(cancel: threading.Event) -> Iterator[Any]:
        ctx.metrics.queue_wait.observe(slot.waited_s)
        ctx.host.maybe_refresh()
        answerer = ctx.host.answerer(job.model)
        items = call_supported(answerer.stream, job.question, **_kwargs(job, cancel))
        return audited(items, audit_log_for(ctx.settings), Caller(who=job.caller, channel="api", audiences=job.audiences))

    return GenerationStream(slot, make_iter), slot


def record(ctx: ApiContext, job: Job, answer: Answer) -> None:
    m = ctx.metrics
    m.answers.labels(model=job.model.id, abstained=str(answer.abstained).lower()).inc()
    m.tokens.labels(model=job.model.id).inc(answer.timings.generated_tokens)
    if answer.timings.first_token_s is not None:
        m.first_token.observe(answer.timings.first_token_s)


def finish_reason(job: Job, answer: Answer) -> str:
    limit = job.max_tokens
    return "length" if limit is not None and answer.timings.generated_tokens >= limit else "stop"
