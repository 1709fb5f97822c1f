"""Chunking Chinese text: sentence ends 。！？, sizes in English-equivalent characters, languages per chunk."""

from slm.kb.chunking import CJK_CHAR_WEIGHT, chunk_document
from slm.kb.documents import document_language
from slm.types import Document, Section

SENTENCE = "Debian 是一个自由的操作系统，由全球志愿者共同开发和维护。"  # 30 characters, ends with 。


def _doc(text, language, metadata=None):
    return Document(id="d.html", title="T", text=text, source="d.html", content_hash="h",
                    sections=(Section(("T",), "t", 0, len(text)),), metadata=metadata or {}, language=language)


def test_chinese_chunks_are_sized_by_characters_and_end_at_sentence_stops():
    text = SENTENCE * 40  # 1200 characters, no spaces between sentences
    chunks = chunk_document(_doc(text, "zh"), chunk_chars=600, overlap=60)
    limit = 600 // CJK_CHAR_WEIGHT
    assert len(chunks) >= 1200 // limit
    for c in chunks:
        assert c.text == text[c.start : c.end]
        assert len(c.text) <= limit
        assert c.text.endswith("。"), c.text[-10:]
        assert c.language == "zh"


def test_english_chunk_sizes_are_unchanged():
    text = "Debian is a free operating system made by volunteers. " * 40
    chunks = chunk_document(_doc(text.strip(), "en"), chunk_chars=600, overlap=60)
    assert max(len(c.text) for c in chunks) > 600 // CJK_CHAR_WEIGHT
    assert all(c.language == "en" for c in chunks)


def test_mixed_document_languages_per_chunk_and_the_sidecar_override():
    zh = SENTENCE * 12
    en = "This part of the page is written in English for the people who read it. " * 6
    text = zh + "\n\n" + en
    doc = _doc(text, document_language(text, {}))
    assert doc.language == "zh"
    chunks = chunk_document(doc, chunk_chars=600, overlap=0)
    assert {c.language for c in chunks} == {"zh", "en"}
    forced = _doc(text, document_language(text, {"language": "id"}), {"language": "id"})
    assert forced.language == "id"
    assert {c.language for c in chunk_document(forced, chunk_chars=600, overlap=0)} == {"id"}
