"""Incremental ingestion with a tiny random embedder: counts, changes, deletions, failures, locking."""

import dataclasses
import os
import time

import numpy as np
import pytest

from slm.errors import IndexMismatchError, KnowledgeBaseError
from slm.kb.index.generation import existing_generations
from slm.kb.ingest import ingest
from slm.kb.local import KnowledgeBase
from tests.helpers.kb import TOPICS, kb_settings, write_corpus, write_doc


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "docs", secret_docs=2)


@pytest.fixture
def settings(tmp_path, tiny_embedder_dir):
    return kb_settings(tmp_path / "kb", tiny_embedder_dir)


def _open(settings, **kw):
    return KnowledgeBase.open(settings.kb, settings, create=True, **kw)


def _index_doc_ids(kb):
    index = kb.index()
    return {index.chunk_ids[p].split("::")[0] for p in index.live_positions()}


def test_first_ingest_then_unchanged(corpus, settings):
    with _open(settings) as kb:
        first = ingest(corpus, kb, progress=False)
        assert (first.seen, first.added, first.changed, first.unchanged, first.deleted) == (7, 7, 0, 0, 0)
        assert first.failed == () and first.chunks_written > 0 and first.embedded == first.chunks_written
        assert kb.store.counts() == (7, first.chunks_written)
        assert kb.root == str(corpus.resolve())
        assert kb.index().size == first.chunks_written
        generation = kb.current_generation()

        again = ingest(corpus, kb, progress=False)
        assert (again.added, again.changed, again.unchanged, again.deleted, again.chunks_written) == (0, 0, 7, 0, 0)
        assert again.embedded == 0
        assert kb.current_generation() == generation  # nothing changed: no new generation
        assert {e.status for e in kb.store.log_entries(again.run_id)} == {"run", "unchanged"}


def test_changed_added_deleted_and_failed_files(corpus, settings):
    with _open(settings) as kb:
        ingest(corpus, kb, progress=False)
        before = {s.chunk.id: s.embed_key for s in kb.store.iter_stored_chunks()}

        write_doc(corpus, "refunds.md", "About refunds", {"Overview": TOPICS["refunds"], "Details": "Brand new refund wording."})
        write_doc(corpus, "new.md", "A new page", {"Overview": "Completely new content about parking spaces."})
        (corpus / "shipping.md").unlink()
        (corpus / "empty.md").write_text("", encoding="utf-8")
        (corpus / "laptops.md").write_bytes(b"")  # was fine, now fails: its old chunks must go
        report = ingest(corpus, kb, progress=False)

        assert (report.added, report.changed, report.deleted) == (1, 1, 1)
        assert {f.path for f in report.failed} == {"empty.md", "laptops.md"}
        assert all("empty" in f.reason for f in report.failed)
        # The unchanged Overview chunk of refunds.md kept its cached vector: only the new text was embedded.
        assert report.embedded < report.chunks_written
        ids = _index_doc_ids(kb)
        assert "shipping.md" not in ids and "laptops.md" not in ids and "new.md" in ids
        stored_docs = {d.id for d in kb.documents()}
        assert stored_docs == ids
        # No chunk of a removed file survives in either index.
        retriever = kb.retriever()
        for mode in ("bm25", "dense", "hybrid"):
            hits = retriever.retrieve("Tucson warehouse ground freight parcels", 50, mode=mode)
            assert not [h for h in hits if h.chunk.doc_id in ("shipping.md", "laptops.md")]
        log = {(e.path, e.status) for e in kb.store.log_entries(report.run_id)}
        assert {("shipping.md", "deleted"), ("new.md", "added"), ("refunds.md", "changed"), ("empty.md", "failed")} <= log
        # Vectors of deleted chunks are pruned; the ones in use stay.
        keys = {s.embed_key for s in kb.store.iter_stored_chunks()}
        assert set(kb.store.cached_embeddings(keys | set(before.values()))) == keys


def test_old_generations_are_collected(corpus, settings):
    with _open(settings) as kb:
        for i in range(4):
            write_doc(corpus, "changing.md", "Changing", {"Body": f"Version {i} of a changing page about desks."})
            ingest(corpus, kb, progress=False)
        assert existing_generations(kb.index_dir) == [kb.current_generation() - 1, kb.current_generation()]
        assert (kb.index_dir / "manifest.json").is_file()


def test_audiences_come_from_rules(corpus, settings):
    with _open(settings) as kb:
        ingest(corpus, kb, progress=False)
        secret = [c for c in kb.all_chunks() if c.doc_id.startswith("secret/")]
        assert secret and all(c.audiences == ("hr",) for c in secret)
        assert not [c for c in kb.all_chunks(frozenset({"employees"})) if c.doc_id.startswith("secret/")]


