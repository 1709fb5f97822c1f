"""Login through a reverse proxy's trusted header, in headless Chromium: the header's user gets their
audiences, and no header means no chat. Uses the scripted answerer (the login is what is under test)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from playwright.sync_api import expect

from slm.config import Settings, UISettings
from slm.webui.app import create_server
from tests.integration.test_ui_browser import CHROMIUM, CHROMIUM_ARGS
from tests.unit.ui_fakes import SALARY, FakeAnswerer, FakeLibrary, MemoryFeedback

pytestmark = pytest.mark.integration

HEADER = "X-Forwarded-User"
ANSWERER = FakeAnswerer()
EVIL = "<script>window.__xss=1;alert(1)</script> <img src=x onerror=\"window.__xss=2\"> [x](javascript:window.__xss=3)"


@pytest.fixture(scope="module")
def base_url():
    import uvicorn

    settings = Settings(ui=UISettings(trusted_header=HEADER, user_audiences={"hanna": ["hr"]}))
    app = create_server(settings, answerer=ANSWERER, feedback=MemoryFeedback(), library=FakeLibrary())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        assert time.time() < deadline, "server did not start"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def ask(page, question: str) -> None:
    page.locator("#question textarea").fill(question)
    page.locator("#ask").click()
    expect(page.locator("#chat .message.bot").last).to_contain_text("fake-lm", timeout=30_000)


def test_header_user_sees_their_audiences(base_url, browser):
    hr = browser.new_context(extra_http_headers={HEADER: "hanna"})
    employee = browser.new_context(extra_http_headers={HEADER: "ed"})
    try:
        page = hr.new_page()
        page.goto(base_url + "/")
        expect(page.locator("#signed-in")).to_contain_text("hanna", timeout=30_000)
        ask(page, "Band 3 salaries?")
        expect(page.locator('#sources .slm-source[data-doc-id="hr/salaries.md"]').first).to_be_visible()
        # The [1] in the answer is a link to the cited place in the document.
        with hr.expect_page() as opened:
            page.locator("#chat .message.bot").last.get_by_role("link", name="[1]").click()
        source = opened.value
        source.wait_for_load_state()
        assert "/source/hr%2Fsalaries.md" in source.url
        expect(source.locator("mark#cited")).to_be_visible()

        page = employee.new_page()
        page.goto(base_url + "/")
        expect(page.locator("#signed-in")).to_contain_text("ed", timeout=30_000)
        ask(page, "Band 3 salaries?")
        assert "Salary bands" not in page.locator("#sources").inner_text()
        response = page.request.get(f"{base_url}/source/{SALARY[0].id.replace('/', '%2F')}")
        assert response.status == 404
    finally:
        hr.close()
        employee.close()


def test_no_header_no_chat(base_url, browser):
    context = browser.new_context()
    try:
        page = context.new_page()
        response = page.goto(base_url + "/config")
        assert response.status == 401
        page.goto(base_url + "/")
        page.wait_for_timeout(1500)
        assert page.locator("#question").count() == 0
    finally:
        context.close()


def test_markup_in_questions_and_answers_shows_as_text(base_url, browser):
    context = browser.new_context(extra_http_headers={HEADER: "ed"})
    dialogs = []
    context.on("page", lambda p: p.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss())))
    old = ANSWERER.text
    ANSWERER.text = "The evil page says " + EVIL + " [1]."  # a model repeating a document's markup
    try:
        page = context.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(base_url + "/")
        expect(page.locator("#signed-in")).to_contain_text("ed", timeout=30_000)
        ask(page, "evil page " + EVIL)
        page.wait_for_timeout(500)
        chat = page.locator("#chat").inner_text()
        assert "<script>window.__xss=1;alert(1)</script>" in chat  # in the question and in the answer
        assert chat.count('<img src=x onerror="window.__xss=2">') == 2
        assert page.evaluate("window.__xss === undefined")
        assert page.locator('#chat img[src="x"]').count() == 0
        assert page.locator('a[href^="javascript"]').count() == 0
        assert dialogs == []
    finally:
        ANSWERER.text = old
        context.close()
