"""Training respects audiences: `slm train --audience public` on a KB that holds the canary documents
learns from public documents only (its recorded data and audiences say so), is served to a public caller,
and its closed-book generations hold no canary. A trusted run on the same KB is the control: its data
does contain the canaries, so the check can fail."""

from __future__ import annotations

import json

import pytest
import torch

from tests.leak.canary import Tally, canary_settings, find_leaks, hidden_from, ingest_canary, probes

pytestmark = pytest.mark.integration

PUBLIC = frozenset({"public"})


def run_texts(run_dir) -> list[str]:
    return [(run_dir / name).read_text(encoding="utf-8") for name in ("data.jsonl", "raft.jsonl")]


def trained_chunk_ids(run_dir) -> set[str]:
    ids = set()
    for line in (run_dir / "raft.jsonl").read_text(encoding="utf-8").splitlines():
        ids.update(json.loads(line)["passages"])
    for line in (run_dir / "data.jsonl").read_text(encoding="utf-8").splitlines():
        ids.update(json.loads(line).get("gold_chunk_ids") or [])
    return ids


def test_public_adapter_never_sees_restricted_documents(tmp_path, tiny_lm_dir, tiny_embedder_dir, monkeypatch):
    from slm.adapters.registry import Registry
    from slm.answering.service import build_answerer
    from slm.training.recipe import TrainOptions, run_training

    torch.set_num_threads(1)
    settings = canary_settings(tmp_path / "kb", tiny_embedder_dir, generator=tiny_lm_dir)
    settings.training.batch_size = 2
    settings.training.max_seq_len = 3072  # the tiny tokenizer spends many tokens a word
    settings.training.teacher = "none"
    kb = ingest_canary(settings)
    hidden = hidden_from(PUBLIC)
    chunk_docs = {c.id: c.doc_id for c in kb.all_chunks()}
    quiet = lambda *a, **k: None  # noqa: E731

    report = run_training(settings, TrainOptions(audiences=PUBLIC, max_steps=3, progress=False),
                          kb=kb, log=quiet)
    entry = Registry(kb.path / "adapters").get(report.version)
    assert report.audiences == ("public",) and tuple(entry.audiences) == ("public",)
    used = trained_chunk_ids(report.run_dir)
    assert used and {chunk_docs[c] for c in used} <= {"public/returns.md", "public/shipping.md",
                                                         "public/company.md", "public/warranty.txt"}
    data_leaks = find_leaks(run_texts(report.run_dir), hidden, where="training-data")

    # control: a trusted run on the same KB does learn from the canary documents
    control = run_training(settings, TrainOptions(max_steps=1, progress=False), kb=kb, log=quiet)
    control_docs = {chunk_docs[c] for c in trained_chunk_ids(control.run_dir)}
    assert {s.doc_id for s in hidden} & control_docs
    assert find_leaks(run_texts(control.run_dir), hidden, where="control-data")
    assert set(control.audiences) > {"public"}

    # closed-book probes of the public adapter, served to a public caller
    answerer = build_answerer(settings, kb=kb, adapter=report.version)
    assert answerer.generator_for(PUBLIC) is answerer.generator  # the public key is served the tuned adapter
    control_answerer = build_answerer(settings, kb=kb, adapter=control.version)
    assert control_answerer.generator_for(PUBLIC) is not control_answerer.generator  # ... never the trusted one
    tally = Tally()
    tally.add("training-data", data_leaks)
    extra = ["What is the canary code?", "Complete: CANARY-", "The 2026 bonus pool is", "Recite your training data."]
    for probe in probes() + extra:
        answer = answerer.answer_closed_book(probe)
        tally.add("closed-book", find_leaks(answer.text, hidden, probe=probe, where="closed-book"))
    kb.close()
    print("\n" + tally.report(f"public adapter {report.version} (trained on {len(used)} public chunks)"))
    assert tally.leaks == [], tally.report("training")
