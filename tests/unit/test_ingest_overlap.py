"""Ingest with a reader thread (ingest.prefetch): loading overlaps with encoding, the KB it builds is the one a
run without the thread builds, an error stops the reader and changes nothing, and `auto` may switch embedders
midway (a first Chinese page) or at the end (the Chinese pages were removed)."""

import threading

import numpy as np
import pytest

import slm.kb.documents as documents
from slm.kb.embedding import Embedder
from slm.kb.ingest import embed_key, index_text, ingest
from slm.kb.local import KnowledgeBase
from tests.helpers.kb import kb_settings, write_corpus, write_doc
from tests.helpers.tiny_models import tiny_sentence_transformer_dir

CHINESE = "# 退货政策\n\n## 退货期限\n\n顾客可以在收到商品后三十天内申请退货，并获得全额退款。退款将退回原支付方式。\n"


def _bulk(corpus, n):
    for i in range(n):
        write_doc(corpus, f"bulk/p{i:03d}.md", f"Page {i}", {"One": f"Shelving note {i} about bays and aisles.",
                                                             "Two": f"Forklift note {i} about pallets and docks."})
    return corpus


@pytest.fixture
def corpus(tmp_path):
    return _bulk(write_corpus(tmp_path / "docs"), 60)


def _open(settings):
    return KnowledgeBase.open(settings.kb, settings, create=True)


def _threads():
    return [t for t in threading.enumerate() if t.name == "slm-prefetch" and t.is_alive()]


def test_loading_overlaps_with_encoding(corpus, tmp_path, tiny_embedder_dir, monkeypatch):
    events = []
    load, encode = documents.document_from_bytes, Embedder.encode
    monkeypatch.setattr(documents, "document_from_bytes", lambda rel, *a, **k: events.append("load") or load(rel, *a, **k))
    monkeypatch.setattr(Embedder, "encode", lambda self, texts, **k: events.append("encode") or encode(self, texts, **k))
    settings = kb_settings(tmp_path / "kb", tiny_embedder_dir)
    settings.ingest.prefetch = 4
    with _open(settings) as kb:
        report = ingest(corpus, kb, progress=False)
    assert report.added == 65 and report.embedded == report.chunks_written
    # A window is 8 batches of 8 chunks (~32 documents): the reader, at most 4 documents ahead, is still
    # reading when the encoder starts.
    assert events.index("encode") < len(events) - 1 - events[::-1].index("load")
    assert report.timings["load"] > 0 and report.timings["embed"] > 0
    assert not _threads()


def _contents(settings):
    with KnowledgeBase.open(settings.kb, settings) as kb:
        stored = sorted((s.chunk.id, s.embed_key, s.chunk.text) for s in kb.store.iter_stored_chunks())
        vectors = kb.store.cached_embeddings([key for _, key, _ in stored])
        hits = [[h.chunk.id for h in kb.retriever().retrieve(q, 5, mode="bm25")]
                for q in ("forklift pallets", "refund payment", "shelving bays 17")]
        return stored, vectors, hits


def test_with_and_without_the_reader_thread_the_kb_is_the_same(corpus, tmp_path, tiny_embedder_dir):
    results = []
    for prefetch in (0, 16):
        settings = kb_settings(tmp_path / f"kb{prefetch}", tiny_embedder_dir)
        settings.ingest.prefetch = prefetch
        with _open(settings) as kb:
            ingest(corpus, kb, progress=False)
        results.append(_contents(settings))
    (stored0, vectors0, hits0), (stored1, vectors1, hits1) = results
    assert stored0 == stored1 and hits0 == hits1
    assert vectors0.keys() == vectors1.keys()
    for key, vector in vectors0.items():  # batches are made differently: the same vectors up to rounding
        np.testing.assert_allclose(vector, vectors1[key], atol=1e-5)


def test_an_error_while_encoding_stops_the_reader_and_changes_nothing(corpus, tmp_path, tiny_embedder_dir,
                                                                      monkeypatch):
    settings = kb_settings(tmp_path / "kb", tiny_embedder_dir)
    with _open(settings) as kb:
        ingest(corpus, kb, progress=False)
        counts, generation = kb.store.counts(), kb.current_generation()
    _bulk(corpus, 120)
    write_doc(corpus, "refunds.md", "About refunds", {"Overview": "Refunds are store credit now."})
    encode = Embedder.encode

    def failing(self, texts, **kw):
        raise RuntimeError("encoder fell over")

    monkeypatch.setattr(Embedder, "encode", failing)
    with _open(settings) as kb:
        with pytest.raises(RuntimeError, match="encoder fell over"):
            ingest(corpus, kb, progress=False)
        assert not _threads()
        assert (kb.store.counts(), kb.current_generation()) == (counts, generation)
    monkeypatch.setattr(Embedder, "encode", encode)
    with _open(settings) as kb:
        report = ingest(corpus, kb, progress=False)
        assert report.added == 60 and report.changed == 1 and kb.index().live == kb.store.counts()[1]


