"""``iidfusion fit``: train one method with one seed on one data set; print and save its metrics."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from iidfusion.cli.options import COMPARE_ONLY, SUITE_ONLY, add_config_arguments, config_from_args
from iidfusion.training.config import dump_config

DESCRIPTION = """\
Train --method with --seed on --data, keep the weights of the best validation accuracy, and
evaluate them on the test split clean and at each --noise level. Writes to OUT/METHOD/seedK:
checkpoints/best.ckpt and last.ckpt, csv/metrics.csv and tensorboard/ logs (every loss term,
mean fusion weight per modality, per-pair Wasserstein distance and diagnostics, per epoch),
metrics.json and config.yaml. With --tune, the method's hyperparameters are first chosen on the
validation split over the grids below (the paper's protocol), then the chosen configuration is
trained into OUT/METHOD/seedK (metrics.json records every trial). Options come from the defaults
below, then --config FILE, then the flags."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("fit", help="train and evaluate one method", description=DESCRIPTION)
    add_config_arguments(parser, exclude=COMPARE_ONLY | SUITE_ONLY)
    parser.add_argument(
        "--resume",
        metavar="CKPT",
        default=None,
        help="continue an interrupted run from a checkpoint; 'last' = the run's checkpoints/last.ckpt; "
        "only with the run's settings and data (default: none)",
    )
    add_overwrite_argument(parser)
    parser.set_defaults(handler=run)


def add_overwrite_argument(parser: argparse.ArgumentParser, default: bool = False) -> None:
    """``--overwrite``: replace a previous run in the output folder (else it is refused)."""
    parser.add_argument(
        "--overwrite",
        action=argparse.BooleanOptionalAction,
        default=default,
        help="replace a previous run in the output folder, as a whole and only once the new run succeeds "
        f"(default: {'replace' if default else 'refuse'})",
    )


def run(args: argparse.Namespace) -> int:
    from iidfusion.cli.main import CommandError
    from iidfusion.ot import EpsTooSmallError
    from iidfusion.provenance import provenance
    from iidfusion.training.compare import load_splits, quiet_lightning, validate_config
    from iidfusion.training.config import resolve_methods
    from iidfusion.training.departures import departures_from_paper, departures_line
    from iidfusion.training.outputs import check_output_folder, is_run_folder, run_folder, staged_files
    from iidfusion.training.run_key import data_identity
    from iidfusion.training.runner import fit_method
    from iidfusion.training.tuning import tune_method, with_params

    config = config_from_args(args)
    methods = resolve_methods((config.method,))
    if len(methods) != 1:
        raise ValueError(f"fit trains one method; {config.method!r} names {len(methods)} (use `iidfusion compare`)")
    validate_config(config)
    if args.resume is not None and args.overwrite:
        raise ValueError("--resume continues the run in the output folder and --overwrite replaces it: give one")
    out = Path(config.out)
    check_output_folder(out, shared=True)
    if is_run_folder(out):  # the folder of one run (a comparison's, a demo's): fit's runs would mix with it
        raise ValueError(f"--out {out} is the folder of one run of iidfusion; fit's --out holds a folder per method and seed: "
                         "choose another")
    run_dir = out / methods[0] / f"seed{config.seed}"
    check_output_folder(run_dir, name=f"the run folder {run_dir}", overwrite=args.overwrite, resume=args.resume is not None)
    resume = _last_checkpoint(run_dir) if args.resume == "last" else args.resume
    if config.tune.enabled and resume is not None:
        raise ValueError("--resume continues one fit; it cannot be combined with --tune")
    splits = load_splits(config, config.seed)
    print(departures_line(config, methods), flush=True)  # first line of stdout, once the input is known good
    quiet_lightning()
    tuning = None
    try:
        with run_folder(run_dir, overwrite=args.overwrite, resumable=lambda folder: _last_checkpoint(folder).is_file()):
            if config.tune.enabled:
                tuned = tune_method(splits, methods[0], config.seed, config, data_id=data_identity(config.data),
                                    log=lambda line: print(line, file=sys.stderr, flush=True), progress=config.train.progress_bar)
                tuning = tuned.summary()
                config = with_params(config, tuned.best.params)
            fit = fit_method(splits, methods[0], config.seed, config, run_dir, resume=resume)
            if fit.is_global_zero:
                summary = {"data": splits.name, **fit.summary()} | ({"tuning": tuning} if tuning is not None else {})
                summary["departures_from_paper"] = [str(d) for d in departures_from_paper(config, methods)]
                summary |= provenance(config, device=fit.device)
                with staged_files(run_dir) as stage:
                    stage.write_text("metrics.json", json.dumps(summary, indent=2) + "\n")
                    stage.write_text("config.yaml", dump_config(config))
    except FloatingPointError as error:
        raise CommandError(f"{error} (try a smaller --lr, --alpha or --beta)") from error
    except EpsTooSmallError as error:
        raise CommandError(f"--eps (loss.eps): {error}") from error
    except KeyboardInterrupt:
        raise interruption(run_dir, _last_checkpoint(run_dir), overwrite=args.overwrite) from None
    if not fit.is_global_zero:
        return 0
    if tuning is not None:
        chosen = ", ".join(f"{k}={v}" for k, v in tuning["chosen"].items()) or "nothing to tune for this method"
        print(f"tuned on validation over {len(tuning['trials'])} trials: {chosen}")
    print(f"{fit.method} on {splits.name}, seed {fit.seed}: {fit.epochs} epochs in {fit.seconds:.1f} s, "
          f"best validation accuracy {100 * fit.best_val_acc:.2f}% (epoch {fit.best_epoch + 1})")
    print("| noise | accuracy (%) | macro-F1 (%) |\n|---:|---:|---:|")
    for m in fit.metrics:
        print(f"| {m.noise:g} | {100 * m.accuracy:.2f} | {100 * m.macro_f1:.2f} |")
    print(f"written to {run_dir}")
    return 0


def interruption(run_dir: Path, last: Path, *, overwrite: bool) -> Exception:
    """What an interrupted run says: the previous run kept (``overwrite``), or how to continue
    from its ``last`` checkpoint, or that nothing was kept."""
    from iidfusion.cli.main import CommandInterrupted

    if overwrite:
        return CommandInterrupted(f"interrupted; {run_dir} holds the previous run, unchanged")
    if last.is_file():
        return CommandInterrupted(f"interrupted; continue with the same command and --resume last (checkpoints in {last.parent})")
    return CommandInterrupted("interrupted before the first checkpoint (nothing kept); run the command again")


def _last_checkpoint(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.ckpt"
