"""Fusion of dense and BM25 rankings: weighted reciprocal rank, with the weights calibrated per knowledge base
on questions made from its own chunks (tuned on one split, reported on the other) and stored beside it."""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from slm.types import Chunk

FUSION_FILE = "fusion.json"
# Dense weight candidates (BM25 gets 1 - w). 0 and 1 are the single retrievers, so on the questions it is
# tuned on, the chosen fusion is never below the better of the two.
WEIGHT_GRID = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 21))
DEPTH = 10  # hit@5 and MRR@10 are what is optimised and reported


def weighted_rrf(rankings: Sequence[np.ndarray], weights: Sequence[float], rrf_k: int) -> dict[int, float]:
    """Reciprocal rank fusion: list i adds weights[i] / (rrf_k + rank) to every position it ranks (rank from 1)."""
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights):
        if weight <= 0:
            continue
        for rank, position in enumerate(ranking, start=1):
            fused[int(position)] = fused.get(int(position), 0.0) + weight / (rrf_k + rank)
    return fused


@dataclass(frozen=True)
class RetrieverScores:
    """hit@5 and MRR@10 of one ranking rule on one split of questions."""

    hit_at_5: float
    mrr_at_10: float


@dataclass(frozen=True)
class FusionCalibration:
    """Weights for `retrieval.mode: hybrid`, chosen on `tuned_count` questions, measured on `heldout_count` others."""

    dense_weight: float
    bm25_weight: float
    rrf_k: int
    tuned: dict[str, RetrieverScores]  # dense, bm25, equal (unweighted RRF), calibrated
    heldout: dict[str, RetrieverScores]
    tuned_count: int
    heldout_count: int
    embedder: str = ""
    tuned_question_ids: tuple[str, ...] = ()  # QA-file ids used to tune: leave them out of reports
    source: str = "generated"
    seed: int = 0
    created: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def weights(self) -> tuple[float, float]:
        return self.dense_weight, self.bm25_weight

    def save(self, kb_path: Path) -> Path:
        from slm.atomic import atomic_write_text

        path = Path(kb_path) / FUSION_FILE
        atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")
        return path

    def summary(self) -> dict[str, Any]:
        """What `slm eval` reports: the weights and the held-out scores they were chosen with."""
        return {"dense_weight": self.dense_weight, "bm25_weight": self.bm25_weight, "rrf_k": self.rrf_k,
                "heldout": {k: asdict(v) for k, v in self.heldout.items()}, "heldout_count": self.heldout_count,
                "source": self.source, "created": self.created}


def load_fusion(kb_path: Path | None) -> FusionCalibration | None:
    """The stored calibration of the KB at `kb_path`, or None (never calibrated)."""
    if kb_path is None:
        return None
    path = Path(kb_path) / FUSION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        for split in ("tuned", "heldout"):
            data[split] = {k: RetrieverScores(**v) for k, v in data[split].items()}
        data["notes"] = tuple(data.get("notes", ()))
        data["tuned_question_ids"] = tuple(data.get("tuned_question_ids", ()))
        return FusionCalibration(**data)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        from slm.errors import KnowledgeBaseError

        raise KnowledgeBaseError(f"{path} is damaged ({exc}); rerun `slm calibrate-fusion` or delete it") from exc


def fusion_weights(kb_path: Path | None, embedder: str) -> tuple[float, float] | None:
    """Calibrated (dense, bm25) weights for this KB, or None: not calibrated, or calibrated with another embedder."""
    calibration = load_fusion(kb_path)
    if calibration is None or (calibration.embedder and calibration.embedder != embedder):
        return None
    return calibration.weights


@dataclass(frozen=True)
class GoldQuestion:
    """A question and where its answer is: a document, and within it the span of the chunk it was made from
    (a hit overlaps that span) or, for a QA file's question with only a gold page, anywhere (`start` None)."""

    text: str
    doc_id: str
    start: int | None = None
    end: int | None = None
    id: str | None = None

    @classmethod
    def from_chunk(cls, text: str, chunk: Chunk) -> "GoldQuestion":
        return cls(text, chunk.doc_id, chunk.start, chunk.end)


def questions_with_gold(chunks: Iterable[Chunk], n: int, seed: int = 0) -> list[GoldQuestion]:
    """`n` distinct questions, each made (without a model) from one randomly sampled chunk."""
    from slm.answering.abstention import question_from_chunk

    rng = random.Random(seed)
    pool = list(chunks)
    rng.shuffle(pool)
    seen: dict[str, GoldQuestion] = {}
    for chunk in pool:
        question = question_from_chunk(chunk, rng)
        if question and question not in seen:
            seen[question] = GoldQuestion.from_chunk(question, chunk)
        if len(seen) >= n:
            break
    return list(seen.values())


