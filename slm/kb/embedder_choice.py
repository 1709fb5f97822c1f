"""Which embedder a knowledge base gets when `embedder.model` is `auto`: MiniLM for an all-English KB (it
measures better on English), multilingual e5 as soon as any chunk is Chinese or Indonesian (MiniLM is
English-only), so a mixed KB gets e5 for all its chunks (one vector space per index)."""

from __future__ import annotations

from typing import Iterable

from slm.config import DEFAULT_EMBEDDER
from slm.kb.embedding_e5 import E5_SPEC

AUTO = "auto"
MULTILINGUAL = frozenset({"zh", "id"})


def choose_embedder(configured: str, languages: Iterable[str]) -> str:
    """The concrete embedder spec: `configured` itself unless it is `auto`."""
    if configured != AUTO:
        return configured
    return E5_SPEC if MULTILINGUAL & set(languages) else DEFAULT_EMBEDDER
