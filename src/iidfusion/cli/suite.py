"""``iidfusion suite``: the comparison over many data sets and L_ic readings, in one table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from iidfusion.cli.options import FIT_ONLY, add_config_arguments, config_from_args, print_config

DESCRIPTION = """\
Run `iidfusion compare` on every data set of --datasets (bundled names or .mat / .npz files) with
the IID methods trained under every L_ic reading of --variants (bases, which do not read L_ic, are
trained once), and write to --out: suite.md (the gain of each IID variant over its LF and IF bases
and of each IF base over its LF base in test Avg Acc and validation accuracy, with the data set
as the unit of its interval and tests; then test Avg Acc per data set and method), suite.json, suite.csv,
and each comparison's results under OUT/<data set>/<reading>/. With --tune every method and seed
is tuned on validation (the paper's protocol). Finished runs are kept under OUT/cache/ at once:
--resume continues an interrupted suite. Progress goes to stderr, the report to stdout."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "suite", help="compare methods over many data sets and L_ic readings", description=DESCRIPTION
    )
    add_config_arguments(parser, exclude=FIT_ONLY | {"data"})
    parser.add_argument("--resume", action="store_true", help="continue the suite in --out, reusing its finished runs")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="render OUT/suite.md again from OUT/suite.json (no training), e.g. after an upgrade",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from iidfusion.cli.compare import interruption
    from iidfusion.cli.main import CommandError
    from iidfusion.engine.outputs import check_output_folder, run_folder
    from iidfusion.engine.trainer import quiet_lightning
    from iidfusion.tasks.classification.compare import finished_runs
    from iidfusion.tasks.classification.suite import rerender, run_suite

    config = config_from_args(args)
    if print_config(args, config):
        return 0
    if args.report_only:
        print(rerender(config.out), end="")
        return 0
    out = Path(config.out)
    check_output_folder(out, overwrite=None, resume=args.resume, resume_flag="--resume")
    quiet_lightning()
    try:
        with run_folder(out, resumable=lambda folder: finished_runs(folder) > 0, keep_on_failure=True):
            report = run_suite(
                config, out, resume=args.resume, log=lambda line: print(line, file=sys.stderr, flush=True)
            )
    except FloatingPointError as error:
        raise CommandError(f"{error} (try a smaller --lr, --alpha or --beta, or --tune)") from error
    except KeyboardInterrupt:
        raise interruption(out) from None
    print(report, end="")
    print(f"results written to {config.out}")
    return 0
