"""Attacks on the real chat (Gradio + FastAPI under uvicorn on loopback, the scripted answerer), spoken
in Gradio's own HTTP protocol (queue/join, queue/data, heartbeat) with raw httpx, as a script would.

Issue 14 hole 2: Gradio keys state by the `session_hash` the client picks, so alice, logged in, joined
the queue with bob's id and got his restricted source cards and transcript, and wrote into his chat."""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from contextlib import contextmanager

import httpx
import pytest

import slm.webui.sessions as sessions
from slm.config import Settings, UISettings
from slm.webui.app import create_server
from slm.webui.chat import Owner
from tests.unit.ui_fakes import FakeAnswerer, FakeLibrary, MemoryFeedback

USERS = {"alice": "pw-alice", "bob": "pw-bob"}
BOB_QUESTION = "Band 3 salaries?"  # bob is in HR: the answer cites hr/salaries.md
BOB_SECRETS = ("Salary bands", "Band 3", "salaries", "50k")


class Chat:
    """One client of the chat: its own cookies (a login, the browser id) and a session id it picks."""

    def __init__(self, base: str, user: str | None, session: str | None = None):
        self.http = httpx.Client(base_url=base, timeout=30)
        self.http.get("/", headers={"accept": "text/html"})  # a page load: the server gives a browser id
        if user is not None:
            assert self.http.post("/login", data={"username": user, "password": USERS[user]}).status_code == 200
        self.session = session or secrets.token_hex(6)
        config = self.http.get("/config").json()
        self.fns = {d["api_name"]: d for d in config["dependencies"]}
        self.kinds = {c["id"]: c.get("type") for c in config["components"]}

    @property
    def browser(self) -> str:
        return self.http.cookies.get(sessions.BROWSER_COOKIE) or ""

    def call(self, api_name: str, *values, event_data=None) -> tuple[int, str]:
        """Run one event as the page would; returns the join status and everything the server streamed
        back for it (as JSON text). State inputs, if the app has any, are left to the server."""
        fn = self.fns[api_name]
        given = iter(values)
        data = [None if self.kinds[i] == "state" else next(given) for i in fn["inputs"]]
        body = {"data": data, "fn_index": fn["id"], "session_hash": self.session, "event_data": event_data,
                "trigger_id": fn["targets"][0][0]}
        joined = self.http.post("/gradio_api/queue/join", json=body)
        if joined.status_code != 200:
            return joined.status_code, joined.text
        event_id = joined.json()["event_id"]
        seen = []
        with self.http.stream("GET", "/gradio_api/queue/data", params={"session_hash": self.session}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("event_id") != event_id:
                    continue
                seen.append(message)
                if message.get("msg") == "process_completed":
                    break
        return 200, json.dumps(seen, ensure_ascii=False)

    def ask(self, question: str) -> tuple[int, str]:
        return self.call("ask", question, 4, False)

    def select(self, message_index: int) -> tuple[int, str]:
        return self.call("on_select", event_data={"index": message_index, "value": "", "selected": True})


@contextmanager
def serving(app):
    """`app` under uvicorn on a free loopback port; yields its base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        assert time.time() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def two_user_chat(mode: str = "bound"):
    """The real app with alice (employees) and bob (hr). "binding-forgotten": the session guard remembers
    one session only, so bob's id is free again and the attack reaches the handlers themselves."""
    answerer, feedback = FakeAnswerer(), MemoryFeedback()
    settings = Settings(ui=UISettings(auth=USERS, user_audiences={"bob": ["hr"]}))
    app = create_server(settings, answerer=answerer, feedback=feedback, library=FakeLibrary())
    with pytest.MonkeyPatch.context() as patch:  # Starlette builds the guard on the first request
        if mode == "binding-forgotten":
            patch.setattr(sessions, "MAX_BOUND_SESSIONS", 1)
        with serving(app) as base:
            yield dict(base=base, app=app, answerer=answerer, feedback=feedback, mode=mode)


@pytest.fixture(params=["bound", "binding-forgotten"])
def chat(request):
    with two_user_chat(request.param) as running:
        yield running


def test_alice_with_bobs_session_id_reaches_nothing_of_bobs(chat):
    bob = Chat(chat["base"], "bob")
    status, streamed = bob.ask(BOB_QUESTION)
    assert status == 200 and "Salary bands" in streamed  # the restricted card alice is after
    controller = chat["app"].state.chat
    bob_owner = Owner("bob", bob.browser)
    before = controller.transcript(bob_owner, bob.session)
    assert len(before) == 2

    if chat["mode"] == "binding-forgotten":
        Chat(chat["base"], "alice").call("who")  # another session is bound: bob's id is forgotten
    alice = Chat(chat["base"], "alice", session=bob.session)
    attempts = {
        "select bob's answer": alice.select(1),
        "select bob's question": alice.select(0),
        "ask in bob's chat": alice.ask("What was my last question?"),
        "thumbs up": alice.call("handler", "great"),
        "like bob's answer": alice.call("on_like", event_data={"index": [1, None], "value": "", "liked": True}),
        "new conversation": alice.call("new_conversation"),
    }
    for what, (status, streamed) in attempts.items():
        assert status in (200, 403), what
        assert not any(word in streamed for word in BOB_SECRETS), f"{what} returned bob's text: {streamed[:300]}"
    if chat["mode"] == "bound":
        assert all(status == 403 for status, _ in attempts.values())
        # Nor can she listen on his event stream or end his session through its heartbeat.
        assert alice.http.get("/gradio_api/queue/data", params={"session_hash": bob.session}).status_code == 403
        assert alice.http.get(f"/gradio_api/heartbeat/{bob.session}").status_code == 403
        # Gradio caches every input and output per session id and hands them out here: not in this app.
        assert alice.http.get("/gradio_api/deep_link", params={"session_hash": bob.session}).status_code == 404
        assert bob.http.get("/gradio_api/deep_link", params={"session_hash": bob.session}).status_code == 404
        anonymous = httpx.get(chat["base"] + "/gradio_api/queue/data", params={"session_hash": bob.session})
        assert anonymous.status_code == 403
    else:  # the handlers ran as alice: her question went to the answerer without bob's history
        asked = [c for c in chat["answerer"].calls if c["question"] == "What was my last question?"]
        assert len(asked) == 1 and asked[0]["history"] == [] and asked[0]["audiences"] == frozenset({"employees"})
    # Her ratings (if any got through) are of her own answers, under her name; none is of bob's answer.
    assert all(answer.question != BOB_QUESTION and user == "alice" for answer, _, user, _ in chat["feedback"].rows)

    assert controller.transcript(bob_owner, bob.session) == before  # bob's chat is as he left it
    if chat["mode"] == "binding-forgotten":
        Chat(chat["base"], "bob").call("who")  # free bob's id from alice's binding so he can go on
    status, streamed = bob.select(1)
    assert status == 200 and "Salary bands" in streamed
    status, _ = bob.ask("and when are reviews?")
    assert status == 200
    assert chat["answerer"].calls[-1]["history"][0].content == BOB_QUESTION  # his own history, nobody else's
    assert len(controller.transcript(bob_owner, bob.session)) == 4
    status, streamed = bob.call("handler", "useful")
    answer, rating, user, _ = chat["feedback"].rows[-1]
    assert status == 200 and "saved" in streamed
    assert (answer.question, rating, user) == ("and when are reviews?", "up", "bob")


def test_the_same_login_in_another_browser_gets_its_own_conversation():
    """The owner is user + browser: bob's session id copied into his other browser is refused too."""
    with two_user_chat() as chat:
        check_browsers_apart(chat["base"])


def check_browsers_apart(base: str) -> None:
    first = Chat(base, "bob")
    assert first.ask(BOB_QUESTION)[0] == 200
    second = Chat(base, "bob", session=first.session)
    assert second.browser and second.browser != first.browser
    status, streamed = second.select(1)
    assert status == 403 and "Salary" not in streamed


def test_without_a_login_browsers_are_kept_apart():
    """No login: everyone on this machine is the trusted `local` user, but each browser (its own
    server-set cookie) has its own conversations; a session id copied from another browser is refused."""
    app = create_server(Settings(), answerer=FakeAnswerer(), feedback=MemoryFeedback(), library=FakeLibrary())
    with serving(app) as base:
        mine = Chat(base, None)
        assert mine.browser and mine.ask("How many days of annual leave?")[0] == 200
        other = Chat(base, None, session=mine.session)
        assert other.browser and other.browser != mine.browser
        status, streamed = other.select(1)
        assert status == 403 and "Leave policy" not in streamed
        assert len(app.state.chat.transcript(Owner("local", mine.browser), mine.session)) == 2
        assert app.state.chat.transcript(Owner("local", other.browser), mine.session) == []


def test_one_user_cannot_push_another_users_session_binding_out():
    cap = sessions.MAX_SESSIONS_PER_USER
    guard = sessions.SessionBinding(app=None, owner_of=lambda scope: None, max_sessions=cap + 5)
    bob = Owner("bob", "b")
    assert guard._allowed("bob-tab", bob)
    for n in range(10 * cap):  # fresh session and browser ids every time
        assert guard._allowed(f"alice-{n}", Owner("alice", f"browser-{n}"))
    assert not guard._allowed("bob-tab", Owner("alice", "x")) and guard._allowed("bob-tab", bob)
