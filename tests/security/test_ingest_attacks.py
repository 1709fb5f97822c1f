"""Issue 14, holes 1, 4 and 5, against the real `ingest()` on a real folder (tiny embedder): links that
would relabel a file or reach outside the root, a file name that is not UTF-8, decompression bombs."""

from __future__ import annotations

import io
import os
import shutil
import signal
import struct
import tracemalloc
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from slm.config import AccessSettings
from slm.kb.documents import load_document
from slm.errors import DocumentError
from slm.kb.ingest import IngestReport, ingest
from slm.kb.local import KnowledgeBase
from slm.kb.loaders.limits import ExpansionLimits
from slm.kb.store import DocumentInfo, LogEntry
from slm.types import Chunk
from tests.fixtures.builders import make_docx
from tests.helpers.kb import kb_settings, write_doc

BONUS = "The 2026 bonus pool is 4.2 million euros and Dana Whitfield receives 180000."
OUTSIDE = "CANARY-OUTSIDE-7f3a the database password is hunter2."
HOLIDAYS = "The office closes on 24 December and reopens on 2 January for everyone."
PUBLIC = frozenset({"public"})
LINK = "symbolic link"
MIB = 1024 * 1024


@dataclass
class Ingested:
    report: IngestReport
    chunks: list[Chunk]
    documents: list[DocumentInfo]
    log: list[LogEntry]
    public_hits: list[str]  # chunk texts a public caller's search returns

    @property
    def failed(self) -> dict[str, str]:
        return {f.path: f.reason for f in self.report.failed}

    @property
    def doc_ids(self) -> set[str]:
        return {d.id for d in self.documents}

    def stored_text(self) -> str:
        """Everything the KB keeps about the documents: chunk texts, titles, metadata."""
        parts = [c.text for c in self.chunks] + [f"{d.title} {d.metadata}" for d in self.documents]
        return "\n".join(parts)


@pytest.fixture
def settings(tmp_path, tiny_embedder_dir):
    settings = kb_settings(tmp_path / "kb", tiny_embedder_dir)
    settings.access = AccessSettings(rules={"hr/**": ["hr"], "public/**": ["public"]}, default_audiences=["employees"])
    return settings


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "docs"
    write_doc(root, "hr/bonus-2026.md", "Bonus 2026", {"Pool": BONUS})
    write_doc(root, "public/holidays.md", "Holidays", {"Dates": HOLIDAYS})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secrets.md").write_text(f"# Secrets\n\n{OUTSIDE}\n")
    (outside / "creds.yaml").write_text(f"audience: public\npassword: hunter2\nnote: {OUTSIDE}\n")
    return root


def _ingest(root: Path, settings, **kw) -> Ingested:
    with KnowledgeBase.open(settings.kb, settings, create=True) as kb:
        report = ingest(root, kb, progress=False, **kw)
        hits = kb.retriever().retrieve("2026 bonus pool Dana Whitfield password hunter2 root", 20, audiences=PUBLIC)
        return Ingested(
            report,
            [s.chunk for s in kb.store.iter_stored_chunks()],
            kb.documents(),
            kb.store.log_entries(report.run_id),
            [h.chunk.text for h in hits],
        )


def _assert_refused_as_link(result: Ingested, *paths: str) -> None:
    for path in paths:
        assert LINK in result.failed.get(path, ""), (path, result.failed)
        assert path not in result.doc_ids


# --- hole 1: links are never followed --------------------------------------------------------------


def test_link_to_a_restricted_file_is_not_ingested_under_the_links_label(corpus, settings):
    (corpus / "public" / "bonus-link.md").symlink_to("../hr/bonus-2026.md")
    result = _ingest(corpus, settings)

    _assert_refused_as_link(result, "public/bonus-link.md")
    assert result.doc_ids == {"hr/bonus-2026.md", "public/holidays.md"}
    # The bonus text is held once, under its own label, and a public caller's search cannot reach it.
    assert {c.audiences for c in result.chunks if "bonus pool" in c.text} == {("hr",)}
    assert result.public_hits and not any("bonus pool" in text for text in result.public_hits)


def test_links_out_of_the_root_are_never_read(corpus, settings, tmp_path):
    (corpus / "public" / "passwd.txt").symlink_to("/etc/passwd")
    (corpus / "public" / "notes.md").symlink_to(tmp_path / "outside" / "secrets.md")
    (corpus / "public" / "dangling.md").symlink_to(tmp_path / "nowhere.md")
    result = _ingest(corpus, settings)

    _assert_refused_as_link(result, "public/passwd.txt", "public/notes.md", "public/dangling.md")
    stored = result.stored_text()
    assert "CANARY-OUTSIDE" not in stored and "root:x:0:0" not in stored
    assert result.doc_ids == {"hr/bonus-2026.md", "public/holidays.md"}


