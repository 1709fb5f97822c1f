"""The models the server answers with: loads them off the request path, resolves a requested model id
for a key (404/403), and picks up a new index or a newly promoted adapter without a restart.

Model ids: `slm` (the served default: the promoted adapter, or the base model when there is none or
the key may not use it), `slm-base` (the base model), `slm:vN` (a registry adapter version).
A key may use an adapter when the adapter's training audiences are all among the key's labels
(an adapter recorded without audiences was trained on every document: trusted `*` keys only).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from slm.access.labels import may_use_adapter
from slm.adapters.serving import promoted_version, servable
from slm.answering.follow import Follower
from slm.api.errors import ApiError
from slm.config import Settings

log = logging.getLogger("slm.api")

DEFAULT_ID = "slm"
BASE_ID = "slm-base"
VERSION_PREFIX = "slm:"
CHECK_EVERY_S = 1.0  # how often, at most, to look for a new index or promoted adapter
MAX_EXTRA_ANSWERERS = 2  # explicitly requested adapter versions kept loaded

# (adapter: a registry version, an adapter path, or None for the base model) -> an Answerer
AnswererFactory = Callable[[str | None], Any]


class AnswererLike(Protocol):
    def answer(self, question: str, **kwargs: Any) -> Any: ...
    def stream(self, question: str, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class ServedModel:
    id: str  # what the caller names: slm-base, slm:v2, or a configured adapter path's id
    adapter: str | None  # registry version or path; None = the base model
    audiences: tuple[str, ...] | None  # training audiences; None = unrestricted (base model, operator's path)
    created: int = 0


def may_use(model: ServedModel, caller: frozenset[str] | None) -> bool:
    """caller None is a trusted key; an adapter's training audiences must all be the caller's."""
    return may_use_adapter(model.audiences, caller)


def _open_registry(settings: Settings):
    try:
        from slm.adapters.registry import Registry
    except ImportError:
        return None
    return Registry(settings.kb / "adapters")


class KbLoader:
    """The real thing: the knowledge base on disk and answerers from slm.answering.service.build_answerer."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.kb = None

    def open(self) -> None:
        from slm.kb.local import open_for_serving

        self.kb = open_for_serving(self.settings)  # the KB folder, or the shared pgvector database
        self.kb.index()  # load the index and the embedder now, not on the first request
        self.kb.embedder()

    def build(self, adapter: str | None) -> Any:
        from slm.answering.service import build_answerer

        return build_answerer(self.settings, kb=self.kb, adapter=adapter if adapter is not None else "base")

    def reload_if_changed(self) -> bool:
        """The retrievers read the KB's current index, so switching the KB to it is enough."""
        return bool(self.kb is not None and self.kb.reload_if_changed())

    def index_switched(self, answerers: Iterable[Any]) -> None:
        """The served answerers get the new generation's threshold (under `auto` its embedder may have changed)."""
        from slm.answering.service import follow_threshold

        follow_threshold(self.settings, Path(self.kb.path), answerers)


class FactoryLoader:
    """Answerers from an injected factory (tests, embedding the API in another program)."""

    def __init__(self, factory: AnswererFactory):
        self.factory = factory

    def open(self) -> None:
        pass

    def build(self, adapter: str | None) -> Any:
        return self.factory(adapter)

    def reload_if_changed(self) -> bool:
        return False

    def index_switched(self, answerers: Iterable[Any]) -> None:
        pass  # an injected factory's answerers keep the threshold they were built with


