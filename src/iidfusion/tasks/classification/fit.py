"""Train one method with one seed on one data set, then evaluate it (what ``iidfusion fit`` runs).

The model is initialised after ``lightning.seed_everything(seed)``, the training order is a pure
function of (seed, epoch) (:mod:`~iidfusion.tasks.classification.data`), and the engine reseeds
every generator before each batch (:class:`~iidfusion.engine.trainer.ReseedEachBatch`), so a run
resumed from its last checkpoint ends with the same model as an uninterrupted one. Evaluation
uses the weights of the epoch with the best validation accuracy
(:class:`~iidfusion.engine.trainer.BestWeights`, in memory and in the checkpoint, so it
survives a resume). A resume is refused for a checkpoint of another run
(:func:`check_resume`: other settings but :data:`RESUMABLE_CHANGES`, or other data).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from iidfusion.core.config import iter_options
from iidfusion.core.provenance import provenance
from iidfusion.data.features.base import DatasetSplits
from iidfusion.engine import resume as resume_checks
from iidfusion.engine.plain_loop import choose_loop, fit_plain, plain_device, plain_loop_blocker
from iidfusion.engine.results import json_text, rounded, write_files
from iidfusion.engine.resume import RunRecord, data_digest
from iidfusion.engine.trainer import (
    BestWeights,
    ValidationObserver,
    build_trainer,
    fit_interruptible,
    recover_spawned_run,
    spawns_processes,
    trainer_device,
)
from iidfusion.fusion.methods import get_method
from iidfusion.fusion.model import FusionModel
from iidfusion.tasks.classification.config import ExperimentConfig, TrainConfig, dump_config
from iidfusion.tasks.classification.data import MultiViewDataModule
from iidfusion.tasks.classification.departures import departures_from_paper
from iidfusion.tasks.classification.evaluate import NoiseMetrics, evaluate_under_noise
from iidfusion.tasks.classification.module import FusionModule

# Options a resumed run may change: how long and where it trains, what it logs, and the
# evaluation after training. Any other change would continue a different run.
RESUMABLE_CHANGES = frozenset(
    {
        "data",
        "out",
        "method",
        "seed",
        "methods",
        "seeds",
        "jobs",
        "datasets",
        "variants",
        "train.max_epochs",
        "train.accelerator",
        "train.devices",
        "train.num_nodes",
        "train.strategy",
        "train.num_workers",
        "train.threads",
        "train.progress_bar",
        "train.loop",
        "train.checkpoints",
        "train.loggers",
        "train.monitor_distances",
        "train.monitor_samples",
        "eval.noise",
        "eval.noise_view",
        "eval.noise_kind",
        "eval.noise_mask",
    }
)


def check_resume(path: str | Path, method: str, seed: int, config: ExperimentConfig, splits: DatasetSplits) -> None:
    """Refuse to resume from ``path`` unless it is a checkpoint of ``iidfusion fit`` of this very
    run: the same method and seed, the same settings (but :data:`RESUMABLE_CHANGES` and the
    options of the strategies the method does not use) and the same data (by digest).
    """
    own_strategy = f"strategy.{get_method(method).strategy}."
    options = (
        option
        for option in iter_options(config)
        # another strategy's options: the method never reads them
        if not option.key.startswith("strategy.") or option.key.startswith(own_strategy)
    )
    resume_checks.check_resume(
        path,
        command="iidfusion fit",
        method=method,
        seed=seed,
        options=options,
        resumable=RESUMABLE_CHANGES,
        digest=splits_digest(splits),
        other_data=f"other data than --data {config.data} "
        "(the splits' digest differs: another file, other content, or another seed's split)",
    )


def splits_digest(splits: DatasetSplits) -> str:
    """The data digest (:func:`~iidfusion.engine.resume.data_digest`) of every split's views
    (names, shapes, values) and labels, as trained on.
    """
    pieces: list[str | Tensor | tuple[str, Tensor]] = []
    for part in (splits.train, splits.val, splits.test):
        pieces += [*part.views.items(), part.labels]
    return data_digest(pieces)


def early_stopping(train: TrainConfig) -> dict[str, Any]:
    """The early-stopping arguments of either loop (:func:`~iidfusion.engine.trainer.build_trainer`,
    :func:`~iidfusion.engine.plain_loop.fit_plain`).
    """
    return {"patience": train.patience, "stop_on": train.stop_on, "min_epochs": train.min_epochs}


def trainer_options(train: TrainConfig) -> dict[str, Any]:
    """The keyword arguments of :func:`~iidfusion.engine.trainer.build_trainer` that only this
    task's training section has: early stopping and precision.
    """
    return early_stopping(train) | {"precision": train.precision}


@dataclass
class FitResult:
    """One trained method: its test metrics per noise level and how training went."""

    method: str
    seed: int
    metrics: list[NoiseMetrics]
    best_val_acc: float
    best_val_loss: float
    best_epoch: int
    epochs: int
    seconds: float
    is_global_zero: bool
    module: FusionModule  # with the weights of the last epoch
    device: str = "cpu"  # what it trained on, e.g. "cpu, 2 processes" (for the run's provenance)

    @classmethod
    def collect(
        cls,
        module: FusionModule,
        best: BestWeights,
        metrics: list[NoiseMetrics],
        seed: int,
        started: float,
        *,
        epochs: int,
        device: str,
        is_global_zero: bool = True,
    ) -> FitResult:
        """The result of a finished fit (``started``: its ``time.perf_counter()``; ``epochs``: those
        trained; ``device``: as :func:`~iidfusion.engine.trainer.trainer_device` says it).
        """
        return cls(
            method=module.spec.name,
            seed=seed,
            metrics=metrics,
            best_val_acc=best.best_score if best.best_score is not None else float("nan"),
            best_val_loss=best.best_loss if best.best_loss is not None else float("nan"),
            best_epoch=best.best_epoch,
            epochs=epochs,
            seconds=time.perf_counter() - started,
            is_global_zero=is_global_zero,
            module=module,
            device=device,
        )

    @classmethod
    def after_trainer(
        cls,
        module: FusionModule,
        trainer: L.Trainer,
        best: BestWeights,
        metrics: list[NoiseMetrics],
        seed: int,
        started: float,
        epochs: int | None = None,
    ) -> FitResult:
        """:meth:`collect` after ``trainer.fit`` (``epochs``: those trained, when the trainer of this
        process did not count them).
        """
        return cls.collect(
            module,
            best,
            metrics,
            seed,
            started,
            epochs=trainer.current_epoch if epochs is None else epochs,
            device=trainer_device(trainer),
            is_global_zero=trainer.is_global_zero,
        )

    def summary(self) -> dict[str, Any]:
        """A JSON-ready dict of everything but the module."""
        return {
            "method": self.method,
            "seed": self.seed,
            "best_val_acc": self.best_val_acc,
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "epochs": self.epochs,
            "seconds": self.seconds,
            "test": self.test_metrics(),
        }

    def test_metrics(self) -> list[dict[str, Any]]:
        """Per noise level: accuracy, macro-F1 and the confusion matrix (:meth:`NoiseMetrics.as_dict`)."""
        return [m.as_dict() for m in self.metrics]


def run_summary(
    config: ExperimentConfig, data: str, result: FitResult, tuning: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What a run folder's metrics.json holds: the data set's name, the fit (:meth:`FitResult.summary`),
    the tuning when tuned, the departures from the paper (docs/method.md) and the provenance.
    """
    summary = {"data": data, **result.summary()} | ({"tuning": tuning} if tuning is not None else {})
    summary["departures_from_paper"] = [str(d) for d in departures_from_paper(config, (result.method,))]
    return summary | provenance(config, device=result.device)


