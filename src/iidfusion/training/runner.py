"""Train one method with one seed on one data set, then evaluate it (what ``iidfusion fit`` runs).

Reproducibility: ``lightning.seed_everything(seed)`` before the model is
built fixes the initialisation; the training sampler is a pure function of (seed, epoch)
(:mod:`~iidfusion.training.datamodule`) and :class:`ReseedEachBatch` reseeds every random
generator before each training batch from (seed, epoch, batch, rank), so dropout masks do not
depend on what ran before. A run resumed from its last checkpoint therefore ends with the same model
as an uninterrupted one. Checkpoints are written by Lightning's ``_atomic_save`` (a
temporary file renamed in an fsspec transaction), so an interruption never leaves half a
checkpoint.

Evaluation uses the weights of the epoch with the best validation accuracy, kept by
:class:`BestWeights` (in memory and in the checkpoint, so it survives a resume).

Resuming (:func:`check_resume`) reads the checkpoint with ``torch.load(weights_only=True)``
first, so a crafted file cannot run code and a truncated or foreign one is one clear error,
and refuses it when the run it continues was trained with other settings or on other data
(:class:`RunRecord` stores a digest of the splits): a resumed run continues the same run.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import random
import signal
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy, Strategy

from iidfusion.data.base import DatasetSplits
from iidfusion.fusion.methods import get_method
from iidfusion.fusion.model import FusionModel
from iidfusion.progress import progress_bar
from iidfusion.training.config import ExperimentConfig, iter_options, recorded_config_values
from iidfusion.training.datamodule import MultiViewDataModule
from iidfusion.training.evaluate import NoiseMetrics, evaluate_under_noise
from iidfusion.training.module import FusionModule

MONITOR = "val/acc"
VAL_LOSS = "val/loss"
LOGGERS = ("csv", "tensorboard")
_DDP_START_METHODS = {"ddp": "popen", "ddp_spawn": "spawn", "ddp_fork": "fork", "ddp_notebook": "fork"}
_FIND_UNUSED = "_find_unused_parameters_true"


class ReseedEachBatch(Callback):
    """Reseed python, numpy and torch before each training batch from (seed, epoch, batch, rank).

    Random draws inside a step (dropout) then depend on nothing but the step's position:
    not on what consumed the generators before it (Lightning creates the data-loader
    iterator, which draws a seed, at a different moment in a resumed run than in a
    straight one), and not on whether the run was resumed.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        seed = hash((self.seed, trainer.current_epoch, batch_idx, trainer.global_rank)) % 2**32
        # Not seed_everything: its torch.manual_seed visits every accelerator backend (~2 ms).
        random.seed(seed)
        np.random.seed(seed)
        torch.default_generator.manual_seed(seed)
        if pl_module.device.type == "cuda":
            torch.cuda.manual_seed(seed)


STOP_CRITERIA = ("acc", "loss", "acc_or_loss")


