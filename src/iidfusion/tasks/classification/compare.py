"""Methods x seeds x noise levels on one data set -> results files (``iidfusion compare``).

Every input is checked before the first model trains (method names, noise levels and view,
loggers, the data file itself), so bad input fails in a second with nothing written. Seed k
draws the data split (for files without their own) and initialises every method, so the
methods of one seed are compared on the same split and the same noisy test samples: the
pairing the t-test of :mod:`iidfusion.tasks.classification.report` relies on. Result files are written
together at the end (:func:`~iidfusion.tasks.classification.report.write_report`); a run interrupted
half way leaves its per-run logs under ``runs/`` and no result file.

``jobs > 1`` runs that many fits at once in worker processes (spawned, so each imports
torch once and then takes fits from a queue). Every fit is seeded on its own, so the
results do not depend on ``jobs``; on a CPU, one torch thread per job uses the cores best.
With ``tune.enabled`` each (method, seed) is tuned on validation (:mod:`iidfusion.tasks.classification.tuning`)
and results.json records, for every run, what was chosen among which trials.
"""

from __future__ import annotations

import math
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from iidfusion.data.features.base import DatasetSplits
from iidfusion.data.features.multiview import PassedOverWarning
from iidfusion.engine.outputs import first_process
from iidfusion.engine.results import format_params
from iidfusion.engine.runs import Progress, cache_path, load_outcome, run_tasks, save_outcome
from iidfusion.engine.trainer import quiet_lightning
from iidfusion.tasks.classification.config import ExperimentConfig, config_to_dict, resolve_methods
from iidfusion.tasks.classification.departures import departures_line, departures_sentence
from iidfusion.tasks.classification.fit import fit_method, save_run, without_progress_bar
from iidfusion.tasks.classification.report import Confusion, EvalResult, write_report
from iidfusion.tasks.classification.run_key import data_identity, run_key
from iidfusion.tasks.classification.tuning import tune_method, with_params
from iidfusion.tasks.classification.validation import check_noise_view, load_splits, validate_config

_SPLITS: dict[tuple[str, tuple[str, ...], str, str, float, float, int], DatasetSplits] = {}
_SPLITS_KEPT = 4  # data sets x seeds held at once by a process (a worker may alternate between them)


@dataclass
class Comparison:
    """What :func:`run_comparison` produced: every evaluation, the markdown report, and per method
    the test predictions pooled over seeds (:class:`~iidfusion.tasks.classification.report.Confusion`).
    """

    results: list[EvalResult]
    report: str
    is_global_zero: bool
    confusions: list[Confusion] = field(default_factory=list)


@dataclass(frozen=True)
class Task:
    """One (method, seed) fit, or its tuning, on the data set of ``config``.

    ``label`` names the method in result tables (the suite runs one method with several L_ic
    readings); ``run_dir`` receives its checkpoints and logs (none when ``None``).
    """

    config: ExperimentConfig
    method: str
    seed: int
    run_dir: Path | None = None
    label: str = ""

    @property
    def name(self) -> str:
        """The method's name in result tables."""
        return self.label or self.method

    def key(self) -> str:
        """Equal for tasks whose results are interchangeable (:mod:`iidfusion.tasks.classification.run_key`)."""
        return run_key(self.config, self.method, self.seed, data_identity(self.config.data))


@dataclass
class RunOutcome:
    """One finished task, as a worker process returns it (picklable, JSON-ready by :meth:`to_json`).

    ``val_acc`` and ``val_loss``: the best validation accuracy and the validation loss at that
    epoch (of the selected trial, when tuned); ``tuning``: :meth:`TuneResult.summary` when tuned;
    ``confusion``: the confusion matrix of each of ``results`` (of the same test predictions),
    whose rows and columns are ``class_names``.
    """

    results: list[EvalResult]
    val_acc: float
    val_loss: float
    epochs: int
    seconds: float
    is_global_zero: bool
    tuning: dict[str, Any] | None = None
    confusion: list[list[list[int]]] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The outcome as plain JSON values (NaN as it is; :func:`~iidfusion.engine.results.json_ready` makes it
        strict).
        """
        return {**asdict(self), "results": [asdict(r) for r in self.results]}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> RunOutcome:
        """The outcome :meth:`to_json` wrote, NaN recorded as null read back as NaN."""
        values: dict[str, Any] = {k: number_or_nan(v) if k.startswith("val_") else v for k, v in payload.items()}
        return cls(**{**values, "results": [EvalResult(**r) for r in payload["results"]]})

    def progress_line(self) -> str:
        """What the job's progress says of this run: test accuracy per noise level, epochs, time, the choice when
        tuned.
        """
        accuracy = ", ".join(f"{r.noise:g}: {100 * r.accuracy:.2f}" for r in self.results)
        chosen = ""
        if self.tuning is not None and self.tuning["chosen"]:
            chosen = f", chose {format_params(self.tuning['chosen'])} of {len(self.tuning['trials'])} trials"
        return f"test acc % by noise level {{{accuracy}}}, {self.epochs} epochs, {self.seconds:.1f} s{chosen}"


def start_worker() -> None:
    """A worker process: quiet, and without the data file's notes, which the main process gave."""
    quiet_lightning()
    warnings.filterwarnings("ignore", category=PassedOverWarning)


