"""The configuration of a knowledge-graph experiment: its sections, the ``compare`` section, the YAML files.

``configs/kg/*.yaml`` hold a :class:`KGExperimentConfig` (``data``, ``features``, ``model``,
``objective``, ``train``) and, for ``kg compare``, a ``compare`` section
(:class:`KGCompareConfig`); :func:`load_kg_config` reads both from one file, with the loader
every command uses (:func:`iidfusion.core.config.merge_config`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from iidfusion.core.config import (
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_PROCESSES,
    MAX_RUNS,
    SEED_RULE,
    at_least,
    merge_config,
    one_of,
    option,
    positive,
    redefault,
)
from iidfusion.core.files import read_config_file
from iidfusion.engine.settings import trainer_option
from iidfusion.kg.evaluate import DEFAULT_TIE_POLICY, TIE_POLICIES
from iidfusion.kg.models import KGModelConfig
from iidfusion.kg.objective import KGObjectiveConfig
from iidfusion.losses.config import IIDConfig

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adagrad": torch.optim.Adagrad,
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}


@dataclass
class KGTrainConfig:
    """Training: epochs, batch size, optimizer (OTKGE: Adagrad, lr 0.1), evaluation cadence,
    and the Lightning trainer (:func:`iidfusion.engine.trainer.build_trainer`, as ``iidfusion fit``).

    ``tie_policy`` of the filtered ranks ("pessimistic" as OTKGE, "realistic", "optimistic").
    ``accelerator`` / ``devices`` / ``num_nodes`` / ``strategy``: Lightning's (``strategy`` is the
    trainer's, e.g. "ddp"; the fusion strategy is ``model.strategy``); ``batch_size`` is per
    process. ``num_threads``: CPU threads of torch during the run (0: torch's default). On a
    small graph every tensor is tiny and several threads mostly wait on each other, the more so
    on a shared machine. ``checkpoints``: best and last under ``<out>/checkpoints`` (what
    ``--resume`` continues); ``loggers``: "csv", "tensorboard" (under ``<out>``);
    ``progress_bar``: one bar over the epochs on stderr. ``patience`` > 0 stops a run after that
    many validations without a better validation MRR (training to convergence with a large
    ``max_epochs``); 0 trains ``max_epochs``. KG runs train in float32.
    """

    max_epochs: int = option(100, "training epochs", rule=at_least(1, MAX_EPOCHS))
    batch_size: int = option(1000, "training batch size (per process)", rule=at_least(1, MAX_BATCH))
    learning_rate: float = option(0.1, "learning rate (OTKGE: Adagrad at 0.1)", flag="--lr", rule=positive())
    optimizer: str = option("adagrad", "optimizer: adagrad, adam or sgd", rule=one_of(tuple(OPTIMIZERS)))
    eval_every: int = option(5, "validate every N epochs (and at the last)", rule=at_least(1, MAX_EPOCHS))
    patience: int = option(
        0,
        "early stopping: validations without a better validation MRR (0: off, train --max-epochs)",
        rule=at_least(0, MAX_EPOCHS),
    )
    eval_batch_size: int = option(1024, "queries per batch of the filtered ranking", rule=at_least(1, MAX_BATCH))
    tie_policy: str = option(
        DEFAULT_TIE_POLICY,
        "rank of tied scores: pessimistic (OTKGE), realistic or optimistic",
        rule=one_of(tuple(TIE_POLICIES)),
    )
    # Lightning's placement and what a run writes: the engine's options, as in `fit` (same flags, help and rules).
    accelerator: str = trainer_option("accelerator")
    devices: str = trainer_option("devices")
    num_nodes: int = trainer_option("num_nodes")
    strategy: str = trainer_option("strategy")
    num_threads: int = option(
        0, "torch CPU threads of the run (0: torch's default)", flag="--threads", rule=at_least(0, MAX_PROCESSES)
    )
    checkpoints: bool = trainer_option("checkpoints")
    loggers: tuple[str, ...] = trainer_option("loggers")
    progress_bar: bool = trainer_option("progress_bar")


@dataclass
class KGExperimentConfig:
    """One KG experiment. ``data``: a graph name (umls, wn9img, fbimg) or a folder of triples;
    ``features``: {modality: source} (:func:`iidfusion.kg.features.build_modality_features`;
    empty: the graph folder's own, :func:`~iidfusion.kg.features.default_feature_sources`);
    ``vocabulary``: "train" or "all".
    """

    data: str = option("umls", "umls (bundled with pykeen), wn9img, fbimg, or a folder with train/valid/test")
    vocabulary: str = option(
        "train", "entity ids from the training split only (train), or all", rule=one_of(("train", "all"))
    )
    features: dict[str, str] = field(default_factory=dict, metadata={"help": "feature modalities: {name: source}"})
    seed: int = option(0, "seed of initialisation and batch order", rule=SEED_RULE)
    model: KGModelConfig = field(default_factory=KGModelConfig)
    objective: KGObjectiveConfig = field(default_factory=KGObjectiveConfig)
    train: KGTrainConfig = field(default_factory=KGTrainConfig)


@dataclass(frozen=True)
class KGCompareConfig:
    """The ``compare`` section of a KG config: ``seeds`` N (seeds 0..N-1, as ``--seeds`` of every
    command) and the IID arm's ``alpha`` / ``beta`` (default: the library's ``loss.alpha`` / ``loss.beta``, as ``fit``).
    """

    seeds: int = option(3, "seeds 0..N-1 of each arm", rule=at_least(1, MAX_RUNS))
    alpha: float = redefault(IIDConfig, "alpha", IIDConfig.alpha, "the IID arm's weight of L_ic")
    beta: float = redefault(IIDConfig, "beta", IIDConfig.beta, "the IID arm's weight of L_dc")


def load_experiment_config(path: str | Path) -> KGExperimentConfig:
    """A :class:`KGExperimentConfig` from a YAML file (the ``configs/kg/*.yaml`` files); the
    ``compare`` section is read by ``kg compare`` (:func:`load_kg_config`).
    """
    values = read_config_file(path)
    values.pop("compare", None)
    return kg_config_from_dict(values, str(path))


def load_kg_config(path: str | Path | None) -> tuple[KGExperimentConfig, KGCompareConfig]:
    """The experiment and its ``compare`` section from one read of the YAML file at ``path``
    (None: the defaults).
    """
    if path is None:
        return KGExperimentConfig(), KGCompareConfig()
    values = read_config_file(path)
    compare = merge_config(KGCompareConfig(), values.pop("compare", None) or {}, str(path), "compare.")
    return kg_config_from_dict(values, str(path)), compare


def kg_config_from_dict(values: Mapping[str, Any], source: str) -> KGExperimentConfig:
    """The :class:`KGExperimentConfig` of a config file's or a checkpoint's mapping; an unknown
    key is an error naming ``source``.
    """
    return merge_config(KGExperimentConfig(), values, source)
