"""Every user-facing message in English, Simplified Chinese and Indonesian, in one table; which language an
answer is given in (`generation.answer_language`: auto follows the question)."""

from __future__ import annotations

from slm.text.language import LANGUAGES, detect_language

ANSWER_LANGUAGES = ("auto", *LANGUAGES)

# key -> language -> text. English is the source; every key has all three.
MESSAGES: dict[str, dict[str, str]] = {
    "abstain": {
        "en": "I don't know from the documents.",
        "zh": "根据现有文档，我无法回答这个问题。",
        "id": "Saya tidak tahu berdasarkan dokumen yang ada.",
    },
    # the prompt's instruction (the model reads it; the English prompt has none, so English stays as trained)
    "answer_in": {
        "en": "",
        "zh": "请用简体中文回答。",
        "id": "Jawablah dalam bahasa Indonesia.",
    },
    # API errors, by their `code` (the English detail follows in brackets)
    "access_denied": {"en": "Access denied", "zh": "无权访问", "id": "Akses ditolak"},
    "model_not_found": {"en": "Model not found", "zh": "找不到模型", "id": "Model tidak ditemukan"},
    "not_ready": {
        "en": "The service is not ready yet; try again shortly",
        "zh": "服务尚未就绪，请稍后重试",
        "id": "Layanan belum siap; coba lagi sebentar lagi",
    },
    "internal_error": {"en": "Internal error", "zh": "内部错误", "id": "Kesalahan internal"},
    "invalid_request": {"en": "Invalid request", "zh": "请求无效", "id": "Permintaan tidak valid"},
    "rate_limited": {"en": "Too many requests", "zh": "请求过于频繁", "id": "Terlalu banyak permintaan"},
    "missing_api_key": {"en": "Missing API key", "zh": "缺少 API 密钥", "id": "Kunci API tidak ada"},
    "invalid_api_key": {"en": "Invalid or revoked API key", "zh": "API 密钥无效或已被吊销", "id": "Kunci API tidak valid atau sudah dicabut"},
    "model_not_allowed": {"en": "This API key may not use the model", "zh": "此 API 密钥无权使用该模型", "id": "Kunci API ini tidak boleh memakai model tersebut"},
    "no_question": {"en": "No question was asked", "zh": "没有提出问题", "id": "Tidak ada pertanyaan"},
    "body_too_large": {"en": "The request is too large", "zh": "请求过大", "id": "Permintaan terlalu besar"},
    "too_many_messages": {"en": "Too many messages", "zh": "消息过多", "id": "Terlalu banyak pesan"},
    "message_too_long": {"en": "A message is too long", "zh": "消息过长", "id": "Pesan terlalu panjang"},
    "max_tokens_too_large": {"en": "max_tokens is too large", "zh": "max_tokens 过大", "id": "max_tokens terlalu besar"},
    "queue_full": {"en": "The server is busy; try again shortly", "zh": "服务器繁忙，请稍后重试", "id": "Server sedang sibuk; coba lagi sebentar lagi"},
    "shutting_down": {"en": "The server is shutting down", "zh": "服务器正在关闭", "id": "Server sedang dimatikan"},
    "client_closed": {"en": "The client closed the request", "zh": "客户端已关闭请求", "id": "Klien menutup permintaan"},
    "empty_question": {"en": "The question is empty", "zh": "问题为空", "id": "Pertanyaan kosong"},
}


def message(key: str, language: str = "en") -> str:
    """The message `key` in `language` (English when that language has none)."""
    texts = MESSAGES[key]
    return texts.get(language) or texts["en"]


def localised_error(message_text: str, code: str | None, language: str) -> str:
    """An API error's message for a zh or id caller: the summary in their language, the English detail (what
    to do, with names and numbers) kept after it. English callers get the message unchanged."""
    if language == "en" or not code or code not in MESSAGES:
        return message_text
    return f"{message(code, language)}（{message_text}）" if language == "zh" else f"{message(code, language)} ({message_text})"


def all_translations(key: str) -> tuple[str, ...]:
    return tuple(t for t in MESSAGES[key].values() if t)


def answer_language(setting: str, question: str) -> str:
    """The language to answer in: the setting, or under `auto` the question's own (English when unclear)."""
    if setting not in ANSWER_LANGUAGES:
        from slm.errors import ConfigError

        raise ConfigError(f"generation.answer_language is '{setting}'; use one of {', '.join(ANSWER_LANGUAGES)}")
    if setting != "auto":
        return setting
    detected = detect_language(question, default="en")
    return detected if detected in LANGUAGES else "en"


def preferred_language(accept_language: str | None) -> str:
    """The first of en/zh/id an HTTP Accept-Language header asks for ('zh-CN,zh;q=0.9' → 'zh'); else en."""
    ranked = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        code = tag.strip().lower().split("-")[0]
        if code in LANGUAGES and weight > 0:
            ranked.append((-weight, i, code))
    return min(ranked)[2] if ranked else "en"
