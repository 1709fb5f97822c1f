"""Pydantic models at the HTTP boundary: OpenAI chat completions (plus citations) and the native /v1/answer."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from slm.types import Answer, Citation


_SURROGATE_RE = re.compile("[\ud800-\udfff]")


class _Request(BaseModel):
    # Unknown fields are ignored (clients send many OpenAI options); wrong types are rejected.
    model_config = ConfigDict(extra="ignore", strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _valid_unicode(cls, value: Any) -> Any:
        # JSON may escape a lone UTF-16 surrogate ("\ud800"), which no UTF-8 text can hold: every later
        # encode (tokeniser, logs, audit, reply) would fail, so it is a 422 here, for every text field.
        if isinstance(value, str) and _SURROGATE_RE.search(value):
            raise ValueError("text holds a lone UTF-16 surrogate (like \\ud800), which is not valid Unicode")
        return value


class TextPart(_Request):
    type: str = "text"
    text: str = ""


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if part.type == "text")


class StreamOptions(_Request):
    include_usage: bool = False


class ChatCompletionRequest(_Request):
    model: str | None = Field(None, description="A model id from GET /v1/models; `slm` (default) is the served one.")
    messages: list[ChatMessage] = Field(
        ..., min_length=1, description="The last user message is the question; earlier user/assistant turns are history."
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2, description="Accepted for compatibility; sampling is set by the server.")
    top_p: float | None = Field(None, ge=0, le=1, description="Accepted for compatibility; sampling is set by the server.")
    n: int = Field(1, ge=1, le=1, description="Only one choice is generated.")
    user: str | None = None


class AnswerRequest(_Request):
    question: str = Field(..., min_length=1)
    conversation: list[ChatMessage] = Field(default_factory=list, description="Earlier user/assistant turns.")
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)


class CitationOut(BaseModel):
    """One source an answer cites: `marker` is the [n] in the text, the rest points at the exact place."""

    marker: int
    chunk_id: str
    doc_id: str
    title: str
    source: str
    location: str = Field(description="`source#anchor`, or `source (page N)`: where a reader finds it.")
    section: list[str]
    anchor: str | None
    page: int | None
    start: int = Field(description="Character offset of the cited chunk in the document text.")
    end: int
    snippet: str

    @classmethod
    def from_citation(cls, c: Citation) -> "CitationOut":
        location = c.source or c.doc_id
        if c.anchor:
            location += f"#{c.anchor}"
        if c.page is not None:
            location += f" (page {c.page})"
        return cls(
            marker=c.marker, chunk_id=c.chunk_id, doc_id=c.doc_id, title=c.title, source=c.source,
            location=location, section=list(c.section), anchor=c.anchor, page=c.page, start=c.start,
            end=c.end, snippet=c.snippet,
        )


def citations_out(answer: Answer) -> list[CitationOut]:
    return [CitationOut.from_citation(c) for c in answer.citations]


class Usage(BaseModel):
    prompt_tokens: int = Field(0, description="Not counted by this server (0).")
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    citations: list[CitationOut] = Field(default_factory=list, description="Sources for the [n] markers in content.")
    abstained: bool = Field(False, description="True when the documents did not answer the question.")
    uncited: bool = Field(False, description="Answered, but no [n] marker named a real passage.")


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"] = "stop"
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "slm"
    base: str = Field(description="The base model spec.")
    adapter: str | None = Field(None, description="Adapter version or path; null for the base model.")
    default: bool = Field(False, description="True for the model `slm` stands for, for this key.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class TimingsOut(BaseModel):
    queue_ms: float
    retrieval_ms: float
    first_token_ms: float | None
    total_ms: float
    generated_tokens: int


class AnswerResponse(BaseModel):
    answer: str
    citations: list[CitationOut]
    abstained: bool
    uncited: bool = Field(description="Answered, but no [n] marker named a real passage.")
    model: str = Field(description="The served model id (e.g. `slm:v2`).")
    base_model: str
    adapter: str | None
    timings: TimingsOut


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
