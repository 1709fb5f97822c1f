"""Rule-written training questions for Chinese and Indonesian chunks (no model): sentences split at 。！？,
questions about the heading in the chunk's language, accepted by the same filters."""


from slm.training.questions import QuestionPolicy, content_words, question_problem, sentences
from slm.training.rule_questions import from_heading, rule_questions
from slm.types import Chunk

ZH = Chunk(id="zh.html::0001", doc_id="zh.html", text="退货期限\n顾客可以在收到商品后三十天内申请退货。退款将退回原支付方式！",
           start=0, end=40, section=("退货政策", "退货期限"), title="退货政策", language="zh")
ID = Chunk(id="id.html::0001", doc_id="id.html", start=0, end=80, section=("Cuti tahunan",), title="Kebijakan",
           text="Cuti tahunan\nKaryawan penuh waktu mendapat dua puluh lima hari cuti tahunan yang dibayar.",
           language="id")


def test_chinese_sentences_split_at_full_stops():
    assert sentences(ZH.text) == ["退货期限顾客可以在收到商品后三十天内申请退货。", "退款将退回原支付方式！"]


def test_heading_questions_in_the_chunk_language():
    assert from_heading("退货期限", 0, "zh") == "关于退货期限，文档是怎么说的？"
    assert from_heading("Cuti tahunan", 0, "id") == "Apa yang dikatakan dokumentasi tentang Cuti tahunan?"
    assert from_heading("Annual leave", 0, "en") == from_heading("Annual leave", 0)  # English as before


def test_rule_questions_pass_the_filters():
    policy = QuestionPolicy()
    for chunk in (ZH, ID):
        written = rule_questions(chunk, sentences(chunk.text), chunk.section[-1])
        assert written and written[-1].kind == "heading"
        assert question_problem(written[-1].text, chunk, set(), policy) is None, written[-1].text
    assert {"退货", "期限"} <= set(content_words("退货期限是多久？"))
