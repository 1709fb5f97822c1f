"""Image loader (PNG, JPEG): a photographed or scanned page, read by OCR as one page with its confidence."""

from __future__ import annotations

import io

from slm.errors import DocumentError
from slm.kb.loaders.builder import Parsed
from slm.kb.loaders.limits import ExpansionLimits, check_expanded
from slm.kb.loaders.ocr import OcrOptions, OcrPages, detect_language, ocr_image, resolve_language, scaled_for_ocr
from slm.kb.loaders.ocr import tesseract_languages
from slm.types import PageSpan


def load_image(raw: bytes, options: OcrOptions | None = None, limits: ExpansionLimits | None = None) -> Parsed:
    """An image file OCR'd as one page. What it decodes to (RGB bytes) is bounded by ingest.max_expanded_mb
    before anything is decoded: a small PNG of a huge blank canvas is a decompression bomb."""
    from PIL import Image, UnidentifiedImageError

    options = options or OcrOptions()
    limits = limits or ExpansionLimits()
    if not options.ocr:
        raise DocumentError("an image needs OCR, which is off (ingest.ocr: false)")
    try:
        image = Image.open(io.BytesIO(raw))
        width, height = image.size  # read from the header: nothing decoded yet
        check_expanded(width * height * 3, limits, f"image ({width}x{height} pixels)")
        if image.format == "JPEG":
            image.draft("RGB", (width // 4, height // 4) if width * height > 4 * options.max_pixels else (width, height))
        image = image.convert("RGB")
    except DocumentError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise DocumentError(f"corrupt image: {exc}") from exc
    image = scaled_for_ocr(image, options.max_pixels)
    available = tesseract_languages()
    language = resolve_language(None, options, available) or detect_language(image, available, options.languages)
    result = ocr_image(image, language)
    text = result.text.strip()
    pages = OcrPages({0: result}, (), options.min_confidence)
    return Parsed(text=text, pages=(PageSpan(1, 0, len(text)),), metadata={"pages": "1", **pages.metadata()})
