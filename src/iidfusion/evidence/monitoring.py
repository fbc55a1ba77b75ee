"""Inter-modal distance and validation accuracy per epoch, from run logs (the paper's Figure 4).

The trainer (:mod:`iidfusion.training.module`) logs, once per training epoch, the per-pair
relaxed Wasserstein distances W~ of L_dc under ``train/wasserstein/<m1>-<m2>`` and their mean
``train/wasserstein/mean``, for every method: an IID method logs the values of its loss, a
base method the same quantity computed without gradient (``train.monitor_distances``). It logs
``val/acc`` after each validation. Lightning's CSV logger writes them to ``RUN/csv/metrics.csv``,
one row per logging call, so a metric of epoch e sits in one of the rows whose ``epoch`` is e;
:func:`read_run_log` folds the rows into one value per epoch and metric. A resumed run logs each
(re)start to a new ``RUN/csv/version_K/metrics.csv``; all of them are read, oldest first, and an
epoch logged again after a resume (the one the interruption cut short) keeps its newest values.

The figure puts, side by side, the mean inter-modal distance per epoch and the validation
accuracy per epoch of each run (typically a base method and its IID variant, same data and
seed), and :func:`monitoring_table` gives the numbers the figure shows.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from iidfusion.evidence._report import fmt, markdown_table, new_figure

DISTANCE = "train/wasserstein/mean"
ACCURACY = "val/acc"


@dataclass(frozen=True)
class RunLog:
    """One run's metrics per epoch: ``values[metric][k]`` is the value at ``epochs[k]`` (NaN if not logged)."""

    name: str
    source: Path
    epochs: tuple[int, ...]
    values: dict[str, tuple[float, ...]]

    def series(self, metric: str) -> tuple[list[int], list[float]]:
        """(epochs, values) of ``metric`` at the epochs where it was logged."""
        if metric not in self.values:
            logged = ", ".join(sorted(self.values)) or "none"
            raise ValueError(f"metric {metric!r} is not in {self.source}; logged metrics: {logged}")
        pairs = [(e, v) for e, v in zip(self.epochs, self.values[metric]) if not math.isnan(v)]
        if not pairs:
            raise ValueError(f"metric {metric!r} has no value in {self.source}")
        return [e for e, _ in pairs], [v for _, v in pairs]


def metrics_files(run: str | Path) -> list[Path]:
    """The CSV logs of ``run``, oldest first: the file itself, ``RUN/csv/metrics.csv``, every
    ``RUN/csv/version_K/metrics.csv`` (Lightning numbers the versions of a logger; a resumed run
    adds one per restart), or ``RUN/metrics.csv``."""
    path = Path(run)
    if path.is_file():
        return [path]
    if (path / "csv" / "metrics.csv").is_file():
        return [path / "csv" / "metrics.csv"]
    versions = sorted(path.glob("csv/version_*/metrics.csv"), key=lambda p: _version_number(p.parent.name))
    if versions:
        return versions
    if (path / "metrics.csv").is_file():
        return [path / "metrics.csv"]
    raise FileNotFoundError(f"no run log in {path}: expected {path / 'csv' / 'metrics.csv'} (written by `iidfusion fit`)")


def _version_number(name: str) -> int:
    suffix = name.rsplit("_", 1)[-1]
    return int(suffix) if suffix.isdigit() else -1


def run_name(log_file: Path) -> str:
    """The method and seed recorded next to the log (``hparams.yaml``), else the run folder's name."""
    hparams = log_file.parent / "hparams.yaml"
    if hparams.is_file():
        try:
            values = yaml.safe_load(hparams.read_text(encoding="utf-8")) or {}
        except (UnicodeDecodeError, yaml.YAMLError):
            values = {}  # the name only labels the plot: fall back to the folder's
        if isinstance(values, dict) and "method" in values:
            return f"{values['method']} (seed {values['seed']})" if "seed" in values else str(values["method"])
    folder = log_file.parent
    while folder.name == "csv" or folder.name.startswith("version_"):
        folder = folder.parent
    return folder.name


