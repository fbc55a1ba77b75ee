"""Training a multimodal KG model: configuration, the run on Lightning, model selection, run files.

OTKGE's protocol: shuffled training queries with reciprocals, batches of 1-N cross-entropy,
Adagrad (lr 0.1), filtered validation every few epochs. We keep the model of the best
validation MRR and report its test metrics (OTKGE prints the test metrics of the last epoch;
selecting on validation is the standard, leak-free choice and says the same when training
has converged).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import yaml
from torch import Tensor

from iidfusion.kg.data import KnowledgeGraph
from iidfusion.kg.evaluate import DEFAULT_TIE_POLICY, TIE_POLICIES, LinkPredictionMetrics
from iidfusion.kg.model import KGModelConfig, check_strategy_options
from iidfusion.kg.objective import KGObjectiveConfig
from iidfusion.kg.registry import KGModel, create_kg_model, get_kg_model_class
from iidfusion.provenance import provenance
from iidfusion.core.config import (
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_PROCESSES,
    SEED_RULE,
    at_least,
    merge_config,
    one_of,
    option,
    positive,
    redefault,
)
from iidfusion.training.config import TrainConfig, read_config_file
from iidfusion.training.outputs import staged_files

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adagrad": torch.optim.Adagrad,
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}


@dataclass
class KGTrainConfig:
    """Training: epochs, batch size, optimizer (OTKGE: Adagrad, lr 0.1), evaluation cadence,
    and the Lightning trainer (:func:`iidfusion.training.runner.build_trainer`, as ``iidfusion fit``).

    ``tie_policy`` of the filtered ranks ("pessimistic" as OTKGE, "realistic", "optimistic").
    ``accelerator`` / ``devices`` / ``num_nodes`` / ``strategy``: Lightning's (``strategy`` is the
    trainer's, e.g. "ddp"; the fusion strategy is ``model.strategy``); ``batch_size`` is per
    process. ``num_threads``: CPU threads of torch during the run (0: torch's default). On a
    small graph every tensor is tiny and several threads mostly wait on each other, the more so
    on a shared machine. ``checkpoints``: best and last under ``<out>/checkpoints`` (what
    ``--resume`` continues); ``loggers``: "csv", "tensorboard" (under ``<out>``);
    ``progress_bar``: one bar over the epochs on stderr. KG runs stop after ``max_epochs``
    (no early stopping) and train in float32.
    """

    max_epochs: int = option(100, "training epochs", rule=at_least(1, MAX_EPOCHS))
    batch_size: int = option(1000, "training batch size (per process)", rule=at_least(1, MAX_BATCH))
    learning_rate: float = option(0.1, "learning rate (OTKGE: Adagrad at 0.1)", flag="--lr", rule=positive())
    optimizer: str = option("adagrad", "optimizer: adagrad, adam or sgd", rule=one_of(tuple(OPTIMIZERS)))
    eval_every: int = option(5, "validate every N epochs (and at the last)", rule=at_least(1, MAX_EPOCHS))
    eval_batch_size: int = option(1024, "queries per batch of the filtered ranking", rule=at_least(1, MAX_BATCH))
    tie_policy: str = option(DEFAULT_TIE_POLICY, "rank of tied scores: pessimistic (OTKGE), realistic or optimistic",
                             rule=one_of(tuple(TIE_POLICIES)))
    # Lightning's placement and what a run writes: the options of `fit` (same flags, help and rules).
    accelerator: str = redefault(TrainConfig, "accelerator", "auto")
    devices: str = redefault(TrainConfig, "devices", "auto")
    num_nodes: int = redefault(TrainConfig, "num_nodes", 1)
    strategy: str = redefault(TrainConfig, "strategy", "auto")
    num_threads: int = option(0, "torch CPU threads of the run (0: torch's default)", flag="--threads", rule=at_least(0, MAX_PROCESSES))
    checkpoints: bool = redefault(TrainConfig, "checkpoints", True)
    loggers: tuple[str, ...] = redefault(TrainConfig, "loggers", ("csv", "tensorboard"))
    progress_bar: bool = redefault(TrainConfig, "progress_bar", True)

    # What build_trainer reads that a KG run does not vary.
    patience: ClassVar[int] = 0
    min_epochs: ClassVar[int] = 0
    stop_on: ClassVar[str] = "acc"
    precision: ClassVar[str] = "32-true"


@dataclass
class KGExperimentConfig:
    """One KG experiment. ``data``: a graph name (umls, wn9img, fbimg) or a folder of triples;
    ``features``: {modality: source} (:func:`iidfusion.kg.features.build_modality_features`;
    empty: the graph folder's own, :func:`~iidfusion.kg.features.default_feature_sources`);
    ``vocabulary``: "train" or "all"."""

    data: str = option("umls", "umls (bundled with pykeen), wn9img, fbimg, or a folder with train/valid/test")
    vocabulary: str = option("train", "entity ids from the training split only (train), or all", rule=one_of(("train", "all")))
    features: dict[str, str] = field(default_factory=dict, metadata={"help": "feature modalities: {name: source}"})
    seed: int = option(0, "seed of initialisation and batch order", rule=SEED_RULE)
    model: KGModelConfig = field(default_factory=KGModelConfig)
    objective: KGObjectiveConfig = field(default_factory=KGObjectiveConfig)
    train: KGTrainConfig = field(default_factory=KGTrainConfig)


def load_experiment_config(path: str | Path) -> KGExperimentConfig:
    """A :class:`KGExperimentConfig` from a YAML file (the ``configs/kg/*.yaml`` files); the
    ``compare`` section is read by ``kg compare`` (:func:`iidfusion.training.kg_compare.load_kg_config`)."""
    values = read_config_file(path)
    values.pop("compare", None)
    return kg_config_from_dict(values, str(path))


def kg_config_from_dict(values: Mapping[str, Any], source: str) -> KGExperimentConfig:
    """The :class:`KGExperimentConfig` of a config file's or a checkpoint's mapping; the earlier
    ``train.device`` ("cpu", "cuda", "cuda:1", "auto": one device) is read as the
    ``train.accelerator`` and ``train.devices`` it meant. An unknown key is an error naming ``source``."""
    train = values.get("train")
    if isinstance(train, Mapping) and "device" in train:
        train = dict(train)
        train.update(legacy_device(train.pop("device"), source))
        values = {**values, "train": train}
    return merge_config(KGExperimentConfig(), values, source)


def legacy_device(device: Any, source: str) -> dict[str, str]:
    """``train.accelerator`` and ``train.devices`` for the earlier ``train.device`` (``--device``)."""
    name = str(device)
    kind, _, index = name.partition(":")
    accelerator = {"cpu": "cpu", "cuda": "gpu", "auto": "auto"}.get(kind)
    if accelerator is None or (index and not (kind == "cuda" and index.isdigit())):
        raise ValueError(f"train.device (--device) {device!r} in {source}: expected cpu, cuda, cuda:N or auto")
    return {"accelerator": accelerator, "devices": f"{index}," if index else "1"}


@dataclass
class KGFitResult:
    """A trained model at its best validation epoch and what the run measured."""

    model: KGModel
    best_epoch: int
    valid: LinkPredictionMetrics
    test: LinkPredictionMetrics
    history: list[dict[str, float]]
    seconds: float
    device: str = "cpu"  # what it trained on, e.g. "cpu, 2 processes" (the run's provenance)
    is_global_zero: bool = True  # False in the other processes of a data-parallel run

    def summary(self) -> dict[str, Any]:
        return {
            "best_epoch": self.best_epoch,
            "valid": self.valid.as_dict(),
            "test": self.test.as_dict(),
            "test_per_direction": self.test.per_direction,
            "tie_policy": self.test.tie_policy,
            "seconds": self.seconds,
            "history": self.history,
        }


def build_model(kg: KnowledgeGraph, features: Mapping[str, Tensor], config: KGExperimentConfig) -> KGModel:
    """The model ``config.model.name`` for ``kg``, initialised from ``config.seed``."""
    torch.manual_seed(config.seed)
    return create_kg_model(
        kg.num_entities, kg.num_relations, features, config.model, num_train_queries=2 * len(kg.train)
    )


def validate_kg_config(config: KGExperimentConfig) -> None:
    """Every option of ``config`` in range, before any data is read: a ValueError naming the key
    (and the trainer's hardware settings built as the run will)."""
    _validate(config)
    get_kg_model_class(config.model.name).check_options(config.model.options)
    check_strategy_options(config.model)
    iid, rank = config.objective.iid, config.model.rank
    if iid.beta > 0 and iid.d1 and not 1 <= iid.d1 <= rank + 1:
        raise ValueError(
            f"objective.iid.d1 = {iid.d1} Fourier bins do not fit L_dc's embeddings of width {2 * rank} "
            f"(--rank {rank}): it must be in [1, {rank + 1}], or 0 for min(16, rank + 1)"
        )
    from iidfusion.training.validation import check_trainer_settings

    check_trainer_settings(config.train)


def _validate(config: KGExperimentConfig) -> None:
    from iidfusion.training.validation import check_option_rules

    check_option_rules(config)
    get_kg_model_class(config.model.name)  # a ValueError naming --model for an unknown name
    train = config.train
    if _spawns(train) and not train.checkpoints:
        raise ValueError(
            f"train.strategy (--strategy) {train.strategy!r} trains in child processes, whose history and "
            "best weights come back through the last checkpoint: it needs train.checkpoints"
        )
    from iidfusion.training.runner import build_loggers

    build_loggers(train, None)


def fit_kg(
    kg: KnowledgeGraph,
    features: Mapping[str, Tensor],
    config: KGExperimentConfig,
    *,
    log: Callable[[str], None] | None = None,
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
) -> KGFitResult:
    """Train on ``kg.train``, select on filtered validation MRR, evaluate that model on test.

    Lightning trains (:class:`~iidfusion.training.kg_module.KGModule`, the trainer of
    :func:`~iidfusion.training.runner.build_trainer`). ``run_dir`` receives checkpoints and
    logs as ``config.train`` asks (none when ``None``); ``resume``: a checkpoint of this run
    (``run_dir/checkpoints/last.ckpt``) to continue from, refused if it is of another run
    (:func:`check_kg_resume`). ``log``: a line per validation on stderr.
    """
    from iidfusion.training.compare import quiet_lightning

    _validate(config)
    if _spawns(config.train) and run_dir is None:
        raise ValueError(f"train.strategy (--strategy) {config.train.strategy!r} needs an output folder (run_dir)")
    digest = kg_data_digest(kg, features)
    if resume is not None:
        check_kg_resume(resume, config, digest)
    quiet_lightning()
    threads = torch.get_num_threads()
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    try:
        return _fit(kg, features, config, log, None if run_dir is None else Path(run_dir), resume, digest)
    finally:
        torch.set_num_threads(threads)


def _fit(
    kg: KnowledgeGraph, features: Mapping[str, Tensor], config: KGExperimentConfig, log: Callable[[str], None] | None,
    run_dir: Path | None, resume: str | Path | None, digest: str,
) -> KGFitResult:
    from iidfusion.training.kg_module import MONITOR, KGDataModule, KGModule, ValidationSchedule
    from iidfusion.training.runner import BestWeights, RunRecord, build_trainer, fit_interruptible, read_checkpoint, trainer_device

    start = time.perf_counter()
    module = KGModule(build_model(kg, features, config), kg, config, log=log)
    data = KGDataModule(kg, batch_size=config.train.batch_size, seed=config.seed)
    best = BestWeights(MONITOR)
    trainer = build_trainer(
        config.train, run_dir, config.seed, best, record=RunRecord(config.model.name, config.seed, digest),
        description=f"kg seed {config.seed}", monitor=MONITOR,
        callbacks=[ValidationSchedule(config.train.eval_every, config.train.max_epochs)],
    )  # fmt: skip
    with warnings.catch_warnings():
        # The best checkpoint waits for the first validation (epoch eval_every) without a word.
        warnings.filterwarnings("ignore", message=rf"`ModelCheckpoint\(monitor='{MONITOR}'\)` could not find")
        # A resumed run writes its checkpoints where the interrupted one did, by design.
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        fit_interruptible(trainer, module, data, resume)
    if best.weights is None:  # trained in child processes (ddp_spawn, ddp_fork): read what rank 0 saved
        assert run_dir is not None
        state = read_checkpoint(run_dir / "checkpoints" / "last.ckpt", "the run's last checkpoint")
        best.load_state_dict(state["callbacks"][BestWeights.__qualname__])
        module.history = list(state["kg"]["history"])
    assert best.weights is not None  # the last epoch is always validated
    model = copy.deepcopy(module.model).to(trainer.strategy.root_device)
    model.load_state_dict(best.weights)
    valid = module.evaluate("valid", model)
    return KGFitResult(
        model.cpu(), best.best_epoch + 1, valid, module.evaluate("test", model), module.history,
        time.perf_counter() - start, trainer_device(trainer), trainer.is_global_zero,
    )  # fmt: skip


def _spawns(train: KGTrainConfig) -> bool:
    """Whether Lightning trains in child processes for ``train.strategy`` (``runner.build_strategy``)."""
    return train.strategy.removesuffix("_find_unused_parameters_true") in ("ddp_spawn", "ddp_fork", "ddp_notebook")


def kg_data_digest(kg: KnowledgeGraph, features: Mapping[str, Tensor]) -> str:
    """SHA-256 of the graph (names, splits) and of every feature modality (name, shape, values)."""
    digest = hashlib.sha256()
    for names in (kg.entities, kg.relations):
        digest.update("\n".join(names).encode() + b"\0")
    for split in (kg.train, kg.valid, kg.test):
        digest.update(split.contiguous().cpu().numpy().tobytes() + b"\0")
    for name, matrix in features.items():
        digest.update(f"{name}{tuple(matrix.shape)}{matrix.dtype}".encode())
        digest.update(matrix.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


# Options a resumed KG run may change: how long and where it trains and what it logs; the data
# and feature sources may be named otherwise (their content is checked by digest).
KG_RESUMABLE_CHANGES = frozenset({
    "data", "features", "train.max_epochs", "train.accelerator", "train.devices", "train.num_nodes", "train.strategy",
    "train.num_threads", "train.checkpoints", "train.loggers", "train.progress_bar",
})  # fmt: skip


def check_kg_resume(path: str | Path, config: KGExperimentConfig, digest: str) -> None:
    """Refuse to resume from ``path`` unless it is a checkpoint of this very run: written by
    ``iidfusion kg fit`` for the same model and seed, with the same settings (but
    :data:`KG_RESUMABLE_CHANGES`) and on the same graph and features (``digest``, :func:`kg_data_digest`)."""
    from iidfusion.training.runner import refuse_changed_settings, resume_record

    saved, record = resume_record(path, "iidfusion kg fit", config.model.name, config.seed)
    from iidfusion.training.config import iter_options

    options = ((option.key, option.flag, option.default) for option in iter_options(config))
    refuse_changed_settings(path, saved, options, KG_RESUMABLE_CHANGES)
    if record.get("data") != digest:
        raise ValueError(
            f"--resume {path}: the run was trained on another graph or other features than --data {config.data} "
            "(their digest differs)"
        )


def save_run(result: KGFitResult, config: KGExperimentConfig, out: str | Path, kg: KnowledgeGraph) -> list[Path]:
    """Write ``config.yaml``, ``metrics.json`` and ``model.ckpt`` (:mod:`iidfusion.training.kg_checkpoint`) to
    ``out``, all or nothing."""
    from iidfusion.training.kg_checkpoint import CHECKPOINT_NAME, kg_checkpoint

    with staged_files(out) as stage:
        stage.write_text("config.yaml", yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))
        record = result.summary() | provenance(config, device=result.device)
        stage.write_text("metrics.json", json.dumps(record, indent=2) + "\n")
        torch.save(kg_checkpoint(result.model, kg, config, best_epoch=result.best_epoch), stage.path(CHECKPOINT_NAME))
    return [Path(out) / name for name in ("config.yaml", "metrics.json", CHECKPOINT_NAME)]
