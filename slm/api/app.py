"""The HTTP service: `create_app(settings)` wires keys, limits, the model host, routes, metrics and logs."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from slm.api.deps import ApiContext, KeyBeforeBody
from slm.api.errors import install_error_handlers
from slm.api.limits import BodySizeLimit, GenerationQueue
from slm.api.metrics import AccessLogAndMetrics, Metrics
from slm.api.runtime import AnswererFactory, FactoryLoader, KbLoader, ModelHost, _open_registry
from slm.config import Settings
from slm.api.keys import KeyStore
from slm.api.ratelimit import RateLimiter

DESCRIPTION = """
Answers questions from your organisation's documents, with citations. OpenAI-compatible:
point any OpenAI client at `/v1` with an API key from `slm keys create`.

**Citations.** `POST /v1/chat/completions` returns the answer in `choices[0].message.content`,
with `[n]` markers, and the sources in `choices[0].message.citations`: a list of objects
`{marker, chunk_id, doc_id, title, source, location, section, anchor, page, start, end, snippet}`
where `marker` is the `n` of `[n]` and `location` is `source#anchor` (or `source (page N)`).
`choices[0].message.abstained` is true when the documents did not answer; `uncited` is true
when the model answered without naming a real passage. When streaming
(`stream: true`, server-sent events ending with `data: [DONE]`), the final chunk (the one with
`finish_reason`) carries `choices[0].delta.citations`, `.abstained` and `.uncited`.

**Keys and access.** Send `Authorization: Bearer <key>`. A key is bound to audience labels;
retrieval and citations only use documents those labels may see. `GET /v1/models` lists the
models the key may use: `slm` (the served default), `slm-base`, and `slm:vN` adapter versions.

**Limits.** 401 bad key (checked before the body is read), 403 model not allowed for the key,
404 unknown model, 408 body too slow, 413 body too large, 422 invalid request or over a limit
(including the request budget: `question_too_long`, `prompt_too_long`), 429 rate limit
(`Retry-After`), 503 not ready or busy (`Retry-After`). Errors use OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
"""


def create_app(settings: Settings, *, answerer_factory: AnswererFactory | None = None, registry: Any = None,
               key_store: KeyStore | None = None) -> FastAPI:
    """The FastAPI app. `answerer_factory(adapter)` (adapter: a registry version, a path, or None for the
    base model) replaces loading the knowledge base and models, e.g. with a fake in tests."""
    serve = settings.serve
    loader = FactoryLoader(answerer_factory) if answerer_factory is not None else KbLoader(settings)
    host = ModelHost(settings, loader, registry if registry is not None else _open_registry(settings))
    ctx = ApiContext(
        settings=settings,
        host=host,
        keys=key_store or KeyStore.for_kb(settings.kb),
        limiter=RateLimiter(serve.rate_limit_per_minute),
        queue=GenerationQueue(serve.workers, serve.queue_size),
        metrics=Metrics(),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        host.start()  # loads in the background: /healthz answers at once, /readyz once loaded
        yield
        ctx.queue.shutdown()

    app = FastAPI(title="slm", version=_version(), description=DESCRIPTION, lifespan=lifespan)
    app.state.ctx = ctx
    install_error_handlers(app)

    from slm.api import routes_native, routes_openai, routes_ops

    routers = (routes_openai.router, routes_native.router, routes_ops.router)
    for router in routers:
        app.include_router(router)
    paths = {r.path for r in app.routes if isinstance(getattr(r, "path", None), str)}
    paths |= {r.path for router in routers for r in router.routes}

    # Added innermost first: body size and read time < the key, checked before the body is read < CORS (only
    # when configured, so its headers are on those early refusals too) < access log and metrics.
    app.add_middleware(BodySizeLimit, max_bytes=serve.max_body_bytes, timeout_s=serve.body_timeout_s)
    app.add_middleware(KeyBeforeBody, keys=ctx.keys)
    if serve.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(serve.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-ID"])
    app.add_middleware(AccessLogAndMetrics, metrics=ctx.metrics, paths=frozenset(paths))
    return app


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("slm")
    except Exception:
        return "0"
