"""A training loop without Lightning, for the fits that need nothing Lightning adds.

A fit on one device with no checkpoints, loggers, resume or extra callbacks (what ``suite``,
``compare`` without run folders, tuning's trials and the verdict run by the thousand) spends
about 40 % of its time in Lightning's loop machinery for the small models of feature data
(``benchmarks/results/suite_throughput.md``). :func:`fit_plain` runs the same fit: the module's
hooks in Lightning's order (train epoch start, per batch reseed, ``training_step``,
``zero_grad``, backward, optimizer step; then validation in evaluation mode under
``torch.inference_mode``; then the train epoch end), early stopping and the best weights through
the same :class:`~iidfusion.engine.trainer.ValidationPatience` and
:class:`~iidfusion.engine.trainer.BestWeights`, so that both loops end with the same model bit
for bit (``tests/engine/test_plain_loop.py``, and the verdict's reproduction check,
docs/protocol.md). :func:`plain_loop_blocker` says which fits must use Lightning and why.

A module trained here has no trainer to log to: it keeps what it logs for the callbacks in
``epoch_scores`` (:class:`PlainLoopModule`), and reads the epoch from ``loop_epoch``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import move_data_to_device

from iidfusion.core.progress import progress_bar
from iidfusion.engine.settings import TrainerSettings
from iidfusion.engine.trainer import (
    VAL_LOSS,
    BestWeights,
    MonitoredModule,
    ValidationObserver,
    ValidationPatience,
    epoch_postfix,
    parse_devices,
    reseed_batch,
)

LOOPS = ("auto", "lightning", "plain")
_FULL_PRECISION = ("32-true", "32", 32)


class PlainLoopModule(MonitoredModule, Protocol):
    """What :func:`fit_plain` reads of a task's LightningModule besides its hooks: the scores it
    logged for the callbacks this epoch (``self.log`` needs a trainer), and the epoch it is in.
    """

    epoch_scores: dict[str, Any]
    loop_epoch: int


@dataclass(frozen=True)
class PlainFit:
    """How a plain fit went: the epochs trained, and the device as
    :func:`~iidfusion.engine.trainer.trainer_device` names it.
    """

    epochs: int
    device: str


def plain_device(train: TrainerSettings) -> torch.device | None:
    """The one device a fit with ``train``'s placement runs on, or None when it needs more than one
    process or a device the plain loop does not drive (TPU, MPS, ...): Lightning's choice then.
    """
    if train.strategy != "auto" or train.num_nodes != 1:
        return None
    accelerator = train.accelerator
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator == "cpu":
        return torch.device("cpu") if train.devices in ("auto", "1") else None
    if accelerator not in ("gpu", "cuda") or not torch.cuda.is_available():
        return None
    devices = parse_devices(train.devices)
    if devices == "auto":
        return torch.device("cuda", 0) if torch.cuda.device_count() == 1 else None
    if devices == 1:
        return torch.device("cuda", 0)
    if isinstance(devices, list) and len(devices) == 1:
        return torch.device("cuda", devices[0])
    return None


def plain_loop_blocker(
    train: TrainerSettings,
    *,
    run_dir: Path | None,
    resume: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    precision: str = "32-true",
    num_workers: int = 0,
) -> str | None:
    """Why a fit needs Lightning's loop (what it would write or use that :func:`fit_plain` has
    not), or None when the plain loop runs the same fit.
    """
    if train.checkpoints and run_dir is not None:
        return "checkpoints"
    if train.loggers and run_dir is not None:
        return "loggers"
    if resume is not None:
        return "a resume"
    if any(not isinstance(callback, ValidationObserver) for callback in callbacks):
        return "extra Lightning callbacks"
    if precision not in _FULL_PRECISION:
        return f"precision {precision}"
    if num_workers > 0:
        return "data-loader workers"
    if plain_device(train) is None:
        return "more than one process, or a device other than one CPU or CUDA device"
    return None


def choose_loop(loop: str, blocker: str | None) -> str:
    """The loop a fit runs: ``loop`` (:data:`LOOPS`) with ``auto`` resolved; a ValueError for
    ``plain`` where a ``blocker`` (:func:`plain_loop_blocker`) needs Lightning.
    """
    if loop not in LOOPS:
        raise ValueError(f"--loop {loop!r}: expected one of {list(LOOPS)}")
    if loop == "plain" and blocker is not None:
        raise ValueError(f"--loop plain: this fit needs Lightning's loop for {blocker}; use --loop auto")
    if loop == "auto":
        return "plain" if blocker is None else "lightning"
    return loop


def fit_plain(
    module: L.LightningModule,
    data: L.LightningDataModule,
    best: BestWeights,
    *,
    device: torch.device,
    seed: int,
    max_epochs: int,
    patience: int = 0,
    stop_on: str = "acc",
    min_epochs: int = 0,
    progress: bool = False,
    description: str = "fit",
    observers: Sequence[ValidationObserver] = (),
) -> PlainFit:
    """Train ``module`` on ``data`` as :func:`~iidfusion.engine.trainer.build_trainer`'s trainer
    with the same arguments (and ``observers`` as its extra callbacks) would (module docstring);
    ``best`` keeps the best weights.
    """
    scored = cast(PlainLoopModule, module)
    _deterministic_like_lightning()
    module.to(device)
    module.train()
    module.setup("fit")
    data.setup("fit")
    optimizer = cast(torch.optim.Optimizer, module.configure_optimizers())
    train_loader, val_loader = data.train_dataloader(), data.val_dataloader()
    stopper = ValidationPatience(patience, stop_on) if patience > 0 else None
    should_stop, trained = False, 0
    bar = progress_bar(max_epochs, description, enabled=progress, unit="epoch")
    try:
        for epoch in range(max_epochs):
            scored.loop_epoch = epoch
            scored.epoch_scores = {}
            module.on_train_epoch_start()
            _set_sampler_epoch(train_loader, epoch)
            for batch_idx, batch in enumerate(train_loader):
                batch = _to_device(batch, device)
                reseed_batch(seed, epoch, batch_idx, 0, device)
                loss = module.training_step(batch, batch_idx)
                optimizer.zero_grad()
                cast(torch.Tensor, loss).backward()
                optimizer.step()
            _validate(module, val_loader, device)
            scores = {name: float(value) for name, value in scored.epoch_scores.items()}
            validated = scored.monitor in scores
            if validated:
                best.consider(scores[scored.monitor], scores.get(VAL_LOSS), epoch, module)
            for observer in observers:
                observer.after_validation(epoch, scores, scored.monitor)
            module.on_train_epoch_end()
            if stopper is not None and validated:
                exhausted = stopper.update(scores[scored.monitor], scores.get(VAL_LOSS, math.nan))
                should_stop = exhausted or should_stop
            bar.set_postfix(epoch_postfix(scored, scored.epoch_scores), refresh=False)
            bar.update(1)
            trained = epoch + 1
            if should_stop and trained >= min_epochs:
                break
    finally:
        bar.close()
    module.cpu()  # as Lightning leaves a module after fit
    return PlainFit(epochs=trained, device=str(device))


def _validate(module: L.LightningModule, loader: Any, device: torch.device) -> None:
    """One validation epoch, as Lightning's: evaluation mode, no autograd, the module's hooks."""
    module.zero_grad(set_to_none=True)
    module.eval()
    with torch.inference_mode():
        module.on_validation_epoch_start()
        for batch_idx, batch in enumerate(loader):
            module.validation_step(_to_device(batch, device), batch_idx)
        module.on_validation_epoch_end()
    module.train()


def _to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` on ``device``; as it is on the CPU, where the loaders make it."""
    return batch if device.type == "cpu" else move_data_to_device(batch, device)


def _set_sampler_epoch(loader: Any, epoch: int) -> None:
    """What Lightning does at each epoch start: ``set_epoch`` on the loader's samplers that have it."""
    for sampler in (getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if sampler is not None and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)


def _deterministic_like_lightning() -> None:
    """The global settings of Lightning's ``deterministic="warn"``, which the Lightning loop sets."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
