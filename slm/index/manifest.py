"""The index manifest: which embedding model built the vectors, their dimension, and what the generation holds."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from slm.errors import IndexMismatchError, KnowledgeBaseError

FORMAT = 1


@dataclass(frozen=True)
class Manifest:
    embedder: str
    dimension: int
    generation: int
    chunks: int
    created: str
    format: int = FORMAT

    def write(self, path: Path) -> None:
        """Write atomically: a temp file, fsync, then rename over the old one."""
        write_atomic(path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> "Manifest":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
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


def write_atomic(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
