"""The chat's behaviour (no Gradio): streaming views, history, audiences, errors, ratings."""

from __future__ import annotations

from slm.prompting import ABSTAIN_TEXT, Turn
from slm.webui.chat import ChatController, messages_of
from tests.unit.ui_fakes import FailingAnswerer, FakeAnswerer, MemoryFeedback


def run(controller, question, entries=(), **kw):
    kw.setdefault("audiences", None)
    return list(controller.ask(question, list(entries), **kw))


def test_streams_deltas_then_a_final_view_with_sources():
    controller = ChatController(FakeAnswerer(), MemoryFeedback())
    views = run(controller, "How many days of annual leave?", k=3, rerank=False)
    partials = [v.messages[-1]["content"] for v in views[:-1]]
    assert len(partials) >= 5  # one view per streamed word
    assert all(p.endswith("▌") for p in partials[1:])
    assert len(partials[2]) < len(partials[-1])  # text grows as it streams
    final = views[-1]
    assert len(final.entries) == 1 and final.entries[0].answer is not None
    assert final.messages[0] == {"role": "user", "content": "How many days of annual leave?"}
    assert "source/policies%2Fleave.md%3A%3A" in final.messages[1]["content"]
    assert "fake-lm · adapter v7" in final.messages[1]["content"]
    assert "Leave policy" in final.sources and "<mark>" in final.sources
    assert controller.answerer.calls[0]["k"] == 3 and controller.answerer.calls[0]["rerank"] is False


def test_follow_ups_carry_the_history_and_audiences():
    answerer = FakeAnswerer()
    controller = ChatController(answerer, MemoryFeedback())
    first = run(controller, "annual leave days?", audiences=frozenset({"employees"}))[-1]
    second = run(controller, "and carry over?", first.entries, audiences=frozenset({"employees"}))[-1]
    assert answerer.calls[1]["history"] == [
        Turn("user", "annual leave days?"),
        Turn("assistant", first.entries[0].answer.text),
    ]
    assert answerer.calls[1]["audiences"] == frozenset({"employees"})
    assert len(second.entries) == 2 and len(second.messages) == 4


def test_the_hr_document_never_reaches_an_employee():
    controller = ChatController(FakeAnswerer(), MemoryFeedback())
    as_employee = run(controller, "Band 3 salaries?", audiences=frozenset({"employees"}))[-1]
    as_hr = run(controller, "Band 3 salaries?", audiences=frozenset({"hr"}))[-1]
    assert "Salary bands" not in as_employee.sources and "salaries" not in as_employee.messages[1]["content"]
    assert "Salary bands" in as_hr.sources


def test_abstention_shows_the_refusal():
    final = run(ChatController(FakeAnswerer(), MemoryFeedback()), "zzz qqq?")[-1]
    assert ABSTAIN_TEXT.replace(".", "\\.") in final.messages[1]["content"]
    assert final.entries[0].answer.abstained


def test_errors_become_a_message_not_a_crash():
    final = run(ChatController(FailingAnswerer(), MemoryFeedback()), "annual leave?")[-1]
    assert final.entries[0].error == "the model server is down"
    assert "the model server is down" in final.messages[1]["content"]


def test_empty_question_is_not_sent():
    answerer = FakeAnswerer()
    views = run(ChatController(answerer, MemoryFeedback()), "   ")
    assert views[-1].status == "Type a question first." and answerer.calls == []


def test_rating_the_latest_or_a_chosen_answer():
    feedback = MemoryFeedback()
    controller = ChatController(FakeAnswerer(), feedback)
    assert "Ask a question first" in controller.rate([], None, "up", user="ed")
    entries = run(controller, "annual leave?")[-1].entries
    entries = run(controller, "carry over days?", entries)[-1].entries
    status = controller.rate(entries, None, "down", user="ed", comment="too short")
    assert "#1" in status
    answer, rating, user, comment = feedback.rows[0]
    assert (answer.question, rating, user, comment) == ("carry over days?", "down", "ed", "too short")
    controller.rate(entries, 0, "up", user="ed")
    assert feedback.rows[1][0].question == "annual leave?"
    assert entries[0].feedback == [2] and entries[1].feedback == [1]
    assert "no answer" in controller.rate(entries, 7, "up", user="ed")


def test_messages_escape_questions():
    from tests.unit.ui_fakes import XSS_DOC

    entries = run(ChatController(FakeAnswerer(), MemoryFeedback()), XSS_DOC)[-1].entries
    text = messages_of(entries)[0]["content"]
    assert "<script>" not in text and "&lt;script&gt;" in text


def test_refresh_runs_before_each_question():
    calls = []
    controller = ChatController(FakeAnswerer(), MemoryFeedback(), refresh=lambda: calls.append(1))
    run(controller, "annual leave?")
    run(controller, "carry over?")
    assert calls == [1, 1]


def test_sources_of_an_earlier_answer():
    controller = ChatController(FakeAnswerer(), MemoryFeedback())
    entries = run(controller, "annual leave?")[-1].entries
    entries = run(controller, "zzz qqq?", entries)[-1].entries  # abstains: no sources
    assert "Leave policy" in controller.sources_at(entries, 1) and "Leave policy" in controller.sources_at(entries, 0)
    assert "No sources were found" in controller.sources_at(entries, 3)
    assert controller.sources_at(entries, 9) is None
