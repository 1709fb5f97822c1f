"""Who is using the chat and what they may see: Gradio password login, a reverse proxy's trusted header,
or (with neither) only the local machine; users map to audience labels."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from slm.access.labels import normalize_labels
from slm.config import AccessSettings, UISettings
from slm.errors import AccessDenied, ConfigError

LOCAL_USER = "local"
MAX_USER_CHARS = 200


@dataclass(frozen=True)
class Viewer:
    """The person behind a request; audiences None means trusted (the local owner sees everything)."""

    user: str
    audiences: frozenset[str] | None


def login_mode(ui: UISettings) -> str:
    """`password` (ui.auth), `header` (ui.trusted_header) or `local` (neither: loopback only)."""
    if ui.auth and ui.trusted_header:
        raise ConfigError("set either ui.auth (passwords) or ui.trusted_header (a reverse proxy's login), not both")
    if ui.auth:
        return "password"
    if ui.trusted_header:
        return "header"
    return "local"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(ui: UISettings, host: str) -> None:
    """Refuse to listen beyond this machine when nobody has to log in."""
    if login_mode(ui) == "local" and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve the chat on {host} without a login: anyone who can reach it would read every "
            "document. Set ui.auth (user: password) or ui.trusted_header (behind a login proxy), "
            "or bind to 127.0.0.1"
        )


def audiences_for_user(user: str, ui: UISettings, access: AccessSettings) -> frozenset[str]:
    """The labels a logged-in user may see: ui.user_audiences[user], else the default audiences."""
    labels = ui.user_audiences.get(user)
    if labels is None:
        labels = access.default_audiences
    return normalize_labels(labels)


def header_user(headers: Any, header: str) -> str | None:
    """The user a reverse proxy put in `header` (None when absent or unreasonable)."""
    value = (headers.get(header) or "").strip()
    if not value or len(value) > MAX_USER_CHARS or any(ch in value for ch in "\r\n\x00"):
        return None
    return value


def viewer_for(user: str | None, ui: UISettings, access: AccessSettings) -> Viewer:
    """Map the authenticated user name (None when nobody logged in) to a Viewer, or refuse."""
    mode = login_mode(ui)
    if mode == "local":
        return Viewer(user=user or LOCAL_USER, audiences=None)
    if not user:
        raise AccessDenied("log in first")
    if mode == "password" and user not in ui.auth:
        raise AccessDenied("unknown user")
    return Viewer(user=user, audiences=audiences_for_user(user, ui, access))
