"""Model loading lives below serving and export: no import cycle runs through them (scripts/import_cycles.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "import_cycles.py"
LOADING_STACK = ("slm.generation", "slm.llamacpp", "slm.training.gguf_export", "slm.training.merge",
                 "slm.loading", "slm.models", "slm.decoding")


def _script():
    spec = importlib.util.spec_from_file_location("import_cycles", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_cycle_runs_through_model_loading_serving_or_export():
    script = _script()
    files = sorted((script.ROOT / "slm").rglob("*.py"))
    known = {script.module_name(f) for f in files}
    graph = {script.module_name(f): script.imports_of(f, known) for f in files}
    assert "slm.loading" in graph["slm.training.merge"]  # the checker sees function-level imports
    through = [c for c in script.cycles(graph) if any(m in c for m in LOADING_STACK)]
    assert through == []


def test_the_checker_finds_a_cycle():
    script = _script()
    assert script.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
