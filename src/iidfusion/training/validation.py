"""Range checks of every option, run before any data is read or file written.

Types are checked when a value is read (:mod:`iidfusion.training.config`); here each value is
checked against what it means (the ``rule`` every option declares beside its help,
:func:`iidfusion.core.config.option`), so that ``--lr -1``, ``--lam nan`` or ``beta: .inf`` are refused
at once, naming the flag and the config key, instead of failing epochs later (or, worse,
training on NaN). The trainer's hardware settings are checked by building them the way the run
will, so that ``--accelerator gpu`` on a machine without one is one clear line too.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

from iidfusion.training.config import ExperimentConfig, iter_options

if TYPE_CHECKING:
    from iidfusion.training.runner import TrainerSettings


def check_option_rules(config: Any, prefix: str = "") -> None:
    """A ValueError naming the flag, the config key and the value of the first option of
    ``config`` (any configuration of :func:`~iidfusion.core.config.option` fields, its keys
    under ``prefix``) out of range."""
    for option in iter_options(config, prefix):
        rule = option.rule
        if rule is not None and not rule.check(option.default):
            raise ValueError(f"{option.flag} ({option.key}) must be {rule.expected}, got {option.default!r}")


def check_option_values(config: ExperimentConfig) -> None:
    """Every option of ``config`` in range (:func:`check_option_rules`) and the trainer's
    hardware settings buildable (:func:`check_trainer_settings`)."""
    check_option_rules(config)
    check_trainer_settings(config.train)


_PLACEMENT = ("accelerator", "devices", "num_nodes", "strategy", "precision")


def check_trainer_settings(train: TrainerSettings) -> None:
    """Build the accelerator, devices, strategy and precision as the run will, without training.

    Lightning validates the combination when a ``Trainer`` is created; its error becomes one
    line naming the flags. A GPU asked for where torch sees none is named first.
    """
    import torch

    from iidfusion.training.runner import build_strategy, parse_devices

    if train.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"--accelerator {train.accelerator}: torch sees no CUDA GPU on this machine; use --accelerator cpu (or auto)"
        )
    import lightning as L

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
                precision=train.precision,  # type: ignore[arg-type]
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
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
