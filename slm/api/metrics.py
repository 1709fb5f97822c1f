"""Prometheus metrics and structured JSON access logs (no question text unless serve.log_questions)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

access_log = logging.getLogger("slm.api.access")

CLIENT_CLOSED = 499  # nginx's "client closed request": nobody reads the reply
_LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)


class Metrics:
    """One registry per app, so several apps (tests) never clash."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry()
        self.requests = Counter("slm_http_requests_total", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("slm_http_request_duration_seconds", "Time to the last byte of the response",
                                 ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.first_token = Histogram("slm_time_to_first_token_seconds", "Time from request to first generated text",
                                     buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram("slm_queue_wait_seconds", "Time a request waited for a generation thread",
                                    buckets=_LATENCY_BUCKETS, registry=r)
        self.tokens = Counter("slm_generated_tokens_total", "Tokens generated", ["model"], registry=r)
        self.answers = Counter("slm_answers_total", "Answers given", ["model", "abstained"], registry=r)
        self.errors = Counter("slm_errors_total", "Errors by kind (status code or exception type)", ["kind"],
                              registry=r)
        self.cancelled = Counter("slm_generation_cancelled_total", "Generations stopped because the client left",
                                 registry=r)
        self.queue_depth = Gauge("slm_generation_queue_depth", "Generation requests running or waiting", registry=r)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class AccessLogAndMetrics:
    """ASGI middleware: request id, one JSON access-log line and the request metrics per HTTP request."""

    def __init__(self, app: Any, metrics: Metrics, paths: frozenset[str] = frozenset()):
        self.app = app
        self.metrics = metrics
        # The app's route paths (all fixed): a request refused before routing (401, 408, 413) is still counted
        # under its route; any other path is "unmatched", so label values stay few.
        self.paths = paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        request_id = _header(scope, b"x-request-id") or uuid.uuid4().hex[:16]
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500  # nothing was answered: the app failed, unless the client left first (499 below)
        left = False

        async def receive_wrapper():
            nonlocal left
            message = await receive()
            left = left or message["type"] == "http.disconnect"
            return message

        started = False

        async def send_wrapper(message):
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except BaseException as exc:
            self.metrics.errors.labels(kind=type(exc).__name__).inc()
            raise
        finally:
            if left and not started:
                status = CLIENT_CLOSED  # gone before any reply (e.g. mid-body): not a server error
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            path = scope.get("path", "")
            route_path = getattr(route, "path", None) or (path if path in self.paths else "unmatched")
            self.metrics.requests.labels(route=route_path, method=scope["method"], status=str(status)).inc()
            self.metrics.latency.labels(route=route_path).observe(elapsed)
            if status >= 400:
                self.metrics.errors.labels(kind=str(status)).inc()
            record = {
                "event": "request",
                "request_id": request_id,
                "method": scope["method"],
                "path": scope.get("path", ""),
                "route": route_path,
                "status": status,
                "duration_ms": round(elapsed * 1000, 1),
                "client": (scope.get("client") or ("", 0))[0],
            }
            for name in ("key_id", "model", "stream", "abstained", "generated_tokens", "question_chars", "question",
                         "cancelled"):
                if name in state:
                    record[name] = state[name]
            access_log.info(json.dumps(record, ensure_ascii=False))


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            text = value.decode("latin-1").strip()
            return text[:64] if text else None
    return None


class JsonLogFormatter(logging.Formatter):
    """Log lines as JSON objects; access-log messages are JSON already and are merged in."""

    def format(self, record: logging.LogRecord) -> str:
        base = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname, "logger": record.name}
        message = record.getMessage()
        try:
            parsed = json.loads(message)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            base.update(parsed)
        else:
            base["message"] = message
        if record.exc_info:
            base["exception"] = self.formatException(record.exc_info)
        return json.dumps(base, ensure_ascii=False)


def configure_json_logging(level: str = "INFO") -> None:
    """Route slm's and uvicorn's logs to stderr as JSON lines (the server does this at start)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter())
    for name in ("slm", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
