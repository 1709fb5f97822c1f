"""An index generation: one immutable folder `index/gen-NNNNNN/` holding the dense and sparse indexes,
the chunk id of every row and its audience labels. Built in a temp folder, then renamed into place."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from slm.index.dense import DenseIndex
from slm.index.manifest import Manifest
from slm.index.sparse import SparseIndex

ROWS_FILE = "rows.json"
MANIFEST_FILE = "manifest.json"
_PREFIX = "gen-"


def generation_dir(index_dir: Path, number: int) -> Path:
    return Path(index_dir) / f"{_PREFIX}{number:06d}"


def existing_generations(index_dir: Path) -> list[int]:
    numbers = []
    if Path(index_dir).is_dir():
        for entry in Path(index_dir).iterdir():
            if entry.is_dir() and entry.name.startswith(_PREFIX) and entry.name[len(_PREFIX) :].isdigit():
                numbers.append(int(entry.name[len(_PREFIX) :]))
    return sorted(numbers)


@dataclass
class LoadedIndex:
    """A generation loaded in memory; `mask_for(audiences)` gives the rows a caller may see."""

    manifest: Manifest
    chunk_ids: list[str]
    row_groups: np.ndarray  # per row: index into `groups`
    groups: list[tuple[str, ...]]  # distinct audience label tuples
    dense: DenseIndex
    sparse: SparseIndex
    _masks: dict = field(default_factory=dict, repr=False)

    @property
    def size(self) -> int:
        return len(self.chunk_ids)

    def mask_for(self, audiences: frozenset[str] | None) -> np.ndarray | None:
        """None when every row is visible, else a bool array (cached per caller label set)."""
        if audiences is None:
            return None
        key = frozenset(audiences)
        if key not in self._masks:
            from slm.access import can_see

            visible = np.array([can_see(g, key) for g in self.groups], dtype=bool)
            mask = visible[self.row_groups] if self.size else np.zeros(0, dtype=bool)
            self._masks[key] = None if mask.all() else mask
        return self._masks[key]

    def search_dense(self, query: np.ndarray, k: int, audiences: frozenset[str] | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (positions, cosines) among the rows the caller may see."""
        return self.dense.search(query, k, self.mask_for(audiences))

    def search_sparse(self, query: str, k: int, audiences: frozenset[str] | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (positions, BM25 scores) among the rows the caller may see."""
        return self.sparse.search(query, k, self.mask_for(audiences))

    def cosines(self, positions: np.ndarray, query: np.ndarray) -> np.ndarray:
        """The cosine of each row at `positions` with the (unit) query vector."""
        return self.dense.vectors(np.asarray(positions, dtype=np.int64)) @ query


def build_generation(
    index_dir: Path,
    number: int,
    *,
    chunk_ids: Sequence[str],
    audiences: Sequence[tuple[str, ...]],
    vectors: np.ndarray,
    index_texts: Sequence[str],
    embedder: str,
    languages: Sequence[str] | None = None,
) -> Path:
    """Write every file of generation `number` into a temp folder, fsync, then rename it into place."""
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    tmp = index_dir / f"tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        DenseIndex.build(vectors).save(tmp)
        SparseIndex.build(list(index_texts), languages).save(tmp)
        groups: dict[tuple[str, ...], int] = {}
        row_groups = [groups.setdefault(tuple(a), len(groups)) for a in audiences]
        rows = {"chunk_ids": list(chunk_ids), "row_groups": row_groups, "groups": [list(g) for g in groups]}
        (tmp / ROWS_FILE).write_text(json.dumps(rows), encoding="utf-8")
        manifest = Manifest(
            embedder=embedder,
            dimension=int(vectors.shape[1]),
            generation=number,
            chunks=len(chunk_ids),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        manifest.write(tmp / MANIFEST_FILE)
        _fsync_tree(tmp)
        target = generation_dir(index_dir, number)
        if target.exists():  # an orphan from a killed run that never got committed
            shutil.rmtree(target)
        os.rename(tmp, target)
        _fsync_dir(index_dir)
        return target
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_generation(folder: Path) -> LoadedIndex:
    folder = Path(folder)
    manifest = Manifest.read(folder / MANIFEST_FILE)
    rows = json.loads((folder / ROWS_FILE).read_text(encoding="utf-8"))
    dense = DenseIndex.load(folder)
    sparse = SparseIndex.load(folder, len(rows["chunk_ids"]))
    return LoadedIndex(
        manifest=manifest,
        chunk_ids=rows["chunk_ids"],
        row_groups=np.asarray(rows["row_groups"], dtype=np.int64),
        groups=[tuple(g) for g in rows["groups"]],
        dense=dense,
        sparse=sparse,
    )


def collect_garbage(index_dir: Path, keep: Sequence[int]) -> list[Path]:
    """Remove generations not in `keep` and temp folders left by killed runs."""
    removed = []
    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        return removed
    for entry in index_dir.iterdir():
        stale_gen = entry.name.startswith(_PREFIX) and entry.name[len(_PREFIX) :].isdigit() and int(
            entry.name[len(_PREFIX) :]
        ) not in keep
        if entry.is_dir() and (stale_gen or entry.name.startswith("tmp-")):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _fsync_tree(folder: Path) -> None:
    for root, _dirs, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(root))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(str(folder), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
