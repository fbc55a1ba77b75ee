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
weight decay and L2 penalty, when their grids are given) with the same budget, and not at all otherwise.

Trials live in an Optuna study. With ``tune.storage`` (``sqlite:///tune.db`` or any database
URL Optuna accepts), several processes or machines running the same command join the same
studies (the study name is the run's key, :mod:`iidfusion.tasks.classification.run_key`): each takes grid
points no other has started, every process waits for the others' running trials, and all of
them select the same trial (two that draw one point at once: the later gives way untrained).
A trial whose training diverges (non-finite loss) is recorded as
failed and never selected. Creating the storage and the study is safe when many processes start
at the same instant (a job array): the races of a fresh database (two processes creating its
tables) are retried (:func:`open_study`). Once the trials are done, exactly one process trains
the final model (:func:`claim_final_fit`): each process records a claim in the study, the
earliest live claim wins, and the others say where the final model is.

``tune.pruner`` (``median``, ``hyperband``; :data:`PRUNERS`) stops a trial whose validation
accuracy, reported at every epoch, falls behind the other trials' at the same epoch; a pruned
trial is recorded (the epoch it stopped at) and never selected.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import socket
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iidfusion.core.progress import progress_bar
from iidfusion.data.features.base import DatasetSplits
from iidfusion.engine.outputs import run_state
from iidfusion.engine.results import format_params
from iidfusion.engine.trainer import ValidationObserver
from iidfusion.fusion.methods import get_method
from iidfusion.losses.informatic import VARIANTS
from iidfusion.tasks.classification.config import TUNABLE, ExperimentConfig, TuneConfig, load_config, search_space
from iidfusion.tasks.classification.fit import fit_method, without_progress_bar
from iidfusion.tasks.classification.run_key import run_key

SAMPLERS = ("grid", "tpe")
# Optuna's pruners by name, built for a number of epochs: the median rule once two trials have
# finished, from the second epoch on; Hyperband's successive halving over 1..max epochs.
PRUNERS: dict[str, Callable[[Any, int], Any]] = {
    "none": lambda optuna, epochs: optuna.pruners.NopPruner(),
    "median": lambda optuna, epochs: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    "hyperband": lambda optuna, epochs: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1)),
}
# How often a process waiting for other processes' trials looks again, in seconds.
_POLL_SECONDS = 2.0
_DUPLICATE = "duplicate"  # the user attribute of a trial that gave way to an earlier one
_PRUNED = "pruned_at_epoch"  # the user attribute of a trial the pruner stopped
_CLAIM = "final_fit"  # the user attribute of a process's claim to train the final model (not a trial)
# Tries at creating a fresh database's tables and the study while other processes do the same.
_OPEN_TRIES = 20


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

    pruned: int = 0

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the choice, its validation score, every trial, and the failed and pruned ones."""
        return {
            "chosen": self.best.params,
            "val_acc": self.best.val_acc,
            "space": {k: list(v) for k, v in self.space.items()},
            "trials": [trial.__dict__ for trial in self.trials],
            "failed_trials": self.failed,
            "pruned_trials": self.pruned,
        }


def validate_tune_config(tune: TuneConfig) -> None:
    """Check the tuning options before any training starts (values, sampler, Optuna present)."""
    if tune.sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {tune.sampler!r}; expected one of {list(SAMPLERS)}")
    if tune.trials < 0:
        raise ValueError(f"trials must be >= 0, got {tune.trials}")
    for name in ("alpha", "lam", "beta", "lr", "weight_decay", "l2"):
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
    pruner = PRUNERS[tune.pruner](optuna, config.train.max_epochs)
    study = open_study(config, method, seed, data_id, sampler=sampler, pruner=pruner)

    bar = progress_bar(budget, f"tune {method} seed {seed}", enabled=progress, unit="trial")

    def objective(trial) -> float:
        params = {name: trial.suggest_categorical(name, list(values)) for name, values in space.items()}
        if _taken_by_earlier_trial(study, trial.number, params):
            # Two processes drew the same point at once: the later-numbered trial gives way untrained.
            trial.set_user_attr(_DUPLICATE, True)
            raise optuna.TrialPruned("a duplicate of an earlier trial")
        bar.set_postfix_str(", ".join(f"{k}={v}" for k, v in params.items()))
        shown = format_params(params)
        try:
            fit = fit_method(splits, method, seed, with_params(config, params), callbacks=[ReportToTrial(trial)])
        except FloatingPointError as error:
            trial.set_user_attr("error", str(error))
            raise optuna.TrialPruned(str(error)) from None
        except optuna.TrialPruned:
            bar.update(1)
            if log is not None:
                with bar.external_write_mode(file=sys.stderr):
                    epoch = trial.user_attrs.get(_PRUNED)
                    log(f"{method} seed {seed} trial {shown or '(defaults)'}: pruned after epoch {epoch}")
            raise
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
    pruned = len({tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False) if _PRUNED in t.user_attrs})
    failed = _distinct_points(study, finished) - len(trials) - pruned
    if not trials:
        raise FloatingPointError(
            f"{method} seed {seed}: every tuning trial diverged (non-finite loss) or was pruned; try a smaller --lr"
            + (f" or --pruner none than {tune.pruner}" if pruned else "")
        )
    order = {tuple(sorted(p.items())): k for k, p in enumerate(grid)}
    trials.sort(key=lambda t: order.get(tuple(sorted(t.params.items())), len(order)))
    return TuneResult(method, seed, space, _select(trials, grid), trials, failed, pruned)


def _is_point(trial) -> bool:
    """Whether a trial of the study trains a point of the space (not a duplicate, not a claim)."""
    return not trial.user_attrs.get(_DUPLICATE) and _CLAIM not in trial.user_attrs


def _distinct_points(study, states) -> int:
    """How many points of the space the study's trials in ``states`` cover, duplicates left out."""
    trials = study.get_trials(deepcopy=False, states=states)
    return len({tuple(sorted(t.params.items())) for t in trials if _is_point(t)})


