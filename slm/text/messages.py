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
    "body_timeout": {"en": "The request body arrived too slowly", "zh": "请求正文传输超时", "id": "Isi permintaan datang terlalu lambat"},
    "question_too_long": {"en": "The question is too long", "zh": "问题过长", "id": "Pertanyaan terlalu panjang"},
    "prompt_too_long": {
        "en": "The question and its passages are too long for the model", "zh": "问题及其段落超出模型的长度限制",
        "id": "Pertanyaan dan bagian-bagiannya terlalu panjang untuk model",
    },
    "not_found": {"en": "Not found", "zh": "未找到", "id": "Tidak ditemukan"},
    "method_not_allowed": {"en": "Method not allowed", "zh": "不允许的请求方法", "id": "Metode tidak diizinkan"},
    # The chat (slm/webui): static strings through Gradio's I18n (the browser's locale), the rest chosen on the
    # server by the answer's language or the request's Accept-Language. `{name}` fields are filled by the caller.
    "title": {"en": "Ask the documents", "zh": "向文档提问", "id": "Tanya dokumen"},
    "title_md": {"en": "## Ask the documents", "zh": "## 向文档提问", "id": "## Tanya dokumen"},
    "conversation": {"en": "Conversation", "zh": "对话", "id": "Percakapan"},
    "chat_placeholder": {
        "en": "Ask a question about the company's documents. Answers cite their sources; click an earlier answer "
        "to see its sources again.",
        "zh": "就公司文档提一个问题。回答会注明出处；点击之前的回答可再次查看其来源。",
        "id": "Ajukan pertanyaan tentang dokumen perusahaan. Jawaban menyebutkan sumbernya; klik jawaban sebelumnya "
        "untuk melihat sumbernya lagi.",
    },
    "question_placeholder": {
        "en": "e.g. How many days of annual leave do I get?",
        "zh": "例如：我每年有多少天年假？",
        "id": "mis. Berapa hari cuti tahunan yang saya dapat?",
    },
    "ask": {"en": "Ask", "zh": "提问", "id": "Tanya"},
    "helpful": {"en": "👍 Helpful", "zh": "👍 有帮助", "id": "👍 Membantu"},
    "not_helpful": {"en": "👎 Not helpful", "zh": "👎 没有帮助", "id": "👎 Tidak membantu"},
    "comment_placeholder": {
        "en": "Optional comment on the latest answer", "zh": "对最新回答的意见（可选）",
        "id": "Komentar untuk jawaban terakhir (opsional)",
    },
    "new_conversation": {"en": "New conversation", "zh": "新对话", "id": "Percakapan baru"},
    "settings": {"en": "Settings", "zh": "设置", "id": "Pengaturan"},
    "passages_k": {"en": "Passages to retrieve (k)", "zh": "检索的段落数 (k)", "id": "Jumlah bagian yang diambil (k)"},
    "rerank": {"en": "Rerank passages", "zh": "重新排序段落", "id": "Urutkan ulang bagian"},
    "rerank_none": {
        "en": "Rerank passages (no reranker configured)", "zh": "重新排序段落（未配置重排序模型）",
        "id": "Urutkan ulang bagian (tidak ada model pengurut)",
    },
    "answered_by": {"en": "Answered by: `{model}`", "zh": "回答模型：`{model}`", "id": "Dijawab oleh: `{model}`"},
    "unknown_model": {"en": "unknown model", "zh": "未知模型", "id": "model tidak dikenal"},
    "with_adapter": {"en": "adapter {adapter}", "zh": "适配器 {adapter}", "id": "adaptor {adapter}"},
    "base_model": {"en": "base model (no adapter)", "zh": "基础模型（无适配器）", "id": "model dasar (tanpa adaptor)"},
    "signed_in": {"en": "Signed in as **{user}** ({seen})", "zh": "已登录：**{user}**（{seen}）", "id": "Masuk sebagai **{user}** ({seen})"},
    "sees_all": {"en": "all documents", "zh": "全部文档", "id": "semua dokumen"},
    "sees_audiences": {"en": "audiences: {audiences}", "zh": "受众：{audiences}", "id": "audiens: {audiences}"},
    "sees_none": {"en": "none", "zh": "无", "id": "tidak ada"},
    "log_in_first": {"en": "Log in first.", "zh": "请先登录。", "id": "Silakan masuk terlebih dahulu."},
    "log_in_to_ask": {"en": "Log in to ask the company documents.", "zh": "登录后即可向公司文档提问。",
                      "id": "Masuk untuk bertanya kepada dokumen perusahaan."},
    "type_question": {"en": "Type a question first.", "zh": "请先输入问题。", "id": "Ketik pertanyaan terlebih dahulu."},
    "searching": {"en": "Searching…", "zh": "正在检索…", "id": "Mencari…"},
    "answering": {"en": "Answering…", "zh": "正在回答…", "id": "Menjawab…"},
    "answer_failed": {
        "en": "something went wrong while answering; the server log has the details",
        "zh": "回答时出错；详情见服务器日志", "id": "terjadi kesalahan saat menjawab; rinciannya ada di log server",
    },
    "no_answer": {"en": "the answerer ended without an answer", "zh": "回答程序未给出回答就结束了",
                  "id": "penjawab selesai tanpa jawaban"},
    "rate_ask_first": {"en": "Ask a question first, then rate its answer.", "zh": "请先提问，再评价回答。",
                       "id": "Ajukan pertanyaan terlebih dahulu, lalu nilai jawabannya."},
    "rate_no_answer": {"en": "That message has no answer to rate.", "zh": "这条消息没有可评价的回答。",
                       "id": "Pesan itu tidak memiliki jawaban untuk dinilai."},
    "rated_helpful": {"en": "Thanks: feedback #{row} saved (marked helpful).", "zh": "谢谢：反馈 #{row} 已保存（标记为有帮助）。",
                      "id": "Terima kasih: umpan balik #{row} disimpan (ditandai membantu)."},
    "rated_not_helpful": {"en": "Thanks: feedback #{row} saved (marked not helpful).",
                          "zh": "谢谢：反馈 #{row} 已保存（标记为没有帮助）。",
                          "id": "Terima kasih: umpan balik #{row} disimpan (ditandai tidak membantu)."},
    "nearest_note": {
        "en": "The nearest sources are listed beside the chat; they may not answer the question.",
        "zh": "最接近的来源列在对话旁边；它们不一定能回答这个问题。",
        "id": "Sumber terdekat tercantum di samping percakapan; sumber itu mungkin tidak menjawab pertanyaan.",
    },
    "uncited_warning": {
        "en": "This answer cites no source: check it before relying on it.",
        "zh": "此回答未注明任何来源：请在采信前核实。",
        "id": "Jawaban ini tidak menyebutkan sumber: periksa dulu sebelum mengandalkannya.",
    },
    "sources_placeholder": {"en": "Sources of the latest answer appear here.", "zh": "最新回答的来源会显示在这里。",
                            "id": "Sumber jawaban terakhir muncul di sini."},
    "sources": {"en": "Sources", "zh": "来源", "id": "Sumber"},
    "nearest_sources": {"en": "Nearest sources (not an answer)", "zh": "最接近的来源（并非回答）",
                        "id": "Sumber terdekat (bukan jawaban)"},
    "also_read": {"en": "Also read, not cited ({n})", "zh": "也读过但未引用（{n}）", "id": "Juga dibaca, tidak dikutip ({n})"},
    "passages_read": {"en": "Passages the model read (the answer cites none)", "zh": "模型读过的段落（回答未引用任何段落）",
                      "id": "Bagian yang dibaca model (jawaban tidak mengutip satu pun)"},
    "no_sources_found": {"en": "No sources were found for this question.", "zh": "没有找到与这个问题相关的来源。",
                         "id": "Tidak ada sumber yang ditemukan untuk pertanyaan ini."},
    "cites_no_source": {"en": "This answer cites no source.", "zh": "此回答未注明任何来源。",
                        "id": "Jawaban ini tidak menyebutkan sumber."},
    "open_source": {"en": "Open {location}", "zh": "打开 {location}", "id": "Buka {location}"},
    "page_n": {"en": "page {page}", "zh": "第 {page} 页", "id": "halaman {page}"},
    "source_login_title": {"en": "Log in first", "zh": "请先登录", "id": "Silakan masuk"},
    "source_login_text": {"en": "Open the chat and log in, then follow the source link again.",
                          "zh": "请打开对话页面并登录，然后再次打开来源链接。",
                          "id": "Buka percakapan dan masuk, lalu ikuti tautan sumber itu lagi."},
    "source_missing_title": {"en": "No such source", "zh": "没有这个来源", "id": "Sumber tidak ada"},
    "source_missing_text": {"en": "This source does not exist or you may not open it.", "zh": "此来源不存在，或您无权打开。",
                            "id": "Sumber ini tidak ada atau Anda tidak boleh membukanya."},
    "page_source": {"en": "Source: {location}", "zh": "来源：{location}", "id": "Sumber: {location}"},
    "page_section": {"en": "Section: {section}", "zh": "章节：{section}", "id": "Bagian: {section}"},
    "page_characters": {"en": "Characters {start}–{end}", "zh": "字符 {start}–{end}", "id": "Karakter {start}–{end}"},
    "page_jump": {"en": "jump to the cited text", "zh": "跳到引用的文字", "id": "lompat ke teks yang dikutip"},
    "back_to_chat": {"en": "Back to the chat", "zh": "返回对话", "id": "Kembali ke percakapan"},
}


def message(key: str, language: str = "en", **fields: object) -> str:
    """The message `key` in `language` (English when that language has none), its `{name}` fields filled."""
    texts = MESSAGES[key]
    text = texts.get(language) or texts["en"]
    return text.format(**fields) if fields else text


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
