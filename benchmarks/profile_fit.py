"""Where the time of one fit goes, in either training loop: a cProfile of ``fit_method`` by category.

``python benchmarks/profile_fit.py [--data handwritten] [--method if-static] [--rounds 3] [--quick] [--output PATH]``
trains the method once to warm up, then in each round once per loop (Lightning's and the plain one,
docs/architecture.md "Two loops, one fit") unprofiled and once under cProfile, and reports medians
over the rounds, with one thread, no checkpoints, loggers or monitoring (what the suite and the verdict
run), and sorts the own time of every profiled function
into what the step computes (autograd's backward, the layers' kernels, the optimizer's update, the
losses and the Sinkhorn solver), what feeds it (the data) and the rest (the loop's machinery and
Python around it). Writes benchmarks/results/fit_profile.md (``--quick``: 5 epochs, prints only).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import platform
import pstats
import statistics
import sys
import time
from pathlib import Path

import torch

from iidfusion.engine.trainer import quiet_lightning
from iidfusion.tasks.classification.config import ExperimentConfig
from iidfusion.tasks.classification.fit import fit_method
from iidfusion.tasks.classification.validation import load_splits

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "fit_profile.md"

# Category of a profiled function: the first rule whose marker is in "file:function" wins.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("backward (autograd engine)", ("run_backward",)),
    ("optimizer update (AdamW, foreach kernels)", ("torch/optim/", "_foreach_")),
    ("Sinkhorn and L_dc", ("iidfusion/ot/", "losses/coherence")),
    (
        "layer kernels (linear, norm, activations)",
        ("_C._nn.linear", "layer_norm", "torch.relu", "torch.gelu", "dropout", "logsumexp", "softmax"),
    ),
    ("data (batches from the split)", ("tasks/classification/data.py", "torch/utils/data/")),
    ("Lightning's loop and callbacks", ("lightning/", "lightning_utilities/")),
)
OTHER = "other torch calls and Python (modules, losses, the loop)"


def category(key: tuple[str, int, str]) -> str:
    """The category of a pstats key (file, line, function)."""
    where = f"{key[0]}:{key[2]}"
    for name, markers in CATEGORIES:
        if any(marker in where for marker in markers):
            return name
    return OTHER


def profile(splits, method: str, config: ExperimentConfig) -> tuple[dict[str, float], float, int]:
    """Own seconds per category, the profiled total, and the training steps of one fit."""
    profiler = cProfile.Profile()
    profiler.enable()
    result = fit_method(splits, method, 0, config)
    profiler.disable()
    stats = pstats.Stats(profiler)
    seconds: dict[str, float] = {}
    for key, (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        seconds[category(key)] = seconds.get(category(key), 0.0) + own
    steps = result.epochs * -(-len(splits.train) // config.train.batch_size)
    return seconds, sum(seconds.values()), steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="handwritten", help="data set (default handwritten)")
    parser.add_argument("--method", default="if-static", help="method (default if-static)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each running both loops (default 3)")
    parser.add_argument("--quick", action="store_true", help="5 epochs, 1 round; prints only")
    parser.add_argument("--output", type=Path, help=f"markdown report (default {RESULTS})")
    args = parser.parse_args(argv)
    quiet_lightning()
    torch.set_num_threads(1)
    config = ExperimentConfig(data=args.data)
    train = dataclasses.replace(
        config.train,
        checkpoints=False,
        loggers=(),
        progress_bar=False,
        monitor_distances=False,
        threads=1,
        accelerator="cpu",
        **({"max_epochs": 5} if args.quick else {}),
    )
    config = dataclasses.replace(config, train=train)
    splits = load_splits(config, 0)
    fit_method(splits, args.method, 0, config)  # warm-up: first calls, allocations
    loops = ("lightning", "plain")
    names = [name for name, _ in CATEGORIES] + [OTHER]
    measured: dict[str, list[tuple[dict[str, float], float, float]]] = {loop: [] for loop in loops}
    for _ in range(1 if args.quick else args.rounds):
        for loop in loops:
            looped = dataclasses.replace(config, train=dataclasses.replace(train, loop=loop))
            started = time.perf_counter()
            fit_method(splits, args.method, 0, looped)
            wall = time.perf_counter() - started  # unprofiled
            seconds, total, steps = profile(splits, args.method, looped)
            measured[loop].append((seconds, total, wall))
    rows = {
        loop: {name: statistics.median(m[0].get(name, 0.0) for m in measured[loop]) for name in names} for loop in loops
    }
    totals = {loop: statistics.median(m[1] for m in measured[loop]) for loop in loops}
    walls = {loop: statistics.median(m[2] for m in measured[loop]) for loop in loops}
    command = "python benchmarks/profile_fit.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        f"# Where one fit's time goes: {args.method} on {args.data}, one CPU thread",
        "",
        f"Command: `{command.strip()}`. Machine: {platform.platform()}, torch {torch.__version__}. "
        f"{steps} training steps (batch {train.batch_size}), no checkpoints, loggers or monitoring: a fit of "
        "the suite or the verdict. Own time of the profiled functions by category, in ms per training step "
        "(validation and the test evaluation included, spread over the steps), and the unprofiled wall time "
        f"of the same fit; medians over the rounds ({len(measured['plain'])}). cProfile slows Python code more "
        "than the kernels it calls, so the shares of Python overhead are upper bounds.",
        "",
        "| category | Lightning loop, ms/step | plain loop, ms/step | share, plain |",
        "|---|---:|---:|---:|",
    ]
    for name in names:
        lightning, plain = (1000 * rows[loop].get(name, 0.0) / steps for loop in ("lightning", "plain"))
        share = 100 * rows["plain"].get(name, 0.0) / totals["plain"]
        lines.append(f"| {name} | {lightning:.2f} | {plain:.2f} | {share:.0f} % |")
    lines += [
        f"| total (profiled) | {1000 * totals['lightning'] / steps:.2f} | {1000 * totals['plain'] / steps:.2f} | |",
        f"| wall, unprofiled | {1000 * walls['lightning'] / steps:.2f} | {1000 * walls['plain'] / steps:.2f} | |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    output = args.output if args.output is not None else (None if args.quick else RESULTS)
    if output is not None:
        output.write_text(text)
        print(f"written to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