def test_a_linked_sidecar_fails_its_document_instead_of_labelling_it(corpus, settings, tmp_path):
    # The YAML outside the root would relabel the file and carry a password into its metadata.
    (corpus / "public" / "holidays.md.meta.yaml").symlink_to(tmp_path / "outside" / "creds.yaml")
    result = _ingest(corpus, settings)

    reason = result.failed.get("public/holidays.md", "")
    assert "sidecar" in reason and LINK in reason
    assert "hunter2" not in result.stored_text() and "CANARY-OUTSIDE" not in result.stored_text()


def test_linked_folders_and_link_loops_are_not_entered(corpus, settings, tmp_path):
    (corpus / "public" / "hr-mirror").symlink_to("../hr", target_is_directory=True)
    (corpus / "public" / "outside").symlink_to(tmp_path / "outside", target_is_directory=True)
    (corpus / "public" / "loop").symlink_to("..", target_is_directory=True)
    (corpus / ".git").mkdir()
    (corpus / ".git" / "hooks").symlink_to(tmp_path / "outside", target_is_directory=True)  # excluded: silent
    result = _ingest(corpus, settings)

    assert result.doc_ids == {"hr/bonus-2026.md", "public/holidays.md"}
    assert set(result.failed) == {"public/hr-mirror", "public/outside", "public/loop"}
    _assert_refused_as_link(result, *result.failed)
    assert "CANARY-OUTSIDE" not in result.stored_text()
    assert {c.audiences for c in result.chunks if "bonus pool" in c.text} == {("hr",)}


def test_a_folder_swapped_for_a_link_after_discovery_is_refused(corpus, settings):
    # Time of check to time of use: the folder is real when listed and a link when read.
    write_doc(corpus, "public/team/bonus-2026.md", "Team", {"Picnic": "The public team picnic is in June."})

    def swap(stage: str) -> None:
        if stage == "load":
            shutil.rmtree(corpus / "public" / "team")
            (corpus / "public" / "team").symlink_to("../hr", target_is_directory=True)

    result = _ingest(corpus, settings, on_stage=swap)
    _assert_refused_as_link(result, "public/team/bonus-2026.md")
    assert {c.audiences for c in result.chunks if "bonus pool" in c.text} == {("hr",)}


def test_a_fifo_is_one_failed_file_not_a_hung_run(corpus, settings):
    os.mkfifo(corpus / "public" / "pipe.md")
    signal.signal(signal.SIGALRM, lambda *a: pytest.fail("ingest blocked on the FIFO"))
    signal.alarm(60)
    try:
        result = _ingest(corpus, settings)
    finally:
        signal.alarm(0)
    assert "not a regular file" in result.failed["public/pipe.md"]
    assert result.doc_ids == {"hr/bonus-2026.md", "public/holidays.md"}


# --- hole 4: a file name that is not UTF-8 is one failed file --------------------------------------

BAD_FILE = os.fsdecode(b"bad\xff.md")  # what os.walk hands over for the bytes b"bad\xff.md"
BAD_FOLDER = os.fsdecode(b"caf\xe9")  # Latin-1 "café"


def test_an_undecodable_file_name_is_one_failed_file_and_the_run_lands(corpus, settings, monkeypatch):
    (corpus / "public" / BAD_FILE).write_text("# Bad name\n\nThis file has a name that is not UTF-8.\n")
    write_doc(corpus / BAD_FOLDER, "menu.md", "Menu", {"Lunch": "Soup of the day."})
    assert os.fsencode(corpus / "public" / BAD_FILE).endswith(b"bad\xff.md")  # really on disk as bytes

    first = _ingest(corpus, settings)
    assert first.failed.keys() == {"public/bad\\xff.md", "caf\\xe9/menu.md"}
    assert all("not valid UTF-8" in reason for reason in first.failed.values())
    assert first.doc_ids == {"hr/bonus-2026.md", "public/holidays.md"}
    assert {(e.path, e.status) for e in first.log} >= {("public/bad\\xff.md", "failed"), ("public/holidays.md", "added")}

    # A re-label in the next run lands although the bad file is still there, and status shows that run.
    settings.access = AccessSettings(rules={"hr/**": ["hr"], "public/**": ["employees"]})
    second = _ingest(corpus, settings)
    assert {c.audiences for c in second.chunks if c.doc_id == "public/holidays.md"} == {("employees",)}
    with KnowledgeBase.open(settings.kb, settings) as kb:
        status = kb.status()
        assert status.failed_last_run == 2
        assert kb.store.log_entries(limit=1)[0].run_id == second.report.run_id

    # The CLI prints the names too (the terminal gets text, not a UnicodeEncodeError).
    from typer.testing import CliRunner

    from slm.cli.main import app

    monkeypatch.setattr("slm.cli.kb_commands.settings_from", lambda kb_dir, config: settings)
    runner = CliRunner()
    ran = runner.invoke(app, ["ingest", str(corpus), "--quiet"])
    assert ran.exit_code == 0, ran.output
    assert "failed: public/bad\\xff.md: the file name is not valid UTF-8" in ran.output
    shown = runner.invoke(app, ["status", "--log", "20"])
    assert shown.exit_code == 0, shown.output
    assert "(2 failed)" in shown.output and "caf\\xe9/menu.md" in shown.output


