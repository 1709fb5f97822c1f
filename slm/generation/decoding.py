"""Where every backend's answer ends: the stop sequences, the scanner that cuts a stream at them, and the
rule for when an answer may start with the abstention. Shared by slm.generation.backends and slm.generation.llamacpp.
"""

from __future__ import annotations

from typing import Sequence

from slm.config import GenerationSettings

# A model that writes any of these has stopped answering and started inventing the next turn.
DEFAULT_STOP: tuple[str, ...] = (
    "\n\n",  # answers are one short paragraph; a small model that starts another one rambles
    "Question:",
    "Passages:",
    "<passage",
    "</passage",
    "<|im_end|>",
    "<|im_start|>",
    "<|endoftext|>",
    "\nUser:",
    "\n### ",
)


class StopScanner:
    """Cuts a stream of text at the first stop sequence, holding back text that may begin one."""

    def __init__(self, stops: Sequence[str]):
        self.stops = tuple(s for s in stops if s)
        self.buffer = ""
        self.stopped = False
        self.started = False  # leading blank lines are dropped, so a stop cannot match before the answer
        self.emitted = ""  # the tail of what was already let through (for the paragraph rule)

    def feed(self, delta: str) -> str:
        if self.stopped:
            return ""
        if not self.started:
            delta = delta.lstrip()
            self.started = bool(delta)
        self.buffer += delta
        cuts = [i for i in (self.buffer.find(s) for s in self.stops) if i >= 0]
        para = self.buffer.find("\n\n")
        while para >= 0 and "\n\n" in self.stops and para in cuts and not self._ends_a_thought(para):
            # "The answer is:\n\n..." goes on after a blank line: only a finished sentence ends the answer
            cuts.remove(para)
            later = self.buffer.find("\n\n", para + 2)
            if later >= 0:
                cuts.append(later)
            para = later
        if cuts:
            out, self.buffer, self.stopped = self.buffer[: min(cuts)], "", True
            return out
        hold = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.buffer)), hold, -1):
                if self.buffer.endswith(stop[:n]):
                    hold = n
                    break
        out = self.buffer[: len(self.buffer) - hold]
        self.buffer = self.buffer[len(self.buffer) - hold :]
        self.emitted = (self.emitted + out)[-8:]
        return out

    def flush(self) -> str:
        out, self.buffer = ("" if self.stopped else self.buffer), ""
        return out

    def _ends_a_thought(self, at: int) -> bool:
        before = (self.emitted + self.buffer[:at]).rstrip()
        return not before or before[-1] in ".!?)]\"'`*"


def stop_sequences(settings: GenerationSettings) -> tuple[str, ...]:
    return DEFAULT_STOP + tuple(getattr(settings, "stop", None) or ())




def gate_abstention(probability: float, settings: GenerationSettings) -> bool:
    """Whether the answer's first token may not be the abstention's (too unlikely for the model to mean it)."""
    return 0 < settings.abstain_min_prob and probability < settings.abstain_min_prob
