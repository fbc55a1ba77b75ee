"""``iidfusion extract`` and ``iidfusion finetune``: the two ways to train on raw inputs.

``extract`` runs frozen encoders over a raw data set and caches the features for ``fit`` /
``compare``; ``finetune`` trains a method end to end (encoders fine-tuned). Both read the
data and build the encoders with the same flags.

Example (MVSA-Single in MMBT's format, BERT and ResNet-152 from local files)::

    iidfusion extract --data-format mmbt --root data/MVSA_Single \\
        --text-encoder models/bert-base-uncased --image-encoder resnet152 \\
        --weights models/resnet152-394f9c45.pth --out features/mvsa_single --noise 0,5,10
    iidfusion compare --data features/mvsa_single/features.npz ...
    iidfusion compare --data features/mvsa_single/features_noise5.npz ...

The folder receives ``features.npz`` (clean), ``features_noise<eps>.npz`` (noisy test split)
and ``manifest.json``; see :mod:`iidfusion.data.feature_cache`. A second run with the same
inputs and settings reuses the cache; a changed input file or setting rebuilds it.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from iidfusion.encoders.families import EncoderOptions, RawDataOptions

# Spelled out so that building the parser imports no torch (iidfusion.encoders.families.RAW_FORMATS
# and iidfusion.data.input_noise.PIXEL_NOISE are the sources; a test checks they agree).
RAW_FORMATS: tuple[str, ...] = ("mmbt", "json-array", "rgbd")
NOISE_KINDS: tuple[str, ...] = ("gaussian", "salt-and-pepper")


def add_raw_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags that locate and read a raw data set (shared with ``finetune``)."""
    group = parser.add_argument_group("data")
    group.add_argument("--data-format", required=True, choices=RAW_FORMATS, help="layout of the raw data set")
    group.add_argument("--root", required=True, type=Path, help="folder of the split files (mmbt, json-array) or of train/ and test/ (rgbd)")
    group.add_argument("--image-dir", type=Path, default=None, help="json-array: folder of <id>.jpg (default: dataset_image/ in or above --root)")
    group.add_argument("--name", default=None, help="data set name in records (default: the folder name)")
    group.add_argument("--val-fraction", type=float, default=0.1, help="rgbd: validation share carved from train (default 0.1)")
    group.add_argument("--split-seed", type=int, default=0, help="rgbd: seed of that carve, fixed across training seeds (default 0)")
    group.add_argument("--on-error", choices=("raise", "skip"), default="raise", help="a sample with an empty text, a bad image or an unknown label: stop (raise) or drop it and log (skip)")
    group.add_argument("--no-verify-images", action="store_true", help="do not decode every image up front (faster; a bad image then fails when read)")


# Encoder flags: dest -> EncoderOptions field (flags default to None so a config file's value shows through).
ENCODER_FLAGS: dict[str, str] = {
    "text_encoder": "text",
    "max_length": "max_length",
    "image_encoder": "image_arch",
    "weights": "image_weights",
    "regions": "regions",
    "depth_encoder": "depth_arch",
    "depth_weights": "depth_weights",
}


