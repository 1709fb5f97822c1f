"""Knowledge-base test helpers: a small generated corpus and settings pointing at a tiny embedder."""

from __future__ import annotations

from pathlib import Path

from slm.config import AccessSettings, EmbedderSettings, RetrievalSettings, Settings

TOPICS = {
    "refunds": "Customers may return a product within 30 days for a refund to the original payment method.",
    "shipping": "Parcels ship from the Tucson warehouse by ground freight and arrive within five business days.",
    "leave": "Employees accrue twenty five days of paid annual leave; sick leave needs a doctor's note.",
    "laptops": "Every new hire receives a laptop, a badge and a mug from the front desk on the first day.",
    "security": "Passwords rotate every ninety days and badges must be worn visibly inside the office.",
}


def write_doc(root: Path, rel: str, title: str, sections: dict[str, str]) -> Path:
    path = Path(root) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    body = [f"# {title}", ""]
    for heading, text in sections.items():
        body += [f"## {heading}", "", text, ""]
    path.write_text("\n".join(body), encoding="utf-8")
    return path


def write_corpus(root: Path, *, secret_docs: int = 0) -> Path:
    """One public markdown file per topic, plus `secret_docs` files under secret/ (hr only by rule)."""
    root = Path(root)
    for topic, text in TOPICS.items():
        write_doc(root, f"{topic}.md", f"About {topic}", {"Overview": text, "Details": f"More on {topic}. " + text})
    for i in range(secret_docs):
        write_doc(root, f"secret/s{i:03d}.md", f"Secret {i}", {"Overview": f"Confidential refunds note {i}. " + TOPICS["refunds"]})
    return root


def kb_settings(kb_dir: Path, embedder_dir: Path | str, **retrieval) -> Settings:
    return Settings(
        kb=Path(kb_dir),
        # torch: these tests check exact scores and rankings, and int8 dynamic quantisation (what `auto` gives on a
        # CPU) scales each batch, so a vector shifts by ~1e-2 with its batch partners. ONNX has its own tests.
        embedder=EmbedderSettings(model=str(embedder_dir), batch_size=8, max_seq_length=128, backend="torch"),
        access=AccessSettings(rules={"secret/**": ["hr"]}, default_audiences=["employees"]),
        retrieval=RetrievalSettings(**retrieval),
    )


def tiny_cross_encoder_dir(path: Path) -> Path:
    """A tiny random BERT cross-encoder (one relevance logit), saved as a CrossEncoder folder."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import BertConfig, BertForSequenceClassification

    from tests.helpers.tiny_models import tiny_sentence_transformer_dir

    torch.manual_seed(0)
    st_dir = tiny_sentence_transformer_dir(path.parent / "st-for-tokenizer")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(st_dir / "raw" if (st_dir / "raw").is_dir() else st_dir)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, num_labels=1)
    raw = path.parent / "ce-raw"
    BertForSequenceClassification(config).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    CrossEncoder(str(raw), num_labels=1).save(str(path))
    return path
