r"""``iidfusion finetune``: train methods end to end on a raw data set (encoders fine-tuned).

The data and encoder flags are those of ``iidfusion extract`` (:mod:`iidfusion.cli.extract`);
the training options those of ``compare``. Example (MVSA-Single, the static family)::

    iidfusion finetune --config configs/vl/mvsa_single_static.yaml --data-format mmbt \
        --root data/MVSA_Single --text-encoder models/bert-base-uncased \
        --weights models/resnet152-394f9c45.pth --out results/e2e/mvsa_single/static

The training itself is :func:`iidfusion.tasks.classification.finetune.fit_end_to_end`; the results are
written as by ``compare`` (see :data:`DESCRIPTION`). More commands: ``docs/reproduce.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from iidfusion.cli.extract import (
    add_encoder_arguments,
    add_raw_data_arguments,
    encoder_flags,
    raw_options,
    require_text_packages,
)
from iidfusion.cli.fit import add_overwrite_argument
from iidfusion.cli.options import SUITE_ONLY, add_config_arguments, bounded_int, print_config
from iidfusion.cli.schema import option_keys
from iidfusion.core.config import MAX_BATCH

if TYPE_CHECKING:
    from iidfusion.tasks.classification.finetune import FinetuneSettings

DESCRIPTION = """\
Train each of --methods with seeds 0..N-1 end to end on a raw vision-language or RGB-D data
set: the encoders (local BERT / ResNet weights, or random with a warning) are fine-tuned
inside the same fusion module, losses and trainer as `iidfusion compare`, with the originals'
freezing schedule (--trainable-blocks trains only the last blocks of an encoder), gradient
accumulation and, on a GPU with bf16, bf16 mixed precision. The
test split is evaluated clean and at each --noise level of the raw-input protocol, and the
results are written as by `compare` (results.csv/json/md with Avg Acc and paired t-tests, the
plot; per-run checkpoints and logs in OUT/runs/METHOD/seedK). Options: the defaults below,
then --config FILE (YAML: the sections of `compare`, plus optional `finetune:` with
freeze_epochs, trainable_blocks, accumulate_grad_batches, image_size, eval_batch_size and `encoders:` with text,
max_length, image_arch, image_weights, regions, depth_arch, depth_weights), then the flags."""

# Options of `compare` that mean nothing here: the data come from --data-format/--root, the
# encoders are not MLPs, the noise acts on whole inputs, one method runs per (method, seed).
# Tuning is done on features (`compare --tune`), not end to end.
_EXCLUDED = (
    frozenset(
        {
            "method",
            "seed",
            "data",
            "views",
            "labels",
            "id_column",
            "val_fraction",  # raw data: its splits come from the files (rgbd: --val-fraction carves val)
            "test_fraction",
            "model.hidden",
            "model.layers",
            "model.dropout",
            "eval.noise_view",
            "eval.noise_mask",
        }
    )
    | SUITE_ONLY
    | frozenset(key for key in option_keys("experiment") if key.startswith("tune."))
)


def parse_counts(text: str, flag: str = "--freeze") -> dict[str, int]:
    """``"image=3,text=5"`` -> {"image": 3, "text": 5} (the value of ``flag``)."""
    counts: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, count = part.partition("=")
        if not name or not count.strip().isdigit():
            raise ValueError(f"{flag} takes modality=count pairs like 'image=3,text=5', got {text!r}")
        counts[name.strip()] = int(count)
    return counts


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune", help="train one method end to end on a raw data set (encoders fine-tuned)", description=DESCRIPTION
    )
    add_raw_data_arguments(parser)
    add_encoder_arguments(parser)
    add_config_arguments(parser, exclude=_EXCLUDED)
    group = parser.add_argument_group("end-to-end options")
    group.add_argument(
        "--freeze",
        default=None,
        help="epochs each encoder stays frozen, e.g. 'image=3,text=5' (default: image=3,text=5 vision-language, none "
        "RGB-D)",
    )
    group.add_argument(
        "--trainable-blocks",
        default=None,
        help="train only the last N blocks of an encoder, e.g. 'image=2,text=1' (0: frozen; default: whole encoders)",
    )
    group.add_argument(
        "--accumulate-grad-batches",
        type=bounded_int(1, MAX_BATCH),
        default=None,
        help="optimizer step every N batches (default 1)",
    )
    group.add_argument(
        "--eval-batch-size",
        type=bounded_int(1, MAX_BATCH),
        default=None,
        help="batch size of evaluation passes (default 32)",
    )
    add_overwrite_argument(parser)
    parser.set_defaults(handler=run)


def finetune_settings(args: argparse.Namespace, family: str) -> FinetuneSettings:
    """The settings of ``args``: defaults < --config FILE < flags
    (:func:`iidfusion.tasks.classification.finetune.load_finetune_settings`).
    """
    from iidfusion.cli.options import overrides_from_args
    from iidfusion.tasks.classification.finetune import load_finetune_settings

    finetune_flags = {
        "freeze_epochs": parse_counts(args.freeze) if args.freeze is not None else None,
        "trainable_blocks": parse_counts(args.trainable_blocks, "--trainable-blocks")
        if args.trainable_blocks is not None
        else None,
        "accumulate_grad_batches": args.accumulate_grad_batches,
        "image_size": args.image_size,
        "eval_batch_size": args.eval_batch_size,
    }
    return load_finetune_settings(
        args.config,
        family,
        overrides=overrides_from_args(args),
        finetune_overrides={k: v for k, v in finetune_flags.items() if v is not None},
        encoder_overrides=encoder_flags(args),
    )


def run(args: argparse.Namespace) -> int:
    from iidfusion.cli.main import CommandError
    from iidfusion.core.progress import write_line
    from iidfusion.data.raw.families import family_of, load_raw
    from iidfusion.engine.outputs import check_output_folder, run_folder
    from iidfusion.engine.trainer import quiet_lightning
    from iidfusion.tasks.classification.finetune import compare_end_to_end

    require_text_packages(args.data_format, args.text_encoder)
    settings = finetune_settings(args, family_of(args.data_format))
    if print_config(args, settings.as_dict()):
        return 0
    out = Path(settings.experiment.out)
    check_output_folder(out, overwrite=args.overwrite)
    raw = load_raw(raw_options(args))
    quiet_lightning()
    try:
        with run_folder(out, overwrite=args.overwrite):
            comparison = compare_end_to_end(raw, settings, out, log=write_line)
    except FloatingPointError as error:
        raise CommandError(f"{error} (try a smaller --lr, --alpha or --beta)") from error
    if comparison.is_global_zero:
        print(comparison.report)
        print(f"results written to {out}")
    return 0
