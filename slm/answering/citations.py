"""Turn [n] markers in an answer into Citation objects pointing at the exact passage text they rest on.

A marker that names no passage is removed (never shown); repeated markers give one citation.
`MarkerFilter` does the same removal on a stream, so streamed text never shows a bad marker either.
"""

from __future__ import annotations

import re
from typing import Sequence

from slm.text.words import collapse_spaces, content_words, units
from slm.types import Citation, Hit

MARKER_RE = re.compile(r"\[\s*(\d+(?:\s*[,;]\s*\d+)*)\s*\]")
_SPACED_MARKER_RE = re.compile(r"([ \t]*)\[\s*(\d+(?:\s*[,;]\s*\d+)*)\s*\]")
_OPEN_MARKER_RE = re.compile(r"\[\s*(\d+(?:\s*[,;]\s*\d*)*)?\s*$")  # a marker still being written
# a sentence ends at . ! ? before white space, at a CJK full stop 。！？ (no space follows those), or at a blank
# line / heading break (wrapped lines are not ends)
_SENTENCE_RE = re.compile(r"(?:[^.!?。！？\n]|[.!?](?!\s)|\n(?!\s*\n))+(?:[.!?]+(?=\s|$)|[。！？]+|\n\s*\n|$)")
_CJK_STOPS = "。！？"
SNIPPET_CHARS = 300


def _numbers(group: str) -> list[int]:
    return [int(n) for n in re.split(r"\s*[,;]\s*", group.strip()) if n]


def _rewrite_markers(text: str, valid: int) -> str:
    """Keep only the numbers 1..valid inside markers; drop markers left empty."""

    def keep(match: re.Match) -> str:
        good = [n for n in dict.fromkeys(_numbers(match.group(2))) if 1 <= n <= valid]
        return f"{match.group(1)}[{', '.join(map(str, good))}]" if good else ""

    return _SPACED_MARKER_RE.sub(keep, text)


def _tidy(text: str) -> str:
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def strip_markers(text: str) -> str:
    """The text with every [n] marker removed (e.g. old turns of a conversation)."""
    return _tidy(_rewrite_markers(text, 0))


def cited_numbers(text: str, valid: int) -> list[int]:
    """Passage numbers named by markers, in order of first appearance, within 1..valid."""
    seen: dict[int, None] = {}
    for match in MARKER_RE.finditer(text):
        for n in _numbers(match.group(1)):
            if 1 <= n <= valid:
                seen.setdefault(n)
    return list(seen)


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _words(text: str) -> set[str]:
    """Content words (Latin, stemmed) and CJK character bigrams: what a sentence shares with its source."""
    return {_stem(w) for w in content_words(text, min_len=2)}


def _word_pairs(text: str) -> set[tuple[str, str]]:
    """Adjacent word pairs, stop words kept: the phrasing a copied sentence shares with its source, which a
    passage that merely uses the same words (in other sentences, in another order) does not."""
    tokens = [_stem(w) for w in units(text)]
    return set(zip(tokens, tokens[1:]))


def best_snippet(chunk_text: str, reference: str, max_chars: int = SNIPPET_CHARS) -> tuple[int, int]:
    """Span (within the chunk) of the sentence(s) that best overlap `reference`; else the chunk start."""
    ref = _words(reference)
    best, best_score = None, 0.0
    sentences = [(m.start(), m.end()) for m in _SENTENCE_RE.finditer(chunk_text) if m.group().strip()]
    for i, (start, end) in enumerate(sentences):
        words = _words(chunk_text[start:end])
        if not words:
            continue
        score = len(words & ref) - len(words) / 1000  # most shared words; the shorter sentence on a tie
        if score > best_score:
            best, best_score = i, score
    if best is None:
        start, end = 0, min(len(chunk_text), max_chars)
    else:
        start, end = sentences[best]
        # grow into the next sentence while it fits, so a short hit keeps its context
        j = best + 1
        while j < len(sentences) and sentences[j][1] - start <= max_chars:
            end = sentences[j][1]
            j += 1
        end = min(end, start + max_chars)
    while start < end and chunk_text[start].isspace():
        start += 1
    while end > start and chunk_text[end - 1].isspace():
        end -= 1
    return start, end


