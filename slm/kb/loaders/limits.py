"""How far one input may expand while it is read (zip members, PDF streams and text, YAML aliases),
checked before or while inflating so a small hostile file is refused before it takes the memory.
Every loader or document source that reads a compressed format goes through here."""

from __future__ import annotations

import io
import zipfile
import zlib
from dataclasses import dataclass

import yaml

from slm.config import IngestSettings
from slm.errors import DocumentError

MIB = 1024 * 1024
# zipfile bounds one decompress call by the size asked for, but `ZipFile.read()` asks for 1 GiB at a
# time and trims to the declared size afterwards; reading in small steps keeps each step small.
_ZIP_STEP = 1 << 16
# Only these two are bounded per step by zipfile (its bzip2/lzma paths inflate a whole read at once);
# OOXML allows no others.
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


@dataclass(frozen=True)
class ExpansionLimits:
    """The most one file may turn into. `max_expanded_bytes` bounds inflated archive members and
    extracted text (characters count as bytes); the counts bound work no size check sees."""

    max_expanded_bytes: int = int(IngestSettings.max_expanded_mb * MIB)
    max_archive_members: int = 10_000  # a Word file holds tens of parts, a few hundred with many images

    @classmethod
    def from_settings(cls, ingest: IngestSettings) -> "ExpansionLimits":
        """From an `IngestSettings` (`ingest.max_expanded_mb`)."""
        return cls(max_expanded_bytes=int(ingest.max_expanded_mb * MIB))


def check_expanded(size: int, limits: ExpansionLimits, what: str) -> None:
    """Refuse `what` once `size` (bytes inflated or characters extracted so far) passes the bound."""
    if size > limits.max_expanded_bytes:
        raise DocumentError(
            f"{what} expands to more than {limits.max_expanded_bytes / MIB:.0f} MB (ingest.max_expanded_mb); "
            "refused before inflating further: a decompression bomb, or too large to index"
        )


def unpack_zip(raw: bytes, limits: ExpansionLimits, *, what: str) -> dict[str, bytes]:
    """Every member of the zip archive `raw`, name -> bytes. The declared sizes are checked before
    anything inflates, and the bytes are counted as they inflate in small steps, so the total stays
    within `max_expanded_bytes` whatever the archive claims. Raises DocumentError ("corrupt {what}")."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            infos = archive.infolist()
            if len(infos) > limits.max_archive_members:
                raise DocumentError(f"{what} holds {len(infos)} archive members (limit {limits.max_archive_members})")
            check_expanded(sum(info.file_size for info in infos), limits, what)
            members: dict[str, bytes] = {}
            total = 0
            for info in infos:
                if info.filename in members:
                    raise DocumentError(f"corrupt {what}: the member {info.filename!r} appears twice")
                if info.compress_type not in _ZIP_METHODS:
                    raise DocumentError(
                        f"corrupt {what}: member {info.filename!r} uses zip compression method "
                        f"{info.compress_type}; only stored and deflate are read"
                    )
                if info.flag_bits & 0x1:
                    raise DocumentError(f"encrypted {what}: remove the password before ingesting")
                parts: list[bytes] = []
                with archive.open(info) as member:
                    while block := member.read(_ZIP_STEP):
                        total += len(block)
                        check_expanded(total, limits, what)
                        parts.append(block)
                members[info.filename] = b"".join(parts)
            return members
    except DocumentError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
        raise DocumentError(f"corrupt {what}: {type(exc).__name__}: {exc}") from exc


def stored_zip(members: dict[str, bytes]) -> bytes:
    """`members` packed again without compression, for a library that opens the zip itself
    (python-docx): it then has nothing left to inflate."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return out.getvalue()


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader without aliases: `*name` repeats a node without repeating its bytes, so nested
    aliases let one kilobyte of YAML stand for gigabytes once the values are turned into text."""

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in document metadata", mark)
        return super().compose_node(parent, index)


def load_yaml(text: str) -> object:
    """`yaml.safe_load` for metadata (sidecars, front matter), refusing aliases. Raises yaml.YAMLError."""
    return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
