"""Bad input raises DocumentError with a reason; discovery finds only documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from slm.kb.documents import SUPPORTED_SUFFIXES, discover, load_document
from slm.errors import DocumentError
from tests.fixtures.builders import make_blank_pdf, make_pdf


def _load(path: Path, max_bytes: int = 1_000_000):
    return load_document(path, path.parent, max_bytes=max_bytes)


def _fails(path: Path, reason: str, **kw) -> None:
    with pytest.raises(DocumentError) as info:
        _load(path, **kw)
    assert reason in str(info.value).lower()


def test_unsupported_suffix(tmp_path):
    (tmp_path / "slides.pptx").write_bytes(b"PK\x03\x04")
    _fails(tmp_path / "slides.pptx", "unsupported file type '.pptx'")


def test_missing_file_is_unreadable(tmp_path):
    _fails(tmp_path / "gone.md", "cannot read")


def test_unreadable_path(tmp_path):
    (tmp_path / "folder.txt").mkdir()  # stat works, reading does not (also as root, unlike chmod 0)
    _fails(tmp_path / "folder.txt", "cannot read")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.txt", b""),
        ("blank.md", b"   \n\n\t\n"),
        ("only-front-matter.md", b"---\ntitle: x\n---\n\n"),
        ("markup.html", b"<html><body><nav>menu</nav><script>x()</script></body></html>"),
    ],
)
def test_empty_or_no_text(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DocumentError, match="empty|no text"):
        _load(tmp_path / name)


def test_too_large(tmp_path):
    (tmp_path / "big.txt").write_text("x" * 2000)
    _fails(tmp_path / "big.txt", "too large", max_bytes=1000)


def test_truncated_pdf(tmp_path):
    good = make_pdf(tmp_path / "good.pdf").read_bytes()
    (tmp_path / "cut.pdf").write_bytes(good[: len(good) // 3])
    with pytest.raises(DocumentError, match="corrupt PDF|no text"):
        _load(tmp_path / "cut.pdf")


def test_not_a_pdf(tmp_path):
    (tmp_path / "fake.pdf").write_text("hello, I am text")
    _fails(tmp_path / "fake.pdf", "corrupt pdf")


def test_pdf_without_text_layer(tmp_path):
    _fails(make_blank_pdf(tmp_path / "scan.pdf"), "no text extracted")


def test_docx_that_is_not_a_zip(tmp_path):
    (tmp_path / "old.docx").write_bytes(b"\xd0\xcf\x11\xe0 an old binary .doc renamed")
    _fails(tmp_path / "old.docx", "not a zip")


def test_undecodable_text(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"caf\xc3 \x81\x8d\x90 broken")  # invalid UTF-8, undefined in cp1252
    _fails(tmp_path / "bad.txt", "undecodable")


def test_binary_in_text_file(tmp_path):
    (tmp_path / "blob.md").write_bytes(b"\x00\x01\x02binary")
    _fails(tmp_path / "blob.md", "binary")


def test_text_encodings_fallback(tmp_path):
    (tmp_path / "bom.txt").write_bytes("\ufeffcafé".encode("utf-8"))
    (tmp_path / "legacy.txt").write_bytes("café – naïve".encode("cp1252"))
    (tmp_path / "wide.txt").write_bytes("wide text".encode("utf-16"))
    bom, legacy, wide = (_load(tmp_path / n) for n in ("bom.txt", "legacy.txt", "wide.txt"))
    assert bom.text == "café" and bom.metadata["encoding"] == "utf-8"
    assert legacy.text == "café – naïve" and legacy.metadata["encoding"] == "cp1252"
    assert wide.text == "wide text" and wide.metadata["encoding"] == "utf-16"


def test_bad_front_matter_and_bad_sidecar_fail_loudly(tmp_path):
    (tmp_path / "a.md").write_text("---\naudience: [hr\n---\n# A\n\ntext here\n")
    _fails(tmp_path / "a.md", "front matter")
    (tmp_path / "b.md").write_text("# B\n\ntext here\n")
    (tmp_path / "b.md.meta.yaml").write_text("audience: [hr\n")
    _fails(tmp_path / "b.md", "sidecar")


def test_discover_filters_and_skips_sidecars(tmp_path):
    for rel in ["a.md", "b.HTML", "c.exe", "sub/d.txt", "sub/d.txt.meta.yaml", ".hidden/e.md", "_static/f.html", "g.pdf"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    found = [p.relative_to(tmp_path).as_posix() for p in discover(tmp_path, ["**/*"], ["**/.*/**", "**/_static/**"])]
    assert found == ["a.md", "b.HTML", "g.pdf", "sub/d.txt"]
    only_sub = discover(tmp_path, ["sub/**"], [])
    assert [p.name for p in only_sub] == ["d.txt"]
    assert {".html", ".htm", ".md", ".rst", ".txt", ".pdf", ".docx"} <= SUPPORTED_SUFFIXES


def test_damaged_files_raise_only_document_error(tmp_path):
    """Seeded fuzzing: truncated, bit-flipped and spliced copies of every format either load or
    raise DocumentError, never another exception that would stop an ingest run."""
    import random

    from tests.fixtures.builders import make_docx

    docs = Path(__file__).parents[1] / "fixtures" / "docs"
    seeds = {
        ".pdf": make_pdf(tmp_path / "seed.pdf").read_bytes(),
        ".docx": make_docx(tmp_path / "seed.docx").read_bytes(),
        ".html": (docs / "sphinx_page.html").read_bytes(),
        ".md": (docs / "guide.md").read_bytes(),
        ".rst": (docs / "manual.rst").read_bytes(),
    }
    rng = random.Random(7)
    loaded = failed = 0
    for suffix, data in seeds.items():
        for i in range(40):
            damaged = bytearray(data)
            mode = i % 3
            if mode == 0:
                damaged = damaged[: rng.randint(0, len(damaged))]
            elif mode == 1:
                for _ in range(rng.randint(1, 20)):
                    damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            else:
                at = rng.randrange(len(damaged))
                del damaged[at : at + rng.randint(1, 500)]
            path = tmp_path / f"case{i}{suffix}"
            path.write_bytes(bytes(damaged))
            try:
                load_document(path, tmp_path, max_bytes=10_000_000)
                loaded += 1
            except DocumentError:
                failed += 1
    assert failed > 20 and loaded > 20  # both outcomes occur, so the test exercises both paths


def test_an_image_without_text_is_skipped_not_failed(tmp_path, monkeypatch):
    """A logo or a photo is normal in a folder of documents: DocumentSkipped. A PDF without text, a corrupt
    image, or markup without text stay plain failures."""
    from slm.errors import DocumentSkipped
    from tests.helpers.fake_ocr import SIGN_TEXT, install_fake_ocr, write_png

    install_fake_ocr(monkeypatch)
    with pytest.raises(DocumentSkipped, match="image without text"):
        _load(write_png(tmp_path / "logo.png", with_text=False))
    assert _load(write_png(tmp_path / "sign.png", with_text=True)).text == SIGN_TEXT
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "markup.html").write_bytes(b"<html><body><script>x()</script></body></html>")
    for path in (make_blank_pdf(tmp_path / "scan.pdf"), tmp_path / "broken.jpg", tmp_path / "markup.html"):
        with pytest.raises(DocumentError) as info:
            _load(path)
        assert not isinstance(info.value, DocumentSkipped), path
