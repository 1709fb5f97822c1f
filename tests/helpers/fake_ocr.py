"""OCR faked at the Tesseract boundary for unit tests: a black picture "holds" a line of text, a white one none."""

from __future__ import annotations

from pathlib import Path

SIGN_TEXT = "Visitor parking is behind the Tucson warehouse, spaces one to twelve."


def install_fake_ocr(monkeypatch) -> None:
    """slm.kb.loaders.image reads pictures without Tesseract: text on a black image, nothing on a white one."""
    import slm.kb.loaders.image as image_loader
    from slm.kb.loaders.ocr import OcrResult

    def fake_ocr(image, language):
        dark = image.getpixel((0, 0)) == (0, 0, 0)
        return OcrResult(SIGN_TEXT if dark else "", 96.0 if dark else 0.0, language, len(SIGN_TEXT.split()) if dark else 0)

    monkeypatch.setattr(image_loader, "tesseract_languages", lambda: frozenset({"eng"}))
    monkeypatch.setattr(image_loader, "detect_language", lambda image, available, fallback: "eng")
    monkeypatch.setattr(image_loader, "ocr_image", fake_ocr)


def write_png(path: Path, *, with_text: bool) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 32), (0, 0, 0) if with_text else (255, 255, 255)).save(path, format="PNG")
    return path
