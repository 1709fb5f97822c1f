"""The one glob dialect for paths and document ids (access rules, `exclude_docs`, source selection):
`**` crosses folders, `*` and `?` stay inside one path segment, `**/x` also matches `x`."""

from __future__ import annotations

import functools
import re
from typing import Sequence


@functools.lru_cache(maxsize=512)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def match_glob(pattern: str, rel_path: str) -> bool:
    """Whether a POSIX path relative to the corpus root matches a glob such as `hr/**` or `**/*.md`."""
    return _glob_regex(pattern.strip().lstrip("/")).match(rel_path.lstrip("/")) is not None


def document_matches(doc_id: str, source: str, patterns: Sequence[str]) -> bool:
    """Whether a document (by its id or its source path) matches any of `patterns`."""
    return any(match_glob(p, doc_id) or (source and match_glob(p, source)) for p in patterns)
