"""The trainer's fast path: packing, loss computed on answer tokens only, selective checkpointing, torch.compile.

`SpeedPlan.from_loop(config)` reads the options off a LoopConfig; with every option off it is the plain
trainer (length-grouped padded batches, the model's own loss), so `train_lora` has one code path.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Sequence

from slm.errors import TrainingError
from slm.training.data import IGNORE_INDEX, EncodedExample, collate, epoch_batches
from slm.training.packing import collate_packed, packed_epoch_batches

# Heads that transform logits after lm_head; the answer-only loss would skip that, so it falls back.
_LOGIT_POSTPROCESSING = ("final_logit_softcapping", "logit_scale", "output_multiplier_scale")


@dataclass(frozen=True)
class SpeedOptions:
    """Fast-path switches (all off: the plain trainer)."""

    packing: bool = False  # several examples per row, position ids restart; batch_size counts rows
    pack_len: int = 0  # tokens per packed row; 0: the longest example
    answer_only_logits: bool = False  # lm_head + cross-entropy on answer positions only
    compile: bool = False  # torch.compile each decoder layer
    checkpoint_layers: int | None = None  # with checkpointing on: None all layers, k only the first k
    compile_backend: str = "inductor"

    @classmethod
    def from_loop(cls, config: Any) -> "SpeedOptions":
        names = ("packing", "pack_len", "answer_only_logits", "compile", "checkpoint_layers")
        return cls(**{n: getattr(config, n) for n in names if hasattr(config, n)})


@dataclass(frozen=True)
class SpeedPlan:
    """How the loop batches, collates and computes the loss, given the options and the example lengths."""

    options: SpeedOptions
    row_len: int = 0

    @classmethod
    def from_loop(cls, config: Any, lengths: Sequence[int], *, distiller: Any = None) -> "SpeedPlan":
        options = SpeedOptions.from_loop(config)
        if distiller is not None and (options.packing or options.answer_only_logits):
            raise TrainingError("distillation needs full logits on padded batches: turn off packing/answer_only_logits")
        row_len = max(options.pack_len, max(lengths, default=0)) if options.packing else 0
        return cls(options, row_len)

    @property
    def custom_loss(self) -> bool:
        return self.options.packing or self.options.answer_only_logits

    def batches(self, lengths: Sequence[int], batch_size: int, *, seed: int, epoch: int) -> list[list[int]]:
        if self.options.packing:
            return packed_epoch_batches(lengths, batch_size, seed=seed, epoch=epoch, row_len=self.row_len)
        return epoch_batches(lengths, batch_size, seed=seed, epoch=epoch)

    @property
    def collate(self) -> Callable[[Sequence[EncodedExample], int], dict[str, Any]]:
        if self.options.packing:
            return partial(collate_packed, row_len=self.row_len)
        return collate

    def prepare(self, model: Any, device: Any) -> Any:
        """Selective checkpointing, no per-call input casts under bf16 autocast, compiled layers."""
        layers = decoder_layers(model)
        k = self.options.checkpoint_layers
        if k is not None:
            for i, layer in enumerate(layers):
                layer.gradient_checkpointing = bool(layer.gradient_checkpointing) and i < k
        if getattr(device, "type", str(device)) == "cuda":
            skip_lora_input_casts(model)
        if self.options.compile:
            compile_layers(layers, backend=self.options.compile_backend)
        return model

    def loss(self, model: Any, inputs: dict[str, Any]) -> Any:
        if self.options.answer_only_logits:
            return answer_only_loss(model, inputs)
        return model(**model_inputs(inputs)).loss


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """What the model is called with: a packed batch goes without its 2D mask, so position ids separate examples."""
    if "position_ids" in batch:
        return {k: v for k, v in batch.items() if k != "attention_mask"}
    return dict(batch)


def decoder_layers(model: Any) -> list[Any]:
    """The repeated transformer blocks (transformers' checkpointable layers)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not layers:
        raise TrainingError(f"no decoder layers found in {type(model).__name__}; the fast path needs a transformers LM")
    return layers


def skip_lora_input_casts(model: Any) -> None:
    """Under bf16 autocast, stop PEFT copying each LoRA input to the adapters' fp32 (autocast casts the matmul)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.cast_input_dtype_enabled = False


def compile_layers(layers: Sequence[Any], *, backend: str = "inductor") -> None:
    """Compile each decoder layer in place; identical blocks share one compiled graph."""
    import torch

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    for layer in layers:
        if getattr(layer, "_compiled_call_impl", None) is None:  # idempotent across train_lora calls
            layer.compile(backend=backend, dynamic=False)


def answer_only_loss(model: Any, inputs: dict[str, Any]) -> Any:
    """Mean next-token cross-entropy over labelled positions, computing logits only there (fp32).

    Equals the model's own loss (mean over tokens whose label is not IGNORE_INDEX) without the
    [batch, seq, vocab] logits tensor: prompt and padding positions never reach the LM head.
    """
    import torch.nn.functional as F

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if any(getattr(base.config, name, None) for name in _LOGIT_POSTPROCESSING):
        return model(**model_inputs(inputs)).loss
    decoder, head = base.get_decoder(), base.get_output_embeddings()
    labels = inputs["labels"]
    call = {k: v for k, v in model_inputs(inputs).items() if k != "labels"}
    hidden = decoder(**call).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    logits = head(hidden[:, :-1][keep]).float()
    return F.cross_entropy(logits, targets[keep])


def fast_loop_fields(*, cuda: bool, pack_len: int = 0) -> dict[str, Any]:
    """LoopConfig fields of the measured fast path (reports/bench/gpu_train_throughput.txt): packing, answer-only
    logits, no recomputation; torch.compile on CUDA only (on a CPU its compile time outweighs short runs)."""
    return {"packing": True, "pack_len": pack_len, "answer_only_logits": True, "compile": cuda,
            "gradient_checkpointing": not cuda}
