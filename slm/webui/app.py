"""The employee chat: Gradio Blocks (streamed answers, sources, feedback, settings) mounted in FastAPI
beside `/source/{chunk_id}`, which shows a KB document as escaped text at the cited span.
Imports gradio at load: only `slm ui` and tests import this module."""

from __future__ import annotations

import html
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from slm.access.audit import Caller, audit_log_for, record_answer
from slm.config import Settings
from slm.errors import AccessDenied, ConfigError
from slm.answering.feedback import FeedbackStore
from slm.answering.source_view import SOURCE_PAGE_CSP, ChunkLibrary, KBChunkLibrary, SourceNotFound, load_source, render_source_page
from slm.webui import render
from slm.webui.auth import LOCAL_USER, Viewer, check_bind, header_user, is_loopback, login_mode, viewer_for
from slm.webui.chat import ChatController, FeedbackSink, Owner, StreamingAnswerer
from slm.text.language import LANGUAGES
from slm.text.messages import message
from slm.webui.i18n import gradio_i18n, request_language
from slm.webui.sessions import BrowserCookie, SessionBinding, browser_of

log = logging.getLogger(__name__)

CSS = """
.slm-sources h3{margin:.2rem 0 .6rem}
.slm-source{border:1px solid var(--border-color-primary);border-radius:8px;padding:.6rem .8rem;margin-bottom:.6rem}
.slm-source-title{font-weight:600}
.slm-source-section{font-size:.85em;opacity:.8}
.slm-snippet{margin:.4rem 0;padding-left:.6rem;border-left:3px solid #f08c00;white-space:pre-wrap;font-size:.9em}
.slm-snippet mark{background:#ffd43b;color:#000}
.slm-muted{opacity:.7}
.slm-read summary{cursor:pointer;margin:.4rem 0}
"""

