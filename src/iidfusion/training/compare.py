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
With ``tune.enabled`` each (method, seed) is tuned on validation (:mod:`iidfusion.training.tuning`)
and results.json records, for every run, what was chosen among which trials.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from iidfusion.data.base import DatasetSplits
from iidfusion.training.config import MAX_NOISE_LEVEL, ExperimentConfig, config_to_dict, resolve_methods
from iidfusion.training.departures import departures_line, departures_sentence
from iidfusion.training.outputs import first_process
from iidfusion.training.report import EvalResult, write_report

_SPLITS: dict[tuple[str, tuple[str, ...], str, int], DatasetSplits] = {}
_SPLITS_KEPT = 4  # data sets x seeds held at once by a process (a worker may alternate between them)
# Worker processes start fresh ("spawn"): safe with CUDA and OpenMP, at one torch import each.
START_METHOD = "spawn"


@dataclass
class Comparison:
    """What :func:`run_comparison` produced: every evaluation and the markdown report."""

    results: list[EvalResult]
    report: str
    is_global_zero: bool


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
        return self.label or self.method

    def key(self) -> str:
        """Equal for tasks whose results are interchangeable (:mod:`iidfusion.training.run_key`)."""
        from iidfusion.training.run_key import data_identity, run_key

        return run_key(self.config, self.method, self.seed, data_identity(self.config.data))


@dataclass
class RunOutcome:
    """One finished task, as a worker process returns it (picklable, JSON-ready by :meth:`to_json`).

    ``val_acc`` and ``val_loss``: the best validation accuracy and the validation loss at that
    epoch (of the selected trial, when tuned); ``tuning``: :meth:`TuneResult.summary` when tuned.
    """

    results: list[EvalResult]
    val_acc: float
    val_loss: float
    epochs: int
    seconds: float
    is_global_zero: bool
    tuning: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "results": [asdict(r) for r in self.results]}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> RunOutcome:
        return cls(**{**payload, "results": [EvalResult(**r) for r in payload["results"]]})


def quiet_lightning() -> None:
    """Silence Lightning's per-fit banners and advice (dozens of fits would bury the table)."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    warnings.filterwarnings("ignore", category=PossibleUserWarning)
    for category in (DeprecationWarning, FutureWarning):  # Lightning's use of torch internals
        warnings.filterwarnings("ignore", category=category, module=r"lightning\.")


def _start_worker() -> None:
    """A worker process: quiet, and without the data file's notes, which the main process gave."""
    from iidfusion.data.multiview import PassedOverWarning

    quiet_lightning()
    warnings.filterwarnings("ignore", category=PassedOverWarning)


def load_splits(config: ExperimentConfig, seed: int) -> DatasetSplits:
    """The data of ``config`` split by ``seed``; at least two views, and the noise view among them."""
    from iidfusion.data.registry import load_dataset

    splits = load_dataset(config.data, seed=seed, views=config.views, labels=config.labels or None)
    if len(splits.view_dims) < 2:
        raise ValueError(f"{config.data}: {len(splits.view_dims)} view {list(splits.view_dims)}; fusion needs at least two")
    check_noise_view(config, splits)
    return splits


def check_noise_view(config: ExperimentConfig, splits: DatasetSplits) -> None:
    """The noise view of ``config`` is 'all' or a view of ``splits``; on a feature cache (test
    splits of noisy inputs), every noise level is cached and the view is 'all' (the raw-input
    protocol corrupts each modality with its own coin), so no level falls back to feature noise."""
    view = config.eval.noise_view
    if view != "all" and view not in splits.view_dims:
        raise ValueError(f"noise view {view!r} is not a view of {splits.name}; views: {list(splits.view_dims)}")
    cached = sorted(splits.input_noise_tests)
    if cached:
        missing = [level for level in config.eval.noise if float(level) not in splits.input_noise_tests]
        if missing:
            raise ValueError(f"{config.data}: noise levels {missing} are not in this feature cache (cached: {cached}); "
                             f"run `iidfusion extract ... --noise {','.join(f'{x:g}' for x in sorted({*cached, *missing}))}`")  # fmt: skip
        if view != "all":
            raise ValueError(f"{config.data}: a feature cache's noisy test splits corrupt every modality; --noise-view must be 'all'")


