"""The package layout's contract: no import cycle anywhere in slm/ (lazy imports count), and the library
never imports the interfaces built on it (pipelines/, ui/). `python scripts/import_graph.py` says the same."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _checker():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_slm_has_no_import_cycle_and_no_upward_import():
    checker = _checker()
    graph = checker.import_graph()
    assert "slm.config" in graph and len(graph) > 50  # the checker really read the tree
    assert "slm.generation.loading" in graph["slm.adapters.merge"]  # function-level imports are seen
    assert checker.cycles(graph) == []
    assert checker.violations(graph) == []


def test_the_checker_finds_a_cycle_and_a_forbidden_import():
    checker = _checker()
    graph = {"slm.a": {"slm.b"}, "slm.b": {"slm.c"}, "slm.c": {"slm.a"}, "slm.d": {"pipelines.train"}}
    assert checker.cycles(graph) == [["slm.a", "slm.b", "slm.c"]]
    assert checker.violations(graph) == ["slm.d -> pipelines.train"]
