"""Methods x seeds x noise levels on one data set -> results files (``iidfusion compare``).

Every input is checked before the first model trains (method names, noise levels and view,
loggers, the data file itself), so bad input fails in a second with nothing written. Seed k
draws the data split (for files without their own) and initialises every method, so the
methods of one seed are compared on the same split and the same noisy test samples: the
pairing the t-test of :mod:`iidfusion.training.report` relies on. Result files are written
together at the end (:func:`~iidfusion.training.report.write_report`); a run interrupted
half way leaves its per-run logs under ``runs/`` and no result file.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from iidfusion.data.base import DatasetSplits
from iidfusion.training.config import ExperimentConfig, config_to_dict, resolve_methods
from iidfusion.training.report import EvalResult, write_report


@dataclass
class Comparison:
    """What :func:`run_comparison` produced: every evaluation and the markdown report."""

    results: list[EvalResult]
    report: str
    is_global_zero: bool


def quiet_lightning() -> None:
    """Silence Lightning's per-fit banners and advice (dozens of fits would bury the table)."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    warnings.filterwarnings("ignore", category=PossibleUserWarning)


def load_splits(config: ExperimentConfig, seed: int) -> DatasetSplits:
    """The data of ``config`` split by ``seed``; at least two views, and the noise view among them."""
    from iidfusion.data.registry import load_dataset

    splits = load_dataset(config.data, seed=seed)
    if len(splits.view_dims) < 2:
        raise ValueError(f"{config.data}: {len(splits.view_dims)} view {list(splits.view_dims)}; fusion needs at least two")
    view = config.eval.noise_view
    if view != "all" and view not in splits.view_dims:
        raise ValueError(f"noise view {view!r} is not a view of {splits.name}; views: {list(splits.view_dims)}")
    return splits


def validate_config(config: ExperimentConfig) -> None:
    """Check the options that can be checked without data (methods are resolved by the caller)."""
    from iidfusion.data.noise import FEATURE_NOISE
    from iidfusion.training.runner import build_loggers

    if config.seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {config.seeds}")
    if not config.eval.noise:
        raise ValueError("no noise levels given (use 0 for clean data only)")
    for level in config.eval.noise:
        if not (math.isfinite(level) and level >= 0):
            raise ValueError(f"noise levels must be finite and >= 0, got {level}")
    if config.eval.noise_kind not in FEATURE_NOISE:
        raise ValueError(f"unknown noise kind {config.eval.noise_kind!r}; expected one of {sorted(FEATURE_NOISE)}")
    if config.train.max_epochs < 1:
        raise ValueError(f"max_epochs must be >= 1, got {config.train.max_epochs}")
    build_loggers(config.train, None)


def run_comparison(
    config: ExperimentConfig, out: str | Path, *, title: str | None = None, log: Callable[[str], None] = print
) -> Comparison:
    """Train every method of ``config`` with seeds 0..seeds-1, evaluate, write the results to ``out``."""
    from iidfusion.training.runner import fit_method

    methods = resolve_methods(config.methods)
    validate_config(config)
    first = load_splits(config, 0)
    out = Path(out)
    keep_runs = config.train.checkpoints or bool(config.train.loggers)
    results: list[EvalResult] = []
    is_global_zero = True
    total, done = config.seeds * len(methods), 0
    for seed in range(config.seeds):
        splits = first if seed == 0 else load_splits(config, seed)
        for method in methods:
            run_dir = out / "runs" / method / f"seed{seed}" if keep_runs else None
            fit = fit_method(splits, method, seed, config, run_dir)
            is_global_zero = fit.is_global_zero
            results.extend(
                EvalResult(method, seed, m.noise, config.eval.noise_view, m.accuracy, m.macro_f1) for m in fit.metrics
            )
            done += 1
            if is_global_zero:
                accuracy = ", ".join(f"{m.noise:g}: {100 * m.accuracy:.2f}" for m in fit.metrics)
                log(f"[{done}/{total}] {method} seed {seed}: test acc % by noise level {{{accuracy}}}, "
                    f"{fit.epochs} epochs, {fit.seconds:.1f} s")
    title = title or f"{first.name}: {len(methods)} methods x {config.seeds} seeds"
    report = write_report(out, results, config_to_dict(config), title) if is_global_zero else ""
    return Comparison(results, report, is_global_zero)
