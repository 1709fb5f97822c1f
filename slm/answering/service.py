"""Build the answerer every interface uses (CLI, API, UI): knowledge base + generator + adapter + threshold."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from slm.config import Settings
from slm.errors import ModelLoadError, RegistryError

log = logging.getLogger(__name__)

EXTRACTIVE_BACKEND = "extractive"  # generation.backend value for the no-model baseline


# The audiences recorded for an adapter nobody knows the training documents of (no or empty record):
# no caller holds "*" (a `*` API key is trusted, audiences None), so only trusted callers get it.
TRUSTED_ONLY: tuple[str, ...] = ("*",)


@dataclass(frozen=True)
class ResolvedAdapter:
    path: Path
    label: str  # registry version ("v3") or the folder
    audiences: tuple[str, ...] = ()  # the audiences of the documents it was trained on (registry only)
    base: str | None = None  # the base model spec it was trained on (registry only)

    @property
    def serving_audiences(self) -> tuple[str, ...]:
        """Labels a caller must all hold to be served this adapter (see TRUSTED_ONLY)."""
        return self.audiences or TRUSTED_ONLY


def _recorded_audiences(folder: Path) -> tuple[str, ...]:
    """The audiences in a registry-style `info.json` beside the adapter, if the folder has one."""
    from slm.adapters.registry import read_info

    try:
        return read_info(folder).audiences
    except RegistryError:  # no record: nobody knows what it learned
        return ()


def resolve_adapter(settings: Settings, kb_path: Path, adapter: str | None = None) -> ResolvedAdapter | None:
    """The adapter to serve: an explicit folder or registry version, else the promoted one when it may be served
    (slm.adapters.serving.promoted_version), else None (base).

    `adapter="base"` (or "none") forces the base model.
    """
    wanted = adapter if adapter is not None else settings.generation.adapter
    if wanted is not None and wanted.strip().lower() in ("base", "none", ""):
        return None
    if wanted is not None and Path(wanted).expanduser().is_dir():
        path = Path(wanted).expanduser()
        return ResolvedAdapter(path, str(path), _recorded_audiences(path))
    registry = _registry(kb_path)
    if wanted is not None:
        if registry is None:
            raise ModelLoadError(f"adapter '{wanted}' is neither a folder nor a known registry version (no registry in {kb_path})")
        version = registry.get(wanted)  # RegistryError names the known versions
        return ResolvedAdapter(Path(version.path), version.version, tuple(version.audiences), version.base or None)
    if registry is None:
        return None
    from slm.adapters.serving import promoted_version

    current = promoted_version(registry, settings.generation.model)
    if current is None:
        return None
    return ResolvedAdapter(Path(current.path), current.version, tuple(current.audiences), current.base or None)


def _registry(kb_path: Path) -> Any | None:
    try:
        from slm.adapters.registry import Registry
    except ImportError:  # the registry module is optional until training exists
        return None
    root = Path(kb_path) / "adapters"
    return Registry(root) if root.exists() else None


def _load_base(settings: Settings) -> Any:
    from slm.generation.backends import load_generator

    return load_generator(settings.generation)


def kb_embedder(settings: Settings, kb_path: Path) -> str:
    """The embedder the KB at `kb_path` searches with: the configured one, or under `auto` the one its index
    was built with (an English KB's default before its first ingest)."""
    from slm.kb.embedder_choice import AUTO, choose_embedder
    from slm.kb.index.manifest import Manifest
    from slm.kb.local import INDEX_DIR

    if settings.embedder.model != AUTO:
        return settings.embedder.model
    manifest = Path(kb_path) / INDEX_DIR / "manifest.json"
    return Manifest.read(manifest).embedder if manifest.is_file() else choose_embedder(AUTO, ())


def calibrated_threshold(settings: Settings, kb_path: Path) -> float | None:
    """The threshold `slm calibrate` stored for this KB, if it was made with the embedder it searches with."""
    from slm.answering.abstention import load_calibration

    calibration = load_calibration(kb_path)
    if calibration is None:
        return None
    configured = kb_embedder(settings, kb_path)
    if calibration.embedder and calibration.embedder != configured:
        log.warning("calibration.json was made with %s, not %s: using the settings threshold", calibration.embedder, configured)
        return None
    return calibration.threshold


def evidence_threshold_for(settings: Settings, kb_path: Path) -> float:
    """The weak-evidence threshold the KB at `kb_path` is served with (slm.answering.abstention.evidence_threshold:
    calibrated, else answering.min_evidence, else its embedder's default)."""
    from slm.answering.abstention import evidence_threshold

    return evidence_threshold(settings.answering.min_evidence, kb_embedder(settings, kb_path),
                              calibrated_threshold(settings, kb_path))


def follow_threshold(settings: Settings, kb_path: Path, answerers: Iterable[Any]) -> None:
    """After a switch to a new index generation: the served answerers' threshold anew, since under `auto` the
    generation may have changed embedders (a first zh/id document brings e5) and the default follows it."""
    threshold = evidence_threshold_for(settings, kb_path)
    for answerer in answerers:
        answerer.min_evidence = threshold


def build_answerer(
    settings: Settings,
    *,
    kb: Any | None = None,
    adapter: str | None = None,
    generator: Any | None = None,
):
    """The Answerer for these settings (or ExtractiveAnswerer when generation.backend is 'extractive')."""
    from slm.answering.answerer import Answerer, ExtractiveAnswerer

    if kb is None:
        from slm.kb.local import open_for_serving

        kb = open_for_serving(settings)
    kb_path = Path(kb.path)
    threshold = evidence_threshold_for(settings, kb_path)
    retriever = kb.retriever()
    if generator is None and settings.generation.backend == EXTRACTIVE_BACKEND:
        return ExtractiveAnswerer(retriever, settings.answering, settings.retrieval, min_evidence=threshold)
    adapter_audiences = None
    if generator is None:
        from slm.generation.backends import load_generator

        resolved = resolve_adapter(settings, kb_path, adapter)
        generator = load_generator(settings.generation, resolved.path if resolved else None)
        if resolved is not None:
            generator.adapter = resolved.label
            adapter_audiences = resolved.serving_audiences
    return Answerer(
        retriever,
        generator,
        settings.answering,
        settings.retrieval,
        settings.generation,
        min_evidence=threshold,
        adapter_audiences=adapter_audiences,
        base_generator=lambda: _load_base(settings),
    )


class LiveAnswerer:
    """The served answerer that follows the knowledge base without a restart (UI, CLI chat, embedders).

    Before a question (at most every `check_every` seconds) it switches the KB to an index generation
    another process committed (`slm ingest`, `slm retrain`), and when the registry's promoted version
    changed (promotion, `slm models rollback`) it builds the new answerer in the background and swaps
    it in once loaded. A question already running keeps the answerer it started with, so nothing in
    flight fails; a failed load keeps the previous answerer serving.
    """

    def __init__(self, settings: Settings, kb: Any, *, check_every: float = 1.0, background: bool = True,
                 build: Any = None):
        import threading

        from slm.answering.follow import Follower

        self.settings = settings
        self.kb = kb
        self._build = build or (lambda adapter: build_answerer(settings, kb=kb, adapter=adapter))
        self._lock = threading.Lock()
        self._serving = self._wanted()
        self._current = self._build(self._serving or "base")
        self._follower = Follower(
            reload_index=self._reload_index, wanted=self._wanted, serving=lambda: self._serving,
            switch=self._switch, check_every=check_every, background=background,
            describe=lambda version: version or "the base model", thread_name="slm-live-switch")

    @property
    def check_every(self) -> float:
        """How often, at most, to look for a new index or promoted adapter (seconds)."""
        return self._follower.check_every

    @check_every.setter
    def check_every(self, seconds: float) -> None:
        self._follower.check_every = seconds

    @property
    def background(self) -> bool:
        """Whether a switch loads in a background thread (False: inline, before the next answer)."""
        return self._follower.background

    @background.setter
    def background(self, value: bool) -> None:
        self._follower.background = value

    def _reload_index(self) -> bool:
        changed = bool(self.kb.reload_if_changed())
        if changed:
            follow_threshold(self.settings, Path(self.kb.path), [self._current])
        return changed

    def _wanted(self) -> str | None:
        """The registry version the service should serve now (None: the base model)."""
        if self.settings.generation.adapter is not None:  # pinned by configuration: never follow
            return self.settings.generation.adapter
        try:
            resolved = resolve_adapter(self.settings, Path(self.kb.path), None)
        except (RegistryError, ModelLoadError) as exc:
            log.warning("ignoring the adapter registry: %s", exc)
            return self._serving if hasattr(self, "_serving") else None
        return resolved.label if resolved else None

    @property
    def current(self) -> Any:
        return self._current

    def refresh(self) -> bool:
        """Pick up a new index and a newly promoted (or rolled back) adapter; True if anything changed."""
        return self._follower.refresh()

    def _switch(self, wanted: str | None) -> None:
        answerer = self._build(wanted or "base")
        with self._lock:
            self._current, self._serving = answerer, wanted
        log.info("now serving %s", wanted or "the base model")

    def answer(self, question: str, **kwargs: Any) -> Any:
        self.refresh()
        return self._current.answer(question, **kwargs)

    def stream(self, question: str, **kwargs: Any) -> Any:
        self.refresh()
        answerer = self._current  # this question keeps it even if a switch lands meanwhile
        yield from answerer.stream(question, **kwargs)

    def __getattr__(self, name: str) -> Any:  # model_name, adapter, answer_closed_book, retrieve, ...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._current, name)


def build_live_answerer(settings: Settings, *, kb: Any | None = None, check_every: float = 1.0) -> LiveAnswerer:
    """`build_answerer` that follows new index generations and promotions/rollbacks while serving."""
    if kb is None:
        from slm.kb.local import open_for_serving

        kb = open_for_serving(settings)
    return LiveAnswerer(settings, kb, check_every=check_every)
