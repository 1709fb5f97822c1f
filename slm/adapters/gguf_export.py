"""Export a model (base + merged adapter) as one GGUF file for llama.cpp, optionally quantised by llama.cpp.

A small writer for the llama architecture (SmolLM2, TinyLlama, Llama 2/3-style models without rope
scaling) and qwen2 (Qwen2/2.5: llama's layout plus q/k/v biases) on top of the `gguf` package, so no
llama.cpp checkout or conversion script is needed. When the base model itself came from a GGUF file (the
packaged SmolLM2 and Qwen2.5), its tokenizer section is copied verbatim,
so llama.cpp tokenizes exactly as it did for the base. Other architectures: `slm models merge` and
llama.cpp's own convert_hf_to_gguf.py.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from slm.errors import ExportError
from slm.generation.loading import available_cores

# Written directly by the writer; every other name is a llama.cpp quantisation of an f32 export.
UNQUANTISED = ("f32", "f16")
QUANTS = ("q8_0", "q6_k", "q5_k_m", "q5_0", "q5_1", "q4_k_m", "q4_0", "q4_1")
HF_TO_GGUF_SUFFIX = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


@dataclass(frozen=True)
class GgufArch:
    """How one transformers architecture is written for llama.cpp."""

    name: str  # llama.cpp's architecture name, the prefix of its metadata keys
    # llama.cpp's llama rotates adjacent pairs of a head, transformers the two halves: q/k rows are reordered.
    # Its qwen2 rotates halves (NEOX style) as transformers does, so nothing is reordered.
    permute_qk: bool
    qkv_bias: bool  # q/k/v projections carry a bias (qwen2), written as blk.N.attn_{q,k,v}.bias


ARCHS: dict[str, GgufArch] = {
    "llama": GgufArch("llama", permute_qk=True, qkv_bias=False),
    "qwen2": GgufArch("qwen2", permute_qk=False, qkv_bias=True),
}
BIASES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
# The split regex of transformers' Qwen2 tokenizer, which llama.cpp knows as the `qwen2` pre-tokenizer.
QWEN2_SPLIT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


@dataclass(frozen=True)
class GgufExport:
    """What `export_gguf` wrote."""

    path: Path
    quant: str
    base: str
    adapter: str | None
    bytes: int


def export_gguf(
    base: str,
    adapter: str | Path | None,
    out: Path,
    *,
    quant: str = "q8_0",
    label: str | None = None,
    threads: int | None = None,
) -> GgufExport:
    """Merge `adapter` (a PEFT folder, or None for the base alone) into `base` and write `out` as GGUF.

    `label` (e.g. the registry version) is recorded in the file as `slm.adapter`, so a server knows the
    weights are tuned. Quantised types need llama-cpp-python (`pip install slm[llamacpp]`).
    """
    from slm.models import resolve_model
    from slm.adapters.merge import merged_model

    quant = quant.lower()
    if quant not in UNQUANTISED + QUANTS:
        raise ExportError(f"unknown GGUF type '{quant}'; choose one of {', '.join(UNQUANTISED + QUANTS)}")
    out = Path(out)
    if out.suffix != ".gguf":
        raise ExportError(f"the output file should end in .gguf: {out}")
    if quant in QUANTS:
        _llama_cpp()  # fail before the slow merge, not after it
    model, tokenizer = merged_model(base, adapter)
    resolved = resolve_model(base)
    base_gguf = Path(resolved.location) / resolved.gguf_file if resolved.gguf_file else None
    metadata = {"slm.base": base}
    if adapter is not None:
        metadata["slm.adapter"] = label or Path(adapter).name
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        if quant in UNQUANTISED:
            write_gguf(model, tokenizer, tmp, dtype=quant, tokenizer_gguf=base_gguf, metadata=metadata)
        else:
            with tempfile.TemporaryDirectory(dir=out.parent, prefix=".slm-gguf-") as work:
                full = Path(work) / "f32.gguf"
                write_gguf(model, tokenizer, full, dtype="f32", tokenizer_gguf=base_gguf, metadata=metadata)
                del model
                quantize_gguf(full, tmp, quant, threads=threads)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return GgufExport(out, quant, base, metadata.get("slm.adapter"), out.stat().st_size)


# ---------------------------------------------------------------- the writer


def write_gguf(
    model: Any,
    tokenizer: Any,
    out: Path,
    *,
    dtype: str = "f16",
    tokenizer_gguf: Path | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write a transformers llama or qwen2 model as GGUF (`dtype` f32 or f16 for the matrices; norms and
    biases stay f32)."""
    import gguf
    import numpy as np

    config = model.config
    arch = _check_supported(config)
    n_head, n_kv = config.num_attention_heads, getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_head
    writer = gguf.GGUFWriter(str(out), arch.name)
    writer.add_name(str(getattr(config, "_name_or_path", "") or "slm export"))
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(int(n_head))
    writer.add_head_count_kv(int(n_kv))
    writer.add_rope_dimension_count(int(head_dim))
    if head_dim * n_head != config.hidden_size:
        writer.add_key_length(int(head_dim))
        writer.add_value_length(int(head_dim))
    writer.add_rope_freq_base(float(_rope_theta(config)))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(int(config.vocab_size))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16)
    for key, value in (metadata or {}).items():
        writer.add_string(key, value)
    if tokenizer_gguf is not None:
        _copy_tokenizer(writer, tokenizer_gguf)
    else:
        _add_hf_tokenizer(writer, tokenizer, int(config.vocab_size))
    matrix_type = np.float32 if dtype == "f32" else np.float16
    for name, array in _gguf_tensors(model, arch, n_head, n_kv):
        writer.add_tensor(name, array.astype(np.float32 if array.ndim == 1 else matrix_type))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _check_supported(config: Any) -> GgufArch:
    arch = ARCHS.get(getattr(config, "model_type", None) or "")
    if arch is None:
        raise ExportError(
            f"the GGUF writer knows the {' and '.join(ARCHS)} architectures only, not "
            f"'{getattr(config, 'model_type', '?')}': write a merged folder with `slm models merge` and convert it "
            "with llama.cpp's convert_hf_to_gguf.py"
        )
    scaling = getattr(config, "rope_scaling", None) or {}
    params = getattr(config, "rope_parameters", None) or {}
    kind = scaling.get("rope_type") or scaling.get("type") or params.get("rope_type") or "default"
    if kind != "default":
        raise ExportError(f"rope scaling '{kind}' is not supported by the GGUF writer; use llama.cpp's converter")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise ExportError("llama models with bias terms are not supported by the GGUF writer")
    if getattr(config, "use_sliding_window", False):
        raise ExportError("sliding-window attention is not supported by the GGUF writer; use llama.cpp's converter")
    return arch


