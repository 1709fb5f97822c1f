"""The chat in Chinese and Indonesian: every string exists in every language (one table, slm/text/messages.py),
Gradio gets it for each locale it may look up, and what the server renders (answer notes, sources, status lines,
the source page, the page-load strings) follows the answer's language or the browser's Accept-Language."""

from __future__ import annotations

import re
import string
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from slm.config import Settings
from slm.text.messages import MESSAGES, message
from slm.types import Answer, Hit
from slm.webui import render
from slm.webui.chat import ChatController, Owner
from slm.webui.i18n import gradio_i18n, request_language, translations
from tests.unit.ui_fakes import LEAVE, FakeAnswerer, FakeLibrary, MemoryFeedback

ED = Owner("ed", "browser-1")
ENGLISH_WORDS = re.compile(r"\b(Sources|Open|nearest|cites|Searching|Answering|Thanks|Log in|page)\b")


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_message_in_every_language_with_the_same_fields():
    for key, texts in MESSAGES.items():
        assert set(texts) == {"en", "zh", "id"}, key
        if key != "answer_in":  # the English prompt has no language instruction, by design
            assert all(texts.values()), key
        assert _fields(texts["zh"]) == _fields(texts["en"]) == _fields(texts["id"]), key
    table = translations()
    assert table["zh-CN"]["ask"] == table["zh"]["ask"] == "提问"
    assert table["id"]["helpful"].startswith("👍") and table["en"]["not_helpful"].startswith("👎")
    assert message("open_source", "zh", location="a.md") == "打开 a.md"


def test_gradio_i18n_builds():
    i18n = gradio_i18n()
    assert i18n.translations_dict["zh-CN"]["title"] == "向文档提问"


class _Request:
    def __init__(self, accept: str | None):
        self.headers = {"accept-language": accept} if accept else {}


@pytest.mark.parametrize("accept, language", [("zh-CN,zh;q=0.9,en;q=0.8", "zh"), ("id-ID", "id"),
                                              ("fr-FR", "en"), (None, "en")])
def test_request_language_follows_accept_language(accept, language):
    assert request_language(_Request(accept)) == language


def _answer(language: str, **kw) -> Answer:
    hits = (Hit(chunk=LEAVE[0], score=1.0, dense=0.9), Hit(chunk=LEAVE[1], score=0.5, dense=0.5))
    return Answer(question="q", text=kw.pop("text", "x"), passages=hits, language=language, model="m", **kw)


def test_answer_notes_and_sources_follow_the_answers_language():
    from slm.answering.citations import parse_citations

    abstained = _answer("zh", text=message("abstain", "zh"), abstained=True)
    abstained = replace(abstained, citations=parse_citations("x [1]", abstained.passages)[1])
    body = render.answer_markdown(abstained)
    assert message("abstain", "zh") in body and message("nearest_note", "zh") in body and "基础模型" in body
    assert not ENGLISH_WORDS.search(body)
    panel = render.sources_html(abstained)
    assert message("nearest_sources", "zh") in panel and "打开 " in panel
    assert "Sources" not in panel and ">Open " not in panel
    uncited = _answer("id", text="Karyawan mendapat 25 hari cuti.", uncited=True)
    assert message("uncited_warning", "id") in render.answer_markdown(uncited)
    assert message("passages_read", "id") in render.sources_html(uncited)
    assert message("sources_placeholder", "zh") in render.sources_html(None, "zh")
    assert message("sources_placeholder", "en") in render.sources_html(None)


def test_chat_status_lines_follow_the_question_or_the_browser():
    controller = ChatController(FakeAnswerer(), MemoryFeedback())
    assert controller.ask(ED, "s1", "  ", audiences=None, language="zh").__next__().status == "请先输入问题。"
    views = list(controller.ask(ED, "s1", "年假有多少天？", audiences=None, language="en"))
    assert views[0].status == message("searching", "zh")  # the question's language, not the browser's
    assert message("rated_helpful", "id", row=1) == controller.rate(ED, "s1", None, "up", language="id")
    assert controller.rate(Owner("nobody", "b"), "s9", None, "up", language="zh") == message("rate_ask_first", "zh")
    assert controller.model_label("id") == "fake-lm · adaptor v7"


def test_page_load_renders_the_server_strings_in_the_browsers_language():
    from slm.webui.app import build_app

    blocks = build_app(Settings(), answerer=FakeAnswerer(), feedback=MemoryFeedback())
    (on_load,) = [f.fn for f in blocks.fns.values() if getattr(f.fn, "__name__", "") == "on_load"]
    signed_in, answered_by, sources = on_load(_Request("zh-CN,zh;q=0.9"))
    assert signed_in.startswith("已登录：") and "全部文档" in signed_in
    assert answered_by == "回答模型：`fake-lm · 适配器 v7`"
    assert message("sources_placeholder", "zh") in sources
    assert on_load(_Request(None))[1] == "Answered by: `fake-lm · adapter v7`"


def test_source_page_and_its_errors_follow_accept_language():
    from slm.webui.app import create_server

    app = create_server(Settings(), answerer=FakeAnswerer(), feedback=MemoryFeedback(), library=FakeLibrary())
    client = TestClient(app, client=("127.0.0.1", 50000))
    zh = {"Accept-Language": "zh-CN"}
    page = client.get("/source/" + LEAVE[0].id.replace("/", "%2F"), headers=zh)
    assert page.status_code == 200 and "来源：" in page.text and "跳到引用的文字" in page.text and 'lang="zh"' in page.text
    missing = client.get("/source/nothing-here", headers={"Accept-Language": "id"})
    assert missing.status_code == 404 and message("source_missing_title", "id") in missing.text
    assert "No such source" in client.get("/source/nothing-here").text
