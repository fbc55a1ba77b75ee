"""Hyperparameter sensitivity of IID over (alpha, beta, d1) on the validation split (docs/evidence.md, section 4).

The paper lists the sensitivity of alpha, beta and d1 as a limitation and tunes them on a
validation set; this module measures it. Each trial trains one method with one point of the
search space (and each of ``seeds`` seeds) through :func:`iidfusion.engine.trainer.fit_method`
and scores it by its best validation accuracy (the epoch early stopping keeps). The clean test
accuracy of the same weights is recorded alongside, never used to choose.

Searches: ``grid`` (default, every combination of the given values) or ``optuna`` (TPE over the
same values, ``trials`` trials; Optuna is an optional dependency, ``pip install iidfusion[sweep]``).
Results: ``sweep_<data>.csv`` and ``.json`` (every run), ``.md`` (the table the command prints)
and ``.png`` (heat-map of validation accuracy over (alpha, beta), one panel per d1), written
together, atomically, at the end.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from iidfusion.core.progress import progress_bar
from iidfusion.core.provenance import provenance
from iidfusion.engine.results import csv_text, fmt_number, json_text, markdown_table
from iidfusion.fusion.methods import get_method
from iidfusion.tasks.classification.config import ExperimentConfig
from iidfusion.tasks.classification.fit import fit_method, without_progress_bar
from iidfusion.tasks.classification.validation import load_splits, validate_config
from iidfusion_studies._report import new_figure, reduction_dims, write_outputs

SEARCHES = ("grid", "optuna")


@dataclass(frozen=True)
class SearchSpace:
    """The values tried for each hyperparameter (all combinations in a grid)."""

    alpha: tuple[float, ...]
    beta: tuple[float, ...]
    d1: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "d1"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"no values given for {name}")
            if len(set(values)) != len(values):
                raise ValueError(f"repeated value in {name}: {list(values)}")
            if any(not (math.isfinite(v) and v >= 0) for v in values):
                raise ValueError(f"{name} values must be finite and >= 0, got {list(values)}")
        if any(d < 0 for d in self.d1):
            raise ValueError(f"d1 values must be >= 0 (0: automatic), got {list(self.d1)}")

    def points(self) -> list[tuple[float, float, int]]:
        return list(itertools.product(self.alpha, self.beta, self.d1))


@dataclass(frozen=True)
class SweepRun:
    """One trained model: the hyperparameters, the seed and its accuracies (in [0, 1])."""

    alpha: float
    beta: float
    d1: int
    seed: int
    val_acc: float
    test_acc: float
    best_epoch: int
    epochs: int
    seconds: float


@dataclass(frozen=True)
class SweepPoint:
    """One point of the search space, over its seeds."""

    alpha: float
    beta: float
    d1: int
    val_acc: float
    val_std: float
    test_acc: float
    seeds: int


def point_config(config: ExperimentConfig, alpha: float, beta: float, d1: int) -> ExperimentConfig:
    """``config`` with the loss's alpha, beta and d1 replaced."""
    return dataclasses.replace(config, loss=dataclasses.replace(config.loss, alpha=alpha, beta=beta, d1=d1))


def evaluate_point(
    config: ExperimentConfig, alpha: float, beta: float, d1: int, splits: Sequence, log: Callable[[str], None], bar: Any
) -> list[SweepRun]:
    """Train ``config.method`` at (alpha, beta, d1) with each seed's splits; one :class:`SweepRun` each.

    ``bar``: the sweep's progress bar (:mod:`iidfusion.core.progress`), advanced by each fit.
    """
    runs = []
    point = without_progress_bar(point_config(config, alpha, beta, d1))
    for seed, data in enumerate(splits):
        bar.set_postfix_str(f"running alpha={alpha:g} beta={beta:g} d1={_d1_label(d1)} seed {seed}")
        fit = fit_method(data, config.method, seed, point, run_dir=None)
        clean = next(m for m in fit.metrics if m.noise == 0)
        runs.append(
            SweepRun(alpha, beta, d1, seed, fit.best_val_acc, clean.accuracy, fit.best_epoch, fit.epochs, fit.seconds)
        )
        bar.update(1)
        with bar.external_write_mode(file=sys.stderr):
            log(
                f"alpha={alpha:g} beta={beta:g} d1={_d1_label(d1)} seed {seed}: val acc {100 * fit.best_val_acc:.2f}% "
                f"(epoch {fit.best_epoch + 1}/{fit.epochs}), {fit.seconds:.1f} s"
            )
    return runs


