"""The knowledge base: one folder holding the SQLite store and the index generations, opened as one object."""

from __future__ import annotations

import fcntl
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from slm.config import Settings
from slm.errors import IndexMismatchError, KnowledgeBaseError
from slm.kb.embedder_choice import AUTO, choose_embedder
from slm.kb.index.generation import LoadedIndex, generation_dir, load_generation
from slm.kb.index.manifest import Manifest, load_checked_embedder
from slm.kb.store import DocumentInfo, Store
from slm.types import Chunk

if TYPE_CHECKING:
    from slm.kb.embedding import Embedder
    from slm.kb.shared import SharedKnowledgeBase
    from slm.retrieval.hybrid import HybridRetriever

STORE_FILE = "store.sqlite"
INDEX_DIR = "index"
LOCK_FILE = "ingest.lock"
GENERATION_KEY = "index_generation"
ROOT_KEY = "root"


@dataclass(frozen=True)
class KbStatus:
    """What `slm status` prints."""

    path: Path
    root: str | None
    documents: int
    chunks: int
    generation: int | None
    embedder: str | None
    dimension: int | None
    last_ingest: float | None
    failed_last_run: int


class KnowledgeBase:
    """Open with `KnowledgeBase.open(path, settings)`; the embedder and indexes load on first use."""

    def __init__(self, path: Path, settings: Settings, store: Store, *, embedder: "Embedder | None" = None):
        self.path = Path(path)
        self.settings = settings
        self.store = store
        self._embedder = embedder
        self._index: LoadedIndex | None = None
        self._index_generation: int | None = None
        self._segments: dict = {}  # loaded segments by name (immutable: a new generation reuses them)
        self._lock = threading.RLock()
        self._check_embedder = True
        self._fixed_embedder = embedder is not None  # handed in by the caller: never re-chosen
        self._embedder_spec: str | None = None  # chosen by an ingest under `auto`, before its index exists

    @classmethod
    def open(
        cls,
        path: Path,
        settings: Settings,
        *,
        create: bool = False,
        check_embedder: bool = True,
        embedder: "Embedder | None" = None,
    ) -> "KnowledgeBase":
        """Open the KB at `path`; `create` makes an empty one; a different embedder than the index's
        raises IndexMismatchError (unless `check_embedder=False`, which `ingest --rebuild` uses)."""
        path = Path(path)
        store_file = path / STORE_FILE
        if not store_file.is_file():
            if not create:
                raise KnowledgeBaseError(
                    f"no knowledge base at {path}: run `slm ingest ROOT --kb {path}` first (or pass --kb / set SLM_HOME)"
                )
            path.mkdir(parents=True, exist_ok=True)
            (path / INDEX_DIR).mkdir(exist_ok=True)
        kb = cls(path, settings, Store(store_file), embedder=embedder)
        kb._check_embedder = check_embedder
        if check_embedder:
            manifest = kb.manifest()
            configured = embedder.model_name if embedder is not None else settings.embedder.model
            if manifest is not None and configured != AUTO:  # `auto` follows whatever built the index
                manifest.check_embedder(configured)
        return kb

    # --- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "KnowledgeBase":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def index_dir(self) -> Path:
        return self.path / INDEX_DIR

    # --- generations ------------------------------------------------------------------------
    def current_generation(self) -> int | None:
        value = self.store.get_meta(GENERATION_KEY)
        return int(value) if value is not None else None

    def manifest(self) -> Manifest | None:
        number = self.current_generation()
        if number is None:
            return None
        return Manifest.read(generation_dir(self.index_dir, number) / "manifest.json")

    def index(self) -> LoadedIndex | None:
        """The loaded current generation (None while the KB is empty)."""
        with self._lock:
            if self._index is None:
                self._load_index()
            return self._index

    def _load_index(self) -> None:
        for attempt in range(3):
            number = self.current_generation()
            if number is None:
                self._index, self._index_generation = None, None
                return
            folder = generation_dir(self.index_dir, number)
            try:
                self._index, self._index_generation = load_generation(folder, self._segments), number
                self._segments = {seg.name: seg for seg in self._index.segments}
                return
            except (OSError, KnowledgeBaseError):
                # Two ingests in quick succession may have collected this generation while we read it:
                # the pointer has moved on, so read it again.
                if self.current_generation() != number:
                    continue
                raise KnowledgeBaseError(
                    f"index generation {folder} is missing or damaged; run `slm ingest ROOT --rebuild`"
                ) from None
        raise KnowledgeBaseError("the index kept changing while loading it; try again")

    def reload_if_changed(self) -> bool:
        """Switch to a newer index generation committed by another process; True if it did."""
        with self._lock:
            number = self.current_generation()
            if number == self._index_generation:
                return False
            if number is not None:
                manifest = Manifest.read(generation_dir(self.index_dir, number) / "manifest.json")
                if self._embedder is not None and manifest.embedder != self._embedder.model_name:
                    if self.settings.embedder.model == AUTO:  # the KB gained its first zh/id chunks: follow it
                        self._embedder, self._embedder_spec = None, None
                        self._load_index()
                        return True
                    raise IndexMismatchError(
                        f"the index was rebuilt with embedder '{manifest.embedder}', this process uses "
                        f"'{self._embedder.model_name}'; restart it with embedder.model set to '{manifest.embedder}'"
                    )
            self._load_index()
            return True

    # --- models -----------------------------------------------------------------------------
    def embedder(self) -> "Embedder":
        with self._lock:
            if self._embedder is None:
                # after a switch the index on disk is the old embedder's: nothing to check against yet
                manifest = self.manifest() if self._check_embedder and self._embedder_spec is None else None
                settings = replace(self.settings.embedder, model=self.embedder_name)
                self._embedder = load_checked_embedder(settings, manifest)
            return self._embedder

    @property
    def embedder_name(self) -> str:
        """The embedder's spec without loading it; under `auto`, the one that built the index, else the one
        the stored chunks' languages call for (slm.kb.embedder_choice)."""
        if self._embedder is not None:
            return self._embedder.model_name
        configured = self.settings.embedder.model
        if configured != AUTO:
            return configured
        if self._embedder_spec is not None:
            return self._embedder_spec
        manifest = self.manifest() if self._check_embedder else None
        return manifest.embedder if manifest is not None else choose_embedder(AUTO, self.store.languages())

    def set_embedder(self, embedder: "Embedder") -> None:
        with self._lock:
            self._embedder = embedder
            self._fixed_embedder = True

    @property
    def has_fixed_embedder(self) -> bool:
        """True when the caller handed in the embedder (tests, `slm eval` sharing one): `auto` leaves it be."""
        return self._fixed_embedder

    def switch_embedder(self, spec: str) -> None:
        """Use `spec` from now on (an ingest under `auto` whose KB's languages changed); loads on first use."""
        with self._lock:
            self._embedder, self._embedder_spec = None, spec

    def retriever(self) -> "HybridRetriever":
        from slm.retrieval.hybrid import HybridRetriever

        return HybridRetriever(self, self.settings.retrieval)

    # --- content ----------------------------------------------------------------------------
    def get_chunks(self, ids: Sequence[str]) -> list[Chunk]:
        return self.store.get_chunks(ids)

    def all_chunks(self, audiences: frozenset[str] | None = None) -> Iterator[Chunk]:
        from slm.access.labels import can_see

        for stored in self.store.iter_stored_chunks():
            if can_see(stored.chunk.audiences, audiences):
                yield stored.chunk

    def documents(self) -> list[DocumentInfo]:
        return self.store.documents()

    @property
    def root(self) -> str | None:
        return self.store.get_meta(ROOT_KEY)

    def status(self) -> KbStatus:
        docs, chunks = self.store.counts()
        manifest = self.manifest()
        last, failed = self.store.last_run()
        return KbStatus(
            path=self.path,
            root=self.root,
            documents=docs,
            chunks=chunks,
            generation=self.current_generation(),
            embedder=manifest.embedder if manifest else None,
            dimension=manifest.dimension if manifest else None,
            last_ingest=last,
            failed_last_run=failed,
        )

    # --- writer lock ------------------------------------------------------------------------
    @contextmanager
    def ingest_lock(self) -> Iterator[None]:
        """One ingest at a time per KB (an OS lock: released even when the process is killed)."""
        lock_path = self.path / LOCK_FILE
        fd = os.open(str(lock_path), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                raise KnowledgeBaseError(
                    f"another ingest is running on {self.path} (pid {holder}); wait for it to finish, then retry"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def open_for_serving(settings: Settings, *, embedder: "Embedder | None" = None) -> "KnowledgeBase | SharedKnowledgeBase":
    """The knowledge base that answers questions: the local folder, or with `index.backend: pgvector` the
    shared PostgreSQL database the ingest published to (what several API replicas serve from)."""
    from slm.kb.index.pg import check_settings

    if check_settings(settings.index) == "pgvector":
        from slm.kb.shared import SharedKnowledgeBase

        return SharedKnowledgeBase.open(settings, embedder=embedder)
    return KnowledgeBase.open(Path(settings.kb), settings, embedder=embedder)
