"""Build the answerer for each variant: the extractive baseline, the base model, the promoted or a named adapter.

Answerers are built as the service builds them (calibrated threshold, adapter audiences with a fall back
to the base model), so an `--audience` run measures what that audience would really be served.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from slm.config import Settings
from slm.evaluation.records import ModelIdentity
from slm.evaluation.variants import VariantSpec


def _registry_entry(kb_path: Path, version: str | None) -> dict[str, Any]:
    if not version:
        return {}
    try:
        from slm.adapters.registry import Registry

        entry = Registry(Path(kb_path) / "adapters").get(version)
    except Exception:  # an adapter given by path has no registry entry
        return {}
    return {
        "version": entry.version,
        "base": entry.base,
        "created": entry.created,
        "data_hash": entry.data_hash,
        "status": entry.status,
        "audiences": list(entry.audiences),
        "data_examples": entry.info.data_examples,
        "exclude_docs": list(entry.info.exclude_docs),
        "eval_qa_guarded": list(entry.info.eval_qa),
    }


class ModelAnswererFactory:
    """Makes answerers with the real generators; each set of weights loads once per run."""

    def __init__(self, settings: Settings, kb_path: Path, *, max_new_tokens: int):
        self.settings = settings
        self.kb_path = Path(kb_path)
        self.generation = dataclasses.replace(settings.generation, max_new_tokens=max_new_tokens, temperature=0.0)
        self._generators: dict[tuple[str, str | None], Any] = {}
        self.notes: list[str] = []

    def threshold(self) -> float:
        from slm.answering.service import evidence_threshold_for

        return evidence_threshold_for(self.settings, self.kb_path)

    def resolve(self, generator: str) -> Any | None:
        """The service's ResolvedAdapter (path, label, audiences) for base / current / vN; None = base."""
        from slm.answering.service import resolve_adapter

        if generator == "base":
            return None
        if generator == "current":
            settings = dataclasses.replace(
                self.settings, generation=dataclasses.replace(self.settings.generation, adapter=None)
            )
            resolved = resolve_adapter(settings, self.kb_path, None)
            if resolved is None:
                self.notes.append("'current': no promoted adapter, so the base model answered")
            return resolved
        return resolve_adapter(self.settings, self.kb_path, generator)

    def generator(self, path: Path | None, label: str | None, model: str | None = None) -> Any:
        generation = dataclasses.replace(self.generation, model=model) if model else self.generation
        key = (generation.model, str(path) if path else None)
        if key not in self._generators:
            from slm.generation.backends import load_generator

            loaded = load_generator(generation, path)
            if label is not None:
                loaded.adapter = label
            self._generators[key] = loaded
        return self._generators[key]

    def __call__(self, spec: VariantSpec, retriever: Any) -> tuple[Any, ModelIdentity]:
        from slm.answering.answerer import Answerer, ExtractiveAnswerer

        retrieval = dataclasses.replace(self.settings.retrieval, mode=spec.retrieval.mode, rerank=spec.retrieval.rerank)
        threshold = self.threshold()
        if spec.generator == "extractive":
            answerer = ExtractiveAnswerer(retriever, self.settings.answering, retrieval, min_evidence=threshold)
            return answerer, ModelIdentity(model="extractive")
        resolved = self.resolve(spec.generator or "base")
        path = Path(resolved.path) if resolved else None
        label = resolved.label if resolved else None
        # A named version runs on the base it was trained on (v1 on SmolLM2 and v2 on Qwen in one run); its
        # LoRA shapes fit no other base.
        model = spec.model or (resolved.base if resolved else None)
        answerer = Answerer(
            retriever,
            self.generator(path, label, model),
            self.settings.answering,
            retrieval,
            self.generation,
            min_evidence=threshold,
            adapter_audiences=resolved.serving_audiences if resolved else None,
            base_generator=lambda: self.generator(None, None, model),
        )
        identity = ModelIdentity(
            model=model or self.settings.generation.model,
            adapter=label,
            adapter_path=str(path) if path else None,
            registry=_registry_entry(self.kb_path, label),
        )
        return answerer, identity