def _taken_by_earlier_trial(study, number: int, params: Mapping[str, Any]) -> bool:
    """Whether a lower-numbered trial, running or finished and not itself a duplicate, has ``params``."""
    return any(t.number < number and t.params == params and _is_point(t) for t in study.get_trials(deepcopy=False))


class ReportToTrial(ValidationObserver):
    """Reports the module's validation score (its ``monitor``, validation accuracy) to an Optuna
    trial after every validation epoch, and stops the fit (``optuna.TrialPruned``) when the
    study's pruner says so; the epoch it stopped at is recorded on the trial. Either training loop
    runs it (:class:`~iidfusion.engine.trainer.ValidationObserver`).
    """

    def __init__(self, trial: Any) -> None:
        self.trial = trial

    def after_validation(
        self, epoch: int, scores: Mapping[str, float], monitor: str, agree: Callable[[Any], Any] = lambda x: x
    ) -> None:
        if monitor not in scores:
            return
        self.trial.report(scores[monitor], step=epoch)
        if bool(agree(self.trial.should_prune())):  # every process stops, or none
            optuna = optuna_module()
            self.trial.set_user_attr(_PRUNED, epoch + 1)
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")


def open_study(config: ExperimentConfig, method: str, seed: int, data_id: str, *, sampler=None, pruner=None):
    """The study of ``method`` and ``seed`` (named by the run's key) in ``config.tune.storage``,
    created or joined. Many processes may do this at the same instant on a fresh database: the
    errors of that race (two processes creating the same tables or study) are retried.
    """
    optuna = optuna_module()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = f"iidfusion-{run_key(config, method, seed, data_id)}"
    racing = _race_errors(optuna)
    for attempt in range(_OPEN_TRIES):
        try:
            return optuna.create_study(
                study_name=name,
                storage=_storage(optuna, config.tune.storage),
                sampler=sampler,
                pruner=pruner,
                direction="maximize",
                load_if_exists=True,
            )
        except racing:
            if attempt == _OPEN_TRIES - 1:
                raise
            time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))  # another process is creating the same
    raise AssertionError("unreachable")


def _race_errors(optuna) -> tuple[type[BaseException], ...]:
    """What creating a study raises when another process creates the same tables or study at once."""
    errors: list[type[BaseException]] = [optuna.exceptions.DuplicatedStudyError]
    try:
        from sqlalchemy.exc import IntegrityError, OperationalError  # with Optuna's storages
    except ImportError:
        return tuple(errors)
    return (*errors, IntegrityError, OperationalError)


@dataclass(frozen=True)
class FinalFitClaim:
    """Which process trains the final model of a shared tuning, into which folder."""

    pid: int
    host: str
    folder: str

    def __str__(self) -> str:
        return f"process {self.pid} on {self.host}, into {self.folder}"


def claim_final_fit(
    config: ExperimentConfig, method: str, seed: int, data_id: str, folder: Path, *, claim: bool = True
) -> FinalFitClaim | None:
    """Decide which process of a shared tuning (``config.tune.storage``) trains the final model:
    with ``claim``, this process records its claim in the study; the earliest claim that is not
    stale wins. None when this process wins (it trains into ``folder``), else the winner's claim.
    Without ``claim``, only whether another process has already won (None: no one yet).

    A claim is stale when its process, on this machine, is gone without having finished the run
    (its folder is not a finished run): a killed winner does not keep the final model from being
    trained. A claim of another machine is never judged stale.
    """
    optuna = optuna_module()
    study = open_study(config, method, seed, data_id, sampler=optuna.samplers.RandomSampler(seed=seed))
    mine = None
    if claim:
        with warnings.catch_warnings():  # a claim is no trial that runs: nothing to beat the heart of
            warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
            trial = study.ask()
        mine = trial.number
        trial.set_user_attr(_CLAIM, {"pid": os.getpid(), "host": socket.gethostname(), "folder": str(folder)})
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    claims = sorted((t for t in study.get_trials(deepcopy=False) if _CLAIM in t.user_attrs), key=lambda t: t.number)
    for trial in claims:
        if trial.number == mine:
            return None
        holder = FinalFitClaim(**trial.user_attrs[_CLAIM])
        if not _stale(holder):
            return holder
    return None


def _stale(claim: FinalFitClaim) -> bool:
    if claim.host != socket.gethostname() or _alive(claim.pid):
        return False
    return run_state(claim.folder) != "done"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine exists (where that cannot be asked: assumed so)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, ValueError):
        return True
    return True


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
    """In memory, or a database shared by processes, with heartbeats so a dead process's trials fail
    (SQLite waits up to a minute for a lock another process holds). The errors of processes
    creating a fresh database at once are left to :func:`open_study`, which retries.
    """
    if not url:
        return None
    options = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats
            return optuna.storages.RDBStorage(url, engine_kwargs=options, heartbeat_interval=30, grace_period=120)
    except _race_errors(optuna):
        raise
    except Exception as error:  # SQLAlchemy raises many types for a bad URL or an unreachable server
        raise ValueError(f"cannot open the Optuna storage {url!r}: {str(error).splitlines()[0]}") from None
