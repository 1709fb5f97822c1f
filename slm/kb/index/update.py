"""The next index generation from the current one and a change: rows of changed or removed documents become
tombstones, the new rows one new segment; small segments are merged (and heavily deleted ones compacted) so
the number of segments stays bounded, as Lucene's tiered merges do. Cost grows with the change, not the KB."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from slm.kb.index.dense import choose_kind
from slm.kb.index.generation import LoadedIndex, Segment, build_segment, write_generation

MAX_SEGMENTS = 8  # above this many segments, the smallest are merged into one (query cost is per segment)
COMPACT_DELETED_SHARE = 0.3  # a segment with more of its rows deleted than this is rewritten at the next merge


@dataclass(frozen=True)
class NewRows:
    """Rows to add: one per chunk, aligned lists."""

    chunk_ids: Sequence[str]
    doc_ids: Sequence[str]
    audiences: Sequence[tuple[str, ...]]
    vectors: np.ndarray
    index_texts: Sequence[str]
    languages: Sequence[str] | None = None  # per row (BM25 analyser); None: all English

    def __len__(self) -> int:
        return len(self.chunk_ids)


@dataclass(frozen=True)
class UpdateReport:
    folder: Path
    segments: int
    added_rows: int
    deleted_rows: int
    merged_segments: int  # existing segments rewritten by a merge (0: the change alone was written)


def next_generation(
    index_dir: Path,
    number: int,
    current: LoadedIndex | None,
    *,
    gone_docs: set[str],
    new: NewRows,
    texts_for: Callable[[list[str]], list[str]],
    embedder: str,
    dimension: int,
    dense_kind: str = "auto",
    ann_threshold: int = 500_000,
) -> UpdateReport:
    """Write generation `number`: the current segments with the rows of `gone_docs` tombstoned, plus a segment
    of `new`. `texts_for(chunk_ids)` gives the indexed texts of rows a merge rewrites. `current` None (or of
    the first format, without segments) means a full build from `new` alone."""
    segments: list[Segment] = list(current.segments) if current is not None else []
    dead: dict[str, np.ndarray] = {}
    deleted_rows = 0
    if current is not None and current.segments:
        offset = 0
        for segment in segments:
            already = np.zeros(segment.size, dtype=bool) if current.alive is None else ~current.alive[offset : offset + segment.size]
            now = np.isin(np.asarray(segment.doc_ids, dtype=object), list(gone_docs)) if gone_docs else np.zeros(segment.size, bool)
            deleted_rows += int(np.count_nonzero(now & ~already))
            dead[segment.name] = already | now
            offset += segment.size
    live = [s for s in segments if s.size and not dead[s.name].all()]  # wholly deleted segments are dropped

    merge = _to_merge(live, dead)
    names = [s.name for s in live if s not in merge]
    tombstones = {s.name: np.flatnonzero(dead[s.name]) for s in live if s not in merge}
    rows = _merged_rows(merge, dead, texts_for, dimension) if merge else None
    if rows is not None:
        new = _concat(rows, new)
    if len(new):
        kind = choose_kind(dense_kind, len(new), ann_threshold)
        names.append(build_segment(index_dir, chunk_ids=new.chunk_ids, doc_ids=new.doc_ids, audiences=new.audiences,
                                   vectors=new.vectors, index_texts=new.index_texts, languages=new.languages,
                                   dense_kind=kind))
    chunks = sum(s.size - int(np.count_nonzero(dead[s.name])) for s in live if s not in merge) + len(new)
    folder = write_generation(index_dir, number, segments=names, tombstones=tombstones, embedder=embedder,
                              dimension=dimension, chunks=chunks)
    return UpdateReport(folder, len(names), len(new), deleted_rows, len(merge))


def _to_merge(live: list[Segment], dead: dict[str, np.ndarray]) -> list[Segment]:
    """Heavily deleted segments, and while there would be too many segments, the smallest ones."""
    chosen = [s for s in live if np.count_nonzero(dead[s.name]) > COMPACT_DELETED_SHARE * s.size]
    rest = sorted((s for s in live if s not in chosen), key=lambda s: s.size)
    # +1: the segment of the new rows. Merged segments and the new rows become one segment.
    while rest and len(rest) + (1 if chosen else 0) + 1 > MAX_SEGMENTS:
        chosen.append(rest.pop(0))
    if len(chosen) == 1 and not np.count_nonzero(dead[chosen[0].name]):
        return []  # merging one clean segment with the new rows would only copy it
    return chosen


def _merged_rows(merge: list[Segment], dead: dict[str, np.ndarray], texts_for, dimension: int) -> NewRows:
    chunk_ids, doc_ids, audiences, vectors, languages = [], [], [], [], []
    for segment in merge:
        keep = np.flatnonzero(~dead[segment.name])
        chunk_ids += [segment.chunk_ids[i] for i in keep]
        doc_ids += [segment.doc_ids[i] for i in keep]
        audiences += [segment.groups[segment.row_groups[i]] for i in keep]
        languages += [segment.postings.languages[i] for i in keep]
        vectors.append(segment.dense.vectors(keep))
    stacked = np.concatenate(vectors) if vectors else np.zeros((0, dimension), np.float32)
    return NewRows(chunk_ids, doc_ids, audiences, stacked, texts_for(chunk_ids), languages)


def _concat(a: NewRows, b: NewRows) -> NewRows:
    vectors = b.vectors if not len(a) else a.vectors if not len(b) else np.concatenate([a.vectors, b.vectors])
    def langs(rows: NewRows) -> list[str]:
        return list(rows.languages) if rows.languages is not None else ["en"] * len(rows)

    return NewRows(list(a.chunk_ids) + list(b.chunk_ids), list(a.doc_ids) + list(b.doc_ids),
                   list(a.audiences) + list(b.audiences), vectors, list(a.index_texts) + list(b.index_texts),
                   langs(a) + langs(b))