def read_run_log(run: str | Path, name: str | None = None) -> RunLog:
    """The per-epoch metrics of one run (module docstring); ``name`` overrides the recorded method."""
    paths = metrics_files(run)
    per_epoch: dict[int, dict[str, float]] = {}
    metrics: dict[str, None] = {}  # every version's metrics, in first-seen order
    for path in paths:
        epochs, columns = _read_log_file(path)
        per_epoch.update(epochs)  # a later version's epoch replaces the interrupted one
        metrics.update(dict.fromkeys(columns))
    epochs = tuple(sorted(per_epoch))
    values = {key: tuple(per_epoch[e].get(key, math.nan) for e in epochs) for key in metrics}
    return RunLog(name or run_name(paths[-1]), paths[-1], epochs, values)


def _read_log_file(path: Path) -> tuple[dict[int, dict[str, float]], list[str]]:
    """One CSV log folded per epoch, and its metric columns; a file that is not one is a ValueError."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not a text CSV log (byte {error.start} is not UTF-8)") from None
    except csv.Error as error:
        raise ValueError(f"{path} is not a CSV log ({error})") from None
    if not rows or "epoch" not in rows[0]:
        raise ValueError(f"{path} is not a run log: it needs a header with an 'epoch' column and rows")
    metrics = [key for key in rows[0] if key not in ("epoch", "step")]
    per_epoch: dict[int, dict[str, float]] = {}
    for line, row in enumerate(rows, start=2):
        try:
            epoch = int(float(row["epoch"]))
            values = {key: float(row[key]) for key in metrics if row.get(key) not in (None, "")}
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}, line {line}: not a number ({error})") from None
        per_epoch.setdefault(epoch, {}).update(values)  # a later row of the same epoch wins
    return per_epoch, metrics


def plot_monitoring(runs: Sequence[RunLog], distance: str = DISTANCE, accuracy: str = ACCURACY):  # -> Figure
    """Left: ``distance`` per epoch; right: ``accuracy`` per epoch; one line per run."""
    if not runs:
        raise ValueError("no runs to plot")
    figure, (left, right) = new_figure(2, width=5.6, height=4.0)
    for run in runs:
        epochs, values = run.series(distance)
        left.plot([e + 1 for e in epochs], values, marker="o", markersize=3, label=run.name)
        epochs, values = run.series(accuracy)
        right.plot([e + 1 for e in epochs], [100 * v for v in values], marker="o", markersize=3, label=run.name)
    left.set_title("inter-modal distance (mean W~ over modality pairs)")
    left.set_ylabel(distance)
    right.set_title("validation accuracy")
    right.set_ylabel(f"{accuracy} (%)")
    for axis in (left, right):
        axis.set_xlabel("epoch")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    return figure


def monitoring_table(runs: Sequence[RunLog], distance: str = DISTANCE, accuracy: str = ACCURACY) -> str:
    """Per run: the distance at the first and last epoch and its change, first / best / last accuracy."""
    rows = []
    for run in runs:
        _, d = run.series(distance)
        _, a = run.series(accuracy)
        change = 100 * (d[-1] - d[0]) / abs(d[0]) if d[0] != 0 else math.nan
        rows.append(
            [
                run.name,
                str(len(run.epochs)),
                fmt(d[0], ".4g"),
                fmt(d[-1], ".4g"),
                fmt(change, "+.1f"),
                fmt(sum(d) / len(d), ".4g"),
                fmt(100 * a[0], ".2f"),
                fmt(100 * max(a), ".2f"),
                fmt(100 * a[-1], ".2f"),
            ]
        )
    return markdown_table(
        [
            "run",
            "epochs",
            "distance, first epoch",
            "distance, last epoch",
            "change (%)",
            "distance, mean over epochs",
            "val acc first (%)",
            "val acc best (%)",
            "val acc last (%)",
        ],
        rows,
    )
