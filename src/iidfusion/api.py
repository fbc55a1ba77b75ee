"""A whole run from Python: what ``iidfusion fit`` and ``iidfusion compare`` do, as functions.

:func:`fit` and :func:`compare` take their options the way the command line does: a
configuration (an :class:`~iidfusion.tasks.classification.config.ExperimentConfig` or the path
of a YAML file) and keyword arguments named as the flags (``max_epochs=10`` for
``--max-epochs 10``, ``alpha=0.1``, ``qmf_lam_rank=0.5``), with the same defaults, the same
checks and the same files written to the same folders. Each returns a result object that says
what ran and can save itself elsewhere. :func:`load_model` gives back the trained model of a
checkpoint of either task, and :func:`predict` its predictions for arrays in memory.

Data in memory: ``data=`` may be a mapping of view name -> array (numpy or torch, one row per
sample; an image per row as ``(N, H, W)`` is flattened) with ``labels=`` the array of labels
(and ``ids=`` the rows' ids). The arrays are written once to ``OUT/data-<hash>.npz``
(:func:`~iidfusion.data.features.multiview.save_arrays`) and the run reads that file, so that
every process of a run finds them, whatever ``jobs``, and its records name a file that holds them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from iidfusion.core.config import iter_options
from iidfusion.data.features.multiview import save_arrays
from iidfusion.engine.checkpoint import TrainedModel, check_finite_weights, read_checkpoint
from iidfusion.engine.outputs import check_output_folder, is_run_folder, run_folder
from iidfusion.engine.trainer import quiet_lightning
from iidfusion.tasks.classification.checkpoint import trained_fusion_model
from iidfusion.tasks.classification.compare import (
    check_resume,
    finished_runs,
    run_comparison,
)
from iidfusion.tasks.classification.config import (
    ExperimentConfig,
    config_to_dict,
    load_config,
    resolve_methods,
)
from iidfusion.tasks.classification.departures import departures_from_paper
from iidfusion.tasks.classification.fit import FitResult, fit_method, run_summary, save_run
from iidfusion.tasks.classification.module import FusionModule
from iidfusion.tasks.classification.predict import Predictions, predict_views
from iidfusion.tasks.classification.report import Confusion, EvalResult, write_report
from iidfusion.tasks.classification.run_key import data_identity
from iidfusion.tasks.classification.tuning import FinalFitClaim, claim_final_fit, tune_method, with_params
from iidfusion.tasks.classification.validation import load_splits, validate_config
from iidfusion.tasks.kg.checkpoint import CHECKPOINT_NAME, is_kg_checkpoint, is_kg_training_checkpoint, trained_kg_model

__all__ = [
    "CompareRun",
    "FitRun",
    "Predictions",
    "compare",
    "experiment_config",
    "fit",
    "fit_run_dir",
    "load_model",
    "predict",
]


def experiment_config(config: ExperimentConfig | str | Path | None = None, **options: Any) -> ExperimentConfig:
    """The configuration of a run: the defaults, or ``config`` (a configuration, or a YAML file as
    ``--config`` reads it), then ``options`` named as the flags (``max_epochs=10``, ``alpha=0.1``,
    ``qmf_lam_rank=0.5``, ``tune=True``); an unknown name is a ValueError listing the known ones.
    """
    base = config if isinstance(config, ExperimentConfig) else None
    path = None if isinstance(config, ExperimentConfig) or config is None else config
    keys = {option.flag.removeprefix("--").replace("-", "_"): option.key for option in iter_options(ExperimentConfig())}
    unknown = sorted(set(options) - set(keys))
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r}; known options: {', '.join(sorted(keys))}")
    return load_config(path, {keys[name]: value for name, value in options.items()}, base=base)


@dataclass(frozen=True)
class _Arrays:
    """Views, labels and ids given in memory (``data=`` a mapping), to be written to a file."""

    views: Mapping[str, Any]
    labels: Any
    ids: Any

    def on_file(self, config: ExperimentConfig, folder: Path) -> ExperimentConfig:
        """``config`` reading these arrays from the file :func:`save_arrays` writes to ``folder``."""
        _, options = save_arrays(folder, self.views, self.labels, ids=self.ids)
        return replace(config, **options)


def _arrays_in(options: dict[str, Any]) -> _Arrays | None:
    """The arrays of ``data=`` (a mapping of views), taken out of ``options`` with ``labels`` and ``ids``."""
    if not isinstance(options.get("data"), Mapping):
        if "ids" in options or not isinstance(options.get("labels", ""), str):
            raise ValueError("labels= as an array (and ids=) go with data= as a mapping of view name -> array")
        return None
    views, labels, ids = options.pop("data"), options.pop("labels", None), options.pop("ids", None)
    if labels is None or isinstance(labels, str):
        raise ValueError("data= as a mapping of views needs labels= as an array, one label per row")
    return _Arrays(views, labels, ids)


def fit_run_dir(config: ExperimentConfig) -> Path:
    """Where :func:`fit` trains ``config.method`` with ``config.seed``: ``OUT/METHOD/seedK``."""
    (method,) = resolve_methods((config.method,))
    return Path(config.out) / method / f"seed{config.seed}"


@dataclass
class FitRun:
    """A finished :func:`fit`: the run's configuration (with the tuned hyperparameters, when
    tuned), its data set's name, the fit (:class:`~iidfusion.tasks.classification.fit.FitResult`:
    test metrics per noise level, best validation accuracy, epochs, time), the tuning trials, and
    the folder it trained in (checkpoints, logs, metrics.json, config.yaml).

    In a tuning shared by several processes (``tune.storage``) one process trains the final
    model; in the others ``result`` is None and ``trained_by`` says which process trains it, into
    which folder.
    """

    config: ExperimentConfig
    data: str
    result: FitResult | None
    tuning: dict[str, Any] | None
    run_dir: Path
    trained_by: FinalFitClaim | None = None

    @property
    def departures(self) -> list[str]:
        """Where the run's settings depart from the paper's method (docs/method.md)."""
        return [str(d) for d in departures_from_paper(self.config, resolve_methods((self.config.method,)))]

    def summary(self) -> dict[str, Any]:
        """What metrics.json holds: the data, the fit, the tuning, the departures, the provenance."""
        return run_summary(self.config, self.data, self.trained(), self.tuning)

    def save(self, folder: str | Path) -> list[Path]:
        """Write metrics.json and config.yaml to ``folder``, together."""
        return save_run(folder, self.config, self.data, self.trained(), self.tuning)

    def trained(self) -> FitResult:
        """The fit; a ValueError where another process of a shared tuning trains the final model."""
        if self.result is None:
            raise ValueError(f"the final model of this tuning is trained by {self.trained_by}, not by this process")
        return self.result


def fit(
    config: ExperimentConfig | str | Path | None = None,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
    **options: Any,
) -> FitRun:
    """Train ``method`` with ``seed`` on ``data`` (``iidfusion fit``): tuned first on validation
    when ``tune``, trained into ``OUT/METHOD/seedK`` (:func:`fit_run_dir`), which receives its
    checkpoints, logs, metrics.json and config.yaml; evaluated on the test split with the weights
    of the best validation epoch. With ``tune`` and a shared ``storage``, processes started
    together (a job array) share the trials and exactly one trains the final model: the others
    return a :class:`FitRun` whose ``trained_by`` names it
    (:func:`~iidfusion.tasks.classification.tuning.claim_final_fit`).

    ``config`` and ``options``: :func:`experiment_config`; ``data=`` may be arrays in memory, a
    mapping of view name -> array with ``labels=`` an array (module docstring), kept in
    ``OUT/data-<hash>.npz``. ``resume``: a checkpoint to continue from, ``"last"`` for the run's
    own last one. ``overwrite``: replace a previous run in the run folder (once the new one
    succeeded). ``log``: a line per tuning trial.
    """
    arrays = _arrays_in(options)
    config = experiment_config(config, **options)
    methods = resolve_methods((config.method,))
    if len(methods) != 1:
        raise ValueError(f"fit trains one method; {config.method!r} names {len(methods)} (use `iidfusion compare`)")
    validate_config(config)
    if resume is not None and overwrite:
        raise ValueError("--resume continues the run in the output folder and --overwrite replaces it: give one")
    out = Path(config.out)
    check_output_folder(out, shared=True)
    if is_run_folder(out):  # the folder of one run (a comparison's, a demo's): fit's runs would mix with it
        raise ValueError(
            f"--out {out} is the folder of one run of iidfusion; fit's --out holds a folder per method and seed: "
            "choose another"
        )
    run_dir = fit_run_dir(config)
    shared = config.tune.enabled and bool(config.tune.storage)  # a tuning other processes may share
    data_id = data_identity(config.data)
    if shared:
        holder = claim_final_fit(config, methods[0], config.seed, data_id, run_dir, claim=False)
        if holder is not None:  # the tuning is over: another process trains (or trained) the final model
            return FitRun(config, Path(config.data).stem, None, None, run_dir, trained_by=holder)
    check_output_folder(run_dir, name=f"the run folder {run_dir}", overwrite=overwrite, resume=resume is not None)
    if arrays is not None:
        config = arrays.on_file(config, out)
    last = last_checkpoint(run_dir)
    resume = last if resume == "last" else resume
    if config.tune.enabled and resume is not None:
        raise ValueError("--resume continues one fit; it cannot be combined with --tune")
    splits = load_splits(config, config.seed)
    quiet_lightning()

    def tuned(config: ExperimentConfig) -> tuple[ExperimentConfig, dict[str, Any] | None]:
        if not config.tune.enabled:
            return config, None
        tuning = tune_method(
            splits, methods[0], config.seed, config, data_id=data_id, log=log, progress=config.train.progress_bar
        )
        return with_params(config, tuning.best.params), tuning.summary()

    if shared:  # tuned outside the run folder, which only the process that wins the final fit writes
        chosen, tuning = tuned(config)
        holder = claim_final_fit(config, methods[0], config.seed, data_id, run_dir)
        if holder is not None:
            return FitRun(chosen, splits.name, None, tuning, run_dir, trained_by=holder)
        check_output_folder(run_dir, name=f"the run folder {run_dir}", overwrite=overwrite, resume=False)
    with run_folder(run_dir, overwrite=overwrite, resumable=lambda folder: last_checkpoint(folder).is_file()):
        if not shared:
            chosen, tuning = tuned(config)
        result = fit_method(splits, methods[0], chosen.seed, chosen, run_dir, resume=resume)
        run = FitRun(chosen, splits.name, result, tuning, run_dir)
        if result.is_global_zero:
            run.save(run_dir)
    return run


def last_checkpoint(run_dir: Path) -> Path:
    """The last checkpoint of the run in ``run_dir`` (what ``resume="last"`` continues)."""
    return run_dir / "checkpoints" / "last.ckpt"


@dataclass
class CompareRun:
    """A finished :func:`compare`: its configuration, every evaluation (method, seed, noise level),
    the markdown report, the folder holding its result files, and per method the test predictions
    pooled over seeds (``confusions``).
    """

    config: ExperimentConfig
    results: list[EvalResult]
    report: str
    out: Path
    is_global_zero: bool = True
    confusions: list[Confusion] = field(default_factory=list)

    def save(self, folder: str | Path, *, title: str = "comparison") -> str:
        """Write the result files of these results to ``folder`` (results.csv, .json, .md, .tex, the
        plot, the per-class metrics; the runs' validation records stay in the run's own
        results.json); returns the report.
        """
        return write_report(folder, self.results, config_to_dict(self.config), title, confusions=self.confusions)


def compare(
    config: ExperimentConfig | str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
    **options: Any,
) -> CompareRun:
    """Train every method of ``methods`` with seeds 0..seeds-1 on ``data``, evaluate each on the
    test split clean and under noise, and write results.{csv,json,md} and the plot to ``out``
    (``iidfusion compare``).

    ``config`` and ``options``: :func:`experiment_config`; ``data=`` may be arrays in memory, a
    mapping of view name -> array with ``labels=`` an array (module docstring), kept in
    ``OUT/data-<hash>.npz``, with any ``jobs``. ``resume``: continue the comparison that stopped
    half way in ``out`` (its finished runs are kept there as they finish). ``overwrite``: replace
    a previous comparison in ``out`` once the new one is done. ``log``: the departures from the
    paper, then a line per finished run.
    """
    arrays = _arrays_in(options)
    config = experiment_config(config, **options)
    if resume and overwrite:
        raise ValueError("--resume continues the comparison in the output folder and --overwrite replaces it: give one")
    out = Path(config.out)
    check_output_folder(out, overwrite=overwrite, resume=resume, resume_flag="--resume")
    check_resume(out, resume)
    quiet_lightning()
    with run_folder(out, overwrite=overwrite, resumable=lambda folder: finished_runs(folder) > 0, keep_on_failure=True):
        if arrays is not None:
            config = arrays.on_file(config, out)
        comparison = run_comparison(config, out, log=log, resume=resume)
    return CompareRun(
        config, comparison.results, comparison.report, out, comparison.is_global_zero, comparison.confusions
    )


def load_model(path: str | Path, *, flag: str = "checkpoint") -> TrainedModel:
    """The trained model saved at ``path`` by ``iidfusion fit`` (``checkpoints/best.ckpt``) or
    ``iidfusion kg fit`` (``model.ckpt``), in evaluation mode on the CPU, with its configuration.

    ``flag`` names the file in messages (a CLI passes its option, e.g. ``--checkpoint``).
    A file that is missing, unreadable, or not such a checkpoint is a ValueError / OSError.
    """
    state = read_checkpoint(path, flag)
    where = f"{flag} {path}"
    if is_kg_checkpoint(state):
        trained = trained_kg_model(state, where)
        check_finite_weights(trained.model.state_dict(), where)
        return trained
    if is_kg_training_checkpoint(state):
        raise ValueError(
            f"{where}: a training checkpoint of `iidfusion kg fit` (for --resume); "
            f"the trained model is the run's {CHECKPOINT_NAME}"
        )
    return trained_fusion_model(FusionModule.from_checkpoint_state(state, where))


def predict(
    model: TrainedModel | str | Path,
    views: Mapping[str, Any],
    *,
    batch_size: int = 1024,
) -> Predictions:
    """The predictions of a model of ``iidfusion fit`` (a :func:`load_model` result or the path of
    its checkpoint) for every row of ``views``: arrays or tensors by view name, raw as in the data
    it was trained on (scaled here with the scaling of its training split, which the checkpoint
    stores; an image per row flattened as in training), the model's views and widths.

    Returns :class:`~iidfusion.tasks.classification.predict.Predictions`: ``probabilities`` (N, C)
    over ``classes``, ``predicted`` indices and ``labels`` (class names), ``weights`` (N, M), the
    fusion weight of each view, row by row in the order given.
    """
    trained = model if isinstance(model, TrainedModel) else load_model(model)
    return predict_views(trained, views, batch_size=batch_size)
