"""OCR with the Tesseract CLI (offline; Debian's tesseract-ocr and its language packs): an image in, the
text by paragraphs and a confidence out. The language is the document's: given, from the PDF, or from the
script Tesseract's orientation-and-script detection sees."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass, field

from slm.errors import DocumentError

INSTALL_HINT = "apt-get install tesseract-ocr tesseract-ocr-chi-sim tesseract-ocr-ind (see scripts/install.sh)"
_TIMEOUT_S = 120  # one page at 300 dpi takes 2-10 s on one core; a stuck process must not hang ingestion

# ISO 639 codes (a sidecar's `language:`, a PDF's /Lang) to Tesseract's traineddata names.
ISO_TO_TESSERACT = {
    "en": "eng", "eng": "eng", "zh": "chi_sim", "zh-cn": "chi_sim", "zh-hans": "chi_sim", "chi_sim": "chi_sim",
    "id": "ind", "in": "ind", "ind": "ind", "ms": "ind",
}
_SCRIPT_LANGUAGES = {"han": "chi_sim", "hangul": "kor", "japanese": "jpn", "cyrillic": "rus", "arabic": "ara"}


@dataclass(frozen=True)
class OcrOptions:
    """How pages without a text layer and images are read (from `ingest.*` settings and the document)."""

    ocr: bool = True
    languages: str = "eng"  # when the document declares none and the page's script is Latin
    max_pages: int = 50  # OCR'd pages per document; the rest are reported, not read
    max_pixels: int = 12_000_000  # per page image; 300 dpi A4 is 8.7 M
    min_confidence: float = 60.0  # pages below are reported as low-confidence
    pdf_max_pages: int = 2000
    language: str | None = None  # the document's declared language (a sidecar's `language:`)

    @classmethod
    def from_settings(cls, ingest) -> "OcrOptions":
        return cls(ocr=ingest.ocr, languages=ingest.ocr_languages, max_pages=ingest.ocr_max_pages,
                   max_pixels=ingest.ocr_max_pixels, min_confidence=ingest.ocr_min_confidence,
                   pdf_max_pages=ingest.pdf_max_pages)


@dataclass(frozen=True)
class OcrResult:
    text: str
    confidence: float  # 0-100: Tesseract's word confidences, weighted by word length
    language: str
    words: int


@dataclass(frozen=True)
class OcrPages:
    """What OCR read from a document's pages (0-based index -> result), and what it left out."""

    pages: dict[int, OcrResult] = field(default_factory=dict)
    skipped: tuple[int, ...] = ()
    min_confidence: float = 60.0

    @property
    def low_confidence(self) -> tuple[int, ...]:
        return tuple(i for i, r in sorted(self.pages.items()) if r.confidence < self.min_confidence)

    def metadata(self) -> dict[str, str]:
        """Stored with the document: which pages were OCR'd, in what language, each page's confidence."""
        numbers = lambda idx: ",".join(str(i + 1) for i in idx)  # noqa: E731
        out = {
            "ocr_pages": numbers(sorted(self.pages)),
            "ocr_language": ",".join(sorted({r.language for r in self.pages.values()})),
            "ocr_confidence": json.dumps({str(i + 1): r.confidence for i, r in sorted(self.pages.items())}),
        }
        if self.low_confidence:
            out["ocr_low_confidence_pages"] = numbers(self.low_confidence)
        if self.skipped:
            out["ocr_skipped_pages"] = numbers(self.skipped)
        return out


def tesseract_languages() -> frozenset[str]:
    """The installed language packs; raises DocumentError naming the apt command when Tesseract is missing."""
    exe = shutil.which("tesseract")
    if exe is None:
        raise DocumentError(f"OCR needs Tesseract, which is not installed: {INSTALL_HINT}")
    done = subprocess.run([exe, "--list-langs"], capture_output=True, text=True, timeout=30, check=False)
    return frozenset(line.strip() for line in done.stdout.splitlines()[1:] if line.strip())


