"""Incremental ingestion: load changed files, chunk, embed what is not cached, build a new index
generation beside the old one, then switch to it in the same SQLite transaction as the chunk changes."""

from __future__ import annotations

import hashlib
import json
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from slm.kb.connectors.base import Source, SourceItem, check_size, combined_fingerprint
from slm.kb.connectors.spec import SPEC_KEY, SourceSpec, as_spec, limits_for, open_source, stored_spec
from slm.kb.corpus_files import display_path
from slm.kb.embed_stream import EmbedStream
from slm.kb.embedder_choice import AUTO, choose_embedder
from slm.errors import DocumentError, DocumentSkipped, KnowledgeBaseError
from slm.kb.index.generation import collect_garbage, existing_generations
from slm.kb.index.manifest import Manifest
from slm.kb.local import GENERATION_KEY, ROOT_KEY, KnowledgeBase
from slm.kb.prefetch import DONE, NOT_READY, Prefetcher
from slm.kb.store import StoredChunk
from slm.types import Chunk, Document

STATE_KEY = "source_state"  # KB meta: what the source needs back next run (crawl validators, a commit)
VERSION_KEY = "source_version"  # KB meta: the source's version at the last ingest (a Git commit)
SOURCES_DIR = "sources"  # inside the KB: what sources keep between runs (a Git mirror)


@dataclass(frozen=True)
class FailedFile:
    path: str
    reason: str


@dataclass(frozen=True)
class SkippedFile:
    """A file that is fine but holds nothing to index (slm.errors.DocumentSkipped: a picture without text)."""

    path: str
    reason: str


@dataclass(frozen=True)
class IngestReport:
    """The closing summary of one ingest run."""

    seen: int
    added: int
    changed: int
    unchanged: int
    deleted: int
    failed: tuple[FailedFile, ...]
    chunks_written: int
    seconds: float
    embedded: int = 0  # vectors computed (the rest came from the cache; both embedders' under a mid-run switch)
    generation: int | None = None
    run_id: str = ""
    root: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    version: str | None = None  # the source's version where it has one (a Git commit)
    warnings: tuple[FailedFile, ...] = ()  # read, but worth a look: low OCR confidence, pages left unread
    skipped: tuple[SkippedFile, ...] = ()  # nothing to index, and nothing wrong: not failures

    @property
    def failed_ids(self) -> set[str]:
        return {f.path for f in self.failed}

    @property
    def changed_anything(self) -> bool:
        return bool(self.added or self.changed or self.deleted or self.chunks_written)


@dataclass
class _Pending:
    doc: Document
    fingerprint: str
    status: str  # added | changed
    chunks: list[Chunk]


def index_text(chunk: Chunk) -> str:
    """What the embedder, BM25 and the reranker see: the chunk with where it sits (title and heading
    path) on its first line. The chunk's own text stays the exact document span."""
    from slm.kb.chunking import context_text

    return context_text(chunk)


def embed_key(model: str, text: str) -> str:
    return hashlib.sha256(f"{model}\0{text}".encode("utf-8")).hexdigest()[:40]


