"""``iidfusion fit``: train one method with one seed on one data set; print and save its metrics."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from iidfusion.training.config import COMPARE_ONLY, add_config_arguments, config_from_args, dump_config

DESCRIPTION = """\
Train --method with --seed on --data, keep the weights of the best validation accuracy, and
evaluate them on the test split clean and at each --noise level. Writes to OUT/METHOD/seedK:
checkpoints/best.ckpt and last.ckpt, csv/metrics.csv and tensorboard/ logs (every loss term,
mean fusion weight per modality and per-pair Wasserstein distance, per epoch), metrics.json
and config.yaml. Options come from the defaults below, then --config FILE, then the flags."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("fit", help="train and evaluate one method", description=DESCRIPTION)
    add_config_arguments(parser, exclude=COMPARE_ONLY)
    parser.add_argument(
        "--resume",
        metavar="CKPT",
        default=None,
        help="continue an interrupted run from a checkpoint; 'last' = the run's checkpoints/last.ckpt (default: none)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from iidfusion.cli.main import CommandError
    from iidfusion.training.compare import load_splits, quiet_lightning, validate_config
    from iidfusion.training.config import resolve_methods
    from iidfusion.training.outputs import staged_files
    from iidfusion.training.runner import fit_method

    config = config_from_args(args)
    methods = resolve_methods((config.method,))
    if len(methods) != 1:
        raise ValueError(f"fit trains one method; {config.method!r} names {len(methods)} (use `iidfusion compare`)")
    validate_config(config)
    splits = load_splits(config, config.seed)
    quiet_lightning()
    run_dir = Path(config.out) / methods[0] / f"seed{config.seed}"
    resume = run_dir / "checkpoints" / "last.ckpt" if args.resume == "last" else args.resume
    try:
        fit = fit_method(splits, methods[0], config.seed, config, run_dir, resume=resume)
    except FloatingPointError as error:
        raise CommandError(f"{error} (try a smaller --lr, --alpha or --beta)") from error
    if not fit.is_global_zero:
        return 0
    summary = {"data": splits.name, **fit.summary()}
    with staged_files(run_dir) as stage:
        stage.write_text("metrics.json", json.dumps(summary, indent=2) + "\n")
        stage.write_text("config.yaml", dump_config(config))
    print(f"{fit.method} on {splits.name}, seed {fit.seed}: {fit.epochs} epochs in {fit.seconds:.1f} s, "
          f"best validation accuracy {100 * fit.best_val_acc:.2f}% (epoch {fit.best_epoch + 1})")
    print("| noise | accuracy (%) | macro-F1 (%) |\n|---:|---:|---:|")
    for m in fit.metrics:
        print(f"| {m.noise:g} | {100 * m.accuracy:.2f} | {100 * m.macro_f1:.2f} |")
    print(f"written to {run_dir}")
    return 0