def add_encoder_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags that choose the encoders and the image size (shared with ``finetune``)."""
    group = parser.add_argument_group("encoders")
    group.add_argument("--text-encoder", default=None, help="local Hugging Face model folder, 'minilm' (bundled all-MiniLM-L6-v2) or 'random' (default: random, with a warning)")
    group.add_argument("--max-length", type=int, default=None, help="text tokens per sample (default 512, as the originals)")
    group.add_argument("--image-encoder", default=None, help="ResNet of the image / RGB modality (default: resnet152 vision-language, resnet18 RGB-D)")
    group.add_argument("--weights", default=None, help="local torchvision weight file (.pth) of the image / RGB encoder (default: random, with a warning)")
    group.add_argument("--regions", type=int, default=None, help="pooled horizontal regions of the image feature map (default: 3 vision-language, 1 RGB-D)")
    group.add_argument("--depth-encoder", default=None, help="rgbd: ResNet of the depth modality (default resnet18)")
    group.add_argument("--depth-weights", default=None, help="rgbd: local torchvision weight file of the depth encoder")
    group.add_argument("--image-size", type=int, default=None, help="image crop size (default 224, the originals; smaller for quick CPU runs)")


def raw_options(args: argparse.Namespace) -> RawDataOptions:
    from iidfusion.encoders.families import RawDataOptions

    return RawDataOptions(
        data_format=args.data_format,
        root=args.root,
        image_dir=args.image_dir,
        name=args.name,
        val_fraction=args.val_fraction,
        seed=args.split_seed,
        on_error=args.on_error,
        verify_images=not args.no_verify_images,
    )


def encoder_options(args: argparse.Namespace, file_values: Mapping[str, Any], init_seed: int) -> EncoderOptions:
    """Encoder options: the dataclass defaults < a config file's ``encoders`` section < the flags."""
    from iidfusion.encoders.families import EncoderOptions

    known = {f.name for f in fields(EncoderOptions)} - {"init_seed", "random_text"}
    unknown = sorted(set(file_values) - known)
    if unknown:
        raise ValueError(f"unknown keys {unknown} in the config's encoders section; known keys: {sorted(known)}")
    flags = {name: getattr(args, dest) for dest, name in ENCODER_FLAGS.items() if getattr(args, dest) is not None}
    return EncoderOptions(**{**file_values, **flags, "init_seed": init_seed})


def parse_levels(text: str) -> tuple[float, ...]:
    """``"0,5,10"`` -> (0.0, 5.0, 10.0); a bad or negative level is a ValueError."""
    try:
        levels = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise ValueError(f"--noise must be comma-separated numbers, got {text!r}") from error
    if not levels or any(not level >= 0 for level in levels):
        raise ValueError(f"--noise levels must be >= 0, got {text!r}")
    return levels


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "extract",
        help="run frozen encoders over a raw vision-language or RGB-D data set and cache the features",
        description="Extract features with frozen encoders (no download: weights and data come from local paths) and "
        "cache them as multi-view .npz files that `fit` and `compare` read; noisy test variants too.",
    )
    add_raw_data_arguments(parser)
    add_encoder_arguments(parser)
    group = parser.add_argument_group("extraction")
    group.add_argument("--out", required=True, type=Path, help="cache folder")
    group.add_argument("--seed", type=int, default=0, help="seed of random encoder initialisations and of the noise (default 0)")
    group.add_argument("--noise", default="0", help="noise levels eps of the test split, comma-separated (default 0; the paper: 0,5,10)")
    group.add_argument("--noise-kind", choices=NOISE_KINDS, default="gaussian", help="pixel noise (default gaussian)")
    group.add_argument("--batch-size", type=int, default=32, help="extraction batch size (default 32)")
    group.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    group.add_argument("--num-workers", type=int, default=0, help="data-loader workers (default 0)")
    group.add_argument("--hash-content", action="store_true", help="checksum image bytes, not sizes and modification times")
    group.add_argument("--force", action="store_true", help="extract again even if the cache is current")
    parser.set_defaults(handler=run)
    register_finetune(subparsers)  # end-to-end training shares this module's data and encoder flags


