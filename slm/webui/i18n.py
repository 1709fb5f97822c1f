"""The chat's static strings in English, Simplified Chinese and Indonesian, for Gradio's I18n (the browser's
locale picks; English where it asks for another)."""

from __future__ import annotations

from typing import Any

# key -> language -> text; the keys are what app.py passes to `i18n(...)`.
UI_STRINGS: dict[str, dict[str, str]] = {
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
}
# Gradio looks a browser locale up as given ('zh-CN') and by its language ('zh').
_LOCALES = {"en": ("en",), "zh": ("zh", "zh-CN", "zh-Hans"), "id": ("id",)}


def translations() -> dict[str, dict[str, str]]:
    """locale -> key -> text, the shape `gr.I18n(**translations())` takes."""
    out: dict[str, dict[str, str]] = {}
    for language, locales in _LOCALES.items():
        table = {key: texts[language] for key, texts in UI_STRINGS.items()}
        for locale in locales:
            out[locale] = table
    return out


def gradio_i18n() -> Any:
    import gradio as gr

    return gr.I18n(**translations())