def test_changing_access_rules_reapplies_audiences_without_reembedding(corpus, settings):
    with _open(settings) as kb:
        ingest(corpus, kb, progress=False)
    settings.access.rules = {"secret/**": ["hr"], "leave.md": ["hr"]}
    with _open(settings) as kb:
        report = ingest(corpus, kb, progress=False)
        assert report.changed == 7 and report.embedded == 0
        assert {c.audiences for c in kb.all_chunks() if c.doc_id == "leave.md"} == {("hr",)}


def test_embedder_mismatch_and_rebuild(corpus, settings, tmp_path):
    from tests.helpers.tiny_models import tiny_sentence_transformer_dir

    with _open(settings) as kb:
        ingest(corpus, kb, progress=False)
    other = tiny_sentence_transformer_dir(tmp_path / "other-st", seed=1, dimension=16)
    settings.embedder.model = str(other)
    with pytest.raises(IndexMismatchError, match="--rebuild"):
        KnowledgeBase.open(settings.kb, settings)
    with KnowledgeBase.open(settings.kb, settings, check_embedder=False) as kb:
        report = ingest(corpus, kb, progress=False, rebuild=True)
        assert report.changed == 7 and report.embedded == report.chunks_written
    with KnowledgeBase.open(settings.kb, settings) as kb:
        assert kb.manifest().dimension == 16 and kb.manifest().embedder == str(other)
        assert kb.retriever().retrieve("refund", 3, mode="dense")


def test_second_ingest_is_refused_while_one_runs(corpus, settings):
    with _open(settings) as kb, _open(settings) as other:
        with kb.ingest_lock():
            with pytest.raises(KnowledgeBaseError, match="another ingest is running.*pid"):
                ingest(corpus, other, progress=False)
        assert ingest(corpus, other, progress=False).added == 7  # the lock is free again


def test_missing_root_and_missing_kb(settings, tmp_path):
    with pytest.raises(KnowledgeBaseError, match="slm ingest"):
        KnowledgeBase.open(tmp_path / "nope", settings)
    with _open(settings) as kb, pytest.raises(KnowledgeBaseError, match="does not exist"):
        ingest(tmp_path / "no-such-folder", kb, progress=False)


def test_reload_if_changed_picks_up_another_writer(corpus, settings):
    with _open(settings) as writer:
        ingest(corpus, writer, progress=False)
        with KnowledgeBase.open(settings.kb, settings) as reader:
            assert reader.index() is not None and reader.reload_if_changed() is False
            retriever = reader.retriever()
            assert not [h for h in retriever.retrieve("parking spaces garage", 50, mode="bm25")]
            write_doc(corpus, "parking.md", "Parking", {"Overview": "Parking spaces in the garage are free for staff."})
            ingest(corpus, writer, progress=False)
            assert reader.reload_if_changed() is True
            assert reader.reload_if_changed() is False
            hits = retriever.retrieve("parking spaces garage", 3, mode="bm25")
            assert hits and hits[0].chunk.doc_id == "parking.md"


def test_lost_index_folder_is_reported_and_rebuild_recovers(corpus, settings):
    import shutil

    with _open(settings) as kb:
        first = ingest(corpus, kb, progress=False)
    shutil.rmtree(settings.kb / "index")
    with pytest.raises(KnowledgeBaseError, match="--rebuild"):
        KnowledgeBase.open(settings.kb, settings)
    with KnowledgeBase.open(settings.kb, settings, check_embedder=False) as kb:
        report = ingest(corpus, kb, progress=False, rebuild=True)
        assert report.embedded == report.chunks_written == first.chunks_written  # --rebuild re-embeds everything
    with KnowledgeBase.open(settings.kb, settings) as kb:
        assert kb.retriever().retrieve("Tucson warehouse", 2, mode="bm25")[0].chunk.doc_id == "shipping.md"


def test_reader_keeps_answering_while_ingests_replace_generations(corpus, settings):
    import threading

    with _open(settings) as writer:
        ingest(corpus, writer, progress=False)
    errors: list[Exception] = []
    done = threading.Event()

    def write():
        try:
            with _open(settings) as kb:
                for i in range(4):
                    write_doc(corpus, "churn.md", "Churn", {"Body": f"Revision {i} about the loading dock schedule."})
                    ingest(corpus, kb, progress=False)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            done.set()

    with KnowledgeBase.open(settings.kb, settings) as reader:
        thread = threading.Thread(target=write)
        thread.start()
        searches = 0
        while not done.is_set() or searches == 0:
            reader.reload_if_changed()
            hits = reader.retriever().retrieve("Tucson warehouse parcels", 3, mode="bm25")
            assert hits and hits[0].chunk.doc_id == "shipping.md"
            searches += 1
        thread.join()
        assert not errors
        reader.reload_if_changed()
        hit = reader.retriever().retrieve("loading dock schedule revision", 1, mode="bm25")[0]
        assert hit.chunk.doc_id == "churn.md" and "Revision 3" in hit.chunk.text


