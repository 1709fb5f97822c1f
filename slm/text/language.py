"""Which language a text is written in: en, zh, id or other, by a fast offline heuristic (script share, then
function words), good enough to pick an analyser, an embedder and a message table."""

from __future__ import annotations

import re

LANGUAGES = ("en", "zh", "id")
OTHER = "other"
UNKNOWN = ""  # not enough text to say (a caller falls back to its own default)

# Han ideographs (and their punctuation block); kana and hangul are other CJK languages.
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA_HANGUL = re.compile(r"[\u3040-\u30ff\uac00-\ud7af]")
_LATIN_WORD = re.compile(r"[a-z]+")
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)

# Frequent function words that the other language does not use (so one hit is evidence).
_EN = frozenset(
    "the of and to is in that it for are was with as on be by this from or an not have has which you your "
    "can what how why when where do does will if there their they we use used".split()
)
_ID = frozenset(
    "yang dan di ke dari untuk dengan ini itu adalah tidak pada dalam akan atau juga oleh sebagai dapat bisa "
    "ada karena jika anda kami kita telah sudah lebih saat seperti harus hanya tersebut secara bahwa apa "
    "bagaimana mengapa kenapa kapan dimana apakah berapa siapa manakah sebuah suatu para agar namun tetapi "
    "serta setelah sebelum antara saya kami kita mereka "
    "menggunakan digunakan paket sistem berkas perintah".split()
)
_ZH_MIN_SHARE = 0.2  # of letters: a Chinese page full of English commands and paths is still Chinese
_KANA_MIN_SHARE = 0.1  # Japanese writes kana between its kanji; Chinese never does


def detect_language(text: str, *, default: str = UNKNOWN) -> str:
    """'zh' when Han characters are at least a fifth of the letters; else 'id' or 'en' by which language's
    function words occur more; 'other' for other scripts; `default` when the text says too little."""
    sample = text[:4000]  # the opening is enough, and keeps a 1 MB document cheap
    letters = len(_LETTER.findall(sample))
    if letters == 0:
        return default
    if len(_KANA_HANGUL.findall(sample)) / letters >= _KANA_MIN_SHARE:
        return OTHER  # Japanese (kana among its kanji) or Korean
    if len(_HAN.findall(sample)) / letters >= _ZH_MIN_SHARE:
        return "zh"
    words = _LATIN_WORD.findall(sample.lower())
    if not words:
        return OTHER if letters > 20 else default
    en = sum(w in _EN for w in words)
    ind = sum(w in _ID for w in words)
    if en == ind:
        if en == 0 and len(words) >= 30:
            return OTHER  # a long text with no function word of either: some other Latin-script language
        return default
    return "id" if ind > en else "en"


def normalise_language(value: str | None) -> str:
    """A `language:` value from a sidecar or front matter ('zh-CN', 'Chinese', 'id_ID', 'EN') as en/zh/id/other."""
    key = (value or "").strip().lower().replace("_", "-")
    if not key:
        return UNKNOWN
    aliases = {"chinese": "zh", "mandarin": "zh", "indonesian": "id", "bahasa": "id", "english": "en", "in": "id"}
    key = aliases.get(key, key.split("-")[0])
    return key if key in LANGUAGES else OTHER
