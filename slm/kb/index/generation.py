"""An index generation: one immutable folder `index/gen-NNNNNN/` naming the segments it is made of and the rows
of each deleted since (tombstones). A segment `index/seg-XXXX/` is immutable too: dense and BM25 indexes, the
chunk id, document and audiences of every row. Both are built in a temp folder, fsynced, then renamed into place;
a new generation shares the segments of the last one, so a change costs a segment of its own size."""

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

from slm.kb.index.dense import DenseIndex, SegmentedDense
from slm.kb.index.manifest import Manifest
from slm.kb.index.postings import Postings, SegmentedBM25
from slm.kb.index.sparse import SparseIndex

ROWS_FILE = "rows.json"
MANIFEST_FILE = "manifest.json"
TOMBSTONES_FILE = "tombstones.json"
_PREFIX = "gen-"
SEGMENT_PREFIX = "seg-"


def generation_dir(index_dir: Path, number: int) -> Path:
    return Path(index_dir) / f"{_PREFIX}{number:06d}"


def existing_generations(index_dir: Path) -> list[int]:
    numbers = []
    if Path(index_dir).is_dir():
        for entry in Path(index_dir).iterdir():
            if entry.is_dir() and entry.name.startswith(_PREFIX) and entry.name[len(_PREFIX) :].isdigit():
                numbers.append(int(entry.name[len(_PREFIX) :]))
    return sorted(numbers)


@dataclass(eq=False)  # compared by identity: one object per segment on disk
class Segment:
    """One loaded segment (immutable on disk, so shared between generations in memory too)."""

    name: str
    chunk_ids: list[str]
    doc_ids: list[str]
    row_groups: np.ndarray
    groups: list[tuple[str, ...]]
    dense: DenseIndex
    postings: Postings

    @property
    def size(self) -> int:
        return len(self.chunk_ids)


@dataclass
class LoadedIndex:
    """A generation loaded in memory; `mask_for(audiences)` gives the live rows a caller may see."""

    manifest: Manifest
    chunk_ids: list[str]
    row_groups: np.ndarray  # per row: index into `groups`
    groups: list[tuple[str, ...]]  # distinct audience label tuples
    dense: DenseIndex | SegmentedDense
    sparse: SparseIndex | SegmentedBM25
    alive: np.ndarray | None = None  # False for rows deleted since their segment was written; None: all live
    segments: list[Segment] = field(default_factory=list)  # empty for a generation of the first format
    _masks: dict = field(default_factory=dict, repr=False)

    @property
    def size(self) -> int:
        return len(self.chunk_ids)

    @property
    def live(self) -> int:
        return self.size if self.alive is None else int(np.count_nonzero(self.alive))

    def live_positions(self) -> np.ndarray:
        return np.arange(self.size, dtype=np.int64) if self.alive is None else np.flatnonzero(self.alive)

    def mask_for(self, audiences: frozenset[str] | None) -> np.ndarray | None:
        """None when every row is live and visible, else a bool array (cached per caller label set)."""
        key = None if audiences is None else frozenset(audiences)
        if key not in self._masks:
            mask = self.alive
            if key is not None:
                from slm.access.labels import can_see

                visible = np.array([can_see(g, key) for g in self.groups], dtype=bool)
                mask = visible[self.row_groups] if self.size else np.zeros(0, dtype=bool)
                if self.alive is not None:
                    mask = mask & self.alive
            self._masks[key] = None if mask is None or mask.all() else mask
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


def build_segment(
    index_dir: Path,
    *,
    chunk_ids: Sequence[str],
    doc_ids: Sequence[str],
    audiences: Sequence[tuple[str, ...]],
    vectors: np.ndarray,
    index_texts: Sequence[str],
    languages: Sequence[str] | None = None,
    dense_kind: str = "flat",
) -> str:
    """Write a segment into a temp folder, fsync, rename it into place; its name. `languages`: each row's
    language, which picks its BM25 analyser (None: all English)."""
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    tmp = index_dir / f"tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        DenseIndex.build(vectors, dense_kind).save(tmp)
        Postings.build(list(index_texts), languages).save(tmp)
        groups: dict[tuple[str, ...], int] = {}
        row_groups = [groups.setdefault(tuple(a), len(groups)) for a in audiences]
        rows = {"chunk_ids": list(chunk_ids), "doc_ids": list(doc_ids), "row_groups": row_groups,
                "groups": [list(g) for g in groups], "dimension": int(vectors.shape[1])}
        (tmp / ROWS_FILE).write_text(json.dumps(rows), encoding="utf-8")
        _fsync_tree(tmp)
        name = f"{SEGMENT_PREFIX}{uuid.uuid4().hex[:16]}"
        os.rename(tmp, index_dir / name)
        _fsync_dir(index_dir)
        return name
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_generation(
    index_dir: Path,
    number: int,
    *,
    segments: Sequence[str],
    tombstones: dict[str, Sequence[int]],
    embedder: str,
    dimension: int,
    chunks: int,
) -> Path:
    """Write generation `number` (the segments it is made of, their deleted rows) atomically; its folder."""
    index_dir = Path(index_dir)
    tmp = index_dir / f"tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir(parents=True)
    try:
        dead = {name: sorted(int(r) for r in rows) for name, rows in tombstones.items() if len(rows)}
        (tmp / TOMBSTONES_FILE).write_text(json.dumps(dead), encoding="utf-8")
        Manifest(
            embedder=embedder,
            dimension=int(dimension),
            generation=number,
            chunks=int(chunks),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            segments=tuple(segments),
        ).write(tmp / MANIFEST_FILE)
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
    doc_ids: Sequence[str] | None = None,
    dense_kind: str = "flat",
) -> Path:
    """A generation of one new segment holding every row (a full build)."""
    name = build_segment(index_dir, chunk_ids=chunk_ids, doc_ids=doc_ids if doc_ids is not None else chunk_ids,
                         audiences=audiences, vectors=vectors, index_texts=index_texts, languages=languages,
                         dense_kind=dense_kind)
    return write_generation(index_dir, number, segments=[name], tombstones={}, embedder=embedder,
                            dimension=int(vectors.shape[1]), chunks=len(chunk_ids))


