"""The Lightning trainer of one run, whatever the task: seeding, early stopping, the best weights,
checkpoints, loggers, a progress bar, the devices.

Reproducibility: the task seeds its model (``lightning.seed_everything(seed)``) and makes its
training order a pure function of (seed, epoch); :class:`ReseedEachBatch` reseeds every random
generator before each training batch from (seed, epoch, batch, rank), so dropout masks do not
depend on what ran before, and a run resumed from its last checkpoint ends with the same model
as an uninterrupted one. Checkpoints are written by Lightning's ``_atomic_save`` (a temporary
file renamed in an fsspec transaction), so an interruption never leaves half a checkpoint.

A task's LightningModule names its validation score (higher is better) in its ``monitor``
attribute (:class:`MonitoredModule`): :class:`BestWeights`, the best checkpoint, early stopping
and the progress bar follow it.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import math
import os
import random
import signal
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, cast

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.warnings import PossibleUserWarning
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.strategies import DDPStrategy, Strategy
from torch import nn

from iidfusion.core.config import iter_options
from iidfusion.core.progress import progress_bar
from iidfusion.engine.checkpoint import read_checkpoint
from iidfusion.engine.settings import LOGGER_EXTRAS, LOGGERS, TrainerSettings

VAL_LOSS = "val/loss"
_DDP_START_METHODS = {"ddp": "popen", "ddp_spawn": "spawn", "ddp_fork": "fork", "ddp_notebook": "fork"}
_FIND_UNUSED = "_find_unused_parameters_true"
# Lightning's strategies that train in child processes, whose results come back through checkpoints.
SPAWNING_STRATEGIES = ("ddp_spawn", "ddp_fork", "ddp_notebook")


class MonitoredModule(Protocol):
    """What the trainer reads of a task's LightningModule: the validation score it logs that
    selects the best epoch (higher is better), and whether the progress bar shows it as a percentage.
    """

    monitor: ClassVar[str]
    monitor_as_percent: ClassVar[bool]


class ReseedEachBatch(Callback):
    """Reseed python, numpy and torch before each training batch from (seed, epoch, batch, rank).

    Random draws inside a step (dropout) then depend on nothing but the step's position:
    not on what consumed the generators before it (Lightning creates the data-loader
    iterator, which draws a seed, at a different moment in a resumed run than in a
    straight one), and not on whether the run was resumed.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        reseed_batch(self.seed, trainer.current_epoch, batch_idx, trainer.global_rank, pl_module.device)


