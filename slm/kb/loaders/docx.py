"""Word (.docx) loader (python-docx): `Heading N` styles become sections, list paragraphs and
table rows become lines, in body order."""

from __future__ import annotations

import io
import re
import zipfile

from slm.errors import DocumentError
from slm.kb.loaders.builder import Parsed, TextBuilder
from slm.kb.loaders.limits import ExpansionLimits, stored_zip, unpack_zip

_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.I)


def load_docx(raw: bytes, limits: ExpansionLimits = ExpansionLimits()) -> Parsed:
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    if not zipfile.is_zipfile(io.BytesIO(raw)):
        raise DocumentError("corrupt .docx: not a zip archive (a renamed .doc or a damaged file?)")
    # python-docx reads each part with ZipFile.read(), which inflates up to 1 GiB before trimming to
    # the declared size; it gets the parts inflated within the limits instead, packed uncompressed.
    package = stored_zip(unpack_zip(raw, limits, what=".docx"))
    try:
        document = docx.Document(io.BytesIO(package))
    except PackageNotFoundError as exc:
        raise DocumentError(f"corrupt .docx: not a Word package ({exc})") from exc
    except Exception as exc:  # a damaged zip raises zlib.error, NotImplementedError, lxml errors, ...
        raise DocumentError(f"corrupt .docx: {type(exc).__name__}: {exc}") from exc
    out = TextBuilder()
    title: str | None = None
    try:
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                for row in item.rows:
                    cells: list[str] = []
                    for cell in row.cells:
                        value = " ".join(cell.text.split())
                        if not cells or value != cells[-1]:  # merged cells repeat their text
                            cells.append(value)
                    out.block(" | ".join(cells), tight=True)
                continue
            text = item.text.strip()
            if not text:
                continue
            style = (item.style.name if item.style is not None else "") or ""
            match = _HEADING_STYLE.match(style)
            if match:
                out.heading(int(match.group(1)), text, None)
            elif style.lower() == "title":
                title = title or text
                out.block(text)
            elif style.lower().startswith("list"):
                out.block(f"- {text}", tight=True)
            else:
                out.block(text)
        core_title = (document.core_properties.title or "").strip()
    except Exception as exc:  # parts referenced but damaged inside a readable zip
        raise DocumentError(f"corrupt .docx: {type(exc).__name__}: {exc}") from exc
    body, sections = out.build()
    return Parsed(text=body, title=core_title or title or (sections[0].path[0] if sections else None), sections=sections)