def _cached_splits(config: ExperimentConfig, seed: int) -> DatasetSplits:
    key = (config.data, config.views, config.labels, config.id_column, config.val_fraction, config.test_fraction, seed)
    if key not in _SPLITS:
        while len(_SPLITS) >= _SPLITS_KEPT:
            _SPLITS.pop(next(iter(_SPLITS)))
        _SPLITS[key] = load_splits(config, seed)
    check_noise_view(config, _SPLITS[key])  # the cached splits may have been loaded for another config
    return _SPLITS[key]


def execute(task: Task) -> RunOutcome:
    """Train and evaluate one task (in this or a worker process); tuned when ``tune.enabled``.

    A tuned task selects its trial on validation (:func:`~iidfusion.tasks.classification.tuning.tune_method`)
    and, when it has a run folder, retrains the selected configuration there (the same seeded
    run, now with its checkpoints and logs).
    """
    config, splits = without_progress_bar(task.config), _cached_splits(task.config, task.seed)
    classes = list(splits.class_names) or [str(c) for c in range(splits.num_classes)]
    if not config.tune.enabled:
        fit = fit_method(splits, task.method, task.seed, config, task.run_dir)
        if task.run_dir is not None and fit.is_global_zero:
            save_run(task.run_dir, config, splits.name, fit)
        tests = fit.test_metrics()
        return RunOutcome(
            _eval_results(task, tests),
            fit.best_val_acc,
            fit.best_val_loss,
            fit.epochs,
            fit.seconds,
            fit.is_global_zero,
            confusion=[m["confusion"] for m in tests],
            class_names=classes,
        )
    tuned = tune_method(splits, task.method, task.seed, config, data_id=data_identity(config.data))
    best = tuned.best
    if task.run_dir is not None:
        chosen = with_params(config, best.params)
        fit = fit_method(splits, task.method, task.seed, chosen, task.run_dir)
        if fit.is_global_zero:
            save_run(task.run_dir, chosen, splits.name, fit, tuned.summary())
    seconds = sum(trial.seconds for trial in tuned.trials)
    return RunOutcome(
        _eval_results(task, best.test),
        best.val_acc,
        best.val_loss,
        best.epochs,
        seconds,
        True,
        tuned.summary(),
        confusion=[m["confusion"] for m in best.test],
        class_names=classes,
    )


def _eval_results(task: Task, tests: Sequence[dict[str, Any]]) -> list[EvalResult]:
    """The evaluations of ``task`` from its test metrics (:meth:`FitResult.test_metrics`)."""
    view = task.config.eval.noise_view
    return [EvalResult(task.name, task.seed, m["noise"], view, m["accuracy"], m["macro_f1"]) for m in tests]


def pooled_confusions(named: Sequence[tuple[str, RunOutcome]]) -> list[Confusion]:
    """Per method (the names of ``named``, in order), the confusion matrices of its runs summed over
    seeds at the clean level (noise 0, else the lowest evaluated): one
    :class:`~iidfusion.tasks.classification.report.Confusion` each. None when a run lacks them
    (one kept by an earlier version) or the runs disagree on the classes.
    """
    outcomes = [outcome for _, outcome in named]
    if not outcomes or any(len(o.confusion) != len(o.results) for o in outcomes):
        return []
    if len({tuple(o.class_names) for o in outcomes}) != 1:
        return []
    level = min(r.noise for o in outcomes for r in o.results)
    pooled: dict[str, tuple[Any, set[int]]] = {}
    for name, outcome in named:
        for result, counts in zip(outcome.results, outcome.confusion, strict=True):
            if result.noise == level:
                total, seeds = pooled.get(name, (0, set()))
                pooled[name] = (total + np.asarray(counts, dtype=np.int64), seeds | {result.seed})
    classes = tuple(outcomes[0].class_names)
    return [
        Confusion(name, level, classes, tuple(tuple(int(c) for c in row) for row in total), len(seeds))
        for name, (total, seeds) in pooled.items()
    ]


def comparison_tasks(config: ExperimentConfig, methods: Sequence[str], out: Path) -> list[Task]:
    """Every (seed, method) of a comparison, seed by seed; run folders under ``out/runs`` when the
    runs keep checkpoints or logs.
    """
    keep_runs = config.train.checkpoints or bool(config.train.loggers)
    return [
        Task(config, method, seed, out / "runs" / method / f"seed{seed}" if keep_runs else None)
        for seed in range(config.seeds)
        for method in methods
    ]


def number_or_nan(value: float | None) -> float:
    """A number as JSON records it (NaN as null) back as a float."""
    return math.nan if value is None else float(value)


