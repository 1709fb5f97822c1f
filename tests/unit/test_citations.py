"""Citation markers → Citation objects; bad markers vanish, also from a stream."""

from __future__ import annotations

import pytest

from slm.answering.citations import MarkerFilter, best_snippet, nearest_sources, parse_citations
from slm.types import Chunk, Hit

DOC_A = "Intro line. " * 3 + "Refunds are accepted within 30 days of purchase. A receipt is required for every refund."
DOC_B = "Annual leave is 25 days. Requests go through the HR portal."


def _hit(doc_id: str, text: str, start: int = 0, **extra) -> Hit:
    chunk = Chunk(id=f"{doc_id}::0000", doc_id=doc_id, text=text, start=start, end=start + len(text),
                  title=doc_id.title(), source=f"{doc_id}.md", **extra)
    return Hit(chunk=chunk, score=1.0, dense=0.8)


@pytest.fixture
def passages():
    return [
        _hit("refunds", DOC_A, start=100, section=("Policies", "Refunds"), anchor="refunds"),
        _hit("leave", DOC_B, page=3),
    ]


def test_single_and_grouped_markers_map_to_passages(passages):
    text, cites = parse_citations("Refunds within 30 days [1]. Leave is 25 days [1, 2].", passages)
    assert text == "Refunds within 30 days [1]. Leave is 25 days [1, 2]."
    assert [c.marker for c in cites] == [1, 2]
    first, second = cites
    assert (first.chunk_id, first.doc_id, first.source, first.section, first.anchor) == (
        "refunds::0000", "refunds", "refunds.md", ("Policies", "Refunds"), "refunds")
    assert second.page == 3 and second.title == "Leave"


def test_adjacent_markers_and_repeats_give_one_citation_each(passages):
    _, cites = parse_citations("A [2][1]. B [1]. C [2] [2].", passages)
    assert [c.marker for c in cites] == [2, 1]


def test_marker_naming_no_passage_is_removed(passages):
    text, cites = parse_citations("Refunds take 30 days [3]. Leave [0] is 25 days [2, 9].", passages)
    assert "[3]" not in text and "[0]" not in text and "9" not in text
    assert text == "Refunds take 30 days. Leave is 25 days [2]."
    assert [c.marker for c in cites] == [2]


def test_no_valid_marker_gives_no_citations(passages):
    text, cites = parse_citations("Refunds take 30 days [5].", passages)
    assert cites == () and text == "Refunds take 30 days."


def test_snippet_is_the_best_overlapping_sentence_and_its_span_is_in_the_document(passages):
    _, (cite,) = parse_citations("You need a receipt for a refund [1].", passages)
    assert cite.snippet.startswith("A receipt is required for every refund")
    document_text = " " * 100 + DOC_A  # the chunk starts at 100 in its document
    assert document_text[cite.start:cite.end] == cite.snippet.rstrip(" …")


def test_snippet_falls_back_to_the_chunk_start():
    start, end = best_snippet("x" * 1000, "nothing in common")
    assert (start, end) == (0, 300)


def test_nearest_sources_lists_top_passages(passages):
    cites = nearest_sources(passages, "leave", limit=1)
    assert [(c.marker, c.doc_id) for c in cites] == [(1, "refunds")]


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_marker_filter_on_a_stream_matches_the_final_text(passages, size):
    raw = "Refunds [1] take 30 days [7]; leave [1, 2] [12] is 25 [2][3]. List [a] stays."
    filt = MarkerFilter(valid=len(passages))
    pieces = [filt.feed(raw[i:i + size]) for i in range(0, len(raw), size)] + [filt.flush()]
    streamed = "".join(pieces)
    assert "[7]" not in streamed and "[12]" not in streamed and "[3]" not in streamed
    assert "[1]" in streamed and "[1, 2]" in streamed and "[a]" in streamed
    clean, _ = parse_citations(raw, passages)
    assert " ".join(streamed.split()) == clean


