"""Methods x seeds x noise levels on one data set -> results files (``iidfusion compare``).

Every input is checked before the first model trains (method names, noise levels and view,
loggers, the data file itself), so bad input fails in a second with nothing written. Seed k
draws the data split (for files without their own) and initialises every method, so the
methods of one seed are compared on the same split and the same noisy test samples: the
pairing the t-test of :mod:`iidfusion.training.report` relies on. Result files are written
together at the end (:func:`~iidfusion.training.report.write_report`); a run interrupted
half way leaves its per-run logs under ``runs/`` and no result file.

``jobs > 1`` runs that many fits at once in worker processes (spawned, so each imports
torch once and then takes fits from a queue). Every fit is seeded on its own, so the
results do not depend on ``jobs``; on a CPU, one torch thread per job uses the cores best.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from iidfusion.data.base import DatasetSplits
from iidfusion.training.config import ExperimentConfig, config_to_dict, resolve_methods
from iidfusion.training.report import EvalResult, write_report

_SPLITS: dict[tuple[str, int], DatasetSplits] = {}
# Worker processes start fresh ("spawn"): safe with CUDA and OpenMP, at one torch import each.
START_METHOD = "spawn"


@dataclass
class Comparison:
    """What :func:`run_comparison` produced: every evaluation and the markdown report."""

    results: list[EvalResult]
    report: str
    is_global_zero: bool


@dataclass
class RunOutcome:
    """One finished fit, as a worker process returns it."""

    results: list[EvalResult]
    epochs: int
    seconds: float
    is_global_zero: bool


def quiet_lightning() -> None:
    """Silence Lightning's per-fit banners and advice (dozens of fits would bury the table)."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    warnings.filterwarnings("ignore", category=PossibleUserWarning)
    for category in (DeprecationWarning, FutureWarning):  # Lightning's use of torch internals
        warnings.filterwarnings("ignore", category=category, module=r"lightning\.")


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
    from iidfusion.training.validation import check_option_values

    check_option_values(config)
    if config.seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {config.seeds}")
    if config.jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {config.jobs}")
    if config.jobs > 1 and config.train.strategy.startswith("ddp"):
        raise ValueError(f"jobs > 1 runs fits side by side; it cannot be combined with strategy {config.train.strategy!r}")
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


def _cached_splits(config: ExperimentConfig, seed: int) -> DatasetSplits:
    key = (config.data, seed)
    if key not in _SPLITS:
        _SPLITS.clear()  # one seed at a time: the fits are ordered seed by seed
        _SPLITS[key] = load_splits(config, seed)
    return _SPLITS[key]


def run_one(config: ExperimentConfig, method: str, seed: int, run_dir: Path | None) -> RunOutcome:
    """Train and evaluate one (method, seed) of the comparison (in this or a worker process)."""
    from iidfusion.training.runner import fit_method

    fit = fit_method(_cached_splits(config, seed), method, seed, config, run_dir)
    results = [EvalResult(method, seed, m.noise, config.eval.noise_view, m.accuracy, m.macro_f1) for m in fit.metrics]
    return RunOutcome(results, fit.epochs, fit.seconds, fit.is_global_zero)


def run_comparison(
    config: ExperimentConfig, out: str | Path, *, title: str | None = None, log: Callable[[str], None] = print
) -> Comparison:
    """Train every method of ``config`` with seeds 0..seeds-1, evaluate, write the results to ``out``."""
    methods = resolve_methods(config.methods)
    validate_config(config)
    first = _cached_splits(config, 0)
    out = Path(out)
    keep_runs = config.train.checkpoints or bool(config.train.loggers)
    tasks = [
        (method, seed, out / "runs" / method / f"seed{seed}" if keep_runs else None)
        for seed in range(config.seeds)
        for method in methods
    ]

    def report_progress(done: int, method: str, seed: int, outcome: RunOutcome) -> None:
        if outcome.is_global_zero:
            accuracy = ", ".join(f"{r.noise:g}: {100 * r.accuracy:.2f}" for r in outcome.results)
            log(f"[{done}/{len(tasks)}] {method} seed {seed}: test acc % by noise level {{{accuracy}}}, "
                f"{outcome.epochs} epochs, {outcome.seconds:.1f} s")

    outcomes: list[RunOutcome] = []
    if config.jobs == 1:
        for done, (method, seed, run_dir) in enumerate(tasks, start=1):
            outcomes.append(run_one(config, method, seed, run_dir))
            report_progress(done, method, seed, outcomes[-1])
    else:
        context = multiprocessing.get_context(START_METHOD)
        with ProcessPoolExecutor(config.jobs, mp_context=context, initializer=quiet_lightning) as pool:
            futures: list[Future[RunOutcome]] = [pool.submit(run_one, config, *task) for task in tasks]
            try:
                for done, ((method, seed, _), future) in enumerate(zip(tasks, futures), start=1):
                    outcomes.append(future.result())
                    report_progress(done, method, seed, outcomes[-1])
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
    is_global_zero = all(o.is_global_zero for o in outcomes)
    results = [r for o in outcomes for r in o.results]
    title = title or f"{first.name}: {len(methods)} methods x {config.seeds} seeds"
    report = write_report(out, results, config_to_dict(config), title) if is_global_zero else ""
    return Comparison(results, report, is_global_zero)
