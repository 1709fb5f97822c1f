"""The chat in headless Chromium with a Chinese browser locale: the strings are Chinese (Gradio I18n), a
Chinese answer renders with its citation, and the 👍/👎 buttons are drawn in colour (the emoji font is there).
Uses a scripted answerer: rendering is what is under test."""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from slm.answering.citations import parse_citations
from slm.config import Settings
from slm.types import Answer, Chunk, Hit, Timings
from slm.webui.app import create_server
from tests.integration.test_ui_browser import CHROMIUM, CHROMIUM_ARGS
from tests.unit.ui_fakes import FakeLibrary, MemoryFeedback

pytestmark = pytest.mark.integration

CHUNK = Chunk(id="zh/returns.md::0000", doc_id="zh/returns.md", text="顾客可以在收到商品后三十天内申请退货，并获得全额退款。",
              start=0, end=27, section=("退货政策", "退货期限"), anchor="退货期限", title="退货政策", source="zh/returns.md",
              language="zh")
ANSWER = "顾客可以在收到商品后三十天内申请退货 [1]。"


class ChineseAnswerer:
    model_name = "scripted-zh"
    adapter = None
    answer_language = "auto"

    def stream(self, question, *, history=(), audiences=None, k=None, rerank=None):
        hits = (Hit(chunk=CHUNK, score=1.0, dense=0.9),)
        for piece in (ANSWER[:8], ANSWER[8:]):
            yield piece
        clean, citations = parse_citations(ANSWER, hits)
        yield Answer(question=question, text=clean, citations=citations, passages=hits, model=self.model_name,
                     timings=Timings(total_s=0.1), language="zh")


@pytest.fixture(scope="module")
def base_url():
    import uvicorn

    app = create_server(Settings(), answerer=ChineseAnswerer(), feedback=MemoryFeedback(), library=FakeLibrary())
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


def _colourful(png: bytes) -> int:
    from PIL import Image

    data = Image.open(io.BytesIO(png)).convert("RGB").tobytes()
    return sum(1 for i in range(0, len(data), 3) if max(data[i : i + 3]) - min(data[i : i + 3]) > 60)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (scripts/install.sh --test)")
def test_chinese_locale_answer_and_feedback_buttons_render(base_url, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_context(locale="zh-CN").new_page()
            page.goto(base_url + "/")
            expect(page.locator("#ask")).to_have_text("提问", timeout=30_000)
            expect(page.locator("#thumbs-up")).to_have_text("👍 有帮助")
            expect(page.locator("#thumbs-down")).to_have_text("👎 没有帮助")
            page.locator("#question textarea").fill("退货期限是多久？")
            page.locator("#ask").click()
            expect(page.locator("#chat .message.bot").last).to_contain_text("三十天内申请退货", timeout=30_000)
            expect(page.locator("#sources")).to_contain_text("退货政策")
            # what the server renders follows the answer's language and the browser's Accept-Language
            expect(page.locator("#sources")).to_contain_text("来源")
            expect(page.locator("#sources")).to_contain_text("打开 zh/returns.md")
            expect(page.locator("#model-version")).to_contain_text("回答模型")
            expect(page.locator("#chat .message.bot").last).to_contain_text("基础模型（无适配器）")
            out = Path(os.environ.get("SLM_SCREENSHOTS", tmp_path))
            out.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out / "chat-zh.png"), full_page=True)
            assert _colourful(page.locator("#thumbs-up").screenshot()) > 20
            assert _colourful(page.locator("#thumbs-down").screenshot()) > 20
        finally:
            browser.close()
