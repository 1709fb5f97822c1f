"""Tables as Markdown text: one row a line, so a chunk holding the table holds whole rows."""

from __future__ import annotations

from typing import Sequence


def _cell(value: object) -> str:
    text = " ".join(str(value or "").split())
    return text.replace("|", "\\|")


def markdown_table(rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table from rows of cells (the first row is the header); empty rows and columns dropped,
    short rows padded. Empty string when nothing is left."""
    cleaned = [[_cell(c) for c in row] for row in rows if any(_cell(c) for c in row)]
    if not cleaned:
        return ""
    width = max(len(r) for r in cleaned)
    cleaned = [r + [""] * (width - len(r)) for r in cleaned]
    keep = [i for i in range(width) if any(r[i] for r in cleaned)]
    cleaned = [[r[i] for i in keep] for r in cleaned]
    if not keep:
        return ""
    lines = ["| " + " | ".join(cleaned[0]) + " |", "|" + "|".join(" --- " for _ in keep) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in cleaned[1:]]
    return "\n".join(lines)