def _optuna_module():  # -> the optuna module
    try:
        import optuna
    except ImportError:
        raise ValueError(
            "--search optuna needs Optuna, an optional dependency: pip install 'iidfusion[sweep]' (or use --search "
            "grid)"
        ) from None
    return optuna


def run_sweep(
    config: ExperimentConfig,
    space: SearchSpace,
    *,
    search: str = "grid",
    trials: int | None = None,
    log: Callable[[str], None] = print,
) -> list[SweepRun]:
    """Every run of the search; ``config.method`` trained with seeds 0..``config.seeds``-1."""
    if search not in SEARCHES:
        raise ValueError(f"unknown search {search!r}; expected one of {list(SEARCHES)}")
    spec = get_method(config.method)
    if not (spec.use_ic or spec.use_dc):
        raise ValueError(f"method {spec.name!r} uses neither L_ic nor L_dc: alpha, beta and d1 change nothing")
    validate_config(config)
    for d1 in space.d1:  # fail now, not after the first trainings, on a d1 the reduction cannot take
        reduction_dims(config.model.width, d1, config.loss.d2)
    optuna = _optuna_module() if search == "optuna" else None
    if optuna is not None and (trials is None or trials < 1):
        raise ValueError(f"--search optuna needs --trials >= 1, got {trials}")
    splits = [load_splits(config, seed) for seed in range(config.seeds)]
    fits = config.seeds * (len(space.points()) if search == "grid" else int(trials or 0))
    with progress_bar(fits, f"sweep {config.method}", enabled=config.train.progress_bar, unit="fit") as bar:
        return _search(config, space, search, trials, splits, log, bar, optuna)


def _search(
    config: ExperimentConfig,
    space: SearchSpace,
    search: str,
    trials: int | None,
    splits: list,
    log: Callable[[str], None],
    bar: Any,
    optuna: Any,
) -> list[SweepRun]:
    """Every run of the grid, or of Optuna's ``trials`` trials (:func:`run_sweep`)."""
    if search == "grid":
        return [run for a, b, d in space.points() for run in evaluate_point(config, a, b, d, splits, log, bar)]

    runs: list[SweepRun] = []

    def objective(trial) -> float:
        alpha = trial.suggest_categorical("alpha", list(space.alpha))
        beta = trial.suggest_categorical("beta", list(space.beta))
        d1 = trial.suggest_categorical("d1", list(space.d1))
        point = evaluate_point(config, alpha, beta, d1, splits, log, bar)
        runs.extend(point)
        return statistics.fmean(r.val_acc for r in point)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=config.seed))
    study.optimize(objective, n_trials=trials)
    return runs


def summarize(runs: Sequence[SweepRun]) -> list[SweepPoint]:
    """Mean (and std) over seeds per point; a point tried twice by Optuna pools its runs."""
    groups: dict[tuple[float, float, int], list[SweepRun]] = {}
    for run in runs:
        groups.setdefault((run.alpha, run.beta, run.d1), []).append(run)
    return [
        SweepPoint(
            alpha,
            beta,
            d1,
            statistics.fmean(r.val_acc for r in rows),
            statistics.stdev(r.val_acc for r in rows) if len(rows) > 1 else 0.0,
            statistics.fmean(r.test_acc for r in rows),
            len(rows),
        )
        for (alpha, beta, d1), rows in sorted(groups.items())
    ]


def _mean_std(point: SweepPoint) -> str:
    """Validation accuracy in %, with its std over seeds when there are several."""
    return f"{100 * point.val_acc:.2f}" + (f" ± {100 * point.val_std:.2f}" if point.seeds > 1 else "")


def _d1_label(d1: int) -> str:
    return "auto" if d1 == 0 else str(d1)