def language_for(declared: str | None) -> str | None:
    """Tesseract language for a declared language (`en`, `zh-CN`, `chi_sim`, `eng+ind`), None if unknown."""
    if not declared:
        return None
    parts = []
    for piece in re.split(r"[+,\s]+", declared.strip().lower()):
        code = ISO_TO_TESSERACT.get(piece)
        if code is None and re.fullmatch(r"[a-z]{3}(_[a-z]+)?", piece):
            code = piece  # already a Tesseract name (jpn, chi_tra, deu)
        if code is None:
            code = ISO_TO_TESSERACT.get(piece.split("-")[0].split("_")[0])
        if code and code not in parts:
            parts.append(code)
    return "+".join(parts) or None


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _run(png: bytes, *args: str) -> str:
    exe = shutil.which("tesseract")
    if exe is None:
        raise DocumentError(f"OCR needs Tesseract, which is not installed: {INSTALL_HINT}")
    try:
        done = subprocess.run([exe, "stdin", "stdout", *args], input=png, capture_output=True, timeout=_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        raise DocumentError(f"OCR took longer than {_TIMEOUT_S} s on one page") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DocumentError(f"OCR failed: {message[-1] if message else done.returncode}")
    return done.stdout.decode("utf-8", "replace")


def detect_language(image, available: frozenset[str], fallback: str) -> str:
    """The script on the page (Tesseract OSD) mapped to an installed language; Latin script, or no OSD
    data, gives `fallback` (ocr_languages), since OSD cannot tell English from Indonesian."""
    if "osd" not in available:
        return fallback
    try:
        out = _run(_png(image), "--psm", "0", "-l", "osd")
    except DocumentError:
        return fallback  # too little text for OSD to decide
    match = re.search(r"Script:\s*(\w+)", out)
    script = match.group(1).lower() if match else "latin"
    language = _SCRIPT_LANGUAGES.get(script)
    return language if language and language in available else fallback


def _is_cjk(ch: str) -> bool:
    return bool(ch) and unicodedata.name(ch, "").startswith(("CJK", "IDEOGRAPHIC", "FULLWIDTH", "HIRAGANA", "KATAKANA"))


def _join(words: list[str]) -> str:
    """Words of one line: CJK characters are not space-separated (Tesseract's TSV splits them apart)."""
    out = ""
    for word in words:
        if out and not (_is_cjk(out[-1]) and _is_cjk(word[0])):
            out += " "
        out += word
    return out


def ocr_image(image, language: str) -> OcrResult:
    """OCR one page image (a PIL image) in `language` (e.g. `eng`, `chi_sim`, `eng+ind`)."""
    tsv = _run(_png(image), "-l", language, "--psm", "3", "tsv")
    paragraphs: dict[tuple[int, int], dict[int, list[str]]] = {}
    weighted = chars = 0.0
    words = 0
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5":  # level 5: a word
            continue
        text = cols[11].strip()
        if not text:
            continue
        block, par, line = int(cols[2]), int(cols[3]), int(cols[4])
        paragraphs.setdefault((block, par), {}).setdefault(line, []).append(text)
        conf = float(cols[10])
        if conf >= 0:
            weighted += conf * len(text)
            chars += len(text)
            words += 1
    text = "\n\n".join(
        "\n".join(_join(lines[n]) for n in sorted(lines)) for _, lines in sorted(paragraphs.items())
    )
    return OcrResult(text=text, confidence=round(weighted / chars, 1) if chars else 0.0, language=language, words=words)


def scaled_for_ocr(image, max_pixels: int):
    """The image at most `max_pixels` large (down-scaled, aspect kept): bounds OCR time and memory."""
    width, height = image.size
    if width * height <= max_pixels:
        return image
    factor = (max_pixels / (width * height)) ** 0.5
    return image.resize((max(1, int(width * factor)), max(1, int(height * factor))))


def resolve_language(declared: str | None, options: OcrOptions, available: frozenset[str]) -> str | None:
    """The Tesseract language a document declares, checked against the installed packs (None: detect)."""
    language = language_for(options.language or declared)
    if language is None:
        return None
    missing = [part for part in language.split("+") if part not in available]
    if missing:
        packages = " ".join("tesseract-ocr-" + m.replace("_", "-") for m in missing)
        raise DocumentError(f"OCR language pack not installed for {'+'.join(missing)}: apt-get install {packages}")
    return language


def ocr_page_images(pdf, indexes: list[int], options: OcrOptions, declared: str | None) -> OcrPages:
    """OCR the given pages of an open pdfplumber PDF, each rendered at up to 300 dpi within max_pixels."""
    available = tesseract_languages()
    language = resolve_language(declared, options, available)
    results: dict[int, OcrResult] = {}
    for index in indexes[: options.max_pages]:
        page = pdf.pages[index]
        area = max(1.0, float(page.width) * float(page.height)) / (72 * 72)  # square inches
        dpi = min(300, int((options.max_pixels / area) ** 0.5))
        image = page.to_image(resolution=max(36, dpi)).original.convert("RGB")
        image = scaled_for_ocr(image, options.max_pixels)
        if language is None:  # one detection per document: its pages share a language
            language = detect_language(image, available, options.languages)
        results[index] = ocr_image(image, language)
    return OcrPages(results, tuple(indexes[options.max_pages :]), options.min_confidence)


def confidence_of(metadata) -> dict[str, float]:
    """Per-page OCR confidence (page number as text -> 0-100) from a document's stored metadata."""
    try:
        return {str(k): float(v) for k, v in json.loads(metadata.get("ocr_confidence") or "{}").items()}
    except (ValueError, TypeError, AttributeError):
        return {}