def test_a_lone_surrogate_in_metadata_does_not_abort_the_run(corpus, settings):
    # YAML's "\ud800" escape gives a string SQLite cannot store: before, the commit failed for every file.
    (corpus / "public" / "odd.md").write_text('---\ntitle: "Odd \\ud800 title"\n---\n\n# Odd\n\nSome text.\n')
    (corpus / "public" / "holidays.md.meta.yaml").write_text('note: "\\udcff"\n')
    result = _ingest(corpus, settings)
    assert result.failed == {}
    titles = {d.id: d.title for d in result.documents}
    assert titles["public/odd.md"] == "Odd \ufffd title"
    assert {d.id: d.metadata.get("note") for d in result.documents}["public/holidays.md"] == "\ufffd"


# --- hole 5: decompressed size is bounded before anything inflates ---------------------------------

DOCUMENT_XML = "word/document.xml"


BOMB_MB = 160  # past the default 128 MB bound; 160 KB on disk


@pytest.fixture(scope="module")
def docx_bomb(tmp_path_factory) -> bytes:
    return _docx_with_inflated_body(tmp_path_factory.mktemp("bomb"), BOMB_MB)


def _docx_with_inflated_body(folder: Path, inflated_mb: int) -> bytes:
    """A real .docx whose document.xml is padded with `inflated_mb` MB of spaces: ~0.1% of that on disk."""
    base = zipfile.ZipFile(make_docx(folder / "base.docx"))
    xml = base.read(DOCUMENT_XML)
    head, tail = xml.split(b"<w:body>", 1)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bomb:
        for info in base.infolist():
            if info.filename != DOCUMENT_XML:
                bomb.writestr(info.filename, base.read(info))
                continue
            with bomb.open(DOCUMENT_XML, "w") as member:
                member.write(head + b"<w:body>")
                block = b" " * MIB
                for _ in range(inflated_mb):
                    member.write(block)
                member.write(tail)
    return out.getvalue()


def _declare_size(raw: bytes, name: str, size: int, crc: int) -> bytes:
    """Rewrite `name`'s uncompressed size and CRC in its local header and central directory entry,
    the way a bomb lies about its size."""
    out = bytearray(raw)
    offset = zipfile.ZipFile(io.BytesIO(raw)).getinfo(name).header_offset
    struct.pack_into("<II", out, offset + 14, crc, struct.unpack_from("<I", raw, offset + 18)[0])
    struct.pack_into("<I", out, offset + 22, size)
    pos = raw.find(b"PK\x01\x02")
    while pos >= 0:
        name_len = struct.unpack_from("<H", raw, pos + 28)[0]
        if raw[pos + 46 : pos + 46 + name_len] == name.encode():
            struct.pack_into("<I", out, pos + 16, crc)
            struct.pack_into("<I", out, pos + 24, size)
        pos = raw.find(b"PK\x01\x02", pos + 4)
    return bytes(out)


def _peak_mb_while(load) -> tuple[float, Exception | None]:
    tracemalloc.start()
    try:
        load()
        error = None
    except Exception as exc:  # noqa: BLE001 - the caller checks which
        error = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / MIB, error


