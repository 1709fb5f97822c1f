"""What `--variants` names: a generator (extractive, base, current, vN) and/or a retrieval setting.

`current+bm25` is the promoted adapter over BM25 retrieval; a bare retrieval name (`dense`, `bm25`,
`hybrid`, `rerank`, `hybrid+rerank`) is scored on retrieval only; a bare generator uses the configured
retrieval setting. `base@SPEC` is another untuned base model than generation.model (e.g.
`base@package:qwen2.5-0.5b`), so several bases are compared in one run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from slm.errors import ConfigError

GENERATORS = ("extractive", "base", "current")
MODES = ("dense", "bm25", "hybrid")
RERANK = "rerank"
_VERSION_RE = re.compile(r"^v\d+$")


@dataclass(frozen=True)
class RetrievalSetting:
    """How passages are found: a search mode, optionally reranked."""

    mode: str
    rerank: bool = False

    @property
    def label(self) -> str:
        return f"{self.mode}+rerank" if self.rerank else self.mode


@dataclass(frozen=True)
class VariantSpec:
    """One column of the report: a generator (None: retrieval only) over one retrieval setting."""

    name: str
    generator: str | None  # "extractive" | "base" | "current" | "v<N>" | None
    retrieval: RetrievalSetting
    model: str | None = None  # with generator "base": this model spec instead of generation.model

    @property
    def generates(self) -> bool:
        return self.generator is not None

    @property
    def uses_model(self) -> bool:
        return self.generator is not None and self.generator != "extractive"


def parse_variant(name: str, *, default_mode: str = "hybrid", default_rerank: bool = False) -> VariantSpec:
    """Parse one name such as `current`, `v2+bm25`, `hybrid+rerank` or `extractive+dense`."""
    raw = [p.strip() for p in name.split("+")]
    if not name.strip():
        raise ConfigError("empty variant name in --variants")
    if not all(raw):
        raise ConfigError(f"variant '{name}' has an empty part (a stray '+')")
    generator: str | None = None
    model: str | None = None
    mode: str | None = None
    rerank: bool | None = None
    parts = []
    for given in raw:
        part = given.lower()
        if "@" in given:  # base@SPEC: the spec keeps its case (a path may need it)
            head, _, model = given.partition("@")
            part = head.strip().lower()
            model = model.strip()
            if part != "base" or not model:
                raise ConfigError(f"variant part '{given}': only an untuned base takes a model, as base@SPEC")
            parts.append(f"base@{model}")
        else:
            parts.append(part)
        if part in GENERATORS or _VERSION_RE.match(part):
            if generator is not None:
                raise ConfigError(f"variant '{name}' names two generators ('{generator}' and '{part}')")
            generator = part
        elif part in MODES:
            if mode is not None:
                raise ConfigError(f"variant '{name}' names two retrieval modes ('{mode}' and '{part}')")
            mode = part
        elif part == RERANK:
            rerank = True
        elif part in ("norerank", "no-rerank"):
            rerank = False
        else:
            known = ", ".join([*GENERATORS, "v<N>", *MODES, RERANK])
            raise ConfigError(f"unknown variant part '{part}' in '{name}'; known: {known} (joined with +)")
    setting = RetrievalSetting(mode or default_mode, default_rerank if rerank is None else rerank)
    return VariantSpec("+".join(parts), generator, setting, model)


def parse_variants(
    value: str | Sequence[str], *, default_mode: str = "hybrid", default_rerank: bool = False
) -> list[VariantSpec]:
    """Parse a comma-separated list (or several); duplicates are dropped, order kept."""
    names = [value] if isinstance(value, str) else list(value)
    specs: dict[str, VariantSpec] = {}
    for item in names:
        for name in item.split(","):
            if name.strip():
                spec = parse_variant(name, default_mode=default_mode, default_rerank=default_rerank)
                specs.setdefault(spec.name, spec)
    if not specs:
        raise ConfigError("--variants names nothing to evaluate")
    return list(specs.values())


def retrieval_settings(specs: Sequence[VariantSpec]) -> list[RetrievalSetting]:
    """The distinct retrieval settings the variants need, each scored once."""
    return list(dict.fromkeys(s.retrieval for s in specs))
