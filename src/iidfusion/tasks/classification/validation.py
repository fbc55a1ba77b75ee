"""The checks of a classification command's input, run before any data is read or file written.

Types are checked when a value is read (:mod:`iidfusion.tasks.classification.config`); here each
value is checked against what it means (the ``rule`` every option declares beside its help,
:func:`iidfusion.core.config.option`), so that ``--lr -1``, ``--lam nan`` or ``beta: .inf`` are
refused at once, naming the flag and the config key, instead of failing epochs later (or, worse,
training on NaN). The trainer's hardware settings are checked by building them the way the run
will, so that ``--accelerator gpu`` on a machine without one is one clear line too. The data
are checked once read (:func:`load_splits`).
"""

from __future__ import annotations

import math

from iidfusion.core.config import MAX_NOISE_LEVEL, check_rules
from iidfusion.data.features.base import DatasetSplits
from iidfusion.data.features.registry import load_dataset
from iidfusion.engine.trainer import build_loggers, check_trainer_settings, spawns_processes
from iidfusion.tasks.classification.config import ExperimentConfig
from iidfusion.tasks.classification.tuning import validate_tune_config


def check_option_values(config: ExperimentConfig) -> None:
    """Every option of ``config`` in range (:func:`~iidfusion.core.config.check_rules`) and the
    trainer's hardware settings buildable (:func:`~iidfusion.engine.trainer.check_trainer_settings`).
    """
    check_rules(config)
    check_trainer_settings(config.train, config.train.precision)


def validate_config(config: ExperimentConfig) -> None:
    """Check the options that can be checked without data (methods are resolved by the caller)."""
    check_option_values(config)
    if config.jobs > 1 and config.train.strategy.startswith("ddp"):
        raise ValueError(
            f"jobs > 1 runs fits side by side; it cannot be combined with strategy {config.train.strategy!r}"
        )
    if spawns_processes(config.train.strategy) and (config.tune.enabled or not config.train.checkpoints):
        raise ValueError(
            f"--strategy {config.train.strategy} trains in child processes, whose history and best weights come "
            "back through the run's checkpoints: it needs --checkpoints and cannot tune; --strategy ddp has neither "
            "limit"
        )
    if config.val_fraction + config.test_fraction >= 1:
        raise ValueError(
            f"val_fraction {config.val_fraction:g} + test_fraction {config.test_fraction:g} leave nothing to train on"
        )
    if not config.eval.noise:
        raise ValueError("no noise levels given (use 0 for clean data only)")
    for level in config.eval.noise:
        if not (math.isfinite(level) and 0 <= level <= MAX_NOISE_LEVEL):
            raise ValueError(f"noise levels must be finite and >= 0, at most {MAX_NOISE_LEVEL:g}, got {level}")
    validate_tune_config(config.tune)
    build_loggers(config.train, None)


def load_splits(config: ExperimentConfig, seed: int) -> DatasetSplits:
    """The data of ``config`` split by ``seed``; at least two views, and the noise view among them."""
    splits = load_dataset(
        config.data,
        seed=seed,
        views=config.views,
        labels=config.labels or None,
        id_column=config.id_column or None,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
    )
    if len(splits.view_dims) < 2:
        raise ValueError(
            f"{config.data}: {len(splits.view_dims)} view {list(splits.view_dims)}; fusion needs at least two "
            f"(`iidfusion datasets {config.data}` names every array or column it passed over; --views chooses)"
        )
    check_noise_view(config, splits)
    return splits


def check_noise_view(config: ExperimentConfig, splits: DatasetSplits) -> None:
    """The noise view of ``config`` is 'all' or a view of ``splits``; on a feature cache (test
    splits of noisy inputs), every noise level is cached and the view is 'all' (the raw-input
    protocol corrupts each modality with its own coin), so no level falls back to feature noise.
    """
    view = config.eval.noise_view
    if view != "all" and view not in splits.view_dims:
        raise ValueError(f"noise view {view!r} is not a view of {splits.name}; views: {list(splits.view_dims)}")
    cached = sorted(splits.input_noise_tests)
    if cached:
        missing = [level for level in config.eval.noise if float(level) not in splits.input_noise_tests]
        if missing:
            raise ValueError(
                f"{config.data}: noise levels {missing} are not in this feature cache (cached: {cached}); "
                f"run `iidfusion extract ... --noise {','.join(f'{x:g}' for x in sorted({*cached, *missing}))}`"
            )
        if view != "all":
            raise ValueError(
                f"{config.data}: a feature cache's noisy test splits corrupt every modality; --noise-view must be 'all'"
            )