def _snippet_text(chunk_text: str, start: int, end: int) -> str:
    text = collapse_spaces(chunk_text[start:end])
    return text + (" …" if end < len(chunk_text.rstrip()) and not text.endswith((".", "!", "?", *_CJK_STOPS)) else "")


def citation_for(marker: int, hit: Hit, reference: str) -> Citation:
    """A citation of `hit` under `marker`; the span is the quoted snippet's place in the document."""
    chunk = hit.chunk
    start, end = best_snippet(chunk.text, reference)
    return Citation(
        marker=marker,
        chunk_id=chunk.id,
        doc_id=chunk.doc_id,
        title=chunk.title,
        source=chunk.source,
        section=chunk.section,
        anchor=chunk.anchor,
        page=chunk.page,
        start=chunk.start + start,
        end=chunk.start + end,
        snippet=_snippet_text(chunk.text, start, end),
    )


def _claims_by_marker(text: str) -> dict[int, str]:
    """For each cited number, the answer sentence(s) that carry its marker (what the passage supports)."""
    claims: dict[int, list[str]] = {}
    for sentence in _SENTENCE_RE.findall(text):
        for match in MARKER_RE.finditer(sentence):
            for n in _numbers(match.group(1)):
                claims.setdefault(n, []).append(MARKER_RE.sub(" ", sentence))
    return {n: " ".join(parts) for n, parts in claims.items()}


def parse_citations(text: str, passages: Sequence[Hit]) -> tuple[str, tuple[Citation, ...]]:
    """Clean `text` of markers that name no passage and cite the passages the rest name (1-based)."""
    clean = _tidy(_rewrite_markers(text, len(passages)))
    claims = _claims_by_marker(clean)
    whole = MARKER_RE.sub(" ", clean)
    citations = tuple(
        citation_for(n, passages[n - 1], claims.get(n) or whole) for n in cited_numbers(clean, len(passages))
    )
    return clean, citations


def _insert_marker(sentence: str, number: int) -> str:
    body = sentence.rstrip()
    tail = sentence[len(body):]
    end = len(body.rstrip(".!?" + _CJK_STOPS))
    return f"{body[:end]} [{number}]{body[end:]}{tail}"


def attribute(text: str, passages: Sequence[Hit], question: str = "", *, min_share: float = 0.6) -> str:
    """Add [n] after each unmarked answer sentence whose new words (not the question's) mostly occur in
    passage n: attribution checked by overlap, for models that answer from a passage but forget to cite it."""
    asked = _words(question)
    out = []
    for sentence in _SENTENCE_RE.findall(text):
        novel = _words(sentence) - asked
        if MARKER_RE.search(sentence) or len(novel) < 2:
            out.append(sentence)
            continue
        best, best_shared = 0, 0
        for n, hit in enumerate(passages, start=1):
            shared = len(novel & _words(hit.chunk.text))
            if shared > best_shared:
                best, best_shared = n, shared
        supported = best and best_shared >= 2 and best_shared / len(novel) >= min_share
        out.append(_insert_marker(sentence, best) if supported else sentence)
    return "".join(out)


_SENTENCE_END = re.compile(r"[.!?](?=\s)|[。！？]|\n")


def _sentence_before(context: str) -> str:
    """The sentence a marker written at the end of `context` belongs to (markers removed)."""
    body = MARKER_RE.sub(" ", context).rstrip()
    if body.endswith((".", "!", "?", *_CJK_STOPS)):  # "... the text. [2]": the marker closes the sentence before it
        body = body[:-1]
    ends = list(_SENTENCE_END.finditer(body))
    return body[ends[-1].end():] if ends else body


def _since_last_marker(context: str) -> str:
    """The text a marker written at the end of `context` covers when its own sentence says too little: all
    of it since the previous marker."""
    markers = list(MARKER_RE.finditer(context))
    return context[markers[-1].end():] if markers else context