def save_run(
    folder: str | Path,
    config: ExperimentConfig,
    data: str,
    result: FitResult,
    tuning: dict[str, Any] | None = None,
) -> list[Path]:
    """Write metrics.json (:func:`run_summary`, rounded for people) and config.yaml (``config``, the
    run's method and seed set) to ``folder``, together: every run folder of ``fit`` and ``compare``.
    """
    config = dataclasses.replace(config, method=result.method, seed=result.seed)
    texts = {
        "metrics.json": json_text(rounded(run_summary(config, data, result, tuning))),
        "config.yaml": dump_config(config),
    }
    return write_files(folder, texts)


def without_progress_bar(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` for a fit inside a multi-run job, which draws the job's one bar instead."""
    return dataclasses.replace(config, train=dataclasses.replace(config.train, progress_bar=False))


def fit_method(
    splits: DatasetSplits,
    method: str,
    seed: int,
    config: ExperimentConfig,
    run_dir: Path | None = None,
    *,
    resume: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
) -> FitResult:
    """Train ``method`` with ``seed`` on ``splits`` and evaluate it on the test split.

    ``run_dir`` receives checkpoints and logs (none when ``None``); ``resume`` is a
    checkpoint (e.g. ``run_dir/checkpoints/last.ckpt``) to continue from; ``callbacks``: more
    Lightning callbacks of the caller (e.g. tuning's pruning). ``train.loop`` picks Lightning's
    loop or the plain one (:mod:`iidfusion.engine.plain_loop`), which runs the same fit faster
    where nothing of Lightning's is needed.
    """
    digest = splits_digest(splits)
    if resume is not None:
        check_resume(resume, method, seed, config, splits)
    start = time.perf_counter()
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
    L.seed_everything(seed, workers=True, verbose=False)
    module = FusionModule.for_feature_views(
        method,
        splits.view_dims,
        splits.num_classes,
        len(splits.train),
        config,
        seed=seed,
        class_names=splits.class_names,
        scaler=splits.scaler,
    )
    data = MultiViewDataModule(
        splits, batch_size=config.train.batch_size, seed=seed, num_workers=config.train.num_workers
    )
    best = BestWeights(module.monitor)
    train = config.train
    blocker = plain_loop_blocker(
        train,
        run_dir=run_dir,
        resume=resume,
        callbacks=callbacks,
        precision=train.precision,
        num_workers=train.num_workers,
    )
    description = f"{method} seed {seed}"
    trainer: L.Trainer | None = None
    if choose_loop(train.loop, blocker) == "plain":
        plain = fit_plain(
            module,
            data,
            best,
            device=cast(torch.device, plain_device(train)),
            seed=seed,
            max_epochs=train.max_epochs,
            progress=train.progress_bar,
            description=description,
            observers=cast(Sequence[ValidationObserver], callbacks),  # all of them: plain_loop_blocker
            **early_stopping(train),
        )
    else:
        trainer = build_trainer(
            train,
            run_dir,
            seed,
            best,
            record=RunRecord(method, seed, digest),
            description=description,
            callbacks=callbacks,
            **trainer_options(train),
        )
        fit_interruptible(trainer, module, data, resume)
    epochs = None
    if trainer is not None and spawns_processes(train.strategy):  # trained in child processes: what rank 0 saved
        epochs = recover_spawned_run(run_dir, module, best)
    evaluation = config.eval
    metrics = evaluate_under_noise(
        cast(FusionModel, best.best_model(module, trainer)),
        splits,
        evaluation.noise,
        view=evaluation.noise_view,
        kind=evaluation.noise_kind,
        mask=evaluation.noise_mask,
        seed=seed,
    )
    if trainer is None:
        return FitResult.collect(module, best, metrics, seed, start, epochs=plain.epochs, device=plain.device)
    return FitResult.after_trainer(module, trainer, best, metrics, seed, start, epochs)