def compare_tasks(
    tasks: Sequence[Task],
    config: ExperimentConfig,
    out: str | Path,
    *,
    title: str,
    record: dict[str, Any],
    log: Callable[[str], None] = print,
    execute_task: Callable[[Task], RunOutcome] | None = None,
    description: str = "compare",
    keep_finished: bool = False,
) -> Comparison:
    """Run ``tasks`` (``config.jobs`` at a time, with a progress bar and one line per run to
    ``log``), then write the results and ``record`` (the configuration) to ``out``. The first line
    to ``log`` and the first paragraph of results.md name the departures from the paper.

    ``keep_finished``: each finished run is kept under ``out/cache/`` at once and a task already
    kept there is not run again, so a comparison stopped half way continues where it stopped
    (its unfinished runs' folders are cleared first); the cache goes once the results are written.
    """
    out = Path(out)
    log(departures_line(config, dict.fromkeys(task.method for task in tasks)))
    keys = [task.key() for task in tasks] if keep_finished else []
    outcomes: list[RunOutcome | None] = [
        load_outcome(cache_path(out, key), RunOutcome.from_json) if cache_path(out, key).is_file() else None
        for key in keys
    ] or [None] * len(tasks)
    pending = [k for k, outcome in enumerate(outcomes) if outcome is None]
    if len(pending) < len(tasks):
        log(f"{description}: {len(tasks) - len(pending)} of {len(tasks)} runs already done, {len(pending)} to train")
    for k in pending:
        folder = tasks[k].run_dir
        if keep_finished and folder is not None and folder.is_dir() and first_process():
            shutil.rmtree(folder)  # what an interrupted run of this task left
    with Progress([tasks[k] for k in pending], log, bar=config.train.progress_bar, description=description) as progress:

        def done(count: int, task: Task, outcome: RunOutcome) -> None:
            if keep_finished:
                save_outcome(cache_path(out, keys[pending[count - 1]]), outcome.to_json())
            progress(count, task, outcome)

        run = run_tasks(
            [tasks[k] for k in pending], config.jobs, execute_task or execute, done, worker_setup=start_worker
        )
        for k, outcome in zip(pending, run, strict=True):
            outcomes[k] = outcome
    finished = [outcome for outcome in outcomes if outcome is not None]
    comparison = _report(tasks, finished, config, out, title, record)
    if keep_finished and comparison.is_global_zero:
        shutil.rmtree(out / "cache", ignore_errors=True)
    return comparison


def _report(
    tasks: Sequence[Task],
    outcomes: Sequence[RunOutcome],
    config: ExperimentConfig,
    out: Path,
    title: str,
    record: dict[str, Any],
) -> Comparison:
    is_global_zero = all(o.is_global_zero for o in outcomes)
    results = [r for o in outcomes for r in o.results]
    runs = [run_record(task, outcome) for task, outcome in zip(tasks, outcomes, strict=True)]
    notes = (departures_sentence(config, dict.fromkeys(task.method for task in tasks)),)
    confusions = pooled_confusions([(task.name, outcome) for task, outcome in zip(tasks, outcomes, strict=True)])
    report = (
        write_report(Path(out), results, record, title, runs=runs, notes=notes, confusions=confusions)
        if is_global_zero
        else ""
    )
    return Comparison(results, report, is_global_zero, confusions)


def run_comparison(
    config: ExperimentConfig,
    out: str | Path,
    *,
    title: str | None = None,
    log: Callable[[str], None] = print,
    resume: bool = False,
) -> Comparison:
    """Train every method of ``config`` with seeds 0..seeds-1, evaluate, write the results to ``out``.

    Each finished run is kept in ``out`` at once (:func:`compare_tasks`); ``resume`` continues a
    comparison that stopped half way in ``out`` from them (without it, they are refused).
    """
    methods = resolve_methods(config.methods)
    validate_config(config)
    check_resume(out, resume)
    first = _cached_splits(config, 0)
    tasks = comparison_tasks(config, methods, Path(out))
    title = title or f"{first.name}: {len(methods)} methods x {config.seeds} seeds"
    return compare_tasks(tasks, config, out, title=title, record=config_to_dict(config), log=log, keep_finished=True)


def check_resume(out: str | Path, resume: bool) -> None:
    """A comparison in ``out`` is continued only with ``resume``, and only if it did not finish."""
    kept = Path(out) / "cache"
    if not resume and kept.is_dir() and any(kept.iterdir()):
        raise ValueError(f"{out} holds the finished runs of an interrupted comparison; pass --resume to continue it")
    if resume and not kept.is_dir() and (Path(out) / "results.json").is_file():
        raise ValueError(f"{out} holds a finished comparison, nothing to resume; pass --overwrite to run it again")


def run_record(task: Task, outcome: RunOutcome) -> dict[str, Any]:
    """What results.json records of one run besides its test metrics: validation, cost, tuning."""
    record: dict[str, Any] = {
        "method": task.name,
        "seed": task.seed,
        "val_acc": outcome.val_acc,
        "val_loss": outcome.val_loss,
        "epochs": outcome.epochs,
        "seconds": outcome.seconds,
    }
    if outcome.tuning is not None:
        record["tuning"] = outcome.tuning
    return record


def finished_runs(out: Path) -> int:
    """How many finished runs an interrupted comparison or suite in ``out`` kept."""
    return sum(1 for _ in (out / "cache").glob("*.json")) if (out / "cache").is_dir() else 0
