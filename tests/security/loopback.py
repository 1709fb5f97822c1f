"""The real HTTP server for attack tests: the app under uvicorn, configured exactly as `slm serve` does
(slm.api.server.uvicorn_config), in a thread on a free loopback port; plus raw-socket helpers."""

from __future__ import annotations

import socket
import threading
import time

from slm.api.server import uvicorn_config
from tests.integration.api_server import free_port


class LoopbackServer:
    def __init__(self, app, serve):
        import uvicorn

        serve.host, serve.port = "127.0.0.1", free_port()
        self.url = f"http://127.0.0.1:{serve.port}"
        self.port = serve.port
        self.app = app
        self.server = uvicorn.Server(uvicorn_config(app, serve, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "LoopbackServer":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise AssertionError("the loopback server did not start")
            time.sleep(0.02)
        assert self.app.state.ctx.host.wait_ready(10)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


def request_head(path: str, *, key: str | None = None, length: int | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if key is not None:
        lines.append(f"Authorization: Bearer {key}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_reply(sock: socket.socket, timeout: float) -> tuple[bytes, float | None]:
    """What the server sends until it closes the connection, and the seconds that took (None: still open
    after `timeout`)."""
    out = b""
    start = time.monotonic()
    deadline = start + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            data = sock.recv(65536)
            if not data:
                return out, time.monotonic() - start
            out += data
    except socket.timeout:
        return out, None
    except (ConnectionResetError, BrokenPipeError):
        return out, time.monotonic() - start
    return out, None


def status_of(reply: bytes) -> int | None:
    if not reply.startswith(b"HTTP/1.1 "):
        return None
    return int(reply.split(b" ", 2)[1])
