"""Untrusted text (document passages, questions, chat history) can neither close a passage fence nor
produce a control token of the model's chat template: both are cut out before the prompt is rendered."""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Iterable

# Control tokens of the chat templates in use (ChatML/Qwen/SmolLM `<|im_start|>`, Llama 3 `<|eot_id|>`,
# Phi `<|user|>`, Llama 2 `[INST]`/`<<SYS>>`, Gemma `<start_of_turn>`, sentencepiece `<s>`), matched on a
# compatibility-folded view of the text so full-width look-alikes (`＜|im_start|＞`) are caught too.
_GENERIC_CONTROL = (
    r"<\|[^<>|\n]{1,64}\|>",
    r"</?s>",
    r"\[/?INST\]",
    r"<</?SYS>>",
    r"<(?:start|end)_of_turn>",
    r"<(?:bos|eos|pad|unk|mask|cls|sep)>",
)
_FENCE = r"</?\s*passages?\b[^>]*>"
_BASE_PATTERN = "|".join((_FENCE, *_GENERIC_CONTROL))
# Literal control strings a template spells out (`<|im_start|>`, `<start_of_turn>`, `[INST]` ...).
_TEMPLATE_TOKEN = re.compile(r"<\|[^<>|\s]{1,64}\|>|<[a-z_]{2,32}>|\[/?[A-Z_]{3,16}\]|<</?[A-Z]{3,8}>>")


def _fold(text: str) -> tuple[str, list[int]]:
    """NFKC per character (so `＜／ｐａｓｓａｇｅ＞` reads `</passage>`), with each folded character's origin."""
    folded: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        piece = unicodedata.normalize("NFKC", ch) if ord(ch) > 127 else ch
        folded.append(piece)
        origin.extend([i] * len(piece))
    return "".join(folded), origin


@functools.lru_cache(maxsize=64)
def _pattern(extra: tuple[str, ...]) -> re.Pattern[str]:
    literals = sorted({unicodedata.normalize("NFKC", t) for t in extra if t and t.strip()}, key=len, reverse=True)
    parts = [re.escape(t) for t in literals] + [_BASE_PATTERN]
    return re.compile("|".join(parts), re.IGNORECASE)


def neutralize(text: str, control_tokens: Iterable[str] = ()) -> str:
    """`text` with every passage fence and chat-template control token (the generic ones above plus
    `control_tokens`, e.g. a tokenizer's special tokens) replaced by a space, and NUL bytes dropped.
    Everything else is kept exactly as written (CJK punctuation included)."""
    text = text.replace("\x00", "")
    pattern = _pattern(tuple(control_tokens))
    folded, origin = _fold(text)
    spans = [(origin[m.start()], origin[m.end() - 1] + 1) for m in pattern.finditer(folded) if m.end() > m.start()]
    if not spans:
        return text
    out: list[str] = []
    at = 0
    for start, end in spans:
        if start < at:  # overlaps the previous cut
            start = at
        out.append(text[at:start])
        out.append(" ")
        at = max(at, end)
    out.append(text[at:])
    result = "".join(out)
    # A cut can join two halves into a new token ("<|im_<|x|>start|>"): repeat until nothing is left.
    return neutralize(result, control_tokens) if result != text else result


def template_control_tokens(template: str | None) -> tuple[str, ...]:
    """The control strings a chat template writes itself: untrusted content must never contain them."""
    return tuple(sorted(set(_TEMPLATE_TOKEN.findall(template or ""))))


def tokenizer_control_tokens(tokenizer: object) -> tuple[str, ...]:
    """A transformers tokenizer's special and added control tokens plus those its chat template writes."""
    found: set[str] = set(getattr(tokenizer, "all_special_tokens", None) or ())
    for added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(added, "special", False):
            found.add(str(getattr(added, "content", added)))
    template = getattr(tokenizer, "chat_template", None)
    found.update(template_control_tokens(template if isinstance(template, str) else None))
    return tuple(sorted(found))


def neutralize_messages(messages: list[dict[str, str]], control_tokens: Iterable[str] = ()) -> list[dict[str, str]]:
    """Chat messages whose contents cannot forge a turn: every content neutralised, roles untouched."""
    tokens = tuple(control_tokens)
    return [{**m, "content": neutralize(str(m.get("content", "")), tokens)} for m in messages]
