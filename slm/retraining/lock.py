"""One retraining run per knowledge base at a time: an OS file lock (released even when the process is killed)."""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from slm.errors import SlmError

LOCK_FILE = "retrain.lock"


class RetrainLocked(SlmError):
    """Another `slm retrain` holds the lock on this knowledge base."""

    exit_code = 75  # EX_TEMPFAIL: schedulers may simply try again later


@contextmanager
def retrain_lock(kb_path: Path) -> Iterator[None]:
    """Hold `<kb>/retrain.lock` for the run; raise RetrainLocked naming the holder if it is taken."""
    path = Path(kb_path) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RetrainLocked(_held_message(fd, kb_path)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "started": time.time()}).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _held_message(fd: int, kb_path: Path) -> str:
    try:
        holder = json.loads(os.pread(fd, 256, 0).decode() or "{}")
    except (ValueError, OSError):
        holder = {}
    pid = holder.get("pid", "unknown")
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["started"])) if "started" in holder else "?"
    return (f"another `slm retrain` is running on {kb_path} (pid {pid}, since {since}); "
            "wait for it to finish (or stop that process), then retry")