class MarkerVerifier:
    """Re-points a marker at the passage its sentence comes from, when the passage it names does not support
    the sentence and another passage clearly does.

    Small models often copy a sentence from one passage and write another's number. Two kinds of evidence, the
    stronger first: the sentence's phrasing (adjacent word pairs not in the question: a copy shares them with
    its source), then its words (for paraphrase). A passage "holds" a sentence when it has at least `min_share`
    of them; the marker moves only when the named passage does not hold it and another holds `margin` more.
    Works on a stream: each complete marker is judged against the sentence written before it, so streamed and
    final text agree.
    """

    def __init__(self, passages: Sequence[Hit], question: str = "", *, min_share: float = 0.6, margin: float = 0.2):
        self.passages = passages
        self.passage_words = [_words(hit.chunk.text) for hit in passages]  # once, not per marker
        self.passage_pairs = [_word_pairs(hit.chunk.text) for hit in passages]
        self.asked = _words(question)
        self.asked_pairs = _word_pairs(question)
        self.min_share = min_share
        self.margin = margin
        self.written = ""
        self.changed = 0

    def feed(self, chunk: str) -> str:
        out: list[str] = []
        pos = 0
        for match in MARKER_RE.finditer(chunk):
            out.append(chunk[pos : match.start()])
            numbers = [n for n in _numbers(match.group(1)) if 1 <= n <= len(self.passages)]
            written = self.written + "".join(out)
            fixed = self._repoint(_sentence_before(written), numbers)
            if fixed is None:  # too short to judge ("The hash … [2]"): the text since the last marker
                fixed = self._repoint(_since_last_marker(written), numbers)
            fixed = numbers if fixed is None else fixed
            self.changed += fixed != numbers
            out.append(f"[{', '.join(map(str, fixed))}]" if fixed else match.group(0))
            pos = match.end()
        out.append(chunk[pos:])
        text = "".join(out)
        self.written += text
        return text

    def _repoint(self, sentence: str, numbers: list[int]) -> list[int] | None:
        """The passage numbers the sentence should carry; None if it is too short to say."""
        if not numbers:
            return numbers
        judged = False
        for novel, held_by in ((_word_pairs(sentence) - self.asked_pairs, self.passage_pairs),
                               (_words(sentence) - self.asked, self.passage_words)):
            if len(novel) < 3:
                continue
            judged = True
            shares = [len(novel & held) / len(novel) for held in held_by]
            held = max(shares[n - 1] for n in numbers)
            if held >= self.min_share:
                return numbers  # the named passage holds the sentence
            best = max(range(len(shares)), key=lambda i: shares[i])
            if shares[best] >= self.min_share and shares[best] - held >= self.margin:
                return [best + 1]
        return numbers if judged else None


def verify_markers(text: str, passages: Sequence[Hit], question: str = "", **kwargs) -> tuple[str, int]:
    """`MarkerVerifier` over a whole text: (text with markers re-pointed, how many were)."""
    verifier = MarkerVerifier(passages, question, **kwargs)
    return verifier.feed(text), verifier.changed


def nearest_sources(passages: Sequence[Hit], reference: str, limit: int = 3) -> tuple[Citation, ...]:
    """Citations for the closest passages, for answers that abstain but still point somewhere."""
    return tuple(citation_for(i, hit, reference) for i, hit in enumerate(passages[:limit], start=1))


class MarkerFilter:
    """Streaming form of the marker clean-up: holds back an unfinished `[..` until it closes."""

    def __init__(self, valid: int):
        self.valid = valid
        self.pending = ""

    def feed(self, delta: str) -> str:
        self.pending += delta
        open_at = self.pending.rfind("[")
        if open_at >= 0 and "]" not in self.pending[open_at:] and _OPEN_MARKER_RE.fullmatch(self.pending[open_at:]):
            ready, self.pending = self.pending[:open_at], self.pending[open_at:]
        else:
            ready, self.pending = self.pending, ""
        # trailing blanks wait too: if a dropped marker follows, they go with it
        kept = ready.rstrip(" \t")
        ready, self.pending = kept, ready[len(kept):] + self.pending
        return _rewrite_markers(ready, self.valid)

    def flush(self) -> str:
        out, self.pending = _rewrite_markers(self.pending, self.valid), ""
        return out