def validate_config(config: ExperimentConfig) -> None:
    """Check the options that can be checked without data (methods are resolved by the caller)."""
    from iidfusion.data.noise import FEATURE_NOISE
    from iidfusion.training.runner import build_loggers
    from iidfusion.training.tuning import validate_tune_config
    from iidfusion.training.validation import check_option_values

    check_option_values(config)
    if config.jobs > 1 and config.train.strategy.startswith("ddp"):
        raise ValueError(f"jobs > 1 runs fits side by side; it cannot be combined with strategy {config.train.strategy!r}")
    if not config.eval.noise:
        raise ValueError("no noise levels given (use 0 for clean data only)")
    for level in config.eval.noise:
        if not (math.isfinite(level) and 0 <= level <= MAX_NOISE_LEVEL):
            raise ValueError(f"noise levels must be finite and >= 0, at most {MAX_NOISE_LEVEL:g}, got {level}")
    if config.eval.noise_kind not in FEATURE_NOISE:
        raise ValueError(f"unknown noise kind {config.eval.noise_kind!r}; expected one of {sorted(FEATURE_NOISE)}")
    validate_tune_config(config.tune)
    build_loggers(config.train, None)


def _cached_splits(config: ExperimentConfig, seed: int) -> DatasetSplits:
    key = (config.data, config.views, config.labels, seed)
    if key not in _SPLITS:
        while len(_SPLITS) >= _SPLITS_KEPT:
            _SPLITS.pop(next(iter(_SPLITS)))
        _SPLITS[key] = load_splits(config, seed)
    check_noise_view(config, _SPLITS[key])  # the cached splits may have been loaded for another config
    return _SPLITS[key]


def execute(task: Task) -> RunOutcome:
    """Train and evaluate one task (in this or a worker process); tuned when ``tune.enabled``.

    A tuned task selects its trial on validation (:func:`~iidfusion.training.tuning.tune_method`)
    and, when it has a run folder, retrains the selected configuration there (the same seeded
    run, now with its checkpoints and logs).
    """
    from iidfusion.training.run_key import data_identity
    from iidfusion.training.runner import fit_method, without_progress_bar
    from iidfusion.training.tuning import tune_method, with_params

    config, splits = without_progress_bar(task.config), _cached_splits(task.config, task.seed)
    noise_view = config.eval.noise_view
    if not config.tune.enabled:
        fit = fit_method(splits, task.method, task.seed, config, task.run_dir)
        results = [EvalResult(task.name, task.seed, m.noise, noise_view, m.accuracy, m.macro_f1) for m in fit.metrics]
        return RunOutcome(results, fit.best_val_acc, fit.best_val_loss, fit.epochs, fit.seconds, fit.is_global_zero)
    tuned = tune_method(splits, task.method, task.seed, config, data_id=data_identity(config.data))
    best = tuned.best
    if task.run_dir is not None:
        fit_method(splits, task.method, task.seed, with_params(config, best.params), task.run_dir)
    results = [EvalResult(task.name, task.seed, m["noise"], noise_view, m["accuracy"], m["macro_f1"]) for m in best.test]
    seconds = sum(trial.seconds for trial in tuned.trials)
    return RunOutcome(results, best.val_acc, best.val_loss, best.epochs, seconds, True, tuned.summary())


def run_tasks(
    tasks: Sequence[Task],
    jobs: int,
    on_done: Callable[[int, Task, RunOutcome], None] | None = None,
    execute_task: Callable[[Task], RunOutcome] | None = None,
) -> list[RunOutcome]:
    """``execute_task`` every task, ``jobs`` at a time in worker processes; outcomes in task order.

    ``on_done(k, task, outcome)`` is called as each finishes, in task order (k counts from 1).
    ``execute_task``: :func:`execute` (a fit on multi-view features; the default) or another task's runner,
    e.g. end-to-end training's (:func:`iidfusion.training.finetune.compare_end_to_end`); with
    ``jobs > 1`` it must pickle (a module-level function or a ``functools.partial`` of one).
    """
    execute_task = execute_task or execute
    outcomes: list[RunOutcome] = []
    if jobs == 1:
        for done, task in enumerate(tasks, start=1):
            outcomes.append(execute_task(task))
            if on_done is not None:
                on_done(done, task, outcomes[-1])
        return outcomes
    context = multiprocessing.get_context(START_METHOD)
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker) as pool:
        futures: list[Future[RunOutcome]] = [pool.submit(execute_task, task) for task in tasks]
        try:
            for done, (task, future) in enumerate(zip(tasks, futures), start=1):
                outcomes.append(future.result())
                if on_done is not None:
                    on_done(done, task, outcomes[-1])
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return outcomes


