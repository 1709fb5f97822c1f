"""Native route: POST /v1/answer (question + optional conversation → answer, citations, abstained, timings)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from slm.api.deps import context, require_key
from slm.api.jobs import answer_once, prepare, split_conversation
from slm.api.routes_openai import ERRORS, _note
from slm.api.schemas import AnswerRequest, AnswerResponse, ChatMessage, TimingsOut, citations_out
from slm.api.keys import ApiKey

router = APIRouter(tags=["Native"])


@router.post("/v1/answer", response_model=AnswerResponse, responses=ERRORS,
             summary="Answer a question from the documents, with citations and timings")
async def answer(body: AnswerRequest, request: Request, key: ApiKey = Depends(require_key)):
    ctx = context(request)
    messages = list(body.conversation) + [ChatMessage(role="user", content=body.question)]
    question, history = split_conversation(messages, field="conversation")
    job = prepare(ctx, request, key, question=question, history=history, requested_model=body.model,
                  max_tokens=body.max_tokens, texts=[m.text for m in messages], field="conversation")
    result, slot = await answer_once(ctx, job, request)
    _note(request, result)
    t = result.timings
    return AnswerResponse(
        answer=result.text,
        citations=citations_out(result),
        abstained=result.abstained,
        uncited=result.uncited,
        model=job.model.id,
        base_model=result.model or ctx.settings.generation.model,
        adapter=result.adapter if result.adapter is not None else job.model.adapter,
        timings=TimingsOut(
            queue_ms=round(slot.waited_s * 1000, 1),
            retrieval_ms=round(t.retrieval_s * 1000, 1),
            first_token_ms=round(t.first_token_s * 1000, 1) if t.first_token_s is not None else None,
            total_ms=round(t.total_s * 1000, 1),
            generated_tokens=t.generated_tokens,
        ),
    )
