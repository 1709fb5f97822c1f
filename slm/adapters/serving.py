"""Which registered adapter may be served: the one rule behind the answering service (CLI, UI, evaluation)
and the API's model host."""

from __future__ import annotations

import logging
from typing import Any

from slm.errors import RegistryError

log = logging.getLogger(__name__)

REJECTED = "rejected"  # AdapterInfo.status of a version the gate turned down


def servable(version: Any, base_model: str) -> bool:
    """Not rejected by evaluation, and trained on `base_model` (an unrecorded base is taken to fit): a LoRA's
    shapes fit only the base it was trained on, and a rejected version lost to the one it would replace."""
    return version.status != REJECTED and (not version.base or version.base == base_model)


def promoted_version(registry: Any, base_model: str) -> Any | None:
    """The registry's promoted version when it may be served on `base_model`, else None (the base model serves).

    An unreadable registry, or a promoted version that was rejected or trained on another base, is logged and
    serves the base model rather than failing the service.
    """
    try:
        current = registry.current()
    except RegistryError as exc:
        log.warning("ignoring the adapter registry: %s", exc)
        return None
    if current is None:
        return None
    if current.status == REJECTED:
        log.warning("promoted adapter %s is marked rejected: using the base model", current.version)
        return None
    if not servable(current, base_model):
        log.warning("promoted adapter %s was trained on %s, not %s: using the base model",
                    current.version, current.base, base_model)
        return None
    return current