def is_gold(hit: Chunk, gold: GoldQuestion) -> bool:
    if hit.doc_id != gold.doc_id:
        return False
    return gold.start is None or gold.end is None or (hit.start < gold.end and gold.start < hit.end)


def first_gold_rank(ranking: Sequence[int], chunks: dict[int, Chunk], gold: GoldQuestion, depth: int = DEPTH) -> int | None:
    for rank, position in enumerate(ranking[:depth], start=1):
        chunk = chunks.get(int(position))
        if chunk is not None and is_gold(chunk, gold):
            return rank
    return None


def score(ranks: Sequence[int | None]) -> RetrieverScores:
    n = max(1, len(ranks))
    return RetrieverScores(
        hit_at_5=round(sum(1 for r in ranks if r is not None and r <= 5) / n, 4),
        mrr_at_10=round(sum(1.0 / r for r in ranks if r is not None) / n, 4),
    )


@dataclass
class _Candidates:
    dense: np.ndarray
    bm25: np.ndarray
    chunks: dict[int, Chunk]
    gold: GoldQuestion


def calibrate_fusion(
    kb: Any,
    questions: Sequence[GoldQuestion],
    *,
    rrf_k: int,
    candidates: int,
    heldout_share: float = 0.5,
    seed: int = 0,
    embedder: str = "",
    source: str = "generated",
    progress: bool = False,
) -> FusionCalibration:
    """Rank every question once per retriever, then choose the dense weight on WEIGHT_GRID with the best MRR@10
    on the tuning split (ties: the weight nearest 0.5) and report every rule on the held-out split."""
    if len(questions) < 4:
        raise ValueError("fusion calibration needs at least 4 questions")
    index = kb.index()
    if index is None or index.size == 0:
        raise ValueError("the knowledge base is empty: ingest documents first")
    embedder_model = kb.embedder()
    items = list(questions)
    random.Random(seed).shuffle(items)
    cut = len(items) - max(1, int(round(len(items) * heldout_share)))
    vectors = [embedder_model.encode_query(q.text) for q in items]  # as the retriever encodes a query
    found: list[_Candidates] = []
    iterator = zip(items, vectors)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(items), desc="ranking", unit="q")
    for question, vector in iterator:
        dense, _ = index.search_dense(vector, candidates, None)
        bm25, _ = index.search_sparse(question.text, candidates, None)
        positions = sorted(set(map(int, dense)) | set(map(int, bm25)))
        by_id = {c.id: c for c in kb.get_chunks([index.chunk_ids[p] for p in positions])}
        chunks = {p: by_id[index.chunk_ids[p]] for p in positions if index.chunk_ids[p] in by_id}
        found.append(_Candidates(dense, bm25, chunks, question))
    tune, held = found[:cut], found[cut:]

    def ranks(group: list[_Candidates], weight: float | None) -> list[int | None]:
        out = []
        for c in group:
            if weight is None:
                fused = weighted_rrf([c.dense, c.bm25], [1.0, 1.0], rrf_k)
            else:
                fused = weighted_rrf([c.dense, c.bm25], [weight, 1.0 - weight], rrf_k)
            out.append(first_gold_rank(sorted(fused, key=lambda p: (-fused[p], p)), c.chunks, c.gold))
        return out

    by_weight = {w: score(ranks(tune, w)) for w in WEIGHT_GRID}
    best = max(s.mrr_at_10 for s in by_weight.values())
    chosen = min((w for w, s in by_weight.items() if s.mrr_at_10 >= best - 1e-9), key=lambda w: (abs(w - 0.5), w))

    def report(group: list[_Candidates]) -> dict[str, RetrieverScores]:
        return {"dense": score(ranks(group, 1.0)), "bm25": score(ranks(group, 0.0)),
                "equal": score(ranks(group, None)), "calibrated": score(ranks(group, chosen))}

    notes = ()
    if source == "generated":
        notes = ("questions made from headings and keywords copy the documents' wording, which favours BM25; "
                 "calibrate on real questions (--qa) where you have them",)
    # Scale so that the larger weight is 1: equal weights stay the plain RRF the settings describe.
    top = max(chosen, 1.0 - chosen)
    return FusionCalibration(
        dense_weight=float(round(chosen / top, 4)),
        bm25_weight=float(round((1.0 - chosen) / top, 4)),
        rrf_k=rrf_k,
        tuned=report(tune),
        heldout=report(held),
        tuned_count=len(tune),
        heldout_count=len(held),
        embedder=embedder,
        source=source,
        seed=seed,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        notes=notes,
        tuned_question_ids=tuple(c.gold.id for c in tune if c.gold.id),
    )