def test_a_changed_file_costs_a_segment_of_its_own_size(corpus, settings, tmp_path):
    for i in range(30):
        write_doc(corpus, f"bulk/p{i:02d}.md", f"Page {i}", {"Body": f"Shelf note {i} about pallets and bay {i}."})
    with _open(settings) as kb:
        ingest(corpus, kb, progress=False)
        first = kb.index()
        assert len(first.segments) == 1
        write_doc(corpus, "bulk/p07.md", "Page 7", {"Body": "Shelf note seven now covers forklift charging."})
        report = ingest(corpus, kb, progress=False)
        index = kb.index()
        assert report.changed == 1 and len(index.segments) == 2
        assert index.segments[0] is first.segments[0]  # the untouched segment is neither rewritten nor reloaded
        assert index.segments[1].size == len(kb.store.chunks_of("bulk/p07.md"))
        assert index.live == kb.store.counts()[1] and index.size > index.live
        incremental = [(h.chunk.id, round(h.score, 4)) for h in kb.retriever().retrieve("forklift charging", 5, mode="bm25")]
    rebuilt = tmp_path / "rebuilt"
    with KnowledgeBase.open(rebuilt, dataclasses.replace(settings, kb=rebuilt), create=True) as kb:
        ingest(corpus, kb, progress=False)
        full = [(h.chunk.id, round(h.score, 4)) for h in kb.retriever().retrieve("forklift charging", 5, mode="bm25")]
    assert incremental == full  # BM25 statistics are the whole index's live rows, as in a rebuild


def test_an_image_without_text_is_reported_skipped_and_a_broken_file_failed(corpus, settings, monkeypatch):
    from tests.helpers.fake_ocr import install_fake_ocr, write_png

    install_fake_ocr(monkeypatch)
    write_png(corpus / "img" / "logo.png", with_text=False)
    write_png(corpus / "img" / "sign.png", with_text=True)
    (corpus / "img" / "broken.png").write_bytes(b"\x89PNG truncated")
    (corpus / "blank.html").write_text("<html><body><nav>menu</nav></body></html>", encoding="utf-8")
    with _open(settings) as kb:
        report = ingest(corpus, kb, progress=False)
        assert [(s.path, s.reason) for s in report.skipped] == [("img/logo.png", "image without text (OCR found none)")]
        assert {f.path for f in report.failed} == {"img/broken.png", "blank.html"}
        assert report.added == 8  # the 7 pages and the sign's text
        log = {(e.path, e.status) for e in kb.store.log_entries(report.run_id)}
        assert {("img/logo.png", "skipped"), ("img/broken.png", "failed"), ("img/sign.png", "added")} <= log
        assert kb.status().failed_last_run == 2  # a skipped picture is no failure

        write_png(corpus / "img" / "sign.png", with_text=False)  # its text painted over: it leaves the index
        again = ingest(corpus, kb, progress=False)
        assert {s.path for s in again.skipped} == {"img/logo.png", "img/sign.png"}
        assert "img/sign.png" not in {d.id for d in kb.documents()} and "img/sign.png" not in _index_doc_ids(kb)


def test_slm_ingest_prints_skipped_pictures_apart_from_failures(corpus, settings, monkeypatch):
    from typer.testing import CliRunner

    from slm.cli.main import app
    from tests.helpers.fake_ocr import install_fake_ocr, write_png

    install_fake_ocr(monkeypatch)
    monkeypatch.setattr("slm.cli.kb_commands.settings_from", lambda kb, config, overrides=None: settings)
    write_png(corpus / "logo.png", with_text=False)
    (corpus / "empty.md").write_text("", encoding="utf-8")
    result = CliRunner().invoke(app, ["ingest", str(corpus), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "1 failed, 1 skipped;" in result.output
    assert "  skipped: logo.png: image without text (OCR found none)" in result.output
    assert "  failed: empty.md: empty file" in result.output and "failed: logo.png" not in result.output


def test_the_ingest_ocr_settings_reach_the_loaders(corpus, settings, monkeypatch):
    # They were computed but never passed on: `ingest.ocr: false` still OCR'd every picture and scan.
    from tests.helpers.fake_ocr import install_fake_ocr, write_png

    install_fake_ocr(monkeypatch)
    write_png(corpus / "sign.png", with_text=True)
    settings.ingest.ocr = False
    with _open(settings) as kb:
        report = ingest(corpus, kb, progress=False)
    assert [(f.path, f.reason) for f in report.failed] == [("sign.png", "an image needs OCR, which is off (ingest.ocr: false)")]
