"""What a task's training section gives the trainer: the options every task declares alike, and their protocol.

Kept apart from :mod:`iidfusion.engine.trainer` (and Lightning), so that a configuration, and the
command line built from it, imports no training code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from iidfusion.core.config import MAX_PROCESSES, Rule, at_least, option

# Lightning's loggers by the name ``--loggers`` gives them; W&B and MLflow come with the extras of
# their names (LOGGER_EXTRAS), and read their own environment (WANDB_MODE=offline, MLFLOW_TRACKING_URI).
LOGGERS = ("csv", "tensorboard", "wandb", "mlflow")
DEFAULT_LOGGERS = ("csv", "tensorboard")
LOGGER_EXTRAS = {"wandb": "wandb", "mlflow": "mlflow"}  # logger -> the package it needs, also its extra's name

# The options of the trainer every task's training section declares (:func:`trainer_option`):
# name -> (default, help, rule).
_TRAINER_OPTIONS: dict[str, tuple[Any, str, Rule | None]] = {
    "accelerator": ("auto", "Lightning accelerator: auto, cpu, gpu, ...", None),
    "devices": ("auto", "Lightning devices: auto, a count, or a comma list of ids", None),
    "num_nodes": (
        1,
        "machines the run spans, each with --devices processes (docs/scaling.md)",
        at_least(1, MAX_PROCESSES),
    ),
    "strategy": ("auto", "Lightning strategy: auto, ddp, ddp_spawn, ...", None),
    "checkpoints": (True, "save best and last checkpoints", None),
    "loggers": (DEFAULT_LOGGERS, "loggers: csv, tensorboard, wandb, mlflow (empty: none)", None),
    "progress_bar": (True, "show a progress bar", None),
}


def trainer_option(name: str) -> Any:
    """The trainer's option ``name`` (``accelerator``, ``devices``, ``num_nodes``, ``strategy``,
    ``checkpoints``, ``loggers``, ``progress_bar``) as a field of a task's training section: one
    default, help text and rule, so that every task's flag means the same.
    """
    default, help, rule = _TRAINER_OPTIONS[name]
    return option(default, help, rule=rule)


class TrainerSettings(Protocol):
    """What :func:`build_trainer` reads from a task's training section (the fields each declares
    with :func:`trainer_option`, and its number of epochs).
    """

    @property
    def max_epochs(self) -> int: ...
    @property
    def accelerator(self) -> str: ...
    @property
    def devices(self) -> str: ...
    @property
    def num_nodes(self) -> int: ...
    @property
    def strategy(self) -> str: ...
    @property
    def checkpoints(self) -> bool: ...
    @property
    def loggers(self) -> Sequence[str]: ...
    @property
    def progress_bar(self) -> bool: ...