def render_markdown(runs: Sequence[SweepRun], config: ExperimentConfig, title: str) -> str:
    """The printed report: settings, the table of points (best first) and the spread of accuracy."""
    points = sorted(summarize(runs), key=lambda p: -p.val_acc)
    if not points:
        raise ValueError("the sweep produced no runs")
    best, worst = points[0], points[-1]
    rows = [
        [
            fmt_number(p.alpha, "g"),
            fmt_number(p.beta, "g"),
            _d1_label(p.d1),
            _mean_std(p),
            f"{100 * p.test_acc:.2f}",
            str(p.seeds),
        ]
        for p in points
    ]
    loss, train = config.loss, config.train
    return (
        f"# {title}\n\n"
        f"Method {config.method}, {'seed 0' if config.seeds == 1 else f'seeds 0..{config.seeds - 1}'}; selection by "
        "validation accuracy (best epoch). "
        ""
        f"Fixed: d2={loss.d2 or 'automatic (rip_dimension(width, d1) if below the width, else no projection)'}, "
        f"eps={loss.eps:g}, rho={loss.rho:g}, lam={loss.lam:g}, Sinkhorn max_iter={loss.max_iter}, "
        ""
        f"width={config.model.width}, lr={config.optim.lr:g}, batch {train.batch_size}, "
        f"max {train.max_epochs} epochs, patience {train.patience}.\n\n"
        + markdown_table(["alpha", "beta", "d1", "val acc (%)", "test acc (%)", "seeds"], rows, numeric_from=0)
        + f"\n\nBest: alpha={best.alpha:g}, beta={best.beta:g}, d1={_d1_label(best.d1)} "
        f"({100 * best.val_acc:.2f}% validation, {100 * best.test_acc:.2f}% test). "
        f"Spread over the {len(points)} points: {100 * (best.val_acc - worst.val_acc):.2f} points of validation "
        "accuracy "
        f"(worst: alpha={worst.alpha:g}, beta={worst.beta:g}, d1={_d1_label(worst.d1)}, {100 * worst.val_acc:.2f}%).\n"
    )


COLLAPSE_GAP = 20.0
"""Points of validation accuracy below the median beyond which a grid point counts as collapsed (heat map)."""


def plot_heatmap(runs: Sequence[SweepRun]):  # -> matplotlib Figure
    """Validation accuracy (%) over (alpha, beta), one panel per d1, one colour scale for all.

    The scale spans the points within ``COLLAPSE_GAP`` points of the median; points further below
    (collapsed trainings) are drawn in grey under it, so that they do not flatten the differences
    among the others. Every cell is annotated with its value.
    """
    points = summarize(runs)
    alphas = sorted({p.alpha for p in points})
    betas = sorted({p.beta for p in points})
    d1s = sorted({p.d1 for p in points})
    lookup = {(p.alpha, p.beta, p.d1): 100 * p.val_acc for p in points}
    values = [
        v for v in (lookup.get(key, math.nan) for key in itertools.product(alphas, betas, d1s)) if not math.isnan(v)
    ]
    floor = statistics.median(values) - COLLAPSE_GAP
    low, high = min(v for v in values if v >= floor), max(values)
    colours = matplotlib.colormaps["viridis"].with_extremes(under="0.6")
    figure, axes = new_figure(
        len(d1s), width=max(3.2, 1.1 * len(alphas) + 1.8), height=max(2.8, 0.8 * len(betas) + 1.6)
    )
    axes[0].set_ylabel("beta (L_dc weight)")
    for axis, d1 in zip(axes, d1s, strict=True):
        grid = np.array([[lookup.get((a, b, d1), math.nan) for a in alphas] for b in betas])
        image = axis.imshow(grid, origin="lower", cmap=colours, vmin=low, vmax=high, aspect="auto")
        for (row, col), value in np.ndenumerate(grid):
            if not math.isnan(value):
                dark = low <= value < (low + high) / 2
                axis.text(
                    col, row, f"{value:.1f}", ha="center", va="center", fontsize=8, color="white" if dark else "black"
                )
        axis.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
        axis.set_yticks(range(len(betas)), [f"{b:g}" for b in betas])
        axis.set_xlabel("alpha (L_ic weight)")
        axis.set_title(f"validation accuracy (%), d1={_d1_label(d1)}")
    figure.colorbar(image, ax=list(axes), shrink=0.85, extend="min" if min(values) < low else "neither")
    return figure


def write_sweep(runs: Sequence[SweepRun], config: ExperimentConfig, out: str | Path, stem: str, title: str) -> str:
    """Write ``stem``.csv / .json / .md / .png to ``out`` together; returns the markdown report."""
    report = render_markdown(runs, config, title)
    records = [dataclasses.asdict(r) for r in runs]
    write_outputs(
        out,
        {
            f"{stem}.csv": csv_text(records),
            f"{stem}.json": json_text(
                {**provenance(config), "runs": records, "points": [dataclasses.asdict(p) for p in summarize(runs)]}
            ),
            f"{stem}.md": report,
        },
        {f"{stem}.png": plot_heatmap(runs)},
    )
    return report
