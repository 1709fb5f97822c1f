"""A website as a source, against a real HTTP server on loopback: links followed within the origin and the
start folder only (redirects included), robots.txt honoured, max pages / depth, a 404, a redirect loop and
a huge page each one logged failure, a re-crawl by conditional GET, changes and deletions followed."""

import pytest

from slm.config import IngestSettings
from slm.kb.connectors.spec import SourceSpec, open_source
from slm.errors import SourceError
from slm.kb.ingest import ingest
from slm.kb.local import KnowledgeBase
from slm.retraining.changes import detect_changes
from tests.helpers.kb import kb_settings
from tests.helpers.site import Resource, Site, SiteServer

pytestmark = pytest.mark.integration

HUGE = 200_000  # bytes; the tests' limit is 0.05 MB


def build_site(port: int) -> Site:
    site = Site()
    site.resources["/robots.txt"] = Resource(b"User-agent: *\nDisallow: /docs/private/\n", media="text/plain")
    site.page("/docs/", "Handbook", "The staff handbook starts here.", links=(
        "a.html", "b.html", "missing.html", "loop1", "private/secret.html", "/outside.html",
        f"http://localhost:{port}/docs/other-origin.html", "away", "huge.html", "deep1.html", "b.html#part",
        "mailto:hr@example.invalid", "notes.txt",
    ))
    site.page("/docs/a.html", "Annual leave", "Employees accrue twenty five days of paid annual leave.",
              validator="last-modified")
    site.page("/docs/b.html", "Badges", "Badges must be worn visibly inside the office.", links=("/docs/",))
    site.page("/docs/deep1.html", "Deep one", "The first level down.", links=("deep2.html",))
    site.page("/docs/deep2.html", "Deep two", "The second level down.", links=("deep3.html",))
    site.page("/docs/deep3.html", "Deep three", "The third level down, past the depth limit.")
    site.page("/docs/private/secret.html", "Secret", "Robots may not read this.")
    site.page("/outside.html", "Outside", "Outside the start folder.")
    site.resources["/docs/loop1"] = Resource(status=302, location="/docs/loop2")
    site.resources["/docs/loop2"] = Resource(status=301, location="/docs/loop1")
    site.resources["/docs/away"] = Resource(status=302, location=f"http://localhost:{port}/docs/elsewhere.html")
    site.resources["/docs/huge.html"] = Resource(b"<html><body><p>" + b"x" * HUGE + b"</p></body></html>")
    site.resources["/docs/notes.txt"] = Resource(b"Plain notes: the canteen opens at eight.", media="text/plain")
    return site


@pytest.fixture
def served():
    site = Site()
    server = SiteServer(site)
    site.resources.update(build_site(server.port).resources)
    with server as base:
        yield site, base


def ingest_settings(**kw):
    return IngestSettings(max_file_mb=0.05, **kw)


def crawl(base, *, max_pages=50, max_depth=2, state=None):
    spec = SourceSpec(f"{base}/docs/", crawl=True, max_pages=max_pages, max_depth=max_depth)
    return open_source(spec, ingest_settings(), cache_dir=None, state=state)


def test_crawl_stays_in_origin_and_folder_honours_robots_and_bounds(served):
    site, base = served
    source = crawl(base)
    try:
        found = source.discover()
    finally:
        source.close()
    ids = {item.id for item in found.items}
    docs = f"{base}/docs/"
    assert ids == {docs, docs + "a.html", docs + "b.html", docs + "deep1.html", docs + "deep2.html", docs + "notes.txt"}
    failures = {f.id: f.reason for f in found.failed}
    assert set(failures) == {docs + "missing.html", docs + "loop1", docs + "huge.html", docs + "away"}
    assert failures[docs + "missing.html"] == "HTTP 404"
    assert failures[docs + "loop1"].startswith("redirect loop")
    assert failures[docs + "huge.html"].startswith("too large")
    assert failures[docs + "away"].startswith("redirect leaves the origin")
    requested = site.paths()
    for never in ("/docs/private/secret.html", "/outside.html", "/docs/other-origin.html", "/docs/elsewhere.html",
                  "/docs/deep3.html"):
        assert never not in requested
    assert requested.count("/docs/b.html") == 1  # the #part link is the same page

    before = len(site.requests)
    small = crawl(base, max_pages=3)
    try:
        assert [i.id for i in small.discover().items] == [docs, docs + "a.html", docs + "b.html"]  # breadth first
    finally:
        small.close()
    assert [p for p in site.paths()[before:] if p != "/robots.txt"] == ["/docs/", "/docs/a.html", "/docs/b.html"]