def _rope_theta(config: Any) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return params.get("rope_theta") or getattr(config, "rope_theta", None) or 10000.0


def _gguf_tensors(model: Any, arch: GgufArch, n_head: int, n_kv: int) -> Iterator[tuple[str, Any]]:
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        array = tensor.detach().to("cpu").float().numpy()
        if hf_name == "model.embed_tokens.weight":
            yield "token_embd.weight", array
        elif hf_name == "model.norm.weight":
            yield "output_norm.weight", array
        elif hf_name == "lm_head.weight":
            if not tied:
                yield "output.weight", array
        elif hf_name.startswith("model.layers.") and hf_name.endswith(".weight"):
            layer, _, rest = hf_name[len("model.layers."):].partition(".")
            part = rest[: -len(".weight")]
            if part not in HF_TO_GGUF_SUFFIX:
                raise ExportError(f"unexpected tensor {hf_name}: the GGUF writer knows plain {arch.name} layers only")
            if arch.permute_qk and part == "self_attn.q_proj":
                array = _permute_for_rope(array, n_head)
            elif arch.permute_qk and part == "self_attn.k_proj":
                array = _permute_for_rope(array, n_kv)
            yield f"blk.{layer}.{HF_TO_GGUF_SUFFIX[part]}.weight", array
        elif arch.qkv_bias and hf_name.startswith("model.layers.") and hf_name.endswith(".bias"):
            layer, _, rest = hf_name[len("model.layers."):].partition(".")
            part = rest[: -len(".bias")]
            if part not in BIASES:
                raise ExportError(f"unexpected tensor {hf_name}: {arch.name} has biases on q/k/v only")
            yield f"blk.{layer}.{HF_TO_GGUF_SUFFIX[part]}.bias", array
        elif hf_name.endswith("rotary_emb.inv_freq"):
            continue
        else:
            raise ExportError(f"unexpected tensor {hf_name}: the GGUF writer knows plain {arch.name} models only")


def _permute_for_rope(weights: Any, heads: int) -> Any:
    """transformers' llama rotates the two halves of each head; llama.cpp's rotates adjacent pairs.
    The same reordering llama.cpp's converter applies to q/k (and transformers undoes when it loads a GGUF)."""
    rows = weights.shape[0]
    return weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


