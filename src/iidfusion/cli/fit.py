"""``iidfusion fit``: train one method with one seed on one data set; print and save its metrics."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from iidfusion.cli.options import COMPARE_ONLY, SUITE_ONLY, add_config_arguments, config_from_args, print_config

DESCRIPTION = """\
Train --method with --seed on --data, keep the weights of the best validation accuracy, and
evaluate them on the test split clean and at each --noise level. Writes to OUT/METHOD/seedK:
checkpoints/best.ckpt and last.ckpt, csv/metrics.csv and tensorboard/ logs (every loss term,
mean fusion weight per modality, per-pair Wasserstein distance and diagnostics, per epoch),
metrics.json and config.yaml. With --tune, the method's hyperparameters are first chosen on the
validation split over the grids below (the paper's protocol), then the chosen configuration is
trained into OUT/METHOD/seedK (metrics.json records every trial); --pruner stops unpromising
trials early. With --storage, processes started together (a job array) share the trials, and
one of them trains the final model while the others say where it is. Options come from the
defaults below, then --config FILE, then the flags."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("fit", help="train and evaluate one method", description=DESCRIPTION)
    add_config_arguments(parser, exclude=COMPARE_ONLY | SUITE_ONLY)
    add_checkpoint_resume_argument(parser, "OUT/METHOD/seedK/checkpoints/last.ckpt")
    add_overwrite_argument(parser)
    parser.set_defaults(handler=run)


def add_checkpoint_resume_argument(parser: argparse.ArgumentParser, last: str) -> None:
    """``--resume``: continue the interrupted run in the output folder, as every command's
    ``--resume`` does (from its ``last`` checkpoint), or from the checkpoint given.
    """
    parser.add_argument(
        "--resume",
        metavar="CKPT",
        nargs="?",
        const="last",
        default=None,
        help=f"continue the interrupted run in the output folder, from its last checkpoint ({last}) or from CKPT; "
        "only with the run's settings and data",
    )


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
    from iidfusion import api
    from iidfusion.cli.main import CommandError
    from iidfusion.ot import EpsTooSmallError
    from iidfusion.tasks.classification.config import resolve_methods
    from iidfusion.tasks.classification.departures import departures_line

    config = config_from_args(args)
    if print_config(args, config):
        return 0
    try:
        run = api.fit(
            config,
            resume=args.resume,
            overwrite=args.overwrite,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except FloatingPointError as error:
        raise CommandError(f"{error} (try a smaller --lr, --alpha or --beta)") from error
    except EpsTooSmallError as error:
        raise CommandError(f"--eps (loss.eps): {error}") from error
    except KeyboardInterrupt:
        run_dir = api.fit_run_dir(config)
        raise interruption(run_dir, api.last_checkpoint(run_dir), overwrite=args.overwrite) from None
    fit = run.result
    if fit is not None and not fit.is_global_zero:
        return 0
    print(departures_line(config, resolve_methods((config.method,))), flush=True)  # as asked, before any tuning
    if run.tuning is not None:
        chosen = ", ".join(f"{k}={v}" for k, v in run.tuning["chosen"].items()) or "nothing to tune for this method"
        pruned = f", {run.tuning['pruned_trials']} pruned" if run.tuning.get("pruned_trials") else ""
        print(f"tuned on validation over {len(run.tuning['trials'])} trials{pruned}: {chosen}")
    if fit is None:  # a tuning shared with other processes, one of which trains the final model
        print(f"the final model of this tuning is trained by another {run.trained_by}; not trained again here")
        return 0
    print(
        f"{fit.method} on {run.data}, seed {fit.seed}: {fit.epochs} epochs in {fit.seconds:.1f} s, "
        f"best validation accuracy {100 * fit.best_val_acc:.2f}% (epoch {fit.best_epoch + 1})"
    )
    print("| noise | accuracy (%) | macro-F1 (%) |\n|---:|---:|---:|")
    for m in fit.metrics:
        print(f"| {m.noise:g} | {100 * m.accuracy:.2f} | {100 * m.macro_f1:.2f} |")
    print(f"written to {run.run_dir}")
    return 0


def interruption(run_dir: Path, last: Path, *, overwrite: bool) -> Exception:
    """What an interrupted run says: the previous run kept (``overwrite``), or how to continue
    from its ``last`` checkpoint, or that nothing was kept.
    """
    from iidfusion.cli.main import CommandInterrupted

    if overwrite:
        return CommandInterrupted(f"interrupted; {run_dir} holds the previous run, unchanged")
    if last.is_file():
        return CommandInterrupted(
            f"interrupted; continue with the same command and --resume (checkpoints in {last.parent})"
        )
    return CommandInterrupted("interrupted before the first checkpoint (nothing kept); run the command again")
