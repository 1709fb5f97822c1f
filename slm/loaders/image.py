"""Image loader (PNG, JPEG): a photographed or scanned page, read by OCR as one page with its confidence."""

from __future__ import annotations

import io

from slm.errors import DocumentError
from slm.loaders.builder import Parsed
from slm.loaders.ocr import OcrOptions, OcrPages, detect_language, ocr_image, resolve_language, scaled_for_ocr
from slm.loaders.ocr import tesseract_languages
from slm.types import PageSpan

BOMB_FACTOR = 16  # an image this many times over ingest.ocr_max_pixels is refused before it is decoded


def load_image(raw: bytes, options: OcrOptions | None = None) -> Parsed:
    from PIL import Image, UnidentifiedImageError

    options = options or OcrOptions()
    if not options.ocr:
        raise DocumentError("an image needs OCR, which is off (ingest.ocr: false)")
    try:
        image = Image.open(io.BytesIO(raw))
        width, height = image.size  # read from the header: nothing decoded yet
        if width * height > BOMB_FACTOR * options.max_pixels:
            raise DocumentError(
                f"image too large: {width}x{height} pixels > {BOMB_FACTOR}x ingest.ocr_max_pixels ({options.max_pixels})"
            )
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