# ---------------------------------------------------------------- tokenizer metadata


def _copy_tokenizer(writer: Any, source: Path) -> None:
    """Every tokenizer.* field of the base GGUF, as it was (token list, merges, pre-tokenizer, chat template)."""
    import gguf

    reader = gguf.GGUFReader(str(source))
    for field in reader.fields.values():
        if not field.name.startswith("tokenizer."):
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)


def _add_hf_tokenizer(writer: Any, tokenizer: Any, n_vocab: int) -> None:
    """A GPT-2 style byte-level BPE tokenizer (the tokenizers library's JSON) as llama.cpp's `gpt2` model."""
    import gguf

    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is None or not hasattr(backend, "to_str"):
        raise ExportError("the GGUF writer needs a fast (tokenizers) tokenizer; convert with llama.cpp's converter")
    spec = json.loads(backend.to_str())
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or (spec.get("decoder") or {}).get("type") != "ByteLevel":
        raise ExportError("the GGUF writer knows byte-level BPE tokenizers only (GPT-2 style); use llama.cpp's converter")
    texts: dict[int, str] = {int(i): t for t, i in model["vocab"].items()}
    types: dict[int, int] = {i: gguf.TokenType.NORMAL for i in texts}
    for added in spec.get("added_tokens") or []:
        texts[int(added["id"])] = added["content"]
        types[int(added["id"])] = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
    size = max(n_vocab, max(texts) + 1)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer_name(spec.get("pre_tokenizer")))
    writer.add_token_list([texts.get(i, f"[PAD{i}]") for i in range(size)])
    writer.add_token_types([types.get(i, gguf.TokenType.UNUSED) for i in range(size)])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []])
    for kind in ("bos", "eos", "unk", "pad"):
        token_id = getattr(tokenizer, f"{kind}_token_id", None)
        if token_id is not None:
            getattr(writer, f"add_{kind}_token_id")(int(token_id))
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    writer.add_add_bos_token(len(full) > len(plain) and full[0] == tokenizer.bos_token_id)
    writer.add_add_eos_token(len(full) > len(plain) and full[-1] == tokenizer.eos_token_id)
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)


def _pre_tokenizer_name(pre: dict | None) -> str:
    """llama.cpp's name for the pre-tokenizer (the regex that splits text before BPE)."""

    def gpt2_bytelevel(p: dict | None) -> bool:
        return bool(p) and p.get("type") == "ByteLevel" and p.get("use_regex", True) and not p.get("add_prefix_space")

    if gpt2_bytelevel(pre):
        return "gpt-2"
    parts = (pre or {}).get("pretokenizers") or []
    if (pre or {}).get("type") == "Sequence" and len(parts) == 2 and parts[0].get("type") == "Digits" \
            and parts[0].get("individual_digits") and gpt2_bytelevel(parts[1]):
        return "smollm"  # digits one by one, then GPT-2's regex
    if (pre or {}).get("type") == "Sequence" and len(parts) == 2 and parts[0].get("type") == "Split" \
            and (parts[0].get("pattern") or {}).get("Regex") == QWEN2_SPLIT and parts[1].get("type") == "ByteLevel" \
            and not parts[1].get("use_regex", True) and not parts[1].get("add_prefix_space"):
        return "qwen2"  # Qwen2's own split regex (single digits, letters with one leading mark), then bytes
    raise ExportError(f"no llama.cpp pre-tokenizer known for {json.dumps(pre)[:200]}; use llama.cpp's converter")


# ---------------------------------------------------------------- quantisation


def _llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise ExportError(
            "quantised GGUF needs llama-cpp-python: pip install 'slm[llamacpp]' (or export --quant f16)"
        ) from exc
    return llama_cpp


def quantize_gguf(source: Path, out: Path, quant: str, *, threads: int | None = None) -> Path:
    """llama.cpp's own quantiser (llama_model_quantize) from an f32/f16 GGUF to `quant` (q8_0, q4_k_m, ...)."""
    import gguf

    llama_cpp = _llama_cpp()
    try:
        ftype = gguf.LlamaFileType[f"MOSTLY_{quant.upper()}"]
    except KeyError:
        raise ExportError(f"llama.cpp has no quantisation '{quant}'") from None
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(ftype)
    params.nthread = threads or available_cores()
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), params)
    if status != 0:
        raise ExportError(f"llama.cpp could not quantise {source} to {quant} (status {status})")
    return out

