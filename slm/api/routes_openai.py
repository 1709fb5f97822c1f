"""OpenAI-compatible routes: POST /v1/chat/completions (with citations) and GET /v1/models."""

from __future__ import annotations

import asyncio
import time
import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from slm.api.deps import context, require_key, require_ready
from slm.api.errors import error_body, from_slm_error
from slm.api.jobs import answer_once, finish_reason, prepare, record, split_conversation, start_stream
from slm.api.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    ErrorResponse,
    ModelCard,
    ModelList,
    Usage,
    citations_out,
)
from slm.api.streaming import DONE, chunk, sse
from slm.errors import SlmError
from slm.api.keys import ApiKey
from slm.types import Answer

router = APIRouter(tags=["OpenAI-compatible"])

ERRORS = {
    401: {"model": ErrorResponse, "description": "Missing, unknown or revoked API key"},
    403: {"model": ErrorResponse, "description": "The key may not use the requested model"},
    404: {"model": ErrorResponse, "description": "Unknown model"},
    413: {"model": ErrorResponse, "description": "Body larger than serve.max_body_bytes"},
    422: {"model": ErrorResponse, "description": "Invalid request or over a limit"},
    429: {"model": ErrorResponse, "description": "Rate limit reached (see Retry-After)"},
    503: {"model": ErrorResponse, "description": "Not ready, or the generation queue is full (see Retry-After)"},
}


@router.post("/v1/chat/completions", response_model=ChatCompletion, responses=ERRORS,
             summary="Answer the last user message from the documents, with citations")
async def chat_completions(body: ChatCompletionRequest, request: Request, key: ApiKey = Depends(require_key)):
    """OpenAI's chat completion. The answer's sources are in `choices[0].message.citations`
    (streaming: in `choices[0].delta.citations` of the final chunk, the one with `finish_reason`)."""
    ctx = context(request)
    question, history = split_conversation(body.messages)
    job = prepare(ctx, request, key, question=question, history=history, requested_model=body.model,
                  max_tokens=body.max_completion_tokens or body.max_tokens,
                  texts=[m.text for m in body.messages], field="messages")
    completion_id = "chatcmpl-" + uuid.uuid4().hex
    created = int(time.time())
    request.state.stream = body.stream
    if not body.stream:
        answer, _ = await answer_once(ctx, job, request)
        _note(request, answer)
        tokens = answer.timings.generated_tokens
        return ChatCompletion(
            id=completion_id, created=created, model=job.model.id,
            choices=[Choice(message=AssistantMessage(content=answer.text, citations=citations_out(answer),
                                                     abstained=answer.abstained, uncited=answer.uncited),
                            finish_reason=finish_reason(job, answer))],
            usage=Usage(completion_tokens=tokens, total_tokens=tokens),
        )

    stream, _ = start_stream(ctx, job)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    async def events():
        finished = False
        try:
            yield sse(chunk(completion_id, created, job.model.id, {"role": "assistant", "content": ""}))
            final: Answer | None = None
            try:
                async for item in stream.items():
                    if isinstance(item, str):
                        if item:
                            yield sse(chunk(completion_id, created, job.model.id, {"content": item}))
                    else:
                        final = item
            except SlmError as exc:
                err = from_slm_error(exc)
                yield sse(error_body(err.status, err.message, err.code))
                finished = True
                yield DONE
                return
            except Exception as exc:
                ctx.metrics.errors.labels(kind=type(exc).__name__).inc()
                yield sse(error_body(500, f"generation failed: {type(exc).__name__}", "generation_failed"))
                finished = True
                yield DONE
                return
            if final is None:
                final = Answer(question=job.question, text="")
            record(ctx, job, final)
            _note(request, final)
            delta = {"citations": [c.model_dump() for c in citations_out(final)], "abstained": final.abstained,
                     "uncited": final.uncited}
            yield sse(chunk(completion_id, created, job.model.id, delta, finish_reason(job, final)))
            if include_usage:
                tokens = final.timings.generated_tokens
                usage = {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens}
                yield sse({"id": completion_id, "object": "chat.completion.chunk", "created": created,
                           "model": job.model.id, "choices": [], "usage": usage})
            finished = True
            yield DONE
        finally:
            if not finished:  # the client went away: stop generating
                stream.cancel.set()
                ctx.metrics.cancelled.inc()
                request.state.cancelled = True
            ctx.metrics.queue_depth.set(ctx.queue.depth)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/v1/models", response_model=ModelList, responses={401: ERRORS[401], 429: ERRORS[429], 503: ERRORS[503]},
            summary="The models this key may use")
async def list_models(request: Request, key: ApiKey = Depends(require_key)):
    ctx = context(request)
    require_ready(ctx)
    base = ctx.settings.generation.model
    models = await asyncio.to_thread(ctx.host.models_for, key.caller_audiences)
    return ModelList(data=[ModelCard(id=m.id, created=m.created, base=base, adapter=m.adapter, default=is_default)
                           for m, is_default in models])


def _note(request: Request, answer: Answer) -> None:
    request.state.abstained = answer.abstained
    request.state.generated_tokens = answer.timings.generated_tokens