class Progress:
    """The job's progress: a bar over the tasks (:mod:`iidfusion.progress`; the task awaited next
    and the time left), and one line per finished task: what ran, its test accuracy, the time left.

    Call :meth:`close` when done (or use it as a context manager). ``bar=False``: the lines only.
    """

    def __init__(self, tasks: Sequence[Task], log: Callable[[str], None], *, bar: bool = True, description: str = "runs") -> None:
        from iidfusion.progress import progress_bar

        self.tasks, self.total, self.log, self.started = list(tasks), len(tasks), log, time.perf_counter()
        self.bar = progress_bar(self.total, description, enabled=bar and self.total > 0)
        self._show_next(0)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.bar.close()

    def _show_next(self, done: int) -> None:
        if done < self.total:
            task = self.tasks[done]
            self.bar.set_postfix_str(f"running {task.name} seed {task.seed}")

    def __call__(self, done: int, task: Task, outcome: RunOutcome) -> None:
        self.bar.update(1)
        self._show_next(done)
        if not outcome.is_global_zero:
            return
        accuracy = ", ".join(f"{r.noise:g}: {100 * r.accuracy:.2f}" for r in outcome.results)
        elapsed = time.perf_counter() - self.started
        left = elapsed / done * (self.total - done)
        chosen = ""
        if outcome.tuning is not None and outcome.tuning["chosen"]:
            params = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in outcome.tuning["chosen"].items())
            chosen = f", chose {params} of {len(outcome.tuning['trials'])} trials"
        line = (f"[{done}/{self.total}] {task.name} seed {task.seed}: test acc % by noise level {{{accuracy}}}, "
                f"{outcome.epochs} epochs, {outcome.seconds:.1f} s{chosen}; about {_duration(left)} left")
        with self.bar.external_write_mode(file=sys.stderr):
            self.log(line)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def comparison_tasks(config: ExperimentConfig, methods: Sequence[str], out: Path) -> list[Task]:
    """Every (seed, method) of a comparison, seed by seed; run folders under ``out/runs`` when the
    runs keep checkpoints or logs."""
    keep_runs = config.train.checkpoints or bool(config.train.loggers)
    return [
        Task(config, method, seed, out / "runs" / method / f"seed{seed}" if keep_runs else None)
        for seed in range(config.seeds)
        for method in methods
    ]


def cache_path(out: Path, key: str) -> Path:
    """Where a finished run of the job in ``out`` is kept (:func:`save_outcome`), by its run key."""
    return out / "cache" / f"{key}.json"


def save_outcome(path: Path, outcome: RunOutcome) -> None:
    """Atomically: a finished run is either in the cache whole or not at all."""
    from iidfusion.training.report import json_ready

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(json_ready(outcome.to_json()), handle)
    os.replace(tmp, path)


def load_outcome(path: Path) -> RunOutcome:
    """A run that :func:`save_outcome` kept; a damaged file is a ValueError saying to delete it."""
    try:
        payload = json.loads(path.read_text())
        return RunOutcome.from_json({k: number_or_nan(v) if k.startswith("val_") else v for k, v in payload.items()})
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"unreadable cached run {path} ({error}); delete it to run it again") from None


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
        load_outcome(cache_path(out, key)) if cache_path(out, key).is_file() else None for key in keys
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
                save_outcome(cache_path(out, keys[pending[count - 1]]), outcome)
            progress(count, task, outcome)

        for k, outcome in zip(pending, run_tasks([tasks[k] for k in pending], config.jobs, done, execute_task)):
            outcomes[k] = outcome
    finished = [outcome for outcome in outcomes if outcome is not None]
    comparison = _report(tasks, finished, config, out, title, record)
    if keep_finished and comparison.is_global_zero:
        shutil.rmtree(out / "cache", ignore_errors=True)
    return comparison


def _report(tasks: Sequence[Task], outcomes: Sequence[RunOutcome], config: ExperimentConfig, out: Path, title: str,
            record: dict[str, Any]) -> Comparison:  # fmt: skip
    is_global_zero = all(o.is_global_zero for o in outcomes)
    results = [r for o in outcomes for r in o.results]
    runs = [run_record(task, outcome) for task, outcome in zip(tasks, outcomes)]
    notes = (departures_sentence(config, dict.fromkeys(task.method for task in tasks)),)
    report = write_report(Path(out), results, record, title, runs=runs, notes=notes) if is_global_zero else ""
    return Comparison(results, report, is_global_zero)


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
