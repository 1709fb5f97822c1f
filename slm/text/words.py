"""Words per language: Latin-script text splits into lower-case words, Chinese (no spaces) into characters or
character bigrams; stop words per language; the normaliser that makes two spellings of a question equal.

Every module that compares texts by their words (answering, citations, training questions, the leak guard,
abstention, BM25, answer metrics) calls these rather than keeping its own regex."""

from __future__ import annotations

import re
import unicodedata

from slm.text.language import UNKNOWN

# One CJK ideograph or kana/hangul syllable is one token: CJK text has no spaces to split on.
CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_CJK = re.compile(f"[{CJK_CLASS}]")
_TOKEN = re.compile(f"[a-z0-9_]+|[{CJK_CLASS}]")
_CJK_RUN = re.compile(f"[{CJK_CLASS}]+")
# A term keeps its spelling and its identifier shape: `os.path.join`, `f()`, `__init__`.
_TERM = re.compile(r"[A-Za-z_][A-Za-z0-9_.()]*[A-Za-z0-9_)]|[A-Za-z]")

# Function words: what carries no topic. English as the citation matcher has always used it.
_STOP_EN = frozenset(
    "a an and are as at be by can do does for from how i if in is it its of on or that the this to "
    "was what when where which who why will with you your not no yes".split()
)
# Indonesian: the most frequent function words (conjunctions, prepositions, pronouns, question words).
_STOP_ID = frozenset(
    "yang dan di ke dari untuk dengan ini itu adalah ialah tidak pada dalam akan atau juga oleh sebagai dapat "
    "bisa ada karena jika kalau anda kamu kami kita saya mereka dia ia telah sudah lebih saat seperti harus "
    "hanya tersebut secara bahwa apa bagaimana mengapa kenapa kapan dimana di mana apakah sebuah suatu para "
    "agar supaya namun tetapi tapi serta setelah sebelum antara maka pun lah kah nya se belum masih sangat "
    "bila hal cara".split()
)
# Chinese: particles and pronouns that are single characters (the tokens here are characters).
# Chinese: particles, pronouns and question words, one character each; a bigram holding one is no content
# ('是怎', '怎样' in '退货期限是怎样的？' say nothing about returns).
_STOP_ZH = frozenset(
    "的 了 是 在 和 与 及 或 也 就 都 而 着 之 其 这 那 您 你 我 他 她 它 们 吗 呢 吧 啊 个 把 被 从 对 于 为 以 由 所 "
    "如 若 则 怎 么 什 哪 何 请 该 说 样".split()
)
STOP_WORDS: dict[str, frozenset[str]] = {"en": _STOP_EN, "id": _STOP_ID, "zh": _STOP_ZH}


def stop_words(language: str = "en") -> frozenset[str]:
    """The stop words of `language`; an unknown or empty language gets English's (the historical default)."""
    return STOP_WORDS.get(language or "en", _STOP_EN)


def has_cjk(text: str) -> bool:
    return _CJK.search(text) is not None


def is_cjk(token: str) -> bool:
    return bool(token) and _CJK.match(token[0]) is not None


def tokens(text: str) -> list[str]:
    """Lower-case word tokens in order: runs of [a-z0-9_] and single CJK characters. On text without CJK this
    is exactly `re.findall('[a-z0-9_]+', text.lower())`, what every English comparison here always used."""
    return _TOKEN.findall(text.lower())


def cjk_bigrams(run: str) -> list[str]:
    """Overlapping character pairs of a CJK run ('文档是' → '文档', '档是'); a lone character stands alone."""
    return [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]


def units(text: str) -> list[str]:
    """Matching units in order: Latin words, and character bigrams inside each CJK run (Chinese words are
    mostly two characters, so a shared bigram means a shared word far more often than a shared character)."""
    out: list[str] = []
    pos = 0
    lowered = text.lower()
    for match in _CJK_RUN.finditer(lowered):
        out += re.findall("[a-z0-9_]+", lowered[pos : match.start()])
        out += cjk_bigrams(match.group(0))
        pos = match.end()
    out += re.findall("[a-z0-9_]+", lowered[pos:])
    return out


def content_words(text: str, *, stop: frozenset[str] | None = None, min_len: int = 1) -> set[str]:
    """The set of matching units of `text` that are not stop words (Latin words shorter than `min_len` are
    dropped too; CJK bigrams never are). `stop` defaults to every language's stop words."""
    stop = ALL_STOP_WORDS if stop is None else stop
    return {u for u in units(text) if u not in stop and (is_cjk(u) and not (set(u) & stop) or len(u) >= min_len)}


ALL_STOP_WORDS: frozenset[str] = _STOP_EN | _STOP_ID | _STOP_ZH


def terms(text: str) -> list[str]:
    """Latin-script terms in their own spelling, identifiers kept whole (`os.path.join`, `f()`)."""
    return _TERM.findall(text)


def fold(text: str) -> str:
    """Width and accents folded: NFKC (full-width 'ＡＢＣ１' → 'ABC1', '？' → '?'), then accents off Latin
    letters ('café' → 'cafe'); CJK characters stay."""
    text = unicodedata.normalize("NFKC", text)
    out = []
    for ch in text:
        if ch.isascii() or _CJK.match(ch):
            out.append(ch)
            continue
        out.append(unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode("ascii"))
    return "".join(out)


def normalise(text: str) -> str:
    """Lower case, accents and widths folded, punctuation gone, one space between tokens:
    'How do I X?' == 'how do i x', '怎样安装？' == '怎 样 安 装'."""
    return " ".join(tokens(fold(text)))


_SPACE_IN_CJK = re.compile(f"(?<=[{CJK_CLASS}，。！？；：、（）])\\s+(?=[{CJK_CLASS}，。！？；：、（）])")


def collapse_spaces(text: str) -> str:
    """White space runs as one space, and none left between two CJK characters (a wrapped Chinese line
    joined with a space would read '文 档')."""
    return _SPACE_IN_CJK.sub("", " ".join(text.split()))


def language_or(language: str | None, default: str = "en") -> str:
    return language if language and language != UNKNOWN else default
