"""The chat's strings in the browser's language: the static ones through Gradio's I18n (the browser's locale
picks), the ones the server renders (answers' notes, sources, status lines) by the language it is given. Every
string lives in the one table, slm/text/messages.py."""

from __future__ import annotations

from typing import Any

from slm.text.messages import MESSAGES, preferred_language

# Gradio looks a browser locale up as given ('zh-CN') and by its language ('zh').
_LOCALES = {"en": ("en",), "zh": ("zh", "zh-CN", "zh-Hans"), "id": ("id",)}


def translations() -> dict[str, dict[str, str]]:
    """locale -> key -> text, the shape `gr.I18n(**translations())` takes."""
    out: dict[str, dict[str, str]] = {}
    for language, locales in _LOCALES.items():
        table = {key: texts.get(language) or texts["en"] for key, texts in MESSAGES.items()}
        for locale in locales:
            out[locale] = table
    return out


def gradio_i18n() -> Any:
    import gradio as gr

    return gr.I18n(**translations())


def request_language(request: Any) -> str:
    """en, zh or id for a Gradio or Starlette request, by its Accept-Language (English without one)."""
    headers = getattr(request, "headers", None) or {}
    return preferred_language(headers.get("accept-language"))