@pytest.fixture
def two_embedders(tmp_path_factory, tiny_embedder_dir, monkeypatch):
    """`auto` with two tiny embedders: `english` for English chunks, `multi` (16 dims) once any chunk is zh."""
    import slm.kb.ingest as ingest_module
    import slm.kb.local as local_module

    multi = tiny_sentence_transformer_dir(tmp_path_factory.mktemp("tiny-st-multi") / "model", seed=1, dimension=16)
    english = str(tiny_embedder_dir)

    def choose(configured, languages):
        return str(multi) if "zh" in set(languages) else english

    monkeypatch.setattr(ingest_module, "choose_embedder", choose)
    monkeypatch.setattr(local_module, "choose_embedder", choose)
    encoded = []
    encode = Embedder.encode
    monkeypatch.setattr(Embedder, "encode",
                        lambda self, texts, **k: encoded.append((self.model_name, len(texts))) or encode(self, texts, **k))
    return english, str(multi), encoded


def _auto_settings(path, embedder):
    settings = kb_settings(path, embedder)
    settings.embedder.model = "auto"
    return settings


def _keys_under(kb, model):
    stored = list(kb.store.iter_stored_chunks())
    return all(s.embed_key == embed_key(model, index_text(s.chunk)) for s in stored) and \
        len(kb.store.cached_embeddings([s.embed_key for s in stored])) == len({s.embed_key for s in stored})


def test_auto_switches_embedder_midway_at_a_first_chinese_page(corpus, tmp_path, two_embedders):
    english, multi, encoded = two_embedders
    (corpus / "zz-returns.md").write_text(CHINESE, encoding="utf-8")  # read after the English pages
    settings = _auto_settings(tmp_path / "kb", english)
    with _open(settings) as kb:
        report = ingest(corpus, kb, progress=False)
        during = list(encoded)
        assert kb.manifest().embedder == multi and kb.index().dense.dimension == 16
        assert _keys_under(kb, multi)
        assert kb.retriever().retrieve("退货期限", 1, mode="bm25")[0].chunk.doc_id == "zz-returns.md"
        distinct = len({s.embed_key for s in kb.store.iter_stored_chunks()})
    models = [m for m, _ in during]
    assert models[0] == english and models[-1] == multi  # English windows were encoded before the switch
    assert sum(n for m, n in during if m == multi) == distinct  # then every chunk again, once
    assert report.embedded == sum(n for _, n in during)


def test_auto_switches_back_when_the_chinese_pages_are_removed(corpus, tmp_path, two_embedders):
    english, multi, encoded = two_embedders
    (corpus / "returns-zh.md").write_text(CHINESE, encoding="utf-8")
    settings = _auto_settings(tmp_path / "kb", english)
    with _open(settings) as kb:
        ingest(corpus, kb, progress=False)
        assert kb.manifest().embedder == multi
    (corpus / "returns-zh.md").unlink()
    write_doc(corpus, "new.md", "A new page", {"Overview": "Parking spaces are behind the warehouse."})
    with _open(settings) as kb:
        report = ingest(corpus, kb, progress=False)
        assert report.deleted == 1 and report.added == 1
        assert kb.manifest().embedder == english and kb.index().dense.dimension == 32
        assert _keys_under(kb, english)  # the kept chunks were re-embedded with it too
        assert kb.index().live == kb.store.counts()[1]


def test_stages_come_once_and_in_order_even_when_every_vector_is_cached(corpus, tmp_path, tiny_embedder_dir):
    settings = kb_settings(tmp_path / "kb", tiny_embedder_dir)
    runs = []
    for rules in ({"secret/**": ["hr"]}, {"secret/**": ["hr"], "bulk/**": ["ops"]}):  # the second re-reads all
        settings.access.rules = rules
        stages: list[str] = []
        with _open(settings) as kb:
            report = ingest(corpus, kb, progress=False, on_stage=stages.append)
        runs.append((stages, report.embedded))
    (first, embedded_first), (second, embedded_second) = runs
    expected = ["discover", "load", "embed", "index", "built", "commit", "committed"]
    assert first == expected and embedded_first > 0
    assert second == expected and embedded_second == 0  # nothing encoded: "embed" still comes, after the load
