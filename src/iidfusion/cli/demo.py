"""``iidfusion demo`` (what ``make demo`` runs): the main comparison on the bundled Handwritten data.

The nine main methods, 5 seeds, noise levels 0/5/10 on all six views, sized to finish in a
few minutes on two CPU cores: small MLP encoders, at most 15 epochs with early stopping on
validation accuracy, a larger learning rate (5e-3) to get there, two fits at a time in two
single-threaded processes, and no checkpoints or loggers (``iidfusion compare`` has them). ``configs/demo.yaml``
holds the same settings (a test keeps the two equal).

The same on every x86-64 machine. Floating-point rounding depends on which code path a CPU
kernel takes, and MKL (torch's BLAS) and ATen (its vectorised kernels) pick theirs from the
processor's instruction set: on one machine, the five QMF fits give 97.57 (ATen AVX-512, MKL
AVX-512), 97.75 (MKL's compatible path) or 97.83 (ATen's default path), and the IID rows move
more. The demo therefore pins both to the paths every x86-64 processor has
(:data:`PINNED_KERNELS`, set unless the environment already sets them), at about 1.5 times
the CPU time; the worker processes inherit them. Other machines (ARM, where torch uses no
MKL) round differently.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from iidfusion.cli.compare import add_resume_argument
from iidfusion.cli.fit import add_overwrite_argument
from iidfusion.cli.options import FIT_ONLY, SUITE_ONLY, add_config_arguments

if TYPE_CHECKING:
    from iidfusion.tasks.classification.config import ExperimentConfig

# The demo's defaults over the experiment's, by dotted key: plain values, so that its --help
# imports no configuration (torch); DEMO_CONFIG is the configuration they make.
DEMO_SETTINGS: dict[str, Any] = {
    "data": "handwritten",
    "methods": ("main",),
    "seeds": 5,
    "jobs": 2,
    "out": "runs/demo",
    "optim.lr": 5e-3,
    "train.max_epochs": 15,
    "train.batch_size": 128,
    "train.patience": 5,
    "train.accelerator": "cpu",
    "train.threads": 1,
    "train.checkpoints": False,
    "train.loggers": (),
    "train.progress_bar": False,
    "train.monitor_distances": False,
}


def __getattr__(name: str) -> ExperimentConfig:
    if name != "DEMO_CONFIG":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from iidfusion.cli.schema import settings_config

    return settings_config(DEMO_SETTINGS)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the main comparison on the bundled Handwritten data",
        description="`iidfusion compare` with the demo's defaults (shown below); any option can be overridden.",
    )
    add_config_arguments(parser, DEMO_SETTINGS, exclude=FIT_ONLY | SUITE_ONLY)
    add_overwrite_argument(parser, default=True)  # `make demo` twice replaces the first demo's results
    add_resume_argument(parser)
    parser.set_defaults(handler=run)


# Read when torch loads in a process: set before the first `import torch` of the demo's
# process (the CLI imports torch only in the handlers) and inherited by its workers.
PINNED_KERNELS: dict[str, str] = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default"}


def run(args: argparse.Namespace) -> int:
    for name, value in PINNED_KERNELS.items():
        os.environ.setdefault(name, value)
    from iidfusion.cli.compare import run as run_compare

    return run_compare(args, DEMO_SETTINGS)