def reseed_batch(seed: int, epoch: int, batch_idx: int, rank: int, device: torch.device) -> None:
    """Reseed python, numpy and torch (and the CUDA generator on ``device``) from (seed, epoch, batch, rank):
    what :class:`ReseedEachBatch` does before each training batch, in either loop.
    """
    batch_seed = hash((int(seed), epoch, batch_idx, rank)) % 2**32
    # Not seed_everything: its torch.manual_seed visits every accelerator backend (~2 ms).
    random.seed(batch_seed)
    np.random.seed(batch_seed)
    torch.default_generator.manual_seed(batch_seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(batch_seed)


class ValidationObserver(Callback):
    """A callback that acts only after each validation, on the epoch's scores: either loop runs it
    (Lightning through its hooks, :func:`~iidfusion.engine.plain_loop.fit_plain` through
    :meth:`after_validation`), so a fit that needs nothing else of Lightning keeps the plain loop.
    """

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            scores = {name: float(value) for name, value in trainer.callback_metrics.items()}
            self.after_validation(
                trainer.current_epoch, scores, _monitored(pl_module).monitor, trainer.strategy.broadcast
            )

    def after_validation(
        self, epoch: int, scores: Mapping[str, float], monitor: str, agree: Callable[[Any], Any] = lambda x: x
    ) -> None:
        """After the validation of ``epoch`` (0-based): its ``scores`` by name, ``monitor`` the one
        that selects; ``agree`` makes every process take the same decision (rank 0's).
        """
        raise NotImplementedError


STOP_CRITERIA = ("acc", "loss", "acc_or_loss")


class ValidationPatience(Callback):
    """Early stopping: stop after ``patience`` validations without a better score.

    ``stop_on="acc"`` (a higher ``monitor`` score of the module, e.g. validation accuracy),
    ``"loss"`` (lower validation loss) or ``"acc_or_loss"``: either improving resets the count.
    Accuracy alone judges a run that is still at chance as stuck, while its loss may be falling
    (docs/evidence.md, "Intermediate fusion against late fusion"); loss alone stops runs whose
    accuracy still improves once they become over-confident. ``Trainer(min_epochs=...)`` keeps a
    stop from taking effect before that many epochs. Only epochs that ended with a validation
    count (a task may validate every few epochs, as the KG's ``eval_every``).
    """

    def __init__(self, patience: int, stop_on: str = "acc") -> None:
        if stop_on not in STOP_CRITERIA:
            raise ValueError(f"unknown stop_on {stop_on!r}; expected one of {list(STOP_CRITERIA)}")
        self.patience = int(patience)
        self.stop_on = stop_on
        self.best_acc = -math.inf
        self.best_loss = math.inf
        self.wait_count = 0
        self._validated = False  # whether this epoch ended with a validation

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validated = self._validated or not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics, monitor = trainer.callback_metrics, _monitored(pl_module).monitor
        validated, self._validated = self._validated, False
        if not validated or monitor not in metrics:
            return
        exhausted = self.update(float(metrics[monitor]), float(metrics[VAL_LOSS]) if VAL_LOSS in metrics else math.nan)
        stop = trainer.strategy.reduce_boolean_decision(exhausted, all=False)
        trainer.should_stop = trainer.should_stop or stop

    def update(self, acc: float, loss: float) -> bool:
        """Count one validation (its ``acc`` and ``loss``); whether the patience is used up."""
        better_acc, better_loss = acc > self.best_acc, loss < self.best_loss
        if better_acc:
            self.best_acc = acc
        if better_loss:
            self.best_loss = loss
        improved = {"acc": better_acc, "loss": better_loss, "acc_or_loss": better_acc or better_loss}[self.stop_on]
        self.wait_count = 0 if improved else self.wait_count + 1
        return self.wait_count >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best_acc": self.best_acc, "best_loss": self.best_loss, "wait_count": self.wait_count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_acc = state_dict["best_acc"]
        self.best_loss = state_dict["best_loss"]
        self.wait_count = state_dict["wait_count"]


class EpochProgressBar(ProgressBar):
    """Lightning's progress bar for one fit: one bar over the epochs (not one per epoch over
    batches), on stderr, with the module's latest ``monitor`` score (:class:`MonitoredModule`)
    and the time left at most (early stopping may end the run sooner). Drawn by the process of
    rank 0 only.
    """

    def __init__(self, description: str) -> None:
        super().__init__()
        self.description = description
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
        self.bar = progress_bar(
            trainer.max_epochs, self.description, enabled=enabled, unit="epoch", initial=trainer.current_epoch
        )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.bar is None:
            return
        self.bar.set_postfix(epoch_postfix(_monitored(pl_module), trainer.callback_metrics), refresh=False)
        self.bar.update(1)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def epoch_postfix(module: MonitoredModule, metrics: Mapping[str, Any]) -> dict[str, str]:
    """What the epoch bar shows after an epoch: the module's latest ``monitor`` score and the training loss."""
    shown: dict[str, str] = {}
    if module.monitor in metrics:
        score = float(metrics[module.monitor])
        shown[module.monitor.replace("/", " ")] = f"{100 * score:.2f}%" if module.monitor_as_percent else f"{score:.4f}"
    if "train/loss" in metrics:
        shown["loss"] = f"{float(metrics['train/loss']):.4f}"
    return shown


class BestWeights(Callback):
    """A CPU copy of the weights of the module's ``model`` at the best ``monitor`` value (higher is better).

    Also keeps the validation loss of that epoch (``best_loss``), which breaks ties between
    equally accurate runs when hyperparameters are chosen.
    """

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.best_score: float | None = None
        self.best_loss: float | None = None
        self.best_epoch = -1
        self.weights: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        score = trainer.callback_metrics.get(self.monitor)
        if score is None or trainer.sanity_checking:
            return
        self.consider(float(score), trainer.callback_metrics.get(VAL_LOSS), trainer.current_epoch, pl_module)

    def consider(self, score: float, loss: Any, epoch: int, pl_module: nn.Module) -> None:
        """Keep the weights of ``pl_module``'s model if ``score`` (of ``epoch``, with the validation
        ``loss``, None when not logged) beats the best so far.
        """
        if self.best_score is None or score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            self.best_loss = float(loss) if loss is not None else None
            self.weights = {k: v.detach().cpu().clone() for k, v in _model(pl_module).state_dict().items()}

    def best_model(self, pl_module: L.LightningModule, trainer: L.Trainer | None = None) -> nn.Module:
        """A CPU copy of the module's model with the best weights.

        Under ``ddp_spawn`` the training ran in child processes, so this callback saw no
        validation; the best checkpoint of ``trainer`` (when saved) is read instead, else the last weights.
        """
        model = copy.deepcopy(_model(pl_module)).cpu()
        best_path = getattr(getattr(trainer, "checkpoint_callback", None), "best_model_path", None)
        if self.weights is not None:
            model.load_state_dict(self.weights)
        elif best_path:
            state = torch.load(best_path, map_location="cpu", weights_only=True)
            model.load_state_dict(
                {k[len("model.") :]: v for k, v in state["state_dict"].items() if k.startswith("model.")}
            )
        return model

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_score": self.best_score,
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "weights": self.weights,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict["best_score"]
        self.best_loss = state_dict.get("best_loss")
        self.best_epoch = state_dict["best_epoch"]
        self.weights = state_dict["weights"]


def build_strategy(name: str) -> str | Strategy:
    """Lightning's strategy ``name``; DDP variants without buffer broadcasting.

    DDP broadcasts rank 0's buffers at every forward by default, which would overwrite the
    rows other processes added to QMF's per-sample loss history; the tasks' modules sum the
    processes' increments at each epoch end instead. Our other buffers are constants.
    Lightning's ``<ddp variant>_find_unused_parameters_true`` names are kept too (needed when
    some parameters get no gradient in a step, e.g. encoders frozen for the first epochs of
    end-to-end fine-tuning), also without buffer broadcasting.
    """
    base = name.removesuffix(_FIND_UNUSED)
    if base in _DDP_START_METHODS:
        start_method = cast(Literal["popen", "spawn", "fork", "forkserver"], _DDP_START_METHODS[base])
        return DDPStrategy(start_method=start_method, broadcast_buffers=False, find_unused_parameters=base != name)
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


def _monitored(pl_module: L.LightningModule) -> MonitoredModule:
    return cast(MonitoredModule, pl_module)


def _model(pl_module: nn.Module) -> nn.Module:
    """The task's model, which every task's LightningModule holds as ``model``."""
    model = pl_module.model
    if not isinstance(model, nn.Module):
        raise TypeError(f"{type(pl_module).__name__} holds no model")
    return model


def build_loggers(train: TrainerSettings, run_dir: Path | None, name: str = "fit") -> list[Logger]:
    """The loggers named in ``train.loggers`` (:data:`~iidfusion.engine.settings.LOGGERS`), writing
    under ``run_dir``; ``name``: the run's name where a logger shows runs side by side (W&B, MLflow).
    Without ``run_dir``, the names are only checked: a logger whose package is missing is a
    ValueError naming the extra that installs it.

    Each (re)start of a run logs to a new ``version_K`` folder (``run_dir/csv/version_0/
    metrics.csv``, ...): Lightning's CSV writer deletes an existing file in its folder, and
    a resumed run must not erase the epochs logged before the interruption. W&B writes under
    ``run_dir/wandb`` (``WANDB_MODE=offline`` keeps it there), MLflow to ``MLFLOW_TRACKING_URI``,
    else to ``run_dir/mlruns``.
    """
    unknown = [logger for logger in train.loggers if logger not in LOGGERS]
    if unknown:
        raise ValueError(f"unknown logger {unknown[0]!r}; expected some of {list(LOGGERS)}")
    for logger in train.loggers:
        package = LOGGER_EXTRAS.get(logger)
        if package is not None and importlib.util.find_spec(package) is None:
            raise ValueError(
                f"--loggers {logger} needs the optional package {package!r}, which is not installed: "
                f"pip install 'iidfusion[{package}]'"
            )
    if run_dir is None or not train.loggers:
        return []
    made: dict[str, Callable[[], Logger]] = {
        "csv": lambda: CSVLogger(run_dir, name="csv"),
        "tensorboard": lambda: TensorBoardLogger(run_dir, name="tensorboard", default_hp_metric=False),
        "wandb": lambda: WandbLogger(
            name=name, save_dir=str(run_dir), project=os.environ.get("WANDB_PROJECT", "iidfusion")
        ),
        "mlflow": lambda: MLFlowLogger(
            experiment_name=os.environ.get("MLFLOW_EXPERIMENT_NAME", "iidfusion"),
            run_name=name,
            save_dir=str(run_dir / "mlruns"),
        ),
    }
    return [made[logger]() for logger in train.loggers]


def build_trainer(
    train: TrainerSettings,
    run_dir: Path | None,
    seed: int,
    best: BestWeights,
    *,
    callbacks: Sequence[Callback] = (),
    accumulate_grad_batches: int = 1,
    record: Callback | None = None,
    description: str = "fit",
    patience: int = 0,
    stop_on: str = "acc",
    min_epochs: int = 0,
    precision: str = "32-true",
) -> L.Trainer:
    """The Lightning trainer of one run: seeding, early stopping, checkpoints, loggers.

    ``best`` keeps the weights of the best ``best.monitor`` score, which the best checkpoint
    follows too. ``callbacks``: extra callbacks of the caller (e.g. end-to-end training's
    freezing schedule), appended after the built-in ones (Lightning still moves every
    ``ModelCheckpoint`` to the end of the list). ``accumulate_grad_batches``: optimizer step
    every that many batches. ``record``: the run's :class:`~iidfusion.engine.resume.RunRecord`,
    saved in its checkpoints for a resume to check. ``description``: what the progress bar
    (:class:`EpochProgressBar`, with ``train.progress_bar``) calls the run. ``patience`` > 0:
    early stopping (:class:`ValidationPatience` with ``stop_on``), never before ``min_epochs``.
    ``precision``: Lightning's.
    """
    built_in: list[Callback] = [ReseedEachBatch(seed), best, *([] if record is None else [record])]
    if patience > 0:
        built_in.append(ValidationPatience(patience, stop_on))
    if train.progress_bar:
        built_in.append(EpochProgressBar(description))
    if train.checkpoints and run_dir is not None:
        # Two callbacks: Lightning 2.6 refreshes save_last only in epochs that improved the
        # monitored metric, and a resume needs the state of the latest epoch.
        common: dict[str, Any] = {
            "dirpath": run_dir / "checkpoints",
            "save_on_train_epoch_end": True,
            "auto_insert_metric_name": False,
            "enable_version_counter": False,
        }
        built_in.append(ModelCheckpoint(filename="best", monitor=best.monitor, mode="max", save_top_k=1, **common))
        built_in.append(ModelCheckpoint(filename="last", monitor=None, save_top_k=1, **common))
    loggers = build_loggers(train, run_dir, description)
    return L.Trainer(
        max_epochs=train.max_epochs,
        min_epochs=min(min_epochs, train.max_epochs) or None,
        accelerator=train.accelerator,
        devices=parse_devices(train.devices),
        num_nodes=train.num_nodes,
        strategy=build_strategy(train.strategy),
        precision=precision,  # type: ignore[arg-type]
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


def spawns_processes(strategy: str) -> bool:
    """Whether Lightning trains in child processes under ``strategy`` (:data:`SPAWNING_STRATEGIES`)."""
    return strategy.removesuffix(_FIND_UNUSED) in SPAWNING_STRATEGIES


def recover_spawned_run(run_dir: Path | None, module: L.LightningModule, best: BestWeights) -> int:
    """After a fit under a spawning strategy (:func:`spawns_processes`), whose training ran in child
    processes: the module's last weights and buffers and ``best``'s state, read from the last
    checkpoint rank 0 wrote in ``run_dir``; returns the epochs trained.
    """
    path = None if run_dir is None else run_dir / "checkpoints" / "last.ckpt"
    if path is None or not path.is_file():
        raise ValueError("a run under a spawning strategy needs its checkpoints (--checkpoints and an output folder)")
    state = read_checkpoint(path, "the run's last checkpoint")
    best.load_state_dict(state["callbacks"][BestWeights.__qualname__])
    module.load_state_dict(state["state_dict"])
    return int(state["epoch"]) + 1


def trainer_device(trainer: L.Trainer) -> str:
    """The device a trainer ran on and how many processes shared the work: ``"cuda:0, 8 processes"``."""
    device = str(trainer.strategy.root_device)
    return device if trainer.world_size == 1 else f"{device}, {trainer.world_size} processes"


def fit_interruptible(
    trainer: L.Trainer, module: L.LightningModule, data: L.LightningDataModule, resume: str | Path | None
) -> None:
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


_PLACEMENT = ("accelerator", "devices", "num_nodes", "strategy", "precision")


def check_trainer_settings(train: TrainerSettings, precision: str = "32-true") -> None:
    """Build the accelerator, devices, strategy and precision as the run will, without training.

    Lightning validates the combination when a ``Trainer`` is created; its error becomes one
    line naming the flags of ``train`` (a dataclass of options). A GPU asked for where torch
    sees none is named first.
    """
    if train.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"--accelerator {train.accelerator}: torch sees no CUDA GPU on this machine; use --accelerator cpu (or "
            "auto)"
        )
    devices = parse_devices(train.devices)
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            L.Trainer(
                accelerator=train.accelerator,
                devices=devices,
                num_nodes=train.num_nodes,
                strategy=build_strategy(train.strategy),
                precision=precision,  # type: ignore[arg-type]
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
            )
    except Exception as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        options = {option.key: option for option in iter_options(train)}  # the flags this command has
        given = " ".join(f"{options[k].flag} {options[k].default}" for k in _PLACEMENT if k in options)
        raise ValueError(f"{given}: {message}") from None
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def quiet_lightning() -> None:
    """Silence Lightning's per-fit banners and advice (dozens of fits would bury a table)."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=PossibleUserWarning)
    for category in (DeprecationWarning, FutureWarning):  # Lightning's use of torch internals
        warnings.filterwarnings("ignore", category=category, module=r"lightning\.")
