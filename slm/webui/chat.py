"""The chat's behaviour without any Gradio: conversations of entries kept per owner, streamed answers,
ratings. The Gradio layer (slm.webui.app) only wires these to components, so the logic is tested directly."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence

from slm.errors import SlmError
from slm.answering.prompting import Turn
from slm.text.messages import answer_language, message
from slm.types import Answer
from slm.webui import render
from slm.webui.conversations import ConversationStore, Entry, Owner

log = logging.getLogger(__name__)

__all__ = ["ChatController", "ChatView", "Entry", "FeedbackSink", "Owner", "StreamingAnswerer"]

# A question is echoed back only this far until it is answered (the question box holds 2000): one
# refused for its size is not sent back or kept whole.
QUESTION_ECHO_CHARS = 2000


def _echo(question: str) -> str:
    return question if len(question) <= QUESTION_ECHO_CHARS else question[:QUESTION_ECHO_CHARS] + " …"


class StreamingAnswerer(Protocol):
    model_name: str
    adapter: str | None
    answer_language: str  # generation.answer_language: auto (the question's), en, zh or id

    def stream(
        self,
        question: str,
        *,
        history: Sequence[Turn] = (),
        audiences: frozenset[str] | None = None,
        k: int | None = None,
        rerank: bool | None = None,
    ) -> Iterator[str | Answer]: ...


class FeedbackSink(Protocol):
    def record(self, answer: Answer, rating: str, *, user: str | None, comment: str = "") -> int: ...


@dataclass(frozen=True)
class ChatView:
    """Everything one step of the chat shows: the messages, the sources panel, and a status line."""

    messages: list[dict[str, Any]]
    sources: str | None  # None: unchanged since the previous view
    entries: list[Entry]
    status: str = ""
    answered: Answer | None = None  # set on the final view of a question that got an answer


def history_of(entries: Sequence[Entry]) -> list[Turn]:
    """Earlier answered questions as conversation turns for the answerer (errors left out)."""
    turns: list[Turn] = []
    for entry in entries:
        if entry.answer is not None:
            turns += [Turn("user", entry.question), Turn("assistant", entry.answer.text)]
    return turns


def messages_of(entries: Sequence[Entry], pending: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """Chatbot messages: two per entry (user, assistant), so message 2i+1 is entry i's answer."""
    out: list[dict[str, Any]] = []
    for entry in entries:
        out.append({"role": "user", "content": render.question_markdown(entry.question)})
        if entry.answer is not None:
            content = render.answer_markdown(entry.answer)
        else:
            content = "⚠ " + render.escape_markdown(entry.error or "no answer")
        out.append({"role": "assistant", "content": content})
    if pending is not None:
        question, partial = pending
        out.append({"role": "user", "content": render.question_markdown(question)})
        out.append({"role": "assistant", "content": render.escape_markdown(partial) + " ▌"})
    return out


class ChatController:
    """Runs questions through the answerer and records ratings. Every method takes the Owner (the
    authenticated user, from the server side) and the session: a conversation is only ever looked up
    in its owner's namespace, so a session id copied from someone else names an empty conversation."""

    def __init__(
        self,
        answerer: StreamingAnswerer,
        feedback: FeedbackSink,
        *,
        refresh: Callable[[], Any] | None = None,
        conversations: ConversationStore | None = None,
    ):
        self.answerer = answerer
        self.feedback = feedback
        self.refresh = refresh  # e.g. KnowledgeBase.reload_if_changed: pick up a re-ingest without a restart
        self.conversations = conversations if conversations is not None else ConversationStore()

    def model_label(self, language: str = "en") -> str:
        return render.model_label(self.answerer.model_name, self.answerer.adapter, language)

    def language_of(self, question: str) -> str:
        """The language the answer to `question` will be in (the answerer's generation.answer_language rule)."""
        return answer_language(self.answerer.answer_language, question)

    def ask(
        self,
        owner: Owner,
        session: str,
        question: str,
        *,
        audiences: frozenset[str] | None,
        k: int | None = None,
        rerank: bool | None = None,
        language: str = "en",
    ) -> Iterator[ChatView]:
        """Stream one answer in the owner's conversation: a view after every text delta, then the final
        view with sources (the entry is stored only then). Status lines are in the answer's language;
        `language` (the browser's) is for what comes before there is a question."""
        entries = self.conversations.entries(owner, session)
        question = (question or "").strip()
        if not question:
            yield ChatView(messages_of(entries), self.sources_for(entries, language), entries, message("type_question", language))
            return
        language = self.language_of(question)
        partial = ""
        shown = _echo(question)
        yield ChatView(messages_of(entries, (shown, partial)), render.sources_html(None, language), entries,
                       message("searching", language))
        final: Answer | None = None
        entry = Entry(question=question)
        try:
            if self.refresh is not None:
                self.refresh()
            for item in self.answerer.stream(
                question, history=history_of(entries), audiences=audiences, k=k, rerank=rerank
            ):
                if isinstance(item, Answer):
                    final = item
                    continue
                partial += item
                yield ChatView(messages_of(entries, (shown, partial)), None, entries, message("answering", language))
        except SlmError as exc:  # e.g. the question or prompt budget, or a model server down: say why
            entry.error = str(exc)
        except Exception:  # a bug must not kill the session; the log keeps the trace
            log.exception("answering failed")
            entry.error = message("answer_failed", language)
        if entry.error is None:
            if final is None:
                entry.error = message("no_answer", language)
            else:
                entry.answer = final
        if entry.error is not None:
            entry.question = _echo(entry.question)
        entries = self.conversations.append(owner, session, entry)
        yield ChatView(messages_of(entries), self.sources_for(entries, language), entries, "", answered=entry.answer)

    def transcript(self, owner: Owner, session: str) -> list[dict[str, Any]]:
        """The owner's conversation in `session` as chat messages."""
        return messages_of(self.conversations.entries(owner, session))

    def sources_at(self, owner: Owner, session: str, message_index: int) -> str | None:
        """The sources panel for the owner's answer at chat message `message_index` (either message of an entry)."""
        entries = self.conversations.entries(owner, session)
        index = message_index // 2
        if 0 <= index < len(entries) and entries[index].answer is not None:
            return render.sources_html(entries[index].answer)
        return None

    @staticmethod
    def sources_for(entries: Sequence[Entry], language: str = "en") -> str:
        """The latest answer's sources (in its language), or the empty panel in `language`."""
        latest = next((e.answer for e in reversed(entries) if e.answer is not None), None)
        return render.sources_html(latest, None if latest is not None else language)

    def rate(self, owner: Owner, session: str, index: int | None, rating: str, *, comment: str = "",
             language: str = "en") -> str:
        """Store the owner's rating of their entry `index` (None: the latest answer), recorded under the
        owner's user name; returns the status line to show, in `language` (the browser's)."""
        entries = self.conversations.entries(owner, session)
        answered = [i for i, e in enumerate(entries) if e.answer is not None]
        if not answered:
            return message("rate_ask_first", language)
        if index is None:
            index = answered[-1]
        if not 0 <= index < len(entries) or entries[index].answer is None:
            return message("rate_no_answer", language)
        entry = entries[index]
        row = self.feedback.record(entry.answer, rating, user=owner.user, comment=comment)
        entry.feedback.append(row)
        return message("rated_helpful" if rating == "up" else "rated_not_helpful", language, row=row)

    def clear(self, owner: Owner, session: str) -> None:
        """Forget the owner's conversation in `session` (a new conversation)."""
        self.conversations.clear(owner, session)