class ModelHost:
    """Holds loaded answerers by model id; thread-safe; loading happens in background threads."""

    def __init__(self, settings: Settings, loader: KbLoader | FactoryLoader, registry: Any = None):
        self.settings = settings
        self.loader = loader
        self.registry = registry
        self.error: str | None = None
        self._lock = threading.RLock()
        self._answerers: dict[str, tuple[ServedModel, Any]] = {}  # model id -> (model, answerer)
        self._extra_order: list[str] = []
        self._default: ServedModel | None = None
        self._ready = threading.Event()
        self._follower = Follower(reload_index=self._reload_index, wanted=self._current_default,
                                  serving=lambda: self.default_model, switch=self._switch_default,
                                  check_every=CHECK_EVERY_S, describe=lambda m: m.id if m else "no model")

    def _reload_index(self) -> bool:
        if not self.loader.reload_if_changed():
            return False
        with self._lock:
            served = [answerer for _, answerer in self._answerers.values()]
        self.loader.index_switched(served)
        return True

    # ---- start-up and readiness
    def start(self) -> None:
        threading.Thread(target=self._load_initial, name="slm-load", daemon=True).start()

    def load_now(self) -> None:
        self._load_initial()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def _load_initial(self) -> None:
        try:
            self.loader.open()
            default = self._current_default()
            answerer = self.loader.build(default.adapter)
            with self._lock:
                self._default = default
                self._answerers[default.id] = (default, answerer)
            self._ready.set()
            log.info("model ready: %s", default.id)
        except Exception as exc:  # readyz reports it; the process stays up for healthz
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("loading the model failed")

    # ---- which models exist
    def _current_default(self) -> ServedModel:
        configured = self.settings.generation.adapter
        if configured and configured.strip().lower() not in ("base", "none"):
            version = self._version(configured)
            label = Path(configured).name if Path(configured).expanduser().is_dir() else configured
            return version or ServedModel(id=f"{VERSION_PREFIX}{label}", adapter=configured, audiences=None)
        if self.registry is not None and not configured:
            current = promoted_version(self.registry, self.settings.generation.model)
            if current is not None:
                return self._served_version(current)
        return ServedModel(id=BASE_ID, adapter=None, audiences=None)

    def _served_version(self, v: Any) -> ServedModel:
        created = 0
        try:
            from datetime import datetime

            created = int(datetime.fromisoformat(str(v.created)).timestamp())
        except (ValueError, TypeError, AttributeError):
            pass
        return ServedModel(
            id=f"{VERSION_PREFIX}{v.version}",
            adapter=v.version,
            audiences=tuple(getattr(v, "audiences", ()) or ()),
            created=created,
        )

    def _version(self, name: str) -> ServedModel | None:
        if self.registry is None:
            return None
        for v in self.registry.versions():
            if v.version == name and servable(v, self.settings.generation.model):
                return self._served_version(v)
        return None

    def models_for(self, caller: frozenset[str] | None) -> list[tuple[ServedModel, bool]]:
        """(model, is_default) for every model the caller may use."""
        default = self.default_for(caller)
        out = [(default, True)]
        base = ServedModel(id=BASE_ID, adapter=None, audiences=None)
        if default.id != BASE_ID:
            out.append((base, False))
        if self.registry is not None:
            for v in self.registry.versions():
                served = self._served_version(v)
                if not servable(v, self.settings.generation.model) or served.id == default.id:
                    continue
                if may_use(served, caller):
                    out.append((served, False))
        return out

    def default_for(self, caller: frozenset[str] | None) -> ServedModel:
        with self._lock:
            default = self._default
        if default is None:
            raise ApiError(503, "the model is still loading; retry shortly", code="not_ready",
                           headers={"Retry-After": "5"})
        if may_use(default, caller):
            return default
        return ServedModel(id=BASE_ID, adapter=None, audiences=None)

    def resolve(self, requested: str | None, caller: frozenset[str] | None) -> ServedModel:
        """The model to answer with; 404 for an unknown id, 403 for one this key may not use."""
        name = (requested or "").strip()
        if name in ("", DEFAULT_ID):
            return self.default_for(caller)
        if name == BASE_ID:
            return ServedModel(id=BASE_ID, adapter=None, audiences=None)
        with self._lock:
            if self._default is not None and name == self._default.id:
                served = self._default
            else:
                served = None
        version = name[len(VERSION_PREFIX):] if name.startswith(VERSION_PREFIX) else name
        served = served or self._version(version)
        if served is None:
            raise ApiError(404, f"model '{name}' does not exist; GET /v1/models lists the models you may use",
                           code="model_not_found", param="model")
        if not may_use(served, caller):
            raise ApiError(403, f"this API key may not use model '{name}': it was trained on documents for "
                           "audiences the key does not hold", code="model_not_allowed", param="model")
        return served

    # ---- answerers (call from worker threads: may load weights)
    def answerer(self, model: ServedModel) -> Any:
        with self._lock:
            found = self._answerers.get(model.id)
        if found is not None:
            return found[1]
        built = self.loader.build(model.adapter)
        with self._lock:
            if model.id in self._answerers:
                return self._answerers[model.id][1]
            self._answerers[model.id] = (model, built)
            if self._default is None or model.id != self._default.id:
                self._extra_order.append(model.id)
                while len(self._extra_order) > MAX_EXTRA_ANSWERERS:
                    self._answerers.pop(self._extra_order.pop(0), None)
        return built

    # ---- picking up changes between requests
    def maybe_refresh(self) -> None:
        """At most once a second: reload a rewritten index, and switch to a newly promoted adapter."""
        if self._ready.is_set():  # before the first load there is nothing to switch from
            self._follower.refresh()

    def _switch_default(self, wanted: ServedModel) -> None:
        answerer = self.answerer(wanted)
        with self._lock:
            old = self._default
            self._default = wanted
            if wanted.id in self._extra_order:
                self._extra_order.remove(wanted.id)
            if old is not None and old.id != wanted.id:
                self._answerers.pop(old.id, None)
            self._answerers[wanted.id] = (wanted, answerer)
        log.info("now serving %s (was %s)", wanted.id, old.id if old else None)

    @property
    def default_model(self) -> ServedModel | None:
        with self._lock:
            return self._default
