"""``iidfusion bench``: the measured evidence of the paper's efficiency claims.

``bench wasserstein``: Wasserstein estimators against exact EMD (error, rank correlation, time).
``bench train``: time per training step and peak memory of IID against its base methods.
The report goes to stdout (progress to stderr) and, with its raw data and figure, to --out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from iidfusion.cli.extract import ACCELERATORS, single_device
from iidfusion.cli.options import refuse_renamed
from iidfusion_studies.cli.sweep import number_list

DEFAULT_OUT = "benchmarks/results"


def _names(text: str) -> tuple[str, ...]:
    """A comma list of names; 'none' is the empty list."""
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    return () if names == ("none",) else names


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="a smoke-test size (seconds); writes files only with --out"
    )
    parser.add_argument(
        "--out", default=None, help=f"folder for the results (default: {DEFAULT_OUT}; none with --quick)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: 1, for stable timings)")
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of the data and the random estimators (default: 0)"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="benchmarks: Wasserstein estimators, training cost", description=__doc__
    )
    benches = parser.add_subparsers(dest="bench", required=True, metavar="BENCH")

    wasserstein = benches.add_parser(
        "wasserstein",
        help="Wasserstein estimators against exact EMD",
        description="Compare the estimators of iidfusion.ot with exact EMD (W1) on Gaussian mixtures and on pairs of "
        "views of the bundled data: relative error, Spearman correlation across pairs, median time. Writes "
        "wasserstein.md, .csv and .png (error against time).",
    )
    _common(wasserstein)
    wasserstein.add_argument(
        "--dims", type=number_list(int), default=None, help="widths d of the mixtures (default: 64,256,1024,4096)"
    )
    wasserstein.add_argument("--sizes", type=number_list(int), default=None, help="cloud sizes n (default: 64,256)")
    wasserstein.add_argument("--draws", type=int, default=None, help="pairs per (setting, shift) (default: 1)")
    wasserstein.add_argument(
        "--real",
        type=_names,
        default=None,
        help="real data: comma list of handwritten, synthetic, or 'none' (default: both)",
    )
    wasserstein.set_defaults(handler=run_wasserstein)

    train = benches.add_parser(
        "train",
        help="time and memory of a training step, IID / base",
        description="Time per training step and peak memory of each base method and its IID variant on the same batch, "
        "measured in the same run, as ratios IID / base: (a) Handwritten MLPs, (b) ResNet-18 + small BERT on "
        "fixture inputs. Writes train_cost.md and train_cost.csv.",
    )
    _common(train)
    train.add_argument(
        "--accelerator",
        choices=ACCELERATORS,
        default=None,
        help="the device kind, as the training commands' (default: cpu)",
    )
    train.add_argument("--devices", default="auto", help="which one: auto or 1 (the first), or 'K,' for device K")
    refuse_renamed(train, {"--device": "--accelerator and --devices"})
    train.add_argument(
        "--workloads", type=_names, default=None, help="comma list of handwritten-mlp, resnet18-bert (default: both)"
    )
    train.add_argument(
        "--methods", type=_names, default=None, help="comma list of methods (default: the nine main methods)"
    )
    train.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (default: 5)")
    train.add_argument("--steps", type=int, default=None, help="timed steps per method and round (default: 4)")
    train.add_argument(
        "--no-memory",
        dest="memory",
        action="store_false",
        default=None,
        help="skip the (slow, on CPU) peak-memory measurement",
    )
    train.add_argument("--name", default="train_cost", help="stem of the result files (default: %(default)s)")
    train.set_defaults(handler=run_train)


def _given(args: argparse.Namespace, **fields: str) -> dict[str, Any]:
    """{config field: value} of the flags the user gave (``fields`` maps config field -> flag dest)."""
    return {name: getattr(args, dest) for name, dest in fields.items() if getattr(args, dest) is not None}


def _out(args: argparse.Namespace) -> Path | None:
    """The results folder (checked: a writable folder, before the benchmark runs), or None."""
    from iidfusion.engine.outputs import check_output_folder

    out = Path(args.out) if args.out is not None else None if args.quick else Path(DEFAULT_OUT)
    if out is not None:
        check_output_folder(out, shared=True)  # its result files are replaced whole, by name
    return out


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_wasserstein(args: argparse.Namespace) -> int:
    import dataclasses

    from iidfusion_studies.estimator_study import QUICK, StudyConfig, render_markdown, run_study, write_study

    base = QUICK if args.quick else StudyConfig()
    config = dataclasses.replace(
        base, **_given(args, dims="dims", sizes="sizes", draws="draws", real="real", seed="seed", threads="threads")
    )
    out = _out(args)
    records = run_study(config, log=_progress)
    print(render_markdown(records, config), end="")
    if out is not None:
        write_study(records, config, out)
        _progress(f"written to {out}/wasserstein.{{md,csv,png}}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    import dataclasses

    from iidfusion_studies.train_cost import QUICK, CostConfig, render_markdown, run_cost_benchmark, write_costs

    base = QUICK if args.quick else CostConfig()
    values = _given(
        args,
        seed="seed",
        threads="threads",
        rounds="rounds",
        steps="steps",
        workloads="workloads",
        methods="methods",
        memory="memory",
    )
    if args.accelerator is not None:
        values["device"] = single_device(args.accelerator, args.devices)
    config = dataclasses.replace(base, **values)
    out = _out(args)
    results = run_cost_benchmark(config, log=_progress)
    report = render_markdown(results)
    print(report, end="")
    if out is not None:
        write_costs(results, out, args.name)
        _progress(f"written to {out}/{args.name}.{{md,csv}}")
    return 0
