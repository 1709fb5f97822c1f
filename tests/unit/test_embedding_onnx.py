"""The ONNX embedder backends: same vectors as torch (fp32) or close (int8), exported once into the cache
atomically, `auto` resolution, and clear errors."""

import numpy as np
import pytest

from slm.config import EmbedderSettings
from slm.kb.embedding import Embedder, _backend_for
from slm.kb.embedding_onnx import OnnxSentenceModel, exported_model
from slm.errors import ConfigError, ModelLoadError

TEXTS = ["refunds go to the original payment method", "parcels ship from the warehouse",
         "a much longer sentence about annual leave, sick notes and the approval of holidays by managers", "x"]


def _settings(model_dir, backend):
    return EmbedderSettings(model=str(model_dir), batch_size=2, max_seq_length=128, backend=backend, device="cpu")


def test_onnx_matches_torch_and_int8_stays_close(tiny_embedder_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SLM_CACHE_DIR", str(tmp_path))
    torch_vectors = Embedder(_settings(tiny_embedder_dir, "torch")).encode(TEXTS)
    onnx = Embedder(_settings(tiny_embedder_dir, "onnx"))
    int8 = Embedder(_settings(tiny_embedder_dir, "onnx-int8"))
    assert isinstance(onnx.model, OnnxSentenceModel) and onnx.dimension == torch_vectors.shape[1]
    np.testing.assert_allclose(onnx.encode(TEXTS), torch_vectors, atol=1e-5)
    cosines = (int8.encode(TEXTS) * torch_vectors).sum(axis=1)
    assert cosines.min() > 0.95
    np.testing.assert_allclose(np.linalg.norm(int8.encode(TEXTS), axis=1), 1.0, atol=1e-5)
    # Exported once: both files in the cache, no temp files; a second load reuses them.
    files = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["model-int8.onnx", "model.onnx"]
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.onnx")}
    assert exported_model(tiny_embedder_dir, quantize=True) in before
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.onnx")} == before


def test_backend_choice_and_errors(tiny_embedder_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SLM_CACHE_DIR", str(tmp_path))
    assert _backend_for(_settings(tiny_embedder_dir, "auto"), local=True) == "onnx-int8"
    assert _backend_for(_settings(tiny_embedder_dir, "AUTO"), local=False) == "torch"  # a hub id: nothing to export
    gpu = EmbedderSettings(model=str(tiny_embedder_dir), backend="auto", device="cuda")
    assert _backend_for(gpu, local=True) == "torch"
    assert _backend_for(_settings(tiny_embedder_dir, " onnx "), local=False) == "onnx"
    assert isinstance(Embedder(_settings(tiny_embedder_dir, "auto")).model, OnnxSentenceModel)
    with pytest.raises(ConfigError, match="embedder.backend.*auto, torch, onnx, onnx-int8"):
        Embedder(_settings(tiny_embedder_dir, "tensorrt"))
    with pytest.raises(ModelLoadError, match="local model folder"):
        Embedder(_settings("some-org/some-hub-model", "onnx"))
