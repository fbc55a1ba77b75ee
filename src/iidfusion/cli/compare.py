"""``iidfusion compare``: methods x seeds x noise levels -> results.csv/json/md and a plot."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from iidfusion.cli.fit import add_overwrite_argument
from iidfusion.cli.options import FIT_ONLY, SUITE_ONLY, add_config_arguments, config_from_args, print_config

DESCRIPTION = """\
Train each method with seeds 0..N-1 on one data set, evaluate it on the test split clean and
under feature noise, and write to --out: results.csv and results.json (accuracy and macro-F1
per method, seed and noise level), results.md and results.tex (accuracy and macro-F1 per method
and level, the mean over seeds ± its 95% t interval, Avg Acc, paired t-tests of each IID variant
against its bases; per-class metrics and confusion matrices), per_class.csv,
confusion_matrices.json and accuracy_vs_noise.png / .pdf. Per-run checkpoints, logs, config.yaml
and metrics.json go to OUT/runs/METHOD/seedK; an OUT that holds a previous comparison is
refused unless --overwrite replaces it (once the new one is done). With --tune, each method and
seed is tuned on the validation split over the grids below (the paper's protocol; results.json
records every trial and what was chosen). Progress goes to stderr, the report to stdout.
Options come from the defaults below, then --config FILE (YAML, sections
model/loss/optim/train/eval/tune), then the flags given."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="compare fusion methods over seeds and noise levels", description=DESCRIPTION
    )
    add_config_arguments(parser, exclude=FIT_ONLY | SUITE_ONLY)
    add_overwrite_argument(parser)
    add_resume_argument(parser)
    parser.set_defaults(handler=run)


def add_resume_argument(parser: argparse.ArgumentParser) -> None:
    """``--resume``: continue a comparison that stopped half way in the output folder."""
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the comparison in --out that was interrupted or failed: its finished runs are kept, "
        "the others trained",
    )


def run(args: argparse.Namespace, settings: Mapping[str, Any] | None = None) -> int:
    """Run the comparison that ``args`` (over the defaults with ``settings``) describe and print its report."""
    from iidfusion import api
    from iidfusion.cli.main import CommandError
    from iidfusion.ot import EpsTooSmallError

    config = config_from_args(args, settings)
    if print_config(args, config):
        return 0
    # the demo replaces its results by default: there --resume wins over --overwrite
    overwrite = args.overwrite and not (args.resume and settings is not None)
    try:
        comparison = api.compare(
            config, resume=args.resume, overwrite=overwrite, log=lambda line: print(line, file=sys.stderr, flush=True)
        )
    except FloatingPointError as error:
        raise CommandError(f"{error} (try a smaller --lr, --alpha or --beta)") from error
    except EpsTooSmallError as error:
        raise CommandError(f"--eps (loss.eps): {error}") from error
    except KeyboardInterrupt:
        raise interruption(Path(config.out), overwrite=overwrite) from None
    if comparison.is_global_zero:
        print(comparison.report)
        print(f"results written to {Path(config.out)}")
    return 0


def interruption(out: Path, *, overwrite: bool = False) -> Exception:
    """What an interrupted comparison or suite says: the previous results kept (``overwrite``),
    or how many finished runs were kept and how to continue.
    """
    from iidfusion.cli.main import CommandInterrupted
    from iidfusion.tasks.classification.compare import finished_runs

    if overwrite:
        return CommandInterrupted(f"interrupted; {out} holds the previous results, unchanged")
    kept = finished_runs(out)
    if kept:
        return CommandInterrupted(
            f"interrupted; {kept} finished runs are kept in {out}: continue with the same command and --resume"
        )
    return CommandInterrupted("interrupted before the first run finished (nothing kept); run the command again")
