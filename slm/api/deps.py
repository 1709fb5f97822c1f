"""What every route shares: the app's context, key authentication (401) and the per-key rate limit (429);
`KeyBeforeBody` authenticates from the headers before any body is read."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any, Mapping

from fastapi import Request

from slm.api.errors import ApiError, send_error
from slm.api.limits import GenerationQueue
from slm.api.metrics import Metrics
from slm.api.runtime import ModelHost
from slm.config import Settings
from slm.api.keys import ApiKey, KeyStore
from slm.api.ratelimit import RateLimiter

WWW_AUTHENTICATE = 'Bearer realm="slm"'


@dataclass
class ApiContext:
    settings: Settings
    host: ModelHost
    keys: KeyStore
    limiter: RateLimiter
    queue: GenerationQueue
    metrics: Metrics


def context(request: Request) -> ApiContext:
    return request.app.state.ctx


def _presented_secret(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    return headers.get("x-api-key") or None


def authenticate(keys: KeyStore, headers: Mapping[str, str]) -> ApiKey:
    """The active key the headers present; 401 when missing or unknown/revoked."""
    secret = _presented_secret(headers)
    if secret is None:
        raise ApiError(401, "missing API key: send `Authorization: Bearer <key>` (create one with `slm keys create`)",
                       code="missing_api_key", headers={"WWW-Authenticate": WWW_AUTHENTICATE})
    key = keys.verify(secret)  # reads the table each time: CLI revocations apply at once
    if key is None:
        raise ApiError(401, "invalid or revoked API key", code="invalid_api_key",
                       headers={"WWW-Authenticate": f'{WWW_AUTHENTICATE}, error="invalid_token"'})
    return key


class KeyBeforeBody:
    """ASGI middleware: a request with a body (every POST route needs a key) gets its 401 from the headers
    alone, before one byte of the body is read, so an anonymous client cannot hold the server reading."""

    def __init__(self, app: Any, keys: KeyStore):
        self.app = app
        self.keys = keys

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            from starlette.datastructures import Headers

            headers = Headers(scope=scope)
            try:
                await asyncio.to_thread(authenticate, self.keys, headers)
            except ApiError as exc:
                return await send_error(send, exc.status, exc.message, code=exc.code, headers=exc.headers, scope=scope)
        await self.app(scope, receive, send)


def require_key(request: Request) -> ApiKey:
    """The caller's active key; 401 when missing or unknown/revoked, 429 when over its rate limit."""
    ctx = context(request)
    key = authenticate(ctx.keys, request.headers)
    request.state.key_id = key.id
    wait = ctx.limiter.acquire(key.id)
    if wait > 0:
        raise ApiError(429, f"rate limit of {ctx.settings.serve.rate_limit_per_minute} requests a minute reached "
                       f"for this key; retry in {math.ceil(wait)} s", code="rate_limited",
                       headers={"Retry-After": str(max(1, math.ceil(wait)))})
    return key


def require_ready(ctx: ApiContext) -> None:
    if not ctx.host.ready:
        detail = f" (loading failed: {ctx.host.error})" if ctx.host.error else ""
        raise ApiError(503, f"the model and knowledge base are not loaded yet{detail}; retry shortly",
                       code="not_ready", headers={"Retry-After": "5"})