def test_docx_zip_bomb_is_refused_before_it_inflates(docx_bomb, corpus, settings):
    assert len(docx_bomb) < MIB  # small on disk, 160 MB inflated
    path = corpus / "public" / "bomb.docx"
    path.write_bytes(docx_bomb)

    peak, error = _peak_mb_while(lambda: load_document(path, corpus, max_bytes=20 * MIB))
    assert isinstance(error, DocumentError) and "expands to more than 128 MB (ingest.max_expanded_mb)" in str(error)
    assert peak < 16, f"{peak:.0f} MB allocated while refusing a bomb"

    result = _ingest(corpus, settings)  # one failed file, the rest lands
    assert "ingest.max_expanded_mb" in result.failed["public/bomb.docx"]
    assert result.doc_ids == {"hr/bonus-2026.md", "public/holidays.md"}


def test_docx_bomb_that_lies_about_its_size_never_inflates_past_the_lie(docx_bomb, corpus):
    # The central directory claims 4 KB (with the CRC of those 4 KB); the stream holds 160 MB.
    # zipfile's read() would inflate up to 1 GiB in one step before trimming to the claim.
    head = zipfile.ZipFile(io.BytesIO(docx_bomb)).open(DOCUMENT_XML).read(4096)
    path = corpus / "public" / "liar.docx"
    path.write_bytes(_declare_size(docx_bomb, DOCUMENT_XML, 4096, zlib.crc32(head)))

    peak, error = _peak_mb_while(lambda: load_document(path, corpus, max_bytes=20 * MIB))
    assert isinstance(error, DocumentError) and "corrupt .docx" in str(error)  # a truncated document.xml
    assert peak < 16, f"{peak:.0f} MB allocated while reading a 4 KB claim"


def test_yaml_alias_bomb_in_front_matter_is_refused(corpus, settings):
    # Nine levels of nine aliases: 1 KB of YAML that turns into 387 million strings as text.
    lines = ["---", 'l0: &l0 ["bonus"]']
    for level in range(1, 10):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 9)}]")
    lines += ["audience: public", "---", "", "# Laughs", "", "Text."]
    (corpus / "public" / "laughs.md").write_text("\n".join(lines) + "\n")

    peak, error = _peak_mb_while(lambda: load_document(corpus / "public" / "laughs.md", corpus, max_bytes=MIB))
    assert isinstance(error, DocumentError) and "aliases" in str(error)
    assert peak < 16
    result = _ingest(corpus, settings)
    assert "aliases" in result.failed["public/laughs.md"]


def _flate_of_spaces(mb: int) -> bytes:
    """A zlib stream that inflates to `mb` MB of spaces, built in O(1 MB): after a full flush the
    compressor starts afresh, so one flushed block can be repeated (the trailing checksum is not
    reached by a reader that stops at its bound)."""
    compressor = zlib.compressobj(9)
    first = compressor.compress(b" " * MIB) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(b" " * MIB) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first + again * (mb - 1) + compressor.flush()


def _pdf(contents: list[bytes]) -> bytes:
    """A PDF with one page per FlateDecode content stream in `contents`."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for stream in contents:
        kids.append(len(objects) + 1)
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                       b"/Contents %d 0 R >>" % (len(objects) + 2))
        objects.append(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1) + b"".join(b"%010d 00000 n \n" % o for o in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def test_pdf_flate_bomb_is_refused_at_the_stream_bound(corpus, settings):
    # 1 GB of page content in a 1 MB PDF: pypdf stops at its per-stream bound, lowered to ours.
    settings.ingest.max_expanded_mb = 8
    (corpus / "public" / "bomb.pdf").write_bytes(_pdf([_flate_of_spaces(1024)]))
    peak, error = _peak_mb_while(
        lambda: load_document(corpus / "public" / "bomb.pdf", corpus, max_bytes=20 * MIB,
                              limits=ExpansionLimits.from_settings(settings.ingest))
    )
    assert isinstance(error, DocumentError) and "PDF refused: a stream expands past 8 MB" in str(error)
    assert peak < 40, f"{peak:.0f} MB allocated for an 8 MB bound"
    result = _ingest(corpus, settings)
    assert "ingest.max_expanded_mb" in result.failed["public/bomb.pdf"]


def test_pdf_pages_within_the_stream_bound_still_add_up_to_the_file_bound():
    # Each page inflates to 1 MB, under the bound; the third passes 2 MB in all before it is read.
    content = zlib.compress(b"BT /F1 12 Tf 72 720 Td (page) Tj ET\n" + b"%" * MIB + b"\n")
    limits = ExpansionLimits(max_expanded_bytes=2 * MIB + MIB // 2)
    from slm.kb.loaders.pdf import load_pdf

    assert load_pdf(_pdf([content, content]), limits=limits).text.count("page") == 2
    with pytest.raises(DocumentError, match="PDF expands to more than 2 MB"):
        load_pdf(_pdf([content, content, content]), limits=limits)
