"""Follow the knowledge base and the promoted adapter while serving: the one rule behind the API's
`ModelHost` and the UI/CLI's `LiveAnswerer`."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Generic, TypeVar

log = logging.getLogger(__name__)

Model = TypeVar("Model")  # what the owner serves by: a registry version label, an API ServedModel, ...


class Follower(Generic[Model]):
    """Before a question (at most every `check_every` seconds): switch the KB to an index generation another
    process committed, then, when the model wanted now differs from the one serving (a promotion, a
    rollback), load it and swap it in, in a background thread unless `background` is False.

    One switch at a time. A question already running keeps the answerer it started with (the owner's
    `switch` only replaces what later questions get), so nothing in flight fails; a failed index reload
    or load is logged and the previous one keeps serving.
    """

    def __init__(
        self,
        *,
        reload_index: Callable[[], bool],  # True when it switched to a new index generation
        wanted: Callable[[], Model],  # the model to serve now; raising means "keep the current one"
        serving: Callable[[], Model],
        switch: Callable[[Model], None],  # loads `wanted` and makes it the served one; raises if it cannot
        check_every: float = 1.0,
        background: bool = True,
        describe: Callable[[Model], str] = str,  # a model's name in the log
        thread_name: str = "slm-switch",
    ):
        self.reload_index = reload_index
        self.wanted = wanted
        self.serving = serving
        self.switch = switch
        self.check_every = check_every
        self.background = background
        self.describe = describe
        self.thread_name = thread_name
        self._lock = threading.Lock()
        self._last_check = 0.0
        self._switching = False

    def refresh(self) -> bool:
        """True if the index changed, or (switching in the foreground) the served model did."""
        with self._lock:
            now = time.monotonic()
            if now - self._last_check < self.check_every:
                return False
            self._last_check = now
        changed = False
        try:
            changed = bool(self.reload_index())
        except Exception:  # keep serving the index already loaded
            log.exception("reloading the index failed; serving the previous one")
        if changed:
            log.info("switched to a new index generation")
        try:
            wanted = self.wanted()
        except Exception:
            log.exception("checking for a newly promoted adapter failed; serving the current one")
            return changed
        with self._lock:
            if self._switching or wanted == self.serving():
                return changed
            self._switching = True
        if self.background:
            threading.Thread(target=self._switch, args=(wanted,), name=self.thread_name, daemon=True).start()
            return changed
        return self._switch(wanted) or changed

    def _switch(self, wanted: Model) -> bool:
        try:
            self.switch(wanted)
            return True
        except Exception:
            log.exception("loading %s failed; still serving %s", self.describe(wanted), self.describe(self.serving()))
            return False
        finally:
            with self._lock:
                self._switching = False
