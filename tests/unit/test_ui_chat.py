"""The chat's behaviour (no Gradio): streaming views, history, audiences, errors, ratings, and
conversations that only their owner can reach."""

from __future__ import annotations

from slm.errors import SlmError
from slm.answering.prompting import ABSTAIN_TEXT, Turn
from slm.webui.chat import ChatController, Owner, messages_of
from slm.webui.conversations import ConversationStore, Entry
from tests.unit.ui_fakes import FailingAnswerer, FakeAnswerer, MemoryFeedback

ED = Owner("ed", "browser-1")


def run(controller, question, owner=ED, session="s1", **kw):
    kw.setdefault("audiences", None)
    return list(controller.ask(owner, session, question, **kw))


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
    second = run(controller, "and carry over?", audiences=frozenset({"employees"}))[-1]
    assert answerer.calls[1]["history"] == [
        Turn("user", "annual leave days?"),
        Turn("assistant", first.entries[0].answer.text),
    ]
    assert answerer.calls[1]["audiences"] == frozenset({"employees"})
    assert len(second.entries) == 2 and len(second.messages) == 4


def test_the_hr_document_never_reaches_an_employee():
    controller = ChatController(FakeAnswerer(), MemoryFeedback())
    as_employee = run(controller, "Band 3 salaries?", audiences=frozenset({"employees"}))[-1]
    as_hr = run(controller, "Band 3 salaries?", Owner("hanna"), audiences=frozenset({"hr"}))[-1]
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
    assert "Ask a question first" in controller.rate(ED, "s1", None, "up")
    run(controller, "annual leave?")
    entries = run(controller, "carry over days?")[-1].entries
    status = controller.rate(ED, "s1", None, "down", comment="too short")
    assert "#1" in status
    answer, rating, user, comment = feedback.rows[0]
    assert (answer.question, rating, user, comment) == ("carry over days?", "down", "ed", "too short")
    controller.rate(ED, "s1", 0, "up")
    assert feedback.rows[1][0].question == "annual leave?"
    assert entries[0].feedback == [2] and entries[1].feedback == [1]
    assert "no answer" in controller.rate(ED, "s1", 7, "up")


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
    run(controller, "annual leave?")
    run(controller, "zzz qqq?")  # abstains: no sources
    assert "Leave policy" in controller.sources_at(ED, "s1", 1) and "Leave policy" in controller.sources_at(ED, "s1", 0)
    assert "No sources were found" in controller.sources_at(ED, "s1", 3)
    assert controller.sources_at(ED, "s1", 9) is None


def test_another_users_conversation_is_unreachable_even_with_its_session_id():
    """Issue 14 hole 2 at the controller: alice naming bob's session gets her own (empty) conversation."""
    feedback = MemoryFeedback()
    controller = ChatController(FakeAnswerer(), feedback)
    bob, alice = Owner("bob", "b-browser"), Owner("alice", "a-browser")
    bob_final = run(controller, "Band 3 salaries?", bob, "bob-session", audiences=frozenset({"hr"}))[-1]
    assert "Salary bands" in bob_final.sources  # bob (hr) got the restricted card
    bob_before = controller.transcript(bob, "bob-session")

    for index in range(4):
        assert controller.sources_at(alice, "bob-session", index) is None
    assert controller.transcript(alice, "bob-session") == []
    assert "Ask a question first" in controller.rate(alice, "bob-session", 0, "up") and feedback.rows == []
    views = run(controller, "and the review month?", alice, "bob-session", audiences=frozenset({"employees"}))
    assert all("Salary" not in str(v.messages) and "Salary" not in (v.sources or "") for v in views)
    assert controller.answerer.calls[-1]["history"] == []  # bob's turns never reach alice's prompt
    controller.clear(alice, "bob-session")
    # The same user in another browser (the one `local` user of the no-login mode, too) is another owner.
    assert controller.sources_at(Owner("bob", "other-browser"), "bob-session", 1) is None
    assert controller.transcript(bob, "bob-session") == bob_before
    assert "Salary bands" in controller.sources_at(bob, "bob-session", 1)
    assert "#1" in controller.rate(bob, "bob-session", None, "up") and feedback.rows[0][2] == "bob"


def test_a_budget_error_is_a_message_in_the_chat_and_the_refused_question_is_not_kept_whole():
    refusing = FakeAnswerer(fail=SlmError("the question is too long: at most 4000 characters"))
    controller = ChatController(refusing, MemoryFeedback())
    views = run(controller, "x" * 50_000)
    final = views[-1]
    assert "the question is too long" in final.messages[1]["content"] and final.answered is None
    assert all(len(v.messages[0]["content"]) < 3000 for v in views)  # 50,000 characters are not echoed
    assert len(controller.conversations.entries(ED, "s1")[0].question) < 3000


def test_the_store_is_bounded_per_owner_in_total_and_per_conversation():
    store = ConversationStore(max_conversations=5, max_per_owner=2, max_entries=3)
    alice, bob = Owner("alice"), Owner("bob")
    for session in "abc":
        store.append(alice, session, Entry("q"))
    assert store.entries(alice, "a") == [] and len(store.entries(alice, "c")) == 1  # her oldest went
    for session in "wxyz":
        store.append(Owner(session), session, Entry("q"))
    assert len(store) == 5
    for n in range(5):
        store.append(bob, "s", Entry(f"q{n}"))
    assert [e.question for e in store.entries(bob, "s")] == ["q2", "q3", "q4"]
