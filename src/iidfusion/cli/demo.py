"""``iidfusion demo`` (what ``make demo`` runs): the main comparison on the bundled Handwritten data.

The nine main methods, 5 seeds, noise levels 0/5/10 on all six views, sized to finish in a
few minutes on two CPU cores: small MLP encoders, at most 15 epochs with early stopping on
validation accuracy, a larger learning rate (5e-3) to get there, two fits at a time in two
single-threaded processes, and no checkpoints or loggers (``iidfusion compare`` has them). ``configs/demo.yaml``
holds the same settings (a test keeps the two equal).
"""

from __future__ import annotations

import argparse

from iidfusion.training.config import FIT_ONLY, SUITE_ONLY, ExperimentConfig, OptimConfig, TrainConfig, add_config_arguments

DEMO_CONFIG = ExperimentConfig(
    data="handwritten",
    methods=("main",),
    seeds=5,
    jobs=2,
    out="runs/demo",
    optim=OptimConfig(lr=5e-3),
    train=TrainConfig(
        max_epochs=15,
        batch_size=128,
        patience=5,
        accelerator="cpu",
        threads=1,
        checkpoints=False,
        loggers=(),
        progress_bar=False,
        monitor_distances=False,
    ),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the main comparison on the bundled Handwritten data",
        description="`iidfusion compare` with the demo's defaults (shown below); any option can be overridden.",
    )
    add_config_arguments(parser, base=DEMO_CONFIG, exclude=FIT_ONLY | SUITE_ONLY)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from iidfusion.cli.compare import run as run_compare

    return run_compare(args, base=DEMO_CONFIG)
