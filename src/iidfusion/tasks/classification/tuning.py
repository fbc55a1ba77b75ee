"""The paper's protocol: hyperparameters chosen per method and seed on the validation split.

The paper searched alpha in {1, 0.1, 0.01, 0.001} and beta on validation for every data set
(docs/method.md, "Tuning"). :func:`tune_method` does that for one method and one seed: every
point of the method's search space (:func:`search_space`) is one Optuna trial, a full
:func:`~iidfusion.engine.trainer.fit_method` scored by its best validation accuracy, and the
trial with the highest validation accuracy is selected (ties: the lower validation loss at that
epoch, then the earlier grid point). Its TEST metrics, recorded with every trial and never read
before the choice, are what the tuned run reports.

A grid only applies to the methods that have its hyperparameter (:data:`TUNABLE`), so a base
method is tuned on exactly the hyperparameters it shares with the IID methods (the learning rate,
when ``tune.lr`` is given) with the same budget, and not at all otherwise.

Trials live in an Optuna study. With ``tune.storage`` (``sqlite:///tune.db`` or any database
URL Optuna accepts), several processes or machines running the same command join the same
studies (the study name is the run's key, :mod:`iidfusion.tasks.classification.run_key`): each takes grid
points no other has started, every process waits for the others' running trials, and all of
them select the same trial (two that draw one point at once: the later gives way untrained).
A trial whose training diverges (non-finite loss) is recorded as
failed and never selected.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from iidfusion.core.progress import progress_bar
from iidfusion.data.features.base import DatasetSplits
from iidfusion.fusion.methods import get_method
from iidfusion.losses.informatic import VARIANTS
from iidfusion.tasks.classification.config import TUNABLE, ExperimentConfig, TuneConfig, load_config, search_space
from iidfusion.tasks.classification.fit import fit_method, without_progress_bar
from iidfusion.tasks.classification.run_key import run_key

SAMPLERS = ("grid", "tpe")
# How often a process waiting for other processes' trials looks again, in seconds.
_POLL_SECONDS = 2.0
_DUPLICATE = "duplicate"  # the user attribute of a trial that gave way to an earlier one


@dataclass(frozen=True)
class Trial:
    """One trained point of the search space and what it scored (accuracies in [0, 1])."""

    params: dict[str, Any]
    val_acc: float
    val_loss: float
    test: list[dict[str, Any]]  # [{"noise", "accuracy", "macro_f1", "confusion"}] per noise level
    best_epoch: int
    epochs: int
    seconds: float


@dataclass(frozen=True)
class TuneResult:
    """The selected trial of one method and seed, and every finished trial (grid order)."""

    method: str
    seed: int
    space: dict[str, tuple[Any, ...]]
    best: Trial
    trials: list[Trial]
    failed: int

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the choice, its validation score, and every trial."""
        return {
            "chosen": self.best.params,
            "val_acc": self.best.val_acc,
            "space": {k: list(v) for k, v in self.space.items()},
            "trials": [trial.__dict__ for trial in self.trials],
            "failed_trials": self.failed,
        }


def validate_tune_config(tune: TuneConfig) -> None:
    """Check the tuning options before any training starts (values, sampler, Optuna present)."""
    if tune.sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {tune.sampler!r}; expected one of {list(SAMPLERS)}")
    if tune.trials < 0:
        raise ValueError(f"trials must be >= 0, got {tune.trials}")
    for name in ("alpha", "lam", "beta", "lr"):
        values = getattr(tune, name)
        if any(not (math.isfinite(v) and v >= 0) for v in values) or (name == "lr" and any(v <= 0 for v in values)):
            raise ValueError(
                f"tune grid {name} must hold finite values {'> 0' if name == 'lr' else '>= 0'}, got {list(values)}"
            )
    for name in TUNABLE:
        values = getattr(tune, name)
        if len(set(values)) != len(values):
            raise ValueError(f"tune grid {name} repeats a value: {list(values)}")
    unknown = [v for v in tune.variant if v not in VARIANTS]
    if unknown:
        raise ValueError(f"tune grid variant: unknown L_ic reading {unknown[0]!r}; expected some of {list(VARIANTS)}")
    if any(d < 0 for d in tune.d1):
        raise ValueError(f"tune grid d1 must hold values >= 0 (0: automatic), got {list(tune.d1)}")
    if tune.enabled:
        optuna_module()


def optuna_module():  # -> the optuna module
    """Optuna, or a ValueError that says how to install it."""
    try:
        import optuna
    except ImportError:
        raise ValueError("tuning needs Optuna, an optional dependency: pip install 'iidfusion[tune]'") from None
    return optuna


def with_params(config: ExperimentConfig, params: Mapping[str, Any]) -> ExperimentConfig:
    """``config`` with the tuned hyperparameters set."""
    return load_config(overrides={TUNABLE[name][0]: value for name, value in params.items()}, base=config)