SECURITY_HEADERS = {
    "Content-Security-Policy": SOURCE_PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass
class Parts:
    """What the chat runs on; built from settings unless a test injects fakes."""

    answerer: StreamingAnswerer
    feedback: FeedbackSink
    library: ChunkLibrary | None
    kb: Any | None = None


def build_parts(
    settings: Settings,
    *,
    answerer: StreamingAnswerer | None = None,
    feedback: FeedbackSink | None = None,
    library: ChunkLibrary | None = None,
    kb: Any | None = None,
    need_library: bool = True,
) -> Parts:
    """Open the KB (once) only for what was not injected: the answerer, the source library, feedback."""
    if kb is None and (answerer is None or (need_library and library is None)):
        from slm.kb.local import open_for_serving

        kb = open_for_serving(settings)
    if answerer is None:
        from slm.answering.service import build_live_answerer

        answerer = build_live_answerer(settings, kb=kb)  # follows new index generations and promotions
    if library is None and kb is not None:
        library = KBChunkLibrary(kb)
    if feedback is None:
        feedback = FeedbackStore.for_kb(Path(kb.path) if kb is not None else Path(settings.kb))
    return Parts(answerer=answerer, feedback=feedback, library=library, kb=kb)


def chat_controller(parts: Parts) -> ChatController:
    """The controller (and the conversations it keeps) over the parts."""
    return ChatController(parts.answerer, parts.feedback, refresh=getattr(parts.kb, "reload_if_changed", None))


def _request_user(request: Any) -> str | None:
    """The user Gradio authenticated for this request (password login or the trusted-header dependency)."""
    return getattr(request, "username", None) if request is not None else None


def build_app(
    settings: Settings,
    *,
    answerer: StreamingAnswerer | None = None,
    feedback: FeedbackSink | None = None,
    parts: Parts | None = None,
    controller: ChatController | None = None,
):
    """The Gradio Blocks of the chat (mount it with `create_server` to get the source viewer too and the
    guards that keep Gradio's session ids to the browser and login that started them)."""

    if parts is None:
        parts = build_parts(settings, answerer=answerer, feedback=feedback, need_library=False)
    if controller is None:
        controller = chat_controller(parts)
    ui, access = settings.ui, settings.access
    # Answers from the real KB are audited (access.audit_log); injected test parts are not.
    audit = audit_log_for(settings) if parts.kb is not None else None
    default_k = max(1, settings.answering.passages)
    can_rerank = bool(settings.retrieval.reranker)

    def viewer_or_none(request: Any):
        try:
            return viewer_for(_request_user(request), ui, access)
        except AccessDenied:
            return None

    def seat(request: Any) -> tuple[Viewer, Owner, str] | None:
        """Who asks (from the server's login, never from the client) and which of their conversations."""
        viewer = viewer_or_none(request)
        if viewer is None:
            return None
        owner = Owner(user=viewer.user, browser=browser_of(getattr(request, "cookies", None)))
        return viewer, owner, str(getattr(request, "session_hash", None) or "")

    def ask(question: str, k: float, rerank: bool, request: gr.Request):
        found = seat(request)
        if found is None:
            yield gr.skip(), gr.skip(), gr.skip(), message("log_in_first", request_language(request))
            return
        viewer, owner, session = found
        first = True
        views = controller.ask(
            owner, session, question, audiences=viewer.audiences, k=int(k), rerank=bool(rerank) if can_rerank else None,
            language=request_language(request),
        )
        for view in views:
            if view.answered is not None:
                record_answer(audit, Caller(who=viewer.user, channel="ui", audiences=viewer.audiences), view.answered)
            # The question box empties as soon as the question is taken.
            sources_update = gr.skip() if view.sources is None else view.sources
            yield view.messages, sources_update, ("" if first else gr.skip()), view.status
            first = False

    def rate(rating: str):
        def handler(comment: str, request: gr.Request):
            found = seat(request)
            language = request_language(request)
            if found is None:
                return message("log_in_first", language), comment
            _, owner, session = found
            return controller.rate(owner, session, None, rating, comment=comment or "", language=language), ""

        return handler

    def on_like(data: gr.LikeData, request: gr.Request):
        found = seat(request)
        language = request_language(request)
        if found is None:
            return message("log_in_first", language)
        if data.liked not in (True, False):
            return gr.skip()
        _, owner, session = found
        index = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
        return controller.rate(owner, session, int(index) // 2, "up" if data.liked else "down", language=language)

    def on_select(data: gr.SelectData, request: gr.Request):
        found = seat(request)
        if found is None:
            return gr.skip()
        _, owner, session = found
        index = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
        panel = controller.sources_at(owner, session, int(index))
        return gr.skip() if panel is None else panel

    def new_conversation(request: gr.Request):
        found = seat(request)
        if found is not None:
            _, owner, session = found
            controller.clear(owner, session)
        return [], render.sources_html(None, request_language(request)), ""

    def who(request: gr.Request) -> str:
        viewer = viewer_or_none(request)
        if viewer is None:
            return ""
        language = request_language(request)
        if viewer.audiences is None:
            seen = message("sees_all", language)
        else:
            seen = message("sees_audiences", language, audiences=", ".join(sorted(viewer.audiences)) or message("sees_none", language))
        return message("signed_in", language, user=render.escape_markdown(viewer.user), seen=render.escape_markdown(seen))

    def on_load(request: gr.Request) -> tuple[str, str, str]:
        """What the server renders when the page opens, in the browser's language (Accept-Language)."""
        language = request_language(request)
        answered_by = message("answered_by", language, model=html.escape(controller.model_label(language)))
        return who(request), answered_by, render.sources_html(None, language)

    i18n = gradio_i18n()  # static strings follow the browser's locale: en, zh-CN, id (slm/webui/i18n.py)
    with gr.Blocks(title=i18n("title")) as blocks:
        with gr.Row():
            gr.Markdown(i18n("title_md"))
            model_version = gr.Markdown(
                message("answered_by", model=html.escape(controller.model_label())), elem_id="model-version"
            )
        signed_in = gr.Markdown("", elem_id="signed-in")
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(
                    label=i18n("conversation"),
                    elem_id="chat",
                    height=460,
                    sanitize_html=True,
                    feedback_options=("Like", "Dislike"),
                    placeholder=i18n("chat_placeholder"),
                )
                with gr.Row():
                    question = gr.Textbox(
                        placeholder=i18n("question_placeholder"),
                        show_label=False,
                        elem_id="question",
                        scale=5,
                        max_length=2000,
                        submit_btn=False,
                    )
                    ask_button = gr.Button(i18n("ask"), variant="primary", elem_id="ask", scale=1)
                with gr.Row():
                    up = gr.Button(i18n("helpful"), elem_id="thumbs-up", size="sm")
                    down = gr.Button(i18n("not_helpful"), elem_id="thumbs-down", size="sm")
                    comment = gr.Textbox(
                        placeholder=i18n("comment_placeholder"), show_label=False, elem_id="feedback-comment", scale=3
                    )
                status = gr.Markdown("", elem_id="status")
                clear = gr.Button(i18n("new_conversation"), size="sm", elem_id="new-conversation")
            with gr.Column(scale=2):
                with gr.Accordion(i18n("settings"), open=False, elem_id="settings"):
                    k = gr.Slider(1, 10, value=min(default_k, 10), step=1, label=i18n("passages_k"), elem_id="k")
                    rerank = gr.Checkbox(
                        value=settings.retrieval.rerank and can_rerank,
                        label=i18n("rerank" if can_rerank else "rerank_none"),
                        interactive=can_rerank,
                        elem_id="rerank",
                    )
                sources = gr.HTML(render.sources_html(None), elem_id="sources")

        # No gr.State: Gradio keys it by the client's session id. Conversations live in the controller,
        # found by the logged-in user (see ChatController), so handlers take no conversation input.
        ask_inputs = [question, k, rerank]
        ask_outputs = [chatbot, sources, question, status]
        ask_button.click(ask, ask_inputs, ask_outputs, concurrency_id="answer")
        question.submit(ask, ask_inputs, ask_outputs, concurrency_id="answer")
        up.click(rate("up"), [comment], [status, comment])
        down.click(rate("down"), [comment], [status, comment])
        chatbot.like(on_like, None, [status])
        chatbot.select(on_select, None, [sources])  # click an earlier answer: its sources
        clear.click(new_conversation, None, [chatbot, sources, status])
        chatbot.clear(new_conversation, None, [chatbot, sources, status])
        blocks.load(on_load, None, [signed_in, model_version, sources], api_name="who")  # the name it always had
    return blocks


def _gradio_sub_app(app: Any) -> Any:
    from starlette.routing import Mount

    for route in app.routes:
        if isinstance(route, Mount) and hasattr(route.app, "tokens"):
            return route.app
    raise RuntimeError("the Gradio app is not mounted")


def _cookie_user(request: Any, gradio_app: Any) -> str | None:
    """The user of Gradio's login cookie (Gradio keeps token → user in memory)."""
    cookie_id = getattr(gradio_app, "cookie_id", None)
    for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
        token = request.cookies.get(name)
        if token and token in gradio_app.tokens:
            return gradio_app.tokens[token]
    return None


class LoopbackOnly:
    """ASGI guard for the no-login mode: requests from other machines are refused outright."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            client = scope.get("client")
            if not client or not is_loopback(client[0]):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                body = b"this chat has no login configured and only answers on this machine"
                await send({"type": "http.response.start", "status": 403, "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def create_server(
    settings: Settings,
    *,
    answerer: StreamingAnswerer | None = None,
    feedback: FeedbackSink | None = None,
    library: ChunkLibrary | None = None,
    kb: Any | None = None,
):
    """FastAPI app: `/source/{chunk_id}` (KB documents by chunk id, audience-checked) + the chat at `/`."""

    ui, access = settings.ui, settings.access
    mode = login_mode(ui)
    parts = build_parts(settings, answerer=answerer, feedback=feedback, library=library, kb=kb)
    if parts.library is None:
        raise ConfigError("the chat needs a knowledge base to show sources: give it a KB or a chunk library")
    controller = chat_controller(parts)
    blocks = build_app(settings, parts=parts, controller=controller)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    mounted: dict[str, Any] = {}

    def request_user(request: Request) -> str | None:
        if mode == "header":
            return header_user(request.headers, ui.trusted_header)
        if mode == "password":
            return _cookie_user(request, mounted["gradio"])
        return None

    def page(status: int, key: str, language: str) -> HTMLResponse:
        """An error page: the `<key>_title` and `<key>_text` messages in the browser's language."""
        title, text = message(f"{key}_title", language), message(f"{key}_text", language)
        body = (
            f"<!doctype html><html lang=\"{language}\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>"
            f"<p><a href=\"/\">{html.escape(message('back_to_chat', language))}</a></p></body></html>"
        )
        return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)

    @app.get("/source/{chunk_id:path}")
    def source(chunk_id: str, request: Request, start: int | None = None, end: int | None = None) -> HTMLResponse:
        language = request_language(request)
        try:
            viewer = viewer_for(request_user(request), ui, access)
        except AccessDenied:
            return page(401, "source_login", language)
        try:
            view = load_source(parts.library, chunk_id, viewer.audiences)
        except (SourceNotFound, AccessDenied):
            # The same answer for "missing" and "not yours": ids of hidden documents are not confirmed.
            return page(404, "source_missing", language)
        span = (start, end) if start is not None and end is not None else None
        return HTMLResponse(render_source_page(view, span, language), headers=SECURITY_HEADERS)

    auth_kwargs: dict[str, Any] = {}
    if mode == "password":
        auth_kwargs["auth"] = list(ui.auth.items())
        # The login page is static HTML (no locale to pick by): the message in every language.
        auth_kwargs["auth_message"] = " · ".join(html.escape(message("log_in_to_ask", code)) for code in LANGUAGES)
    elif mode == "header":
        header = ui.trusted_header
        auth_kwargs["auth_dependency"] = lambda request: header_user(request.headers, header)
    blocks.queue(default_concurrency_limit=1)
    gr.mount_gradio_app(app, blocks, path="/", css=CSS, footer_links=[], ssr_mode=False, i18n=gradio_i18n(), **auth_kwargs)
    mounted["gradio"] = _gradio_sub_app(app)

    def owner_of(scope: dict) -> Owner | None:
        request = Request(scope)
        user = request_user(request)
        if user is None and mode != "local":
            return None
        return Owner(user=user or LOCAL_USER, browser=browser_of(request.cookies))

    # Outermost last: refuse other machines (no login), then give the browser its id, then bind sessions.
    app.add_middleware(SessionBinding, owner_of=owner_of)
    app.add_middleware(BrowserCookie)
    if mode == "local":
        app.add_middleware(LoopbackOnly)
    app.state.parts = parts
    app.state.chat = controller
    return app


def serve(settings: Settings, *, log_level: str = "warning") -> None:
    """Run the chat with uvicorn on ui.host:ui.port (refuses a non-loopback address when no login is configured)."""
    import uvicorn

    host, port = settings.ui.host, settings.ui.port
    check_bind(settings.ui, host)
    model = settings.generation.model if settings.generation.backend != "extractive" else "(extractive: no model)"
    print(f"loading the knowledge base {settings.kb} and the model {model} …", file=sys.stderr, flush=True)
    app = create_server(settings)
    shown = f"[{host}]" if ":" in host else host
    mode = login_mode(settings.ui)
    print(f"slm chat on http://{shown}:{port}/  (login: {mode})", flush=True)
    if mode == "header" and not is_loopback(host):
        print(
            f"warning: users are taken from the {settings.ui.trusted_header} header; make sure only your login "
            "proxy can reach this address, or anyone can claim any user",
            file=sys.stderr,
            flush=True,
        )
    uvicorn.run(app, host=host, port=port, log_level=log_level)