class ValidationPatience(Callback):
    """Early stopping: stop after ``patience`` validations without a better score.

    ``stop_on="acc"`` (higher validation accuracy; Lightning's ``EarlyStopping`` on ``val/acc``),
    ``"loss"`` (lower validation loss) or ``"acc_or_loss"``: either improving resets the count.
    Accuracy alone judges a run that is still at chance as stuck, while its loss may be falling
    (docs/evidence.md, "Intermediate fusion with many views"); loss alone stops runs whose
    accuracy still improves once they become over-confident. ``Trainer(min_epochs=...)`` keeps a
    stop from taking effect before that many epochs.
    """

    def __init__(self, patience: int, stop_on: str = "acc") -> None:
        if stop_on not in STOP_CRITERIA:
            raise ValueError(f"unknown stop_on {stop_on!r}; expected one of {list(STOP_CRITERIA)}")
        self.patience = int(patience)
        self.stop_on = stop_on
        self.best_acc = -math.inf
        self.best_loss = math.inf
        self.wait_count = 0

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        if trainer.sanity_checking or MONITOR not in metrics:
            return
        acc = float(metrics[MONITOR])
        loss = float(metrics[VAL_LOSS]) if VAL_LOSS in metrics else math.nan
        better_acc, better_loss = acc > self.best_acc, loss < self.best_loss
        if better_acc:
            self.best_acc = acc
        if better_loss:
            self.best_loss = loss
        improved = {"acc": better_acc, "loss": better_loss, "acc_or_loss": better_acc or better_loss}[self.stop_on]
        self.wait_count = 0 if improved else self.wait_count + 1
        stop = trainer.strategy.reduce_boolean_decision(self.wait_count >= self.patience, all=False)
        trainer.should_stop = trainer.should_stop or stop

    def state_dict(self) -> dict[str, Any]:
        return {"best_acc": self.best_acc, "best_loss": self.best_loss, "wait_count": self.wait_count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_acc = state_dict["best_acc"]
        self.best_loss = state_dict["best_loss"]
        self.wait_count = state_dict["wait_count"]


class EpochProgressBar(ProgressBar):
    """Lightning's progress bar for one fit: one bar over the epochs (not one per epoch over
    batches), on stderr, with the latest validation score (``monitor``: ``val/acc`` as a
    percentage, another score such as the KG's ``val/mrr`` as it is) and the time left at most
    (early stopping may end the run sooner). Drawn by the process of rank 0 only."""

    def __init__(self, description: str, monitor: str = MONITOR) -> None:
        super().__init__()
        self.description = description
        self.monitor = monitor
        self._enabled = True
        self.bar: Any = None  # the tqdm bar while training

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        enabled = self._enabled and trainer.is_global_zero
        self.bar = progress_bar(trainer.max_epochs, self.description, enabled=enabled, unit="epoch", initial=trainer.current_epoch)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.bar is None:
            return
        metrics = trainer.callback_metrics
        shown: dict[str, Any] = {}
        if self.monitor in metrics:
            score = float(metrics[self.monitor])
            shown[self.monitor.replace("/", " ")] = f"{100 * score:.2f}%" if self.monitor == MONITOR else f"{score:.4f}"
        if "train/loss" in metrics:
            shown["loss"] = f"{float(metrics['train/loss']):.4f}"
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update(1)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class BestWeights(Callback):
    """A CPU copy of the fusion model's weights at the best ``monitor`` value (higher is better).

    Also keeps the validation loss of that epoch (``best_loss``), which breaks ties between
    equally accurate runs when hyperparameters are chosen (:mod:`iidfusion.training.tuning`).
    """

    def __init__(self, monitor: str = MONITOR) -> None:
        self.monitor = monitor
        self.best_score: float | None = None
        self.best_loss: float | None = None
        self.best_epoch = -1
        self.weights: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        score = trainer.callback_metrics.get(self.monitor)
        if score is None or trainer.sanity_checking:
            return
        if self.best_score is None or float(score) > self.best_score:
            self.best_score, self.best_epoch = float(score), trainer.current_epoch
            loss = trainer.callback_metrics.get(VAL_LOSS)
            self.best_loss = float(loss) if loss is not None else None
            self.weights = {k: v.detach().cpu().clone() for k, v in pl_module.model.state_dict().items()}

    def best_model(self, pl_module: FusionModule, trainer: L.Trainer) -> FusionModel:
        """A CPU copy of the fusion model with the best weights.

        Under ``ddp_spawn`` the training ran in child processes, so this callback saw no
        validation; the best checkpoint (when saved) is read instead, else the last weights.
        """
        model = copy.deepcopy(pl_module.model).cpu()
        if self.weights is not None:
            model.load_state_dict(self.weights)
        elif trainer.checkpoint_callback is not None and getattr(trainer.checkpoint_callback, "best_model_path", ""):
            state = torch.load(trainer.checkpoint_callback.best_model_path, map_location="cpu", weights_only=True)
            model.load_state_dict({k[len("model.") :]: v for k, v in state["state_dict"].items() if k.startswith("model.")})
        return model

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_loss": self.best_loss, "best_epoch": self.best_epoch, "weights": self.weights}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict["best_score"]
        self.best_loss = state_dict.get("best_loss")
        self.best_epoch = state_dict["best_epoch"]
        self.weights = state_dict["weights"]


class RunRecord(Callback):
    """Saves, in every checkpoint, the run's method and seed and a digest of its data (:func:`data_digest`)."""

    def __init__(self, method: str, seed: int, data: str) -> None:
        self.method, self.seed, self.data = method, int(seed), data

    def state_dict(self) -> dict[str, Any]:
        return {"method": self.method, "seed": self.seed, "data": self.data}


def data_digest(splits: DatasetSplits) -> str:
    """SHA-256 of every split's views (names, shapes, values) and labels, as trained on."""
    digest = hashlib.sha256()
    for part in (splits.train, splits.val, splits.test):
        for name, view in part.views.items():
            digest.update(f"{name}{tuple(view.shape)}{view.dtype}".encode())
            digest.update(view.contiguous().numpy().tobytes())
        digest.update(part.labels.contiguous().numpy().tobytes())
    return digest.hexdigest()


# Options a resumed run may change: how long and where it trains, what it logs, and the
# evaluation after training. Any other change would continue a different run.
RESUMABLE_CHANGES = frozenset({
    "data", "out", "method", "seed", "methods", "seeds", "jobs", "datasets", "variants", "train.max_epochs",
    "train.accelerator", "train.devices", "train.num_nodes", "train.strategy", "train.num_workers", "train.threads", "train.progress_bar",
    "train.checkpoints", "train.loggers", "train.monitor_distances", "train.monitor_samples", "eval.noise",
    "eval.noise_view", "eval.noise_kind", "eval.noise_mask",
})  # fmt: skip


def check_resume(path: str | Path, method: str, seed: int, config: ExperimentConfig, splits: DatasetSplits) -> None:
    """Refuse to resume from ``path`` unless it is a readable checkpoint of this very run.

    Read with ``weights_only=True`` (no code runs); it must hold the state Lightning restores
    and the record of ``iidfusion fit`` (hyperparameters and :class:`RunRecord`), with the same
    method and seed, the same settings (but :data:`RESUMABLE_CHANGES` and the options of the
    strategies the method does not use) and the same data (by digest). A checkpoint of an earlier
    release is read in today's layout (:func:`~iidfusion.training.config.recorded_config_values`).
    """
    saved, record = resume_record(path, "iidfusion fit", method, seed)
    saved = recorded_config_values(saved)  # in today's layout, if an earlier release wrote it
    own_strategy = f"strategy.{get_method(method).strategy}."
    options = (
        (option.key, option.flag, option.default)
        for option in iter_options(config)
        # another strategy's options: the method never reads them
        if not option.key.startswith("strategy.") or option.key.startswith(own_strategy)
    )
    refuse_changed_settings(path, saved, options, RESUMABLE_CHANGES)
    if record.get("data") != data_digest(splits):
        raise ValueError(
            f"--resume {path}: the run was trained on other data than --data {config.data} "
            "(the splits' digest differs: another file, other content, or another seed's split)"
        )


def resume_record(path: str | Path, command: str, method: str, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The hyperparameters and :class:`RunRecord` of the checkpoint at ``path``, read with
    ``weights_only=True``; a ValueError unless ``command`` wrote it for ``method`` with ``seed``."""
    state = read_checkpoint(path, "--resume")
    needed = ("state_dict", "loops", "callbacks", "hyper_parameters")
    if not isinstance(state, dict) or any(key not in state for key in needed):
        raise ValueError(f"--resume {path}: not a checkpoint written by `{command}` (it lacks {', '.join(needed)})")
    saved = state["hyper_parameters"]
    record = state["callbacks"].get(RunRecord.__qualname__) if isinstance(state["callbacks"], dict) else None
    if not isinstance(saved, dict) or not isinstance(record, dict):
        raise ValueError(f"--resume {path}: not a checkpoint written by `{command}` (no record of its run)")
    if (record.get("method"), record.get("seed")) != (method, seed):
        raise ValueError(
            f"--resume {path}: the checkpoint is of method {record.get('method')!r} with seed {record.get('seed')}, "
            f"not {method!r} with seed {seed}"
        )
    return saved, record


def refuse_changed_settings(
    path: str | Path, saved: dict[str, Any], options: Iterable[tuple[str, str, Any]], resumable: frozenset[str]
) -> None:
    """A ValueError listing every (dotted key, flag, value) of ``options`` outside ``resumable``
    whose value differs from the one recorded in the checkpoint's hyperparameters ``saved`` (tuples saved as lists)."""
    changed = []
    for key, flag, now in options:
        before = _recorded(saved, key)
        if key not in resumable and before != (list(now) if isinstance(now, tuple) else now):
            changed.append(f"{flag} {before!r} -> {now!r}")
    if changed:
        raise ValueError(
            f"--resume {path}: the run was trained with other settings ({'; '.join(changed)}); "
            "resume with the run's settings, or start a new run (--overwrite)"
        )


def read_checkpoint(path: str | Path, flag: str) -> Any:
    """The object saved at ``path``, read with ``torch.load(weights_only=True)``: a crafted file
    cannot run code, and a missing, truncated or foreign one is one ValueError naming ``flag``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{flag} {path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, garbage, or a pickle that asks for code
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{flag} {path}: not a readable checkpoint ({reason})") from None


def _recorded(hyper_parameters: dict[str, Any], key: str) -> Any:
    """The value of the dotted ``key`` in a checkpoint's hyperparameters (tuples saved as lists)."""
    value: Any = hyper_parameters
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return "(not recorded)"
        value = value[part]
    return value


def build_strategy(name: str) -> str | Strategy:
    """Lightning's strategy ``name``; DDP variants without buffer broadcasting.

    DDP broadcasts rank 0's buffers at every forward by default, which would overwrite the
    rows other processes added to QMF's per-sample loss history; :class:`FusionModule` sums
    the processes' increments at each epoch end instead. Our other buffers are constants.
    Lightning's ``<ddp variant>_find_unused_parameters_true`` names are kept too (needed when
    some parameters get no gradient in a step, e.g. encoders frozen for the first epochs of
    end-to-end fine-tuning), also without buffer broadcasting.
    """
    base = name.removesuffix(_FIND_UNUSED)
    if base in _DDP_START_METHODS:
        return DDPStrategy(  # type: ignore[arg-type]
            start_method=_DDP_START_METHODS[base], broadcast_buffers=False, find_unused_parameters=base != name
        )
    return name


def parse_devices(devices: str) -> int | str | list[int]:
    """``--devices``: a count ("2"), a comma list of ids ("0,2") or a Lightning name ("auto")."""
    if devices.isdigit():
        return int(devices)
    if "," in devices:
        ids = [d.strip() for d in devices.split(",") if d.strip()]
        if not all(d.isdigit() for d in ids):
            raise ValueError(f"--devices must be a count, a comma list of device ids or 'auto', got {devices!r}")
        return [int(d) for d in ids]
    return devices


class TrainerSettings(Protocol):
    """What :func:`build_trainer` reads from a training section: ``iidfusion fit``'s
    :class:`~iidfusion.training.config.TrainConfig` or ``iidfusion kg``'s
    :class:`~iidfusion.training.kg_fit.KGTrainConfig` (one engine serves both tasks)."""

    max_epochs: int
    min_epochs: int
    patience: int
    stop_on: str
    accelerator: str
    devices: str
    num_nodes: int
    strategy: str
    precision: str
    checkpoints: bool
    loggers: Sequence[str]
    progress_bar: bool


def build_loggers(train: TrainerSettings, run_dir: Path | None) -> list[Logger]:
    """The CSV and TensorBoard loggers named in ``train.loggers``, writing under ``run_dir``.

    Each (re)start of a run logs to a new ``version_K`` folder (``run_dir/csv/version_0/
    metrics.csv``, ...): Lightning's CSV writer deletes an existing file in its folder, and
    a resumed run must not erase the epochs logged before the interruption.
    """
    unknown = [name for name in train.loggers if name not in LOGGERS]
    if unknown:
        raise ValueError(f"unknown logger {unknown[0]!r}; expected some of {list(LOGGERS)}")
    if run_dir is None or not train.loggers:
        return []
    made: dict[str, Logger] = {
        "csv": CSVLogger(run_dir, name="csv"),
        "tensorboard": TensorBoardLogger(run_dir, name="tensorboard", default_hp_metric=False),
    }
    return [made[name] for name in train.loggers]


def build_trainer(
    train: TrainerSettings,
    run_dir: Path | None,
    seed: int,
    best: BestWeights,
    *,
    callbacks: Sequence[Callback] = (),
    accumulate_grad_batches: int = 1,
    record: RunRecord | None = None,
    description: str = "fit",
    monitor: str = MONITOR,
) -> L.Trainer:
    """The Lightning trainer of one run: seeding, early stopping, checkpoints, loggers.

    ``callbacks``: extra callbacks of the caller (e.g. end-to-end training's freezing
    schedule), appended after the built-in ones (Lightning still moves every
    ``ModelCheckpoint`` to the end of the list). ``accumulate_grad_batches``: optimizer step
    every that many batches (end-to-end training's large effective batches). ``record``: the
    run's :class:`RunRecord`, saved in its checkpoints for :func:`check_resume`. ``description``:
    what the progress bar (:class:`EpochProgressBar`, with ``train.progress_bar``) calls the run.
    ``monitor``: the validation score (higher is better) the best checkpoint and the bar follow:
    ``val/acc`` for classification, ``val/mrr`` for a knowledge graph.
    """
    built_in: list[Callback] = [ReseedEachBatch(seed), best, *([] if record is None else [record])]
    if train.patience > 0:
        built_in.append(ValidationPatience(train.patience, train.stop_on))
    if train.progress_bar:
        built_in.append(EpochProgressBar(description, monitor))
    if train.checkpoints and run_dir is not None:
        # Two callbacks: Lightning 2.6 refreshes save_last only in epochs that improved the
        # monitored metric, and a resume needs the state of the latest epoch.
        common: dict[str, Any] = {"dirpath": run_dir / "checkpoints", "save_on_train_epoch_end": True,
                                  "auto_insert_metric_name": False, "enable_version_counter": False}
        built_in.append(ModelCheckpoint(filename="best", monitor=monitor, mode="max", save_top_k=1, **common))
        built_in.append(ModelCheckpoint(filename="last", monitor=None, save_top_k=1, **common))
    loggers = build_loggers(train, run_dir)
    return L.Trainer(
        max_epochs=train.max_epochs,
        min_epochs=min(train.min_epochs, train.max_epochs) or None,
        accelerator=train.accelerator,
        devices=parse_devices(train.devices),
        num_nodes=train.num_nodes,
        strategy=build_strategy(train.strategy),
        precision=train.precision,  # type: ignore[arg-type]
        deterministic="warn",
        logger=loggers or False,
        callbacks=[*built_in, *callbacks],
        enable_checkpointing=train.checkpoints and run_dir is not None,
        enable_progress_bar=train.progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        log_every_n_steps=1,
        default_root_dir=run_dir,
        accumulate_grad_batches=accumulate_grad_batches,
    )


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
        cls, module: FusionModule, trainer: L.Trainer, best: BestWeights, metrics: list[NoiseMetrics], seed: int, started: float
    ) -> FitResult:
        """The result of a finished ``trainer.fit`` (``started``: its ``time.perf_counter()``)."""
        return cls(
            method=module.spec.name,
            seed=seed,
            metrics=metrics,
            best_val_acc=best.best_score if best.best_score is not None else float("nan"),
            best_val_loss=best.best_loss if best.best_loss is not None else float("nan"),
            best_epoch=best.best_epoch,
            epochs=trainer.current_epoch,
            seconds=time.perf_counter() - started,
            is_global_zero=trainer.is_global_zero,
            module=module,
            device=trainer_device(trainer),
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
            "test": [{"noise": m.noise, "accuracy": m.accuracy, "macro_f1": m.macro_f1} for m in self.metrics],
        }


def without_progress_bar(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` for a fit inside a multi-run job, which draws the job's one bar instead."""
    return dataclasses.replace(config, train=dataclasses.replace(config.train, progress_bar=False))


def trainer_device(trainer: L.Trainer) -> str:
    """The device a trainer ran on and how many processes shared the work: ``"cuda:0, 8 processes"``."""
    device = str(trainer.strategy.root_device)
    return device if trainer.world_size == 1 else f"{device}, {trainer.world_size} processes"


def fit_method(
    splits: DatasetSplits,
    method: str,
    seed: int,
    config: ExperimentConfig,
    run_dir: Path | None = None,
    *,
    resume: str | Path | None = None,
) -> FitResult:
    """Train ``method`` with ``seed`` on ``splits`` and evaluate it on the test split.

    ``run_dir`` receives checkpoints and logs (none when ``None``); ``resume`` is a
    checkpoint (e.g. ``run_dir/checkpoints/last.ckpt``) to continue from.
    """
    digest = data_digest(splits)
    if resume is not None:
        check_resume(resume, method, seed, config, splits)
    start = time.perf_counter()
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
    L.seed_everything(seed, workers=True, verbose=False)
    module = FusionModule.for_feature_views(
        method, splits.view_dims, splits.num_classes, len(splits.train), config,
        seed=seed, class_names=splits.class_names, scaler=splits.scaler,
    )  # fmt: skip
    data = MultiViewDataModule(
        splits, batch_size=config.train.batch_size, seed=seed, num_workers=config.train.num_workers
    )
    best = BestWeights()
    trainer = build_trainer(config.train, run_dir, seed, best, record=RunRecord(method, seed, digest),
                            description=f"{method} seed {seed}")
    fit_interruptible(trainer, module, data, resume)
    evaluation = config.eval
    metrics = evaluate_under_noise(
        best.best_model(module, trainer), splits, evaluation.noise, view=evaluation.noise_view, kind=evaluation.noise_kind,
        mask=evaluation.noise_mask, seed=seed,
    )  # fmt: skip
    return FitResult.collect(module, trainer, best, metrics, seed, start)


def fit_interruptible(trainer: L.Trainer, module: L.LightningModule, data: L.LightningDataModule, resume: str | Path | None) -> None:
    """``trainer.fit``, resuming with ``weights_only=True``; Ctrl-C stays a KeyboardInterrupt.

    Lightning answers Ctrl-C by a graceful shutdown (the last checkpoint stays), then
    ``sys.exit(1)`` with SIGINT ignored from then on; the caller gets the KeyboardInterrupt
    back (to say how to resume) and Ctrl-C works again.
    """
    try:
        trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume is not None else None, weights_only=True)
    except SystemExit:
        if not trainer.interrupted:
            raise
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt from None