def test_crawl_ingest_recrawl_by_conditional_get_follows_changes_and_deletions(served, tmp_path, tiny_embedder_dir):
    site, base = served
    settings = kb_settings(tmp_path / "kb", tiny_embedder_dir)
    settings.ingest.max_file_mb = 0.05
    settings.access.rules = {f"{base}/docs/b.html": ["security"]}
    spec = SourceSpec(f"{base}/docs/", crawl=True, max_depth=2)
    with KnowledgeBase.open(settings.kb, settings, create=True) as kb:
        first = ingest(spec, kb, progress=False)
        assert (first.added, len(first.failed)) == (6, 4)
        docs = {d.id: d for d in kb.documents()}
        assert tuple(docs[f"{base}/docs/b.html"].audiences) == ("security",)
        assert tuple(docs[f"{base}/docs/a.html"].audiences) == ("employees",)
        assert docs[f"{base}/docs/a.html"].title == "Annual leave"
        leave = " ".join(c.text for c in kb.store.chunks_of(f"{base}/docs/a.html"))
        assert "twenty five days" in leave and "Badges" not in leave  # the nav is not the page's text

        # Re-crawl with nothing changed: every page answers 304 and nothing is re-read.
        before = len(site.requests)
        again = ingest(spec, kb, progress=False)
        recrawl = site.requests[before:]
        assert again.chunks_written == 0 and again.unchanged == 6
        assert sum(1 for _, path, status in recrawl if status == 304) == 6

        # b.html changes; deep2.html is removed and its link with it; a.html is now a 404.
        site.page("/docs/b.html", "Badges", "Badges are now blue and must be worn at all times.", links=("/docs/",))
        site.page("/docs/deep1.html", "Deep one", "The first level down, no more links.")
        del site.resources["/docs/a.html"]
        changes = detect_changes(spec, kb)
        assert changes.modified == (f"{base}/docs/a.html", f"{base}/docs/b.html", f"{base}/docs/deep1.html")
        assert changes.deleted == (f"{base}/docs/deep2.html",)
        third = ingest(spec, kb, progress=False)
        assert (third.changed, third.deleted) == (2, 1)
        assert f"{base}/docs/a.html" in {f.path for f in third.failed}
        ids = {d.id for d in kb.documents()}
        assert f"{base}/docs/a.html" not in ids and f"{base}/docs/deep2.html" not in ids
        assert any("blue" in c.text for c in kb.store.chunks_of(f"{base}/docs/b.html"))


def test_unreachable_start_page_fails_the_run_and_removes_nothing(served, tmp_path, tiny_embedder_dir):
    site, base = served
    settings = kb_settings(tmp_path / "kb", tiny_embedder_dir)
    spec = SourceSpec(f"{base}/docs/", crawl=True, max_depth=1)
    with KnowledgeBase.open(settings.kb, settings, create=True) as kb:
        ingest(spec, kb, progress=False)
        counts = kb.store.counts()
        site.resources["/docs/"] = Resource(status=503)
        with pytest.raises(SourceError, match="HTTP 503"):
            ingest(spec, kb, progress=False)
        assert kb.store.counts() == counts
    with pytest.raises(SourceError, match="credentials in the URL"):
        open_source(SourceSpec("https://user:secret@intranet.example/"), ingest_settings(), cache_dir=None)
