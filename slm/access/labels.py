"""Audience labels: which groups of people may see a document, and whether a caller may."""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable, Mapping, Sequence

from slm.config import AccessSettings
from slm.access.globs import match_glob

AUDIENCE_KEYS = ("audience", "audiences")


def normalize_label(value: object) -> str:
    """The one form a label is compared in, everywhere: Unicode NFKC, surrounding space and quotes
    stripped, case-folded (`Public`, ` public ` and `ＰＵＢＬＩＣ` are one label). Idempotent."""
    return unicodedata.normalize("NFKC", str(value)).strip().strip("'\"").strip().casefold()


def normalize_labels(values: Iterable[object] | None) -> frozenset[str] | None:
    """A caller's labels in normal form (empty ones dropped); None (trusted) stays None."""
    if values is None:
        return None
    return frozenset(label for label in (normalize_label(v) for v in values) if label)


def parse_labels(value: object) -> tuple[str, ...]:
    """Labels from a list, or a string such as `hr`, `hr, managers` or `[hr, managers]`;
    normalised (`normalize_label`), duplicates dropped, order kept."""
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
        label = normalize_label(item)
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
    wanted = normalize_labels(caller)
    return any(normalize_label(label) in wanted for label in doc_audiences)


def may_use_adapter(adapter_audiences: Sequence[str] | None, caller: frozenset[str] | None) -> bool:
    """The one rule for "may this caller be answered by this adapter?": an adapter has learned its
    training documents, so the caller must hold every audience label they carried. A trusted caller
    (None) and the base model (no adapter: None) always pass; an adapter whose audiences are recorded
    as empty passes trusted callers only."""
    if caller is None or adapter_audiences is None:
        return True
    needed = {normalize_label(label) for label in adapter_audiences}
    return bool(needed) and needed <= normalize_labels(caller)
