"""Read evaluation questions from JSONL (one JSON object a line); bad lines are reported, not fatal."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from slm.errors import ConfigError
from slm.types import QAExample


@dataclass(frozen=True)
class QAFile:
    """One loaded question file: what came in, what was skipped and why."""

    path: str
    sha256: str
    lines: int
    examples: tuple[QAExample, ...]
    bad_lines: tuple[str, ...]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        raise ValueError(f"expected text, got {type(value).__name__}")
    text = str(value).strip()
    return text or None


def _answerable(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise ValueError(f"'answerable' must be true or false, got {value!r}")


def parse_line(raw: str, *, default_id: str) -> QAExample:
    """One JSONL line as a QAExample; raises ValueError saying what is wrong with it."""
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    question = _text(obj.get("question"))
    if not question:
        raise ValueError("missing or empty 'question'")
    source = _text(obj.get("source"))
    anchor = _text(obj.get("anchor"))
    if anchor and anchor.startswith("#"):
        anchor = anchor[1:] or None
    if source and "#" in source and not anchor:  # "page.html#anchor" written in one field
        source, _, anchor = source.partition("#")
        anchor = anchor or None
    return QAExample(
        question=question,
        answer=_text(obj.get("answer")) or "",
        source=source,
        anchor=anchor,
        answerable=_answerable(obj.get("answerable")),
        id=_text(obj.get("id")) or default_id,
    )


def load_qa(path: str | Path) -> tuple[list[QAExample], list[str]]:
    """Questions from a JSONL file, and one message per bad line (`file:line: reason`)."""
    loaded = load_qa_file(path)
    return list(loaded.examples), list(loaded.bad_lines)


def load_qa_file(path: str | Path) -> QAFile:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"question file not found: {path}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    examples: list[QAExample] = []
    bad: list[str] = []
    lines = text.splitlines()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            examples.append(parse_line(raw, default_id=f"{path.stem}-{number}"))
        except ValueError as exc:
            bad.append(f"{path}:{number}: {exc}")
    return QAFile(str(path), hashlib.sha256(data).hexdigest(), len(lines), tuple(examples), tuple(bad))


def combine(files: Sequence[QAFile], *, limit: int | None = None) -> tuple[list[QAExample], list[str]]:
    """All questions of several files (the first `limit` of each), ids made unique across files."""
    seen: dict[str, int] = {}
    out: list[QAExample] = []
    notes: list[str] = []
    for qa_file in files:
        chosen = qa_file.examples[:limit] if limit is not None else qa_file.examples
        for ex in chosen:
            key = ex.id or ex.question
            if key in seen:
                seen[key] += 1
                new_id = f"{key}#{seen[key]}"
                notes.append(f"{qa_file.path}: duplicate id '{key}' renamed to '{new_id}'")
                ex = dataclasses.replace(ex, id=new_id)
            else:
                seen[key] = 1
            out.append(ex)
    return out, notes
