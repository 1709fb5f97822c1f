"""An OpenVINO runner for the ONNX file slm exports (slm.kb.embedding_onnx), with what `Embedder` needs of a
SentenceTransformer; bench-only, to measure OpenVINO against ONNX Runtime before offering it as a backend.

    hint "latency": one stream, the batch on all cores; "throughput": the batch split over the streams OpenVINO
    picks (2 on 2 cores), run as asynchronous requests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from slm.kb.embedding_onnx import _input_names, _st_max_seq_length, _transformer_dir, exported_model


class OpenVinoSentenceModel:
    def __init__(self, folder: Path, *, hint: str = "throughput", max_seq_length: int | None = None,
                 int8_onnx: bool = False):
        import openvino as ov
        from transformers import AutoTokenizer

        onnx_file = exported_model(Path(folder), quantize=int8_onnx)
        self.tokenizer = AutoTokenizer.from_pretrained(str(_transformer_dir(Path(folder))))
        self._names = _input_names(self.tokenizer)
        self.max_seq_length = max_seq_length or _st_max_seq_length(Path(folder)) or 512
        self._compiled = ov.Core().compile_model(str(onnx_file), "CPU", {"PERFORMANCE_HINT": hint.upper()})
        self.streams = int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self._queue = ov.AsyncInferQueue(self._compiled, self.streams)
        self._dimension = int(self.encode(["x"]).shape[1])

    def get_sentence_embedding_dimension(self) -> int:
        return self._dimension

    get_embedding_dimension = get_sentence_embedding_dimension

    def _feeds(self, texts: list[str]) -> dict[str, np.ndarray]:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="np")
        return {n: batch[n].astype(np.int64) for n in self._names}

    def encode(self, sentences: Sequence[str], batch_size: int = 32, normalize_embeddings: bool = True,
               convert_to_numpy: bool = True, show_progress_bar: bool = False, **_: Any) -> np.ndarray:
        sentences = list(sentences)
        parts: list[list[str]] = []
        for start in range(0, len(sentences), batch_size):
            batch = sentences[start : start + batch_size]
            step = -(-len(batch) // self.streams)  # a batch split over the streams, run at once
            parts += [batch[i : i + step] for i in range(0, len(batch), step)]
        results: dict[int, np.ndarray] = {}
        self._queue.set_callback(lambda request, i: results.__setitem__(i, request.get_output_tensor(0).data.copy()))
        for i, part in enumerate(parts):
            self._queue.start_async(self._feeds(part), i)
        self._queue.wait_all()
        vectors = np.concatenate([results[i] for i in range(len(parts))]).astype(np.float32)
        if normalize_embeddings:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.where(norms == 0, 1.0, norms)
        return vectors
