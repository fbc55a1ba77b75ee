"""Inter-modal distance, validation accuracy and diagnostics per epoch, from run logs (the paper's Figure 4).

The trainer (:mod:`iidfusion.tasks.classification.module`) logs, once per validation epoch and for every
method, the per-pair relaxed Wasserstein distances W~ of L_dc between the features of a fixed
validation sample under ``val/wasserstein/<m1>-<m2>`` and their mean ``val/wasserstein/mean``
(``train.monitor_distances``), ``val/acc``, and two diagnostics per modality m:
``val/shared_head_acc/<m>`` (the shared head on m alone) and ``val/drop_acc/<m>`` (the fused
accuracy with m replaced by its training mean). Lightning's CSV logger writes them to
``RUN/csv/metrics.csv``, one row per logging call, so a metric of epoch e sits in one of the rows
whose ``epoch`` is e; :func:`read_run_log` folds the rows into one value per epoch and metric.
A resumed run logs each (re)start to a new ``RUN/csv/version_K/metrics.csv``; all of them are
read, oldest first, and an epoch logged again after a resume (the one the interruption cut
short) keeps its newest values.

The figure puts, side by side, the mean inter-modal distance and the validation accuracy per epoch
of each run (typically a base method and its IID variant, same data and seed), and, when the runs
logged them, the two diagnostics per modality; :func:`monitoring_table` and
:func:`diagnostics_table` give the numbers the figure shows.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from iidfusion.engine.figures import new_figure
from iidfusion.engine.results import fmt_number, markdown_table

DISTANCE = "val/wasserstein/mean"
ACCURACY = "val/acc"
# Per-modality diagnostics: metric prefix -> panel title.
DIAGNOSTICS = {
    "val/shared_head_acc/": "shared head on one modality alone",
    "val/drop_acc/": "fused, one modality replaced by its training mean",
}


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
        pairs = [(e, v) for e, v in zip(self.epochs, self.values[metric], strict=True) if not math.isnan(v)]
        if not pairs:
            raise ValueError(f"metric {metric!r} has no value in {self.source}")
        return [e for e, _ in pairs], [v for _, v in pairs]

    def per_modality(self, prefix: str) -> dict[str, tuple[list[int], list[float]]]:
        """{modality: (epochs, values)} of the metrics ``<prefix><modality>`` with a value."""
        return {
            key[len(prefix) :]: self.series(key)
            for key in self.values
            if key.startswith(prefix) and any(not math.isnan(v) for v in self.values[key])
        }


def metrics_files(run: str | Path) -> list[Path]:
    """The CSV logs of ``run``, oldest first: the file itself, ``RUN/csv/metrics.csv``, every
    ``RUN/csv/version_K/metrics.csv`` (Lightning numbers the versions of a logger; a resumed run
    adds one per restart), or ``RUN/metrics.csv``.
    """
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
    raise FileNotFoundError(
        f"no run log in {path}: expected {path / 'csv' / 'metrics.csv'} (written by `iidfusion fit`)"
    )


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
        logged, columns = _read_log_file(path)
        per_epoch.update(logged)  # a later version's epoch replaces the interrupted one
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
    """Distance and ``accuracy`` per epoch, one line per run; then one panel per logged diagnostic
    (:data:`DIAGNOSTICS`), one line per run and modality.
    """
    if not runs:
        raise ValueError("no runs to plot")
    diagnostics = [p for p in DIAGNOSTICS if any(run.per_modality(p) for run in runs)]
    figure, axes = new_figure(2 + len(diagnostics), width=5.6, height=4.0)
    left, right = axes[0], axes[1]
    styles = ("-", "--", ":", "-.")
    for index, run in enumerate(runs):
        colour = f"C{index % 10}"
        epochs, values = run.series(distance)
        left.plot([e + 1 for e in epochs], values, marker="o", markersize=3, color=colour, label=run.name)
        epochs, values = run.series(accuracy)
        right.plot(
            [e + 1 for e in epochs], [100 * v for v in values], marker="o", markersize=3, color=colour, label=run.name
        )
        for axis, prefix in zip(axes[2:], diagnostics, strict=False):
            for k, (modality, (epochs, values)) in enumerate(sorted(run.per_modality(prefix).items())):
                axis.plot(
                    [e + 1 for e in epochs],
                    [100 * v for v in values],
                    linestyle=styles[k % len(styles)],
                    color=colour,
                    label=f"{run.name}: {modality}",
                )
    left.set_title("inter-modal distance (mean W~ over modality pairs)")
    left.set_ylabel(distance)
    right.set_title("validation accuracy")
    right.set_ylabel(f"{accuracy} (%)")
    for axis, prefix in zip(axes[2:], diagnostics, strict=False):
        axis.set_title(DIAGNOSTICS[prefix])
        axis.set_ylabel(f"{prefix}<modality> (%)")
    for axis in axes:
        axis.set_xlabel("epoch")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    return figure


def diagnostics_table(runs: Sequence[RunLog]) -> str:
    """Per run and modality, the diagnostics of :data:`DIAGNOSTICS` at the last epoch (%); empty if none."""
    rows = []
    for run in runs:
        found = {prefix: run.per_modality(prefix) for prefix in DIAGNOSTICS}
        for modality in sorted({m for series in found.values() for m in series}):
            cells = [
                fmt_number(100 * series[modality][1][-1], ".2f") if modality in series else "-"
                for series in found.values()
            ]
            rows.append([run.name, modality, *cells])
    if not rows:
        return ""
    return markdown_table(
        ["run", "modality", "shared head alone, last epoch (%)", "drop-one fused, last epoch (%)"], rows
    )


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
                fmt_number(d[0], ".4g"),
                fmt_number(d[-1], ".4g"),
                fmt_number(change, "+.1f"),
                fmt_number(sum(d) / len(d), ".4g"),
                fmt_number(100 * a[0], ".2f"),
                fmt_number(100 * max(a), ".2f"),
                fmt_number(100 * a[-1], ".2f"),
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
