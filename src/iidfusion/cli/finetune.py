"""``iidfusion finetune``: train methods end to end on a raw data set (encoders fine-tuned).

The data and encoder flags are those of ``iidfusion extract`` (:mod:`iidfusion.cli.extract`);
the training options those of ``compare``. Example (MVSA-Single, the static family)::

    iidfusion finetune --config configs/vl/mvsa_single_static.yaml --data-format mmbt \\
        --root data/MVSA_Single --text-encoder models/bert-base-uncased \\
        --weights models/resnet152-394f9c45.pth --out results/e2e/mvsa_single/static

The training itself is :func:`iidfusion.encoders.finetune.fit_end_to_end`; the results are
written as by ``compare`` (see :data:`DESCRIPTION`). More commands: ``docs/reproduce.md``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iidfusion.cli.extract import (
    add_encoder_arguments,
    add_raw_data_arguments,
    encoder_options,
    raw_options,
    require_text_packages,
)
from iidfusion.cli.fit import add_overwrite_argument
from iidfusion.training.config import SUITE_ONLY, add_config_arguments

if TYPE_CHECKING:
    from iidfusion.encoders.families import EncoderOptions

DESCRIPTION = """\
Train each of --methods with seeds 0..N-1 end to end on a raw vision-language or RGB-D data
set: the encoders (local BERT / ResNet weights, or random with a warning) are fine-tuned
inside the same fusion module, losses and trainer as `iidfusion compare`, with the originals'
freezing schedule, gradient accumulation and, on a GPU with bf16, bf16 mixed precision. The
test split is evaluated clean and at each --noise level of the raw-input protocol, and the
results are written as by `compare` (results.csv/json/md with Avg Acc and paired t-tests, the
plot; per-run checkpoints and logs in OUT/runs/METHOD/seedK). Options: the defaults below,
then --config FILE (YAML: the sections of `compare`, plus optional `finetune:` with
freeze_epochs, accumulate_grad_batches, image_size, eval_batch_size and `encoders:` with text,
max_length, image_arch, image_weights, regions, depth_arch, depth_weights), then the flags."""

# Options of `compare` that mean nothing here: the data come from --data-format/--root, the
# encoders are not MLPs, the noise acts on whole inputs, one method runs per (method, seed).
_EXCLUDED = frozenset({"method", "seed", "data", "views", "labels", "model.hidden", "model.layers", "model.dropout", "eval.noise_view"}) | SUITE_ONLY


def parse_freeze(text: str) -> dict[str, int]:
    """``"image=3,text=5"`` -> {"image": 3, "text": 5}."""
    freeze: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, epochs = part.partition("=")
        if not name or not epochs.strip().isdigit():
            raise ValueError(f"--freeze takes modality=epochs pairs like 'image=3,text=5', got {text!r}")
        freeze[name.strip()] = int(epochs)
    return freeze


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("finetune", help="train one method end to end on a raw data set (encoders fine-tuned)", description=DESCRIPTION)
    add_raw_data_arguments(parser)
    add_encoder_arguments(parser)
    add_config_arguments(parser, exclude=_EXCLUDED)
    group = parser.add_argument_group("end to end")
    group.add_argument("--freeze", default=None, help="epochs each encoder stays frozen, e.g. 'image=3,text=5' (default: image=3,text=5 vision-language, none RGB-D)")
    group.add_argument("--accumulate-grad-batches", type=int, default=None, help="optimizer step every N batches (default 1)")
    group.add_argument("--eval-batch-size", type=int, default=None, help="batch size of evaluation passes (default 32)")
    add_overwrite_argument(parser)
    parser.set_defaults(handler=run)


def finetune_settings(args: argparse.Namespace, family: str) -> tuple[Any, Any, EncoderOptions]:
    """(ExperimentConfig, FinetuneConfig, EncoderOptions): defaults < --config FILE < flags."""
    import torch

    from iidfusion.encoders.finetune import FinetuneConfig
    from iidfusion.training.config import ExperimentConfig, load_config, overrides_from_args, read_config_file

    values = read_config_file(args.config) if args.config else {}
    finetune_values = dict(values.pop("finetune", None) or {})
    encoder_values = dict(values.pop("encoders", None) or {})
    # bf16 autocast where the GPU has it; a CPU run stays float32.
    precision = "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"
    base = load_config(None, {"train.precision": precision})
    config = load_config(None, overrides_from_args(args), base=load_config(None, _dotted(values), base=base))
    assert isinstance(config, ExperimentConfig)
    known = {f.name for f in fields(FinetuneConfig)}
    unknown = sorted(set(finetune_values) - known)
    if unknown:
        raise ValueError(f"unknown keys {unknown} in the config's finetune section; known keys: {sorted(known)}")
    finetune_values.setdefault("freeze_epochs", {"image": 3, "text": 5} if family == "vision-language" else {})
    flags = {
        "freeze_epochs": parse_freeze(args.freeze) if args.freeze is not None else None,
        "accumulate_grad_batches": args.accumulate_grad_batches,
        "image_size": args.image_size,
        "eval_batch_size": args.eval_batch_size,
    }
    finetune = FinetuneConfig(**{**finetune_values, **{k: v for k, v in flags.items() if v is not None}})
    return config, finetune, encoder_options(args, encoder_values, config.seed)


def _dotted(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"loss": {"alpha": 1}} -> {"loss.alpha": 1} (the form of command-line overrides)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def run(args: argparse.Namespace) -> int:
    from iidfusion.encoders.families import family_of
    from iidfusion.training.config import resolve_methods
    from iidfusion.training.outputs import check_output_folder, run_folder
    from iidfusion.training.validation import check_option_values

    require_text_packages(args.data_format)
    config, finetune, encoders = finetune_settings(args, family_of(args.data_format))
    methods = resolve_methods(config.methods)
    if config.seeds < 1 or not config.eval.noise or any(not level >= 0 for level in config.eval.noise):
        raise ValueError(f"need seeds >= 1 and noise levels >= 0, got seeds {config.seeds}, noise {config.eval.noise}")
    check_option_values(config)
    out = Path(config.out)
    check_output_folder(out, overwrite=args.overwrite)
    with run_folder(out, overwrite=args.overwrite):
        return _train_all(args, config, finetune, encoders, methods, out)


def _train_all(
    args: argparse.Namespace, config: Any, finetune: Any, encoders: EncoderOptions, methods: tuple[str, ...], out: Path
) -> int:
    """Every (seed, method) fit of :func:`run`, then the report, into ``out``."""
    from iidfusion.cli.main import CommandError
    from iidfusion.encoders.families import load_raw
    from iidfusion.encoders.finetune import fit_end_to_end
    from iidfusion.training.compare import quiet_lightning
    from iidfusion.training.config import config_to_dict
    from iidfusion.training.report import EvalResult, write_report

    raw = load_raw(raw_options(args))
    keep_runs = config.train.checkpoints or bool(config.train.loggers)
    quiet_lightning()
    results: list[EvalResult] = []
    is_global_zero = True
    for seed in range(config.seeds):
        for method in methods:
            try:
                fit = fit_end_to_end(raw, method, seed, config, finetune, encoders, out / "runs" / method / f"seed{seed}" if keep_runs else None)
            except FloatingPointError as error:
                raise CommandError(f"{error} (try a smaller --lr, --alpha or --beta)") from error
            is_global_zero = fit.is_global_zero
            results.extend(EvalResult(method, seed, m.noise, "all", m.accuracy, m.macro_f1) for m in fit.metrics)
            if is_global_zero:
                accuracy = ", ".join(f"{m.noise:g}: {100 * m.accuracy:.2f}" for m in fit.metrics)
                print(f"{method} seed {seed}: test accuracy % by noise level {{{accuracy}}}, best epoch "
                      f"{fit.best_epoch + 1} of {fit.epochs}, {fit.seconds:.1f} s")
    if not is_global_zero:
        return 0
    record = {**config_to_dict(config), "data": raw.name, "class_names": list(raw.class_names), "finetune": asdict(finetune), "encoders": asdict(encoders)}
    title = f"{raw.name} end to end: {len(methods)} methods x {config.seeds} seeds"
    print(write_report(out, results, json_ready(record), title))
    print(f"results written to {out}")
    return 0


def json_ready(value: Any) -> Any:
    """Dataclass dicts with paths and tuples made plain (for results.json)."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return str(value) if isinstance(value, Path) else value
