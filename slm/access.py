"""Audience labels: which groups of people may see a document, and whether a caller may."""

from __future__ import annotations

import functools
import re
from typing import Mapping, Sequence

from slm.config import AccessSettings

AUDIENCE_KEYS = ("audience", "audiences")


@functools.lru_cache(maxsize=512)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """`**` crosses folders, `*` and `?` stay inside one path segment; `**/x` also matches `x`."""
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
    return _glob_regex(pattern.strip().lstrip("/")).match(rel_path) is not None


def parse_labels(value: object) -> tuple[str, ...]:
    """Labels from a list, or a string such as `hr`, `hr, managers` or `[hr, managers]`;
    lower-cased, stripped, duplicates dropped, order kept."""
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[object] = re.split(r"[,\s]+", value.strip().strip("[]"))
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    else:
        items = [value]
    labels: list[str] = []
    for item in items:
        label = str(item).strip().strip("'\"").lower()
        if label and label not in labels:
            labels.append(label)
    return tuple(labels)


def audiences_for(rel_path: str, metadata: Mapping[str, str], access: AccessSettings) -> tuple[str, ...]:
    """A document's labels: its own `audience:` (sidecar or front matter) when given and non-empty,
    else the first path rule that matches, else the default audiences."""
    for key in AUDIENCE_KEYS:
        labels = parse_labels(metadata.get(key))
        if labels:
            return labels
    for pattern, rule_labels in access.rules.items():
        if match_glob(pattern, rel_path):
            return parse_labels(rule_labels)
    return parse_labels(access.default_audiences)


def can_see(doc_audiences: Sequence[str], caller: frozenset[str] | None) -> bool:
    """A trusted caller (None) sees everything; otherwise the caller needs one label in common."""
    if caller is None:
        return True
    wanted = {label.strip().lower() for label in caller}
    return any(label.strip().lower() in wanted for label in doc_audiences)