def _grid(space: Mapping[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [dict(zip(space, values, strict=True)) for values in itertools.product(*space.values())]


def _select(trials: list[Trial], grid: list[dict[str, Any]]) -> Trial:
    """Highest validation accuracy; ties: lower validation loss, then the earlier grid point."""
    order = {tuple(sorted(p.items())): k for k, p in enumerate(grid)}

    def rank(trial: Trial) -> tuple[float, float, int]:
        loss = trial.val_loss if math.isfinite(trial.val_loss) else math.inf
        return (-trial.val_acc, loss, order.get(tuple(sorted(trial.params.items())), len(order)))

    return min(trials, key=rank)


def tune_method(
    splits: DatasetSplits,
    method: str,
    seed: int,
    config: ExperimentConfig,
    *,
    data_id: str,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> TuneResult:
    """Train every trial of ``method`` with ``seed`` (module docstring) and select one on validation.

    ``progress``: draw a bar over the trials (:mod:`iidfusion.core.progress`; the trials' own fits draw none).
    """
    tune = config.tune
    config = without_progress_bar(config)
    space = search_space(tune, get_method(method))
    grid = _grid(space)
    if not space:  # nothing of this method is tuned: one plain fit, reported like a tuned one
        fit = fit_method(splits, method, seed, config)
        trial = Trial(
            {}, fit.best_val_acc, fit.best_val_loss, fit.test_metrics(), fit.best_epoch, fit.epochs, fit.seconds
        )
        return TuneResult(method, seed, space, trial, [trial], 0)
    optuna = optuna_module()
    budget = len(grid) if tune.sampler == "grid" or tune.trials == 0 else tune.trials
    sampler = (
        optuna.samplers.GridSampler({k: list(v) for k, v in space.items()}, seed=seed)
        if tune.sampler == "grid"
        else optuna.samplers.TPESampler(seed=seed)
    )
    storage = _storage(optuna, tune.storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=f"iidfusion-{run_key(config, method, seed, data_id)}",
        storage=storage,
        sampler=sampler,
        direction="maximize",
        load_if_exists=True,
    )

    bar = progress_bar(budget, f"tune {method} seed {seed}", enabled=progress, unit="trial")

    def objective(trial) -> float:
        params = {name: trial.suggest_categorical(name, list(values)) for name, values in space.items()}
        if _taken_by_earlier_trial(study, trial.number, params):
            # Two processes drew the same point at once: the later-numbered trial gives way untrained.
            trial.set_user_attr(_DUPLICATE, True)
            raise optuna.TrialPruned("a duplicate of an earlier trial")
        bar.set_postfix_str(", ".join(f"{k}={v}" for k, v in params.items()))
        try:
            fit = fit_method(splits, method, seed, with_params(config, params))
        except FloatingPointError as error:
            trial.set_user_attr("error", str(error))
            raise optuna.TrialPruned(str(error)) from None
        trial.set_user_attr(
            "result",
            {
                "val_loss": fit.best_val_loss,
                "test": fit.test_metrics(),
                "best_epoch": fit.best_epoch,
                "epochs": fit.epochs,
                "seconds": fit.seconds,
            },
        )
        bar.update(1)
        if log is not None:
            shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
            with bar.external_write_mode(file=sys.stderr):
                log(f"{method} seed {seed} trial {shown or '(defaults)'}: val acc {100 * fit.best_val_acc:.2f}%")
        return fit.best_val_acc

    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    started = finished + (optuna.trial.TrialState.RUNNING,)

    def cap(study, trial) -> None:
        if _distinct_points(study, started) >= budget:
            study.stop()

    with bar:
        if _distinct_points(study, finished) < budget:
            # Room for as many untrained duplicates as points (a sampler may also redraw a point).
            study.optimize(objective, n_trials=2 * budget, callbacks=[cap], catch=())
    while study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        time.sleep(_POLL_SECONDS)  # other processes' trials of a shared study
    trials = [_trial(t) for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    failed = _distinct_points(study, finished) - len(trials)
    if not trials:
        raise FloatingPointError(
            f"{method} seed {seed}: every tuning trial diverged (non-finite loss); try a smaller --lr"
        )
    order = {tuple(sorted(p.items())): k for k, p in enumerate(grid)}
    trials.sort(key=lambda t: order.get(tuple(sorted(t.params.items())), len(order)))
    return TuneResult(method, seed, space, _select(trials, grid), trials, failed)


def _distinct_points(study, states) -> int:
    """How many points of the space the study's trials in ``states`` cover, duplicates left out."""
    trials = study.get_trials(deepcopy=False, states=states)
    return len({tuple(sorted(t.params.items())) for t in trials if not t.user_attrs.get(_DUPLICATE)})


def _taken_by_earlier_trial(study, number: int, params: Mapping[str, Any]) -> bool:
    """Whether a lower-numbered trial, running or finished and not itself a duplicate, has ``params``."""
    return any(
        t.number < number and t.params == params and not t.user_attrs.get(_DUPLICATE)
        for t in study.get_trials(deepcopy=False)
    )


def _trial(frozen) -> Trial:
    result = frozen.user_attrs["result"]
    return Trial(
        params=dict(frozen.params),
        val_acc=float(frozen.value),
        val_loss=float(result["val_loss"]),
        test=result["test"],
        best_epoch=int(result["best_epoch"]),
        epochs=int(result["epochs"]),
        seconds=float(result["seconds"]),
    )


def _storage(optuna, url: str):
    """In memory, or a database shared by processes, with heartbeats so a dead process's trials fail."""
    if not url:
        return None
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=120)
    except Exception as error:  # SQLAlchemy raises many types for a bad URL or an unreachable server
        raise ValueError(f"cannot open the Optuna storage {url!r}: {str(error).splitlines()[0]}") from None
