"""How `slm serve` runs the app: uvicorn with read deadlines (request headers, keep-alive; the body's is in
slm.api.limits.BodySizeLimit) and a cap on open connections, so slow clients cannot hold the server."""

from __future__ import annotations

from typing import Any

from slm.config import ServeSettings


def header_timeout_protocol(timeout_s: float) -> type:
    """uvicorn's h11 protocol, closing a connection whose request headers are not complete `timeout_s`
    after it opened (or after its previous response). uvicorn itself waits for headers forever."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11(H11Protocol):
        _header_timer: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._watch_headers()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch_headers()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_watching()
            super().connection_lost(exc)

        def _awaiting_headers(self) -> bool:
            cycle = getattr(self, "cycle", None)
            return cycle is None or cycle.response_complete

        def _watch_headers(self) -> None:
            if not self._awaiting_headers():
                self._stop_watching()
            elif self._header_timer is None:
                self._header_timer = self.loop.call_later(timeout_s, self._headers_late)

        def _stop_watching(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if self._awaiting_headers() and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutH11


def uvicorn_config(app: Any, serve: ServeSettings, *, log_level: str = "info") -> Any:
    """The uvicorn.Config `slm serve` runs (tests start the same one on loopback)."""
    import uvicorn

    return uvicorn.Config(
        app, host=serve.host, port=serve.port, access_log=False, log_config=None, log_level=log_level,
        timeout_graceful_shutdown=5,
        http=header_timeout_protocol(serve.header_timeout_s),
        timeout_keep_alive=max(1, round(serve.keep_alive_s)),  # idle between requests, then closed
        limit_concurrency=serve.max_connections or None,  # open connections + tasks; 503 beyond
        h11_max_incomplete_event_size=16 * 1024,  # request line + headers; a bigger head is refused (400)
    )
