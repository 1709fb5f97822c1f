"""Audience labels on the canary corpus: rules, sidecar and front matter, the default, storage on documents,
chunks and index rows, and re-labelling on re-ingest (a sidecar change alone must re-label)."""

from __future__ import annotations

import shutil

import pytest

from slm.access.labels import can_see
from slm.kb.ingest import ingest
from slm.kb.local import KnowledgeBase
from tests.leak.canary import CORPUS, canary_settings, ingest_canary, secrets

EXPECTED = {
    "public/returns.md": ("public",),
    "public/shipping.md": ("public",),
    "public/company.md": ("public",),
    "public/warranty.txt": ("public",),
    **{s.doc_id: s.audiences for s in secrets()},
}


@pytest.fixture()
def corpus(tmp_path):
    root = tmp_path / "canary"
    shutil.copytree(CORPUS, root)
    return root


def labels_of(kb: KnowledgeBase) -> dict[str, tuple[str, ...]]:
    return {d.id: tuple(d.audiences) for d in kb.documents()}


def index_labels(kb: KnowledgeBase) -> dict[str, tuple[str, ...]]:
    index = kb.index()
    return {cid: index.groups[g] for cid, g in zip(index.chunk_ids, index.row_groups)}


def test_labels_come_from_rules_sidecar_front_matter_and_default(tmp_path, tiny_embedder_dir):
    kb = ingest_canary(canary_settings(tmp_path / "kb", tiny_embedder_dir))
    with kb:
        assert labels_of(kb) == EXPECTED
        # by what: rule (hr/, finance/, public/), sidecar beats the public/** rule, front matter, default
        assert EXPECTED["public/press-draft.md"] == ("finance",)
        assert EXPECTED["misc/salary-review.md"] == ("hr",)
        assert EXPECTED["internal/onboarding.md"] == ("employees",)
        chunks = list(kb.all_chunks())
        assert {c.doc_id for c in chunks} == set(EXPECTED)
        for chunk in chunks:  # chunks and index rows carry their document's labels
            assert chunk.audiences == EXPECTED[chunk.doc_id]
        rows = index_labels(kb)
        assert rows == {c.id: c.audiences for c in chunks}


def test_a_sidecar_change_alone_relabels_the_chunks(tmp_path, corpus, tiny_embedder_dir):
    settings = canary_settings(tmp_path / "kb", tiny_embedder_dir)
    public = frozenset({"public"})
    doc = "public/press-draft.md"
    with ingest_canary(settings, corpus) as kb:
        assert all(c.doc_id != doc for c in kb.all_chunks(public))
        before = (corpus / doc).read_bytes()
        (corpus / (doc + ".meta.yaml")).write_text("audience: [public]\n", encoding="utf-8")
        report = ingest(corpus, kb, progress=False)
        assert (corpus / doc).read_bytes() == before  # the document itself did not change
        assert report.changed == 1 and report.unchanged == len(EXPECTED) - 1
        assert labels_of(kb)[doc] == ("public",)
        ids = [c.id for c in kb.all_chunks() if c.doc_id == doc]
        assert ids and all(c.audiences == ("public",) for c in kb.get_chunks(ids))
        assert all(index_labels(kb)[i] == ("public",) for i in ids)
        hits = kb.retriever().retrieve("Alpine Threads merger valuation", 3, audiences=public, mode="bm25")
        assert hits and hits[0].chunk.doc_id == doc

        # and back: restricted again, gone from public results
        (corpus / (doc + ".meta.yaml")).write_text("audience: [finance]\n", encoding="utf-8")
        assert ingest(corpus, kb, progress=False).changed == 1
        assert labels_of(kb)[doc] == ("finance",)
        hits = kb.retriever().retrieve("Alpine Threads merger valuation", 3, audiences=public, mode="bm25")
        assert all(h.chunk.doc_id != doc for h in hits)