def load_segment(folder: Path) -> Segment:
    folder = Path(folder)
    rows = json.loads((folder / ROWS_FILE).read_text(encoding="utf-8"))
    return Segment(
        name=folder.name,
        chunk_ids=rows["chunk_ids"],
        doc_ids=rows["doc_ids"],
        row_groups=np.asarray(rows["row_groups"], dtype=np.int64),
        groups=[tuple(g) for g in rows["groups"]],
        dense=DenseIndex.load(folder),
        postings=Postings.load(folder),
    )


def load_generation(folder: Path, cache: dict[str, Segment] | None = None) -> LoadedIndex:
    """Load a generation; segments already in `cache` (by name: they never change) are not read again."""
    folder = Path(folder)
    manifest = Manifest.read(folder / MANIFEST_FILE)
    if not manifest.segments:
        return _load_single(folder, manifest)
    dead = json.loads((folder / TOMBSTONES_FILE).read_text(encoding="utf-8"))
    segments = []
    for name in manifest.segments:
        segment = cache.get(name) if cache is not None else None
        if segment is None:
            segment = load_segment(folder.parent / name)
            if cache is not None:
                cache[name] = segment
        segments.append(segment)
    groups: dict[tuple[str, ...], int] = {}
    row_groups, chunk_ids, alive = [], [], []
    for segment in segments:
        remap = np.array([groups.setdefault(g, len(groups)) for g in segment.groups] or [0], dtype=np.int64)
        row_groups.append(remap[segment.row_groups] if segment.size else np.zeros(0, np.int64))
        chunk_ids += segment.chunk_ids
        live = np.ones(segment.size, dtype=bool)
        live[np.asarray(dead.get(segment.name, []), dtype=np.int64)] = False
        alive.append(live)
    alive_all = np.concatenate(alive) if alive else np.zeros(0, dtype=bool)
    return LoadedIndex(
        manifest=manifest,
        chunk_ids=chunk_ids,
        row_groups=np.concatenate(row_groups) if row_groups else np.zeros(0, np.int64),
        groups=list(groups),
        dense=SegmentedDense([s.dense for s in segments]),
        sparse=SegmentedBM25([s.postings for s in segments], None if alive_all.all() else alive_all),
        alive=None if alive_all.all() else alive_all,
        segments=segments,
    )


def _load_single(folder: Path, manifest: Manifest) -> LoadedIndex:
    """A generation of the first format: one folder with its own dense and bm25s indexes."""
    rows = json.loads((folder / ROWS_FILE).read_text(encoding="utf-8"))
    return LoadedIndex(
        manifest=manifest,
        chunk_ids=rows["chunk_ids"],
        row_groups=np.asarray(rows["row_groups"], dtype=np.int64),
        groups=[tuple(g) for g in rows["groups"]],
        dense=DenseIndex.load(folder),
        sparse=SparseIndex.load(folder, len(rows["chunk_ids"])),
    )


def collect_garbage(index_dir: Path, keep: Sequence[int]) -> list[Path]:
    """Remove generations not in `keep`, segments none of the kept ones use, and temp folders of killed runs."""
    removed = []
    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        return removed
    used: set[str] = set()
    for number in keep:
        try:
            used.update(Manifest.read(generation_dir(index_dir, number) / MANIFEST_FILE).segments)
        except Exception:  # noqa: BLE001 - an unreadable kept generation: keep every segment, remove nothing
            return removed
    for entry in index_dir.iterdir():
        stale_gen = entry.name.startswith(_PREFIX) and entry.name[len(_PREFIX) :].isdigit() and int(
            entry.name[len(_PREFIX) :]
        ) not in keep
        stale_segment = entry.name.startswith(SEGMENT_PREFIX) and entry.name not in used
        if entry.is_dir() and (stale_gen or stale_segment or entry.name.startswith("tmp-")):
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