def run(args: argparse.Namespace) -> int:
    from iidfusion.data.feature_cache import CacheKey, build_feature_cache, input_checksum
    from iidfusion.data.input_noise import NOISE_PROBABILITY, SALT_AND_PEPPER_DENSITY, InputNoise
    from iidfusion.encoders.families import build_encoders, describe_encoders, image_transforms, load_raw, raw_dataset

    levels = parse_levels(args.noise)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    raw = load_raw(raw_options(args))
    options = encoder_options(args, {}, args.seed)
    image_size = args.image_size or 224
    encoders, tokenizer = build_encoders(raw, options)
    settings: dict[str, Any] = {
        "format": args.data_format,
        "family": raw.family,
        "encoders": describe_encoders(encoders),
        "init_seed": options.init_seed,
        "max_length": options.max_length,
        "transform": asdict(image_transforms(raw.family, image_size)[1]),
        "noise": {"kind": args.noise_kind, "seed": args.seed, "probability": NOISE_PROBABILITY, "density": SALT_AND_PEPPER_DENSITY},
        "val_fraction": args.val_fraction if raw.family == "rgbd" else None,
        "on_error": args.on_error,
    }
    key = CacheKey(input_checksum(raw, content=args.hash_content), settings)

    def make_dataset(split: str, level: float) -> Any:
        noise = InputNoise(level, args.noise_kind, raw.family, args.seed) if level > 0 else None
        return raw_dataset(raw, split, tokenizer, noise=noise, image_size=image_size)

    files = build_feature_cache(
        args.out,
        raw,
        key,
        encoders,
        make_dataset,
        levels=levels,
        batch_size=args.batch_size,
        device=args.device or default_device(),
        num_workers=args.num_workers,
        force=args.force,
    )
    if tokenizer is not None:
        tokenizer.save(args.out / "tokenizer")  # a random encoder's vocabulary belongs to its features
    skipped = sum(len(items) for items in raw.skipped.values())
    dims = ", ".join(f"{m} {getattr(e, 'output_dim', '?')}" for m, e in encoders.items())
    print(f"{raw.name}: {raw.num_classes} classes, features {dims}; skipped {skipped} samples")
    for level, path in sorted(files.items()):
        print(f"  noise {level:g}: {path}")
    return 0


# ---------------------------------------------------------------- finetune

FINETUNE_DESCRIPTION = """\
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
FINETUNE_EXCLUDED = frozenset({"method", "seed", "data", "model.hidden", "model.layers", "model.dropout", "eval.noise_view"})


def parse_freeze(text: str) -> dict[str, int]:
    """``"image=3,text=5"`` -> {"image": 3, "text": 5}."""
    freeze: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, epochs = part.partition("=")
        if not name or not epochs.strip().isdigit():
            raise ValueError(f"--freeze takes modality=epochs pairs like 'image=3,text=5', got {text!r}")
        freeze[name.strip()] = int(epochs)
    return freeze


def register_finetune(subparsers: argparse._SubParsersAction) -> None:
    from iidfusion.training.config import add_config_arguments

    parser = subparsers.add_parser("finetune", help="train one method end to end on a raw data set (encoders fine-tuned)", description=FINETUNE_DESCRIPTION)
    add_raw_data_arguments(parser)
    add_encoder_arguments(parser)
    add_config_arguments(parser, exclude=FINETUNE_EXCLUDED)
    group = parser.add_argument_group("end to end")
    group.add_argument("--freeze", default=None, help="epochs each encoder stays frozen, e.g. 'image=3,text=5' (default: image=3,text=5 vision-language, none RGB-D)")
    group.add_argument("--accumulate-grad-batches", type=int, default=None, help="optimizer step every N batches (default 1)")
    group.add_argument("--eval-batch-size", type=int, default=None, help="batch size of evaluation passes (default 32)")
    parser.set_defaults(handler=run_finetune)


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


def run_finetune(args: argparse.Namespace) -> int:
    from iidfusion.cli.main import CommandError
    from iidfusion.encoders.families import family_of, load_raw
    from iidfusion.encoders.finetune import fit_end_to_end
    from iidfusion.training.compare import quiet_lightning
    from iidfusion.training.config import config_to_dict, resolve_methods
    from iidfusion.training.report import EvalResult, write_report

    config, finetune, encoders = finetune_settings(args, family_of(args.data_format))
    methods = resolve_methods(config.methods)
    if config.seeds < 1 or not config.eval.noise or any(not level >= 0 for level in config.eval.noise):
        raise ValueError(f"need seeds >= 1 and noise levels >= 0, got seeds {config.seeds}, noise {config.eval.noise}")
    raw = load_raw(raw_options(args))
    out = Path(config.out)
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