def test_snippet_ignores_line_wrapping_and_prefers_the_sentence_sharing_most_words():
    text = ("Eligibility\n\nA customer may return any product within 30 days of delivery for a full refund. The product\n"
            "must be unused and in its original packaging. Gift cards cannot be\nrefunded.")
    start, end = best_snippet(text, "How many days do customers have to return a product?")
    assert text[start:].startswith("A customer may return any product within 30 days")
    assert "\n\n" not in text[start:end]


def test_attribution_marks_only_sentences_a_passage_supports(passages):
    from slm.answering.citations import attribute

    text = ("You need a receipt for every refund, it is required. Refunds take 90 days by carrier pigeon.\n"
            "Annual leave is twenty-five days, requested in the HR portal.")
    marked = attribute(text, passages, question="What about refunds?")
    assert "You need a receipt for every refund, it is required [1]." in marked
    assert "Refunds take 90 days by carrier pigeon." in marked  # its new words are in no passage
    assert "HR portal [2]." in marked
    # a sentence that only repeats the question's words is not evidence of anything
    assert attribute("Refunds are accepted.", passages, question="Are refunds accepted?") == "Refunds are accepted."


def test_a_marker_naming_the_wrong_passage_is_re_pointed_at_the_one_quoted(passages):
    from slm.answering.citations import verify_markers

    text, changed = verify_markers("Annual leave is 25 days and requests go through the HR portal [1].", passages,
                                   "How much leave do I get?")
    assert text == "Annual leave is 25 days and requests go through the HR portal [2]." and changed == 1


def test_a_copied_sentence_goes_to_its_source_even_when_another_passage_has_the_same_words():
    from slm.answering.citations import verify_markers

    # Both passages use the words of the answer; only the second has its phrasing, and the model copied it.
    glossary = _hit("glossary", "Key: a value stored in a dictionary. Hash: a code computed for each object. "
                                "Function: code that returns a value. Each built-in has a code stored.")
    design = _hit("design", "Dictionaries work by computing a hash code for each key stored in the dictionary "
                            "using the hash() built-in function.")
    copied = "Dictionaries work by computing a hash code for each key stored in the dictionary [1]."
    text, changed = verify_markers(copied, [glossary, design], "How are dictionaries implemented?")
    assert text == copied.replace("[1]", "[2]") and changed == 1
    # a paraphrase that the named passage holds word for word keeps its marker
    own_words = "A dictionary key has a hash code computed for each object [1]."
    assert verify_markers(own_words, [glossary, design], "What is a key?") == (own_words, 0)


def test_a_marker_after_a_fragment_is_judged_on_the_text_since_the_previous_marker(passages):
    from slm.answering.citations import verify_markers

    # "The hash …" alone says too little; the quoted sentences before it (no marker of their own) decide
    text = "Annual leave is 25 days. Requests go through the HR portal. The form … [1]"
    assert verify_markers(text, passages) == (text.replace("[1]", "[2]"), 1)
    # only the text after the previous marker counts: here the fragment's span is too short to judge
    marked = "Annual leave is 25 days [2]. The form … [1]"
    assert verify_markers(marked, passages) == (marked, 0)


def test_supported_unsupported_and_short_sentences_keep_their_markers(passages):
    from slm.answering.citations import verify_markers

    right = "Refunds are accepted within 30 days of purchase [1]."
    nowhere = "Penguins migrate across glaciers every winter season [2]."  # no passage holds it: not ours to move
    short = "Yes, 30 days [2]."
    for text in (right, nowhere, short):
        assert verify_markers(text, passages) == (text, 0)


def test_the_verifier_works_on_a_stream_marker_after_the_period(passages):
    from slm.answering.citations import MarkerVerifier

    verifier = MarkerVerifier(passages)
    pieces = ["Refunds are accepted within ", "30 days of purchase. ", "[2]", " Annual leave is 25 days", " [2]."]
    out = "".join(verifier.feed(p) for p in pieces)
    assert out == "Refunds are accepted within 30 days of purchase. [1] Annual leave is 25 days [2]."
    assert verifier.changed == 1
