"""Variant names: generators, retrieval settings and their combinations."""

import pytest

from slm.errors import ConfigError
from slm.evaluation.variants import RetrievalSetting, parse_variant, parse_variants, retrieval_settings


def test_generators_take_the_configured_retrieval():
    spec = parse_variant("current", default_mode="hybrid")
    assert spec.generator == "current" and spec.retrieval == RetrievalSetting("hybrid", False)
    assert spec.uses_model and spec.generates


def test_combinations_and_retrieval_only():
    spec = parse_variant("v2+bm25+rerank")
    assert (spec.generator, spec.retrieval.label) == ("v2", "bm25+rerank")
    only = parse_variant("dense")
    assert only.generator is None and not only.generates and only.retrieval.label == "dense"
    assert parse_variant("rerank", default_mode="bm25").retrieval == RetrievalSetting("bm25", True)
    assert not parse_variant("extractive").uses_model


def test_retrieval_settings_deduplicated():
    specs = parse_variants("extractive,base,current+bm25,bm25,dense", default_mode="hybrid")
    assert [s.name for s in specs] == ["extractive", "base", "current+bm25", "bm25", "dense"]
    assert [r.label for r in retrieval_settings(specs)] == ["hybrid", "bm25", "dense"]


def test_another_base_model_is_a_variant_of_its_own():
    specs = parse_variants("base,base@package:qwen2.5-0.5b+bm25,BASE@/models/Qwen.gguf", default_mode="hybrid")
    assert [(s.name, s.generator, s.model) for s in specs] == [
        ("base", "base", None),
        ("base@package:qwen2.5-0.5b+bm25", "base", "package:qwen2.5-0.5b"),
        ("base@/models/Qwen.gguf", "base", "/models/Qwen.gguf"),  # the path keeps its case
    ]
    assert specs[1].retrieval.label == "bm25" and specs[1].uses_model


@pytest.mark.parametrize("bad", ["gpt4", "base+current", "bm25+dense", ",", "current+", "current@package:x", "base@",
                                 "base@a+base@b"])
def test_bad_names(bad):
    with pytest.raises(ConfigError):
        parse_variants(bad)
