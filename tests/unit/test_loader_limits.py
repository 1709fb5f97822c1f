"""slm.kb.loaders.limits: zip members inflated within the bound, YAML without aliases, limits from settings."""

from __future__ import annotations

import io
import warnings
import zipfile

import pytest

from slm.config import IngestSettings
from slm.errors import DocumentError
from slm.kb.loaders.limits import MIB, ExpansionLimits, load_yaml, stored_zip, unpack_zip


def _zip(members: dict[str, bytes] | list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names on purpose
        for name, data in members.items() if isinstance(members, dict) else members:
            archive.writestr(name, data)
    return out.getvalue()


def test_members_within_the_bound_come_back_and_repack_uncompressed():
    raw = _zip({"a.xml": b"<a/>" * 1000, "b/c.bin": bytes(range(256))})
    members = unpack_zip(raw, ExpansionLimits(), what=".docx")
    assert members == {"a.xml": b"<a/>" * 1000, "b/c.bin": bytes(range(256))}
    repacked = zipfile.ZipFile(io.BytesIO(stored_zip(members)))
    assert {i.compress_type for i in repacked.infolist()} == {zipfile.ZIP_STORED}
    assert repacked.read("a.xml") == members["a.xml"]


def test_total_over_the_bound_is_refused_with_the_setting_named():
    raw = _zip({"a": b"x" * MIB, "b": b"y" * MIB})
    with pytest.raises(DocumentError, match=r"expands to more than 2 MB \(ingest.max_expanded_mb\)"):
        unpack_zip(raw, ExpansionLimits(max_expanded_bytes=2 * MIB - 1), what=".docx")


def test_too_many_members_duplicates_and_unbounded_methods_are_refused():
    with pytest.raises(DocumentError, match="holds 11 archive members"):
        unpack_zip(_zip({f"m{i}": b"" for i in range(11)}), ExpansionLimits(max_archive_members=10), what=".docx")
    with pytest.raises(DocumentError, match="appears twice"):
        unpack_zip(_zip([("a", b"1"), ("a", b"2")]), ExpansionLimits(), what=".docx")
    with pytest.raises(DocumentError, match="compression method 12"):  # bzip2 inflates a whole read at once
        unpack_zip(_zip({"a": b"x" * 100}, zipfile.ZIP_BZIP2), ExpansionLimits(), what=".docx")
    with pytest.raises(DocumentError, match="corrupt .docx"):
        unpack_zip(b"PK\x03\x04 not really a zip", ExpansionLimits(), what=".docx")


def test_limits_follow_the_ingest_settings():
    assert ExpansionLimits().max_expanded_bytes == int(IngestSettings().max_expanded_mb * MIB)
    assert ExpansionLimits.from_settings(IngestSettings(max_expanded_mb=3)).max_expanded_bytes == 3 * MIB


def test_yaml_metadata_loads_but_aliases_do_not():
    assert load_yaml("audience: [hr, managers]\ntitle: Bonus\n") == {"audience": ["hr", "managers"], "title": "Bonus"}
    with pytest.raises(Exception, match="aliases"):
        load_yaml("a: &a [x]\nb: *a\n")
