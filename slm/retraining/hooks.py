"""Test hooks at pipeline stages, driven by the environment (used by the kill tests; inert otherwise).

`SLM_RETRAIN_KILL_AT=<stage>`: the process SIGKILLs itself when it reaches the stage.
`SLM_RETRAIN_PAUSE_AT=<stage>` (+ `SLM_RETRAIN_PAUSE_FILE=<path>`): writes the file and sleeps there.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

KILL_ENV = "SLM_RETRAIN_KILL_AT"
PAUSE_ENV = "SLM_RETRAIN_PAUSE_AT"
PAUSE_FILE_ENV = "SLM_RETRAIN_PAUSE_FILE"
PAUSE_MAX_S = 300.0


def at_stage(stage: str) -> None:
    """Called by the pipeline as it enters each stage."""
    if os.environ.get(KILL_ENV) == stage:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(PAUSE_ENV) == stage:
        marker = os.environ.get(PAUSE_FILE_ENV)
        if marker:
            Path(marker).write_text(f"{os.getpid()} {stage}\n", encoding="utf-8")
        deadline = time.monotonic() + PAUSE_MAX_S
        while time.monotonic() < deadline:
            time.sleep(0.2)
