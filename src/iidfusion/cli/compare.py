"""``iidfusion compare``: methods x seeds x noise levels -> results.csv/json/md and a plot."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from iidfusion.cli.fit import add_overwrite_argument
from iidfusion.cli.options import FIT_ONLY, SUITE_ONLY, add_config_arguments, config_from_args
from iidfusion.training.config import ExperimentConfig

DESCRIPTION = """\
Train each method with seeds 0..N-1 on one data set, evaluate it on the test split clean and
under feature noise, and write to --out: results.csv and results.json (accuracy and macro-F1
per method, seed and noise level), results.md (mean ± std per method and level, Avg Acc, and
paired t-tests of each IID variant against its bases) and accuracy_vs_noise.png. Per-run
checkpoints and logs go to OUT/runs/METHOD/seedK; an OUT that holds a previous comparison is
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
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, base: ExperimentConfig | None = None) -> int:
    """Run the comparison that ``args`` (over ``base``'s defaults) describe and print its report."""
    from iidfusion.cli.main import CommandError
    from iidfusion.ot import EpsTooSmallError
    from iidfusion.training.compare import quiet_lightning, run_comparison
    from iidfusion.training.outputs import check_output_folder, run_folder

    config = config_from_args(args, base)
    check_output_folder(config.out, overwrite=args.overwrite)
    quiet_lightning()
    try:
        with run_folder(config.out, overwrite=args.overwrite):
            comparison = run_comparison(config, config.out, log=lambda line: print(line, file=sys.stderr, flush=True))
    except FloatingPointError as error:
        raise CommandError(f"{error} (try a smaller --lr, --alpha or --beta)") from error
    except EpsTooSmallError as error:
        raise CommandError(f"--eps (loss.eps): {error}") from error
    if comparison.is_global_zero:
        print(comparison.report)
        print(f"results written to {Path(config.out)}")
    return 0
