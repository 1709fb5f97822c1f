"""The source viewer: documents rebuilt from KB chunks, looked up by id only, audience-checked, escaped."""

from __future__ import annotations

import html

import pytest
from fastapi.testclient import TestClient

from slm.config import Settings, UISettings
from slm.errors import AccessDenied
from slm.answering.source_view import SourceNotFound, assemble, load_source, render_source_page
from slm.webui.app import create_server
from tests.unit.ui_fakes import LEAVE, LEAVE_DOC, SALARY, XSS, XSS_DOC, FakeAnswerer, FakeLibrary, MemoryFeedback


def test_assemble_rebuilds_the_document_from_overlapping_chunks():
    pieces = assemble(list(reversed(LEAVE)))
    assert [p.gap for p in pieces] == [False]
    assert pieces[0].text == LEAVE_DOC


def test_assemble_marks_holes_no_chunk_covers():
    pieces = assemble([LEAVE[0], LEAVE[2]])
    assert [p.gap for p in pieces] == [False, True, False]
    assert pieces[2].start == LEAVE[2].start and pieces[2].text == LEAVE[2].text


def test_load_source_checks_audiences_and_ids():
    lib = FakeLibrary()
    view = load_source(lib, SALARY[0].id, frozenset({"hr"}))
    assert view.chunk == SALARY[0]
    with pytest.raises(AccessDenied):
        load_source(lib, SALARY[0].id, frozenset({"employees"}))
    for bad in ["../../etc/passwd", "/etc/passwd", "", "x" * 5000, "a\x00b"]:
        with pytest.raises(SourceNotFound):
            load_source(lib, bad, None)


def test_page_escapes_the_document_and_marks_the_cited_span():
    view = load_source(FakeLibrary(), XSS[0].id, None)
    start = XSS_DOC.index("<script>")
    end = XSS_DOC.index("</script>") + len("</script>")
    page = render_source_page(view, (start, end))
    assert "<script" not in page and "<img" not in page and 'href="javascript' not in page
    cited = page.split('id="cited">')[1].split("</mark>")[0]
    assert html.unescape(cited) == "<script>alert('xss')</script>"
    assert "Evil &lt;b&gt;page&lt;/b&gt;" in page


def test_page_falls_back_to_the_chunk_when_the_span_is_outside_it():
    view = load_source(FakeLibrary(), LEAVE[1].id, None)
    page = render_source_page(view, (0, 10_000))
    cited = page.split('id="cited">')[1].split("</mark>")[0]
    assert html.unescape(cited) == LEAVE[1].text


def server(ui: UISettings | None = None, library=None) -> TestClient:
    settings = Settings(ui=ui or UISettings())
    app = create_server(settings, answerer=FakeAnswerer(), feedback=MemoryFeedback(), library=library or FakeLibrary())
    return TestClient(app, client=("127.0.0.1", 50000))


@pytest.fixture(scope="module")
def local():
    """One server (no login, loopback client) and its library, shared by the route tests below."""
    library = FakeLibrary()
    return server(library=library), library


def test_route_serves_chunks_by_id_with_a_strict_policy(local):
    client, _ = local
    response = client.get("/source/policies%2Fleave.md%3A%3A0001", params={"start": LEAVE[1].start + 3, "end": LEAVE[1].start + 20})
    assert response.status_code == 200
    assert "script-src" not in response.headers["content-security-policy"]
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert 'id="cited"' in response.text and "Leave policy" in response.text


@pytest.mark.parametrize(
    "path",
    [
        "/source/..%2F..%2F..%2Fetc%2Fpasswd",
        "/source/%2Fetc%2Fpasswd",
        "/source//etc/passwd",
        "/source/%2e%2e/%2e%2e/etc/passwd",
        "/source/policies/../../../../etc/passwd",
        "/source/policies%2Fleave.md",
        "/source/C:%5Cwindows%5Cwin.ini",
    ],
)
def test_route_never_opens_paths(local, path):
    client, lib = local
    lib.asked.clear()
    response = client.get(path)
    assert response.status_code == 404
    assert "root:" not in response.text
    assert all(not i.startswith("policies::") for i in lib.asked)


def test_local_mode_refuses_other_machines():
    settings = Settings()
    app = create_server(settings, answerer=FakeAnswerer(), feedback=MemoryFeedback(), library=FakeLibrary())
    remote = TestClient(app, client=("10.1.2.3", 40000))
    assert remote.get(f"/source/{LEAVE[0].id.replace('/', '%2F')}").status_code == 403
    assert remote.get("/").status_code == 403


def test_trusted_header_maps_users_to_audiences():
    ui = UISettings(trusted_header="X-Forwarded-User", user_audiences={"hanna": ["hr", "employees"]})
    client = server(ui)
    hr_chunk = "/source/" + SALARY[0].id.replace("/", "%2F")
    assert client.get(hr_chunk).status_code == 401
    assert client.get(hr_chunk, headers={"X-Forwarded-User": "ed"}).status_code == 404
    assert "Band 3" not in client.get(hr_chunk, headers={"X-Forwarded-User": "ed"}).text
    response = client.get(hr_chunk, headers={"X-Forwarded-User": "hanna"})
    assert response.status_code == 200 and "Band 3" in response.text
    # Gradio itself also refuses the page without the header.
    assert client.get("/config").status_code == 401


def test_password_login_guards_the_source_route():
    ui = UISettings(auth={"ed": "pw-ed", "hanna": "pw-hanna"}, user_audiences={"hanna": ["hr"]})
    client = server(ui)
    hr_chunk = "/source/" + SALARY[0].id.replace("/", "%2F")
    assert client.get(hr_chunk).status_code == 401
    assert client.post("/login", data={"username": "ed", "password": "wrong"}).status_code == 400
    assert client.get(hr_chunk).status_code == 401
    assert client.post("/login", data={"username": "ed", "password": "pw-ed"}).status_code == 200
    assert client.get(hr_chunk).status_code == 404  # ed is an employee, not hr
    assert client.get("/source/" + LEAVE[0].id.replace("/", "%2F")).status_code == 200
    client.cookies.clear()
    assert client.post("/login", data={"username": "hanna", "password": "pw-hanna"}).status_code == 200
    assert "Band 3" in client.get(hr_chunk).text