def settings_signature(kb: KnowledgeBase) -> str:
    """Settings that change what a file turns into: a change makes every file count as changed."""
    s = kb.settings
    relevant = {
        "access": asdict(s.access) | {"audit_log": None},
        "chunk": [s.ingest.chunk_chars, s.ingest.chunk_overlap, s.ingest.min_chunk_chars],
        "ocr": [s.ingest.ocr, s.ingest.ocr_languages, s.ingest.ocr_max_pages, s.ingest.ocr_max_pixels,
                s.ingest.pdf_max_pages],
        "embedder": s.embedder.model,
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def failed_file(doc_id: str, reason: str) -> FailedFile:
    """A failure as text that SQLite, the run log and a terminal all take, whatever bytes a file name holds."""
    return FailedFile(display_path(doc_id), display_path(reason))


def skipped_file(doc_id: str, reason: str) -> SkippedFile:
    """A skipped file as text that SQLite, the run log and a terminal all take (like failed_file)."""
    return SkippedFile(display_path(doc_id), display_path(reason))


def _failure_reason(exc: Exception) -> str:
    if isinstance(exc, DocumentError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def stored_fingerprint(item: SourceItem, signature: str) -> str:
    """What the store keeps per document: the source's fingerprint (bytes hash, ETag, blob id) bound to the
    settings signature. The one definition of "changed" that ingestion and retraining share."""
    return combined_fingerprint(item.fingerprint, signature)


def open_kb_source(kb: KnowledgeBase, spec: SourceSpec, *, fresh: bool = False) -> Source:
    """Open a source for this KB: its cache folder inside the KB, and (unless `fresh`) the state the last
    ingest of the same source left (crawl validators), so unchanged pages cost a 304."""
    previous = stored_spec(kb)
    same = previous is not None and previous.uri == spec.uri
    state = kb.store.get_meta(STATE_KEY) if same and not fresh else None
    return open_source(spec, kb.settings.ingest, cache_dir=kb.path / SOURCES_DIR, state=state or None)


def ingest(
    source: "SourceSpec | Path | str",
    kb: KnowledgeBase,
    *,
    progress: bool = True,
    rebuild: bool = False,
    on_stage: Callable[[str], None] | None = None,
) -> IngestReport:
    """Bring the KB in line with a source (a folder, a website, a bucket, a Git repository; see
    `slm.kb.connectors`). Only items whose fingerprint (or sidecar, or the chunking/access settings) changed
    are fetched and re-read; items no longer listed are deleted; `rebuild` re-reads and re-embeds everything."""
    t0 = time.perf_counter()
    stage = on_stage or (lambda name: None)
    spec = as_spec(source)
    settings = kb.settings
    run_id = uuid.uuid4().hex[:12]
    timings: dict[str, float] = {}

    with kb.ingest_lock():
        src = open_kb_source(kb, spec, fresh=rebuild)
        try:
            return _ingest_from(src, spec, kb, progress, rebuild, stage, run_id, timings, t0)
        finally:
            src.close()


def _ingest_from(src: Source, spec: SourceSpec, kb: KnowledgeBase, progress: bool, rebuild: bool,
                 stage: Callable[[str], None], run_id: str, timings: dict[str, float], t0: float) -> IngestReport:
    from slm.kb.chunking import chunk_document
    from slm.kb.documents import document_from_bytes
    from slm.kb.loaders.limits import ExpansionLimits
    from slm.kb.loaders.ocr import OcrOptions

    settings = kb.settings
    root = src.uri
    previous_root = kb.root
    known = {} if rebuild else kb.store.fingerprints()
    known_ids = set(kb.store.fingerprints())
    if previous_root and previous_root != root and known_ids:
        _say(progress, f"note: this KB held {previous_root}; documents not in {root} will be removed")
    signature = settings_signature(kb)
    limits = limits_for(settings.ingest)
    ocr = OcrOptions.from_settings(settings.ingest)
    expansion = ExpansionLimits.from_settings(settings.ingest)

    stage("discover")
    t = time.perf_counter()
    discovery = src.discover()  # a source that cannot be listed raises SourceError: nothing is removed
    timings["discover"] = time.perf_counter() - t
    items = discovery.items
    pending: list[_Pending] = []
    unchanged: list[str] = []
    failed: list[FailedFile] = [failed_file(f.id, f.reason) for f in discovery.failed]
    skipped: list[SkippedFile] = []
    seen_ids: set[str] = {f.id for f in discovery.failed}

    # Load and embed overlap: a thread reads, parses and chunks documents (at most ingest.prefetch ahead) while
    # this one encodes the chunks that arrive, so the encoder does not wait for the whole source to be read.
    stage("load")
    t = time.perf_counter()
    before = kb.embedder_name
    store_languages = set(kb.store.languages())
    seen_languages: set[str] = set()
    model = _embedder_for(kb, store_languages)  # what the chunks seen so far call for; settled after the load
    if model != before:
        kb.switch_embedder(model)
    bar = _bar(progress, total=len(items), desc="documents", unit="doc", position=0)
    ebar = _bar(progress, total=0, desc="embedding", unit="chunk", position=1)
    # The "embed" stage starts with the first encode (or after the load, when every vector was cached).
    stream = EmbedStream(kb.store, kb.embedder, kb.settings.embedder.batch_size, use_cache=not rebuild,
                         on_batch=ebar.update, on_first=lambda: stage("embed"))

    def load(item: SourceItem) -> "_Pending | FailedFile | SkippedFile | str":
        rel = item.id
        try:
            fingerprint = stored_fingerprint(item, signature)
            if known.get(rel) == fingerprint:
                return rel
            fetched = src.fetch(item)
            too_large = check_size(rel, len(fetched.data), limits)
            if too_large:
                raise DocumentError(too_large.reason)
            doc = document_from_bytes(
                rel,
                fetched.data,
                item.suffix,
                source=item.location or rel,
                sidecar=fetched.metadata,
                sidecar_raw=fetched.metadata_raw,
                access=settings.access,
                ocr=ocr,
                limits=expansion,
            )
            chunks = chunk_document(
                doc,
                chunk_chars=settings.ingest.chunk_chars,
                overlap=settings.ingest.chunk_overlap,
                min_chars=settings.ingest.min_chunk_chars,
            )
            return _Pending(doc, fingerprint, "changed" if rel in known_ids else "added", chunks)
        except DocumentSkipped as exc:
            return skipped_file(rel, str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad document must not stop the whole run
            return failed_file(rel, _failure_reason(exc))
        finally:
            bar.update(1)

    with Prefetcher(items, load, settings.ingest.prefetch) as loaded:
        while (outcome := loaded.poll(wait=stream.waiting < stream.batch_size)) is not DONE:
            if outcome is NOT_READY:  # the reader is behind: encode what waits instead of waiting for it
                stream.step(idle=True)
                continue
            if isinstance(outcome, _Pending):
                pending.append(outcome)
                seen_languages |= {c.language for c in outcome.chunks}
                wanted = _embedder_for(kb, store_languages | seen_languages)
                if wanted != model:  # a first Chinese page under `auto`: start again with the embedder it needs
                    model = wanted
                    kb.switch_embedder(model)
                    stream.restart()
                    stream.add(*_keyed(model, [c for p in pending for c in p.chunks]))
                else:
                    stream.add(*_keyed(model, outcome.chunks))
                ebar.total = stream.waiting + stream.embedded
            elif isinstance(outcome, FailedFile):
                failed.append(outcome)
            elif isinstance(outcome, SkippedFile):
                skipped.append(outcome)
            else:
                unchanged.append(outcome)
            stream.step()
    bar.close()
    timings["load"] = loaded.busy_s  # in the reader thread, overlapping the embedding
    seen_ids |= {item.id for item in items}
    seen = len(items) + len(discovery.failed)

    not_loaded = {f.path for f in failed} | {f.path for f in skipped}
    deleted = sorted(known_ids - seen_ids)
    removed_failed = sorted(not_loaded & known_ids)  # a file that no longer loads (or has no text) leaves the index
    gone = set(deleted) | set(removed_failed) | {p.doc.id for p in pending}

    # The rest of the new chunks, with the embedder that the chunks which stay plus the new ones call for.
    new_chunks = [c for p in pending for c in p.chunks]
    kept_languages = {lang for doc_id, lang in kb.store.document_languages() if doc_id not in gone}
    final = _embedder_for(kb, kept_languages | {c.language for c in new_chunks})
    if final != model:  # the documents that called for `model` were removed after all
        model = final
        kb.switch_embedder(model)
        stream.restart()
        stream.add(*_keyed(model, new_chunks))
    embedded = stream.finish()
    if not stream.started:
        stage("embed")
    ebar.close()
    timings["embed"] = stream.seconds
    timings["load+embed"] = time.perf_counter() - t  # wall: less than load + embed by the overlap
    switched = model != before or (rebuild and kb.settings.embedder.model == AUTO)
    if model != before and kb.current_generation() is not None:
        _say(progress, f"the KB's languages call for embedder {model} (was {before}): re-embedding its chunks")
    new_keys = _keyed(model, new_chunks)[0]

    current = kb.current_generation()
    if current is not None and not gone and not rebuild:
        with kb.store.transaction() as conn:
            _log_run(kb, conn, run_id, unchanged, [], failed, [], root, skipped)
            _record_source(kb, conn, src, spec, discovery)
        _publish_if_shared(kb, stage, timings)  # a publish that failed last time is retried here
        return _report(seen, pending, unchanged, deleted, failed, 0, t0, embedded, current, run_id, root, timings,
                       discovery.version, skipped)

    # Build the next generation from the chunks that stay plus the new ones.
    stage("index")
    t = time.perf_counter()
    _say(progress, "building the index…")
    rekeyed: list[tuple[str, str]] = []  # (new embed key, chunk id) of kept chunks under a new embedder
    manifest = None if rebuild or switched else kb.manifest()
    dimension = manifest.dimension if manifest else kb.embedder().dimension
    number = max(existing_generations(kb.index_dir) + [current or 0]) + 1
    # The current segments stay (less the rows of `gone`) and the new chunks become one more segment; a full
    # build from the store only when there is no segmented generation to keep (or a rebuild, a new embedder).
    previous = None if rebuild or switched else kb.index()
    rows: list[tuple[Chunk, str]] = list(zip(new_chunks, new_keys))
    if previous is None or not previous.segments:
        previous = None
        kept = [s for s in kb.store.iter_stored_chunks() if s.chunk.doc_id not in gone]
        if switched:
            kept_keys = [embed_key(model, index_text(s.chunk)) for s in kept]
            embedded += _embed_missing(kb, [s.chunk for s in kept], kept_keys, progress, use_cache=True)
            rekeyed = [(key, s.chunk.id) for s, key in zip(kept, kept_keys) if key != s.embed_key]
            kept = [StoredChunk(s.chunk, key) for s, key in zip(kept, kept_keys)]
        rows = sorted([(s.chunk, s.embed_key) for s in kept] + rows, key=lambda r: (r[0].doc_id, r[0].start, r[0].id))
    folder = _next_generation(kb, number, previous, gone, rows, dimension, model)
    timings["index"] = time.perf_counter() - t
    stage("built")

    # The switch: chunk changes and the generation pointer in one transaction.
    stage("commit")
    t = time.perf_counter()
    with kb.store.transaction() as conn:
        kb.store.delete_chunks_of(conn, gone)
        kb.store.delete_documents(conn, set(deleted) | set(removed_failed))
        kb.store.rekey_chunks(conn, rekeyed)
        now = time.time()
        for item in pending:
            kb.store.put_document(conn, item.doc, fingerprint=item.fingerprint, chunk_count=len(item.chunks),
                                  ingested_at=now)
        kb.store.put_chunks(conn, ((c, i, embed_key(model, index_text(c))) for p in pending
                                   for i, c in enumerate(p.chunks)))
        kb.store.set_meta(GENERATION_KEY, str(number), conn)
        kb.store.set_meta(ROOT_KEY, root, conn)
        _record_source(kb, conn, src, spec, discovery)
        kb.store.set_meta("embedder", model, conn)
        kb.store.set_meta("dimension", str(dimension), conn)
        _log_run(kb, conn, run_id, unchanged, pending, failed, deleted, root, skipped)
        kb.store.prune_embeddings(conn)
    timings["commit"] = time.perf_counter() - t
    stage("committed")

    # After the commit: the top-level manifest mirrors the current one; old generations go.
    Manifest.read(folder / "manifest.json").write(kb.index_dir / "manifest.json")
    collect_garbage(kb.index_dir, keep=[number] + ([current] if current is not None else []))
    kb.reload_if_changed()
    _publish_if_shared(kb, stage, timings)
    written = sum(len(p.chunks) for p in pending)
    return _report(seen, pending, unchanged, deleted, failed, written, t0, embedded, number, run_id, root, timings,
                   discovery.version, skipped)


def _embedder_for(kb: KnowledgeBase, languages: set[str]) -> str:
    """The embedder this run's index is built with: the configured one, or under `auto` the one the chunks'
    `languages` call for (slm.kb.embedder_choice)."""
    if kb.settings.embedder.model != AUTO or kb.has_fixed_embedder:
        return kb.embedder_name
    return choose_embedder(AUTO, languages)


def _keyed(model: str, chunks: list[Chunk]) -> tuple[list[str], list[str]]:
    """(embed keys, index texts) of `chunks` under `model`."""
    texts = [index_text(c) for c in chunks]
    return [embed_key(model, text) for text in texts], texts


def _next_generation(kb: KnowledgeBase, number: int, previous, gone: set[str], rows: list[tuple[Chunk, str]],
                     dimension: int, model: str) -> Path:
    """Write generation `number`: `previous`'s segments less the rows of `gone`, plus a segment of `rows`
    (every row when `previous` is None: a full build). Cost grows with `rows`, not with the KB."""
    from slm.kb.index.update import NewRows, next_generation

    new = NewRows(
        chunk_ids=[c.id for c, _ in rows],
        doc_ids=[c.doc_id for c, _ in rows],
        audiences=[c.audiences for c, _ in rows],
        vectors=_vectors_for(kb, [key for _, key in rows], dimension),
        index_texts=[index_text(c) for c, _ in rows],
        languages=[c.language for c, _ in rows],
    )

    def texts_for(ids: list[str]) -> list[str]:  # rows a merge rewrites
        chunks = kb.store.get_chunks(ids)
        if len(chunks) != len(ids):
            raise KnowledgeBaseError("the store and the index disagree; run `slm ingest ROOT --rebuild`")
        return [index_text(c) for c in chunks]

    index = kb.settings.index
    return next_generation(kb.index_dir, number, previous, gone_docs=gone, new=new, texts_for=texts_for,
                           embedder=model, dimension=dimension, dense_kind=index.dense,
                           ann_threshold=index.ann_threshold).folder


def _publish_if_shared(kb: KnowledgeBase, stage: Callable[[str], None], timings: dict[str, float]) -> None:
    """With `index.backend: pgvector`, mirror the committed generation into PostgreSQL for the API replicas."""
    from slm.kb.index.pg import check_settings

    if check_settings(kb.settings.index) != "pgvector":
        return
    from slm.kb.index.pg_publish import publish

    stage("publish")
    t = time.perf_counter()
    try:
        publish(kb, kb.settings.index)
    except KnowledgeBaseError as exc:
        raise KnowledgeBaseError(
            f"the local knowledge base is up to date but publishing it to PostgreSQL failed: {exc}; "
            "run `slm ingest` again to publish it"
        ) from None
    timings["publish"] = time.perf_counter() - t
    stage("published")


def _embed_missing(kb: KnowledgeBase, chunks: list[Chunk], keys: list[str], progress: bool, *, use_cache: bool) -> int:
    """Encode and cache the vectors of `chunks` (under `keys`) the store does not hold; how many were encoded."""
    bar = _bar(progress, total=len(chunks), desc="embedding", unit="chunk")
    stream = EmbedStream(kb.store, kb.embedder, kb.settings.embedder.batch_size, use_cache=use_cache,
                         on_batch=bar.update)
    stream.add(keys, [index_text(c) for c in chunks])
    try:
        return stream.finish()
    finally:
        bar.close()


def _vectors_for(kb: KnowledgeBase, keys: list[str], dimension: int) -> np.ndarray:
    found = kb.store.cached_embeddings(keys)
    missing = [k for k in keys if k not in found]
    if missing:
        raise KnowledgeBaseError(
            f"{len(missing)} chunk vectors are missing from the store; run `slm ingest ROOT --rebuild`"
        )
    if not keys:
        return np.zeros((0, dimension), dtype=np.float32)
    return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)


def _log_run(kb, conn, run_id, unchanged, pending, failed, deleted, root, skipped=()) -> None:
    kb.store.log(conn, run_id, str(root), "run", None)
    for rel in unchanged:
        kb.store.log(conn, run_id, rel, "unchanged")
    for item in pending:
        kb.store.log(conn, run_id, item.doc.id, item.status, f"{len(item.chunks)} chunks")
    for item in failed:
        kb.store.log(conn, run_id, item.path, "failed", item.reason)
    for item in skipped:
        kb.store.log(conn, run_id, item.path, "skipped", item.reason)
    for item in pending:
        for warning in document_warnings(item.doc):
            kb.store.log(conn, run_id, item.doc.id, "warning", warning)
    for rel in deleted:
        kb.store.log(conn, run_id, rel, "deleted")


def _record_source(kb, conn, src, spec, discovery) -> None:
    """What the next run (and `slm retrain`) needs: the spec (the folder resolved), the source's state, its version."""
    kb.store.set_meta(SPEC_KEY, replace(spec, uri=src.uri).to_json(), conn)
    kb.store.set_meta(STATE_KEY, src.state() or "", conn)
    kb.store.set_meta(VERSION_KEY, discovery.version or "", conn)


def document_warnings(doc: Document) -> list[str]:
    """What a reader of the ingest report should check about a document that did load."""
    from slm.kb.loaders.ocr import confidence_of

    out = []
    low = doc.metadata.get("ocr_low_confidence_pages")
    if low:
        scores = confidence_of(doc.metadata)
        detail = ", ".join(f"{p} ({scores.get(p, 0):.0f}%)" for p in low.split(","))
        out.append(f"low OCR confidence on page {detail}: check the scan or its language (sidecar `language:`)")
    skipped = doc.metadata.get("ocr_skipped_pages")
    if skipped:
        out.append(f"{len(skipped.split(','))} scanned pages not OCR'd (ingest.ocr_max_pages)")
    return out


def _report(seen, pending, unchanged, deleted, failed, written, t0, embedded, generation, run_id, root, timings,
            version=None, skipped=()):
    return IngestReport(
        seen=seen,
        added=sum(1 for p in pending if p.status == "added"),
        changed=sum(1 for p in pending if p.status == "changed"),
        unchanged=len(unchanged),
        deleted=len(deleted),
        failed=tuple(failed),
        chunks_written=written,
        seconds=time.perf_counter() - t0,
        embedded=embedded,
        generation=generation,
        run_id=run_id,
        root=str(root),
        timings=timings,
        version=version,
        warnings=tuple(FailedFile(p.doc.id, w) for p in pending for w in document_warnings(p.doc)),
        skipped=tuple(skipped),
    )


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(progress: bool, **kwargs):
    if not progress:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(file=sys.stderr, dynamic_ncols=True, **kwargs)


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr)
