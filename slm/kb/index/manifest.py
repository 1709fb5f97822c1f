"""The index manifest: which embedding model built the vectors, their dimension, and what the generation holds."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from slm.atomic import atomic_write_text
from slm.errors import IndexMismatchError, KnowledgeBaseError

if TYPE_CHECKING:
    from slm.config import EmbedderSettings
    from slm.kb.embedding import Embedder

FORMAT = 2  # 1: one folder with its own indexes; 2: segments + tombstones (index/generation.py)


@dataclass(frozen=True)
class Manifest:
    embedder: str
    dimension: int
    generation: int
    chunks: int
    created: str
    format: int = FORMAT
    segments: tuple[str, ...] = ()  # format 2: the segment folders the generation is made of

    def write(self, path: Path) -> None:
        """Write atomically: a temp file, fsync, then rename over the old one."""
        atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> "Manifest":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            data["segments"] = tuple(data.get("segments", ()))
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise KnowledgeBaseError(f"index manifest {path} is unreadable ({exc}); re-run `slm ingest ROOT --rebuild`") from exc

    def check_embedder(self, configured: str) -> None:
        """Raise IndexMismatchError when the configured embedder is not the one that built the index."""
        if configured != self.embedder:
            raise IndexMismatchError(
                f"the index was built with embedder '{self.embedder}' ({self.dimension}-dim) but embedder.model is "
                f"'{configured}'; either re-ingest with the new model (`slm ingest ROOT --rebuild`) or set "
                f"embedder.model back to '{self.embedder}'"
            )


def load_checked_embedder(settings: "EmbedderSettings", manifest: "Manifest | None", where: str = "index") -> "Embedder":
    """Load the configured embedder; IndexMismatchError when its vectors do not fit the index's dimension."""
    from slm.kb.embedding import Embedder

    embedder = Embedder(settings)
    if manifest is not None and manifest.dimension != embedder.dimension:
        raise IndexMismatchError(
            f"embedder '{embedder.model_name}' gives {embedder.dimension}-dim vectors but the {where} holds "
            f"{manifest.dimension}-dim ones; re-ingest with `slm ingest ROOT --rebuild`"
        )
    return embedder