def test_front_matter_change_and_sidecar_removal_are_picked_up(tmp_path, corpus, tiny_embedder_dir):
    settings = canary_settings(tmp_path / "kb", tiny_embedder_dir)
    with ingest_canary(settings, corpus) as kb:
        review = corpus / "misc" / "salary-review.md"
        review.write_text(review.read_text().replace("audience: hr", "audience: [hr, managers]"))
        (corpus / "public" / "press-draft.md.meta.yaml").unlink()  # no sidecar: the public/** rule applies
        report = ingest(corpus, kb, progress=False)
        assert report.changed == 2
        labels = labels_of(kb)
        assert labels["misc/salary-review.md"] == ("hr", "managers")
        assert labels["public/press-draft.md"] == ("public",)


def test_a_rule_change_relabels_on_the_next_ingest(tmp_path, corpus, tiny_embedder_dir):
    settings = canary_settings(tmp_path / "kb", tiny_embedder_dir)
    with ingest_canary(settings, corpus) as kb:
        pass
    settings.access.rules = {"public/**": ["public"], "hr/**": ["hr", "managers"], "finance/**": ["finance"]}
    with KnowledgeBase.open(settings.kb, settings) as kb:
        ingest(corpus, kb, progress=False)
        labels = labels_of(kb)
        assert labels["hr/bonus-2026.md"] == ("hr", "managers")
        assert labels["misc/salary-review.md"] == ("hr",)  # front matter still wins over rules
        assert all(index_labels(kb)[c.id] == ("hr", "managers") for c in kb.all_chunks() if c.doc_id.startswith("hr/"))


def test_default_audience_is_deny_for_customers_and_configurable_to_deny_all(tmp_path, tiny_embedder_dir):
    doc = "internal/onboarding.md"
    with ingest_canary(canary_settings(tmp_path / "a", tiny_embedder_dir)) as kb:
        # no rule: the default (employees); a customer-facing `public` key does not see it
        assert labels_of(kb)[doc] == ("employees",)
        assert all(c.doc_id != doc for c in kb.all_chunks(frozenset({"public"})))
        assert any(c.doc_id == doc for c in kb.all_chunks(frozenset({"employees"})))
    with ingest_canary(canary_settings(tmp_path / "b", tiny_embedder_dir, default_audiences=[])) as kb:
        # default_audiences: [] — unlabelled documents are for trusted callers only
        assert labels_of(kb)[doc] == ()
        everyone = frozenset({"public", "employees", "hr", "finance", "managers"})
        assert all(c.doc_id != doc for c in kb.all_chunks(everyone))
        assert all(h.chunk.doc_id != doc for h in kb.retriever().retrieve("door code", 20, audiences=everyone, mode="bm25"))
        assert any(h.chunk.doc_id == doc for h in kb.retriever().retrieve("door code", 20, mode="bm25"))


def test_a_process_on_an_older_index_never_serves_a_chunk_relabelled_since(tmp_path, corpus, tiny_embedder_dir):
    """A server still holding the previous index generation reads chunk rows the ingest just re-labelled."""
    settings = canary_settings(tmp_path / "kb", tiny_embedder_dir)
    doc, public = "public/press-draft.md", frozenset({"public"})
    side = corpus / (doc + ".meta.yaml")
    side.write_text("audience: [public]\n", encoding="utf-8")
    with ingest_canary(settings, corpus) as server:
        hits = server.retriever().retrieve("Alpine Threads merger", 3, audiences=public, mode="bm25")
        assert hits[0].chunk.doc_id == doc  # the server has loaded this generation
        side.write_text("audience: [finance]\n", encoding="utf-8")
        with KnowledgeBase.open(settings.kb, settings) as writer:  # another process re-ingests
            assert ingest(corpus, writer, progress=False).changed == 1
        for mode in ("bm25", "dense", "hybrid"):
            hits = server.retriever().retrieve("Alpine Threads merger", 5, audiences=public, mode=mode)
            assert all(h.chunk.doc_id != doc and can_see(h.chunk.audiences, public) for h in hits), mode
        assert server.reload_if_changed()
        assert all(h.chunk.doc_id != doc for h in server.retriever().retrieve("Alpine Threads merger", 5, audiences=public))
