"""OCR with the real Tesseract: a scanned PDF (pages with no text layer) and a PNG read in the document's
language with a per-page confidence stored, low-confidence pages reported, the bounds applied, and a
clear error naming the apt command when a language pack is missing."""

import json
import shutil

import pytest

from slm.kb.documents import load_document
from slm.errors import DocumentError
from slm.kb.ingest import document_warnings
from slm.kb.loaders.limits import ExpansionLimits
from slm.kb.loaders.ocr import OcrOptions, language_for
from tests.fixtures.builders import make_pdf, make_scanned_pdf, make_table_pdf

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("tesseract") is None, reason="Tesseract is installed by scripts/install.sh"),
]


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scan")
    text_pdf = make_table_pdf(folder / "travel.pdf")
    return folder, make_scanned_pdf(folder / "scan.pdf", text_pdf)


def test_language_for():
    assert language_for("en-US") == "eng"
    assert language_for("zh-CN") == "chi_sim"
    assert language_for("id") == "ind"
    assert language_for("eng+ind") == "eng+ind"
    assert language_for("xx-YY") is None and language_for("") is None


def test_scanned_pdf_is_ocred_with_confidence(scan):
    folder, path = scan
    doc = load_document(path, folder, max_bytes=10**8, ocr=OcrOptions())
    assert "Travel allowances" in doc.text and "submit claims within 30 days" in doc.text
    assert "Lisbon" in doc.text and "Shanghai" in doc.text
    assert doc.metadata["ocr_pages"] == "1" and doc.metadata["ocr_language"] == "eng"
    confidence = json.loads(doc.metadata["ocr_confidence"])
    assert 70 < confidence["1"] <= 100
    assert document_warnings(doc) == []
    assert [p.number for p in doc.pages] == [1]


def test_png_image_is_a_document_and_low_confidence_is_reported(scan, tmp_path):
    import pdfplumber

    folder, path = scan
    with pdfplumber.open(str(path)) as pdf:
        pdf.pages[0].to_image(resolution=150).original.convert("RGB").save(tmp_path / "note.png")
    doc = load_document(tmp_path / "note.png", tmp_path, max_bytes=10**8, ocr=OcrOptions())
    assert "Travel allowances" in doc.text and doc.metadata["format"] == "png"
    # The same page held to an impossible standard: reported, still ingested.
    strict = load_document(tmp_path / "note.png", tmp_path, max_bytes=10**8, ocr=OcrOptions(min_confidence=99.9))
    assert strict.metadata["ocr_low_confidence_pages"] == "1"
    assert "low OCR confidence on page 1" in document_warnings(strict)[0]


def test_ocr_bounds_and_missing_language_pack(scan, tmp_path):
    three_pages = make_scanned_pdf(tmp_path / "three.pdf", make_pdf(tmp_path / "handbook.pdf"), dpi=150)
    bounded = load_document(three_pages, tmp_path, max_bytes=10**8, ocr=OcrOptions(max_pages=1))
    assert bounded.metadata["ocr_pages"] == "1" and bounded.metadata["ocr_skipped_pages"] == "2,3"
    assert "Returns" in bounded.text and "warranty" not in bounded.text.lower()
    assert "2 scanned pages not OCR'd" in document_warnings(bounded)[0]
    folder, path = scan
    with pytest.raises(DocumentError, match="apt-get install tesseract-ocr-jpn"):
        load_document(path, folder, max_bytes=10**8, ocr=OcrOptions(languages="eng", language="jpn+eng"))
    from PIL import Image

    Image.new("L", (5000, 5000), 255).save(tmp_path / "poster.png")  # 29 kB of PNG, 75 MB as RGB
    assert (tmp_path / "poster.png").stat().st_size < 100_000
    with pytest.raises(DocumentError, match=r"image \(5000x5000 pixels\) expands to more than 16 MB"):
        load_document(tmp_path / "poster.png", tmp_path, max_bytes=10**9, ocr=OcrOptions(),
                      limits=ExpansionLimits(max_expanded_bytes=16 * 2**20))


def test_a_picture_without_text_is_skipped(tmp_path):
    """Real Tesseract on a blank picture (a logo, a photo) finds nothing: skipped, not a failure."""
    from PIL import Image

    from slm.errors import DocumentSkipped

    Image.new("RGB", (320, 200), (255, 255, 255)).save(tmp_path / "logo.png")
    with pytest.raises(DocumentSkipped, match="image without text"):
        load_document(tmp_path / "logo.png", tmp_path, max_bytes=10**8, ocr=OcrOptions())
