"""``iidfusion sweep``: validation accuracy over a grid (or an Optuna search) of alpha, beta, d1."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iidfusion.cli.options import SUITE_ONLY, add_config_arguments, config_from_args
from iidfusion.cli.schema import option_keys

DESCRIPTION = """\
Train --method at every combination of --alpha, --beta and --d1 (or --trials points chosen by
Optuna's TPE among those values with --search optuna) with seeds 0..SEEDS-1, score each by its
best validation accuracy, and write OUT/NAME.csv, .json (every run), .md (the printed table) and
.png (heat-map of validation accuracy over alpha and beta, one panel per d1). Other options as
for `iidfusion fit` (defaults below are the sweep's: short trainings, no checkpoints or logs)."""

# The sweep's defaults over the experiment's, by dotted key (plain values: registering the
# command imports no configuration).
SWEEP_SETTINGS: dict[str, Any] = {
    "method": "iid-p",
    "seeds": 1,
    "out": "runs/sweep",
    "train.max_epochs": 30,
    "train.patience": 5,
    "train.threads": 1,
    "train.checkpoints": False,
    "train.loggers": (),
    "eval.noise": (0.0,),
}
# Set by the grid flags, or meaningless for one method.
_EXCLUDED = (
    frozenset({"loss.alpha", "loss.beta", "loss.d1", "methods"})
    | SUITE_ONLY
    | frozenset(key for key in option_keys("experiment") if key.startswith("tune."))
)


def number_list(kind: type) -> Callable[[str], tuple]:
    """An argparse type: a comma list of numbers of ``kind`` (int or float)."""

    def parse(text: str) -> tuple:
        try:
            return tuple(kind(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma list of {kind.__name__} values, got {text!r}") from None

    return parse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep", help="hyperparameter sensitivity over alpha, beta, d1", description=DESCRIPTION
    )
    parser.add_argument(
        "--alpha",
        type=number_list(float),
        default=(0.01, 0.1, 1.0),
        metavar="LIST",
        help="L_ic weights (default: 0.01,0.1,1)",
    )
    parser.add_argument(
        "--beta",
        type=number_list(float),
        default=(0.01, 0.1, 1.0),
        metavar="LIST",
        help="L_dc weights (default: 0.01,0.1,1)",
    )
    parser.add_argument(
        "--d1",
        type=number_list(int),
        default=(0,),
        metavar="LIST",
        help="kept Fourier bins; 0: min(16, width/2+1) (default: 0)",
    )
    parser.add_argument(
        "--search", choices=("grid", "optuna"), default="grid", help="grid (default) or optuna (optional dependency)"
    )
    parser.add_argument("--trials", type=int, default=None, help="points Optuna tries (--search optuna only)")
    parser.add_argument("--name", default=None, help="stem of the result files (default: sweep_DATA)")
    add_config_arguments(parser, SWEEP_SETTINGS, exclude=_EXCLUDED)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from iidfusion.engine.outputs import check_output_folder
    from iidfusion.engine.trainer import quiet_lightning
    from iidfusion.tasks.classification.validation import check_option_values
    from iidfusion_studies.sweep import SearchSpace, run_sweep, write_sweep

    config = config_from_args(args, SWEEP_SETTINGS)
    check_option_values(config)
    check_output_folder(config.out, shared=True)  # result files are replaced whole, per --name
    space = SearchSpace(alpha=args.alpha, beta=args.beta, d1=args.d1)
    if args.search == "grid" and args.trials is not None:
        raise ValueError("--trials applies to --search optuna only (a grid tries every combination)")
    quiet_lightning()
    runs = run_sweep(
        config, space, search=args.search, trials=args.trials, log=lambda line: print(line, file=sys.stderr, flush=True)
    )
    stem = args.name or f"sweep_{Path(config.data).stem}"
    title = f"Sensitivity of {config.method} on {config.data}: {args.search} search over alpha, beta, d1"
    report = write_sweep(runs, config, config.out, stem, title)
    print(report, end="")
    print(f"results written to {Path(config.out) / stem}.{{csv,json,md,png}}")
    return 0
