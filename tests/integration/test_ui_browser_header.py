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


@pytest.fixture(scope="module")
def base_url():
    import uvicorn

    settings = Settings(ui=UISettings(trusted_header=HEADER, user_audiences={"hanna": ["hr"]}))
    app = create_server(settings, answerer=FakeAnswerer(), feedback=MemoryFeedback(), library=FakeLibrary())
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
