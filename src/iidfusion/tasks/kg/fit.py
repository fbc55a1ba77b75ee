"""Training a multimodal KG model on the engine: the run, model selection on validation, resume, run files.

OTKGE's protocol: shuffled training queries with reciprocals, batches of 1-N cross-entropy,
Adagrad (lr 0.1), filtered validation every few epochs. We keep the model of the best
validation MRR and report its test metrics (OTKGE prints the test metrics of the last epoch;
selecting on validation is the standard, leak-free choice and says the same when training
has converged).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from iidfusion.core.config import check_rules, iter_options
from iidfusion.core.provenance import provenance
from iidfusion.engine import resume as resume_checks
from iidfusion.engine.checkpoint import read_checkpoint
from iidfusion.engine.outputs import staged_files
from iidfusion.engine.resume import RunRecord, data_digest
from iidfusion.engine.trainer import (
    BestWeights,
    build_loggers,
    build_trainer,
    check_trainer_settings,
    fit_interruptible,
    quiet_lightning,
    spawns_processes,
    trainer_device,
)
from iidfusion.kg.data import KnowledgeGraph
from iidfusion.kg.evaluate import LinkPredictionMetrics
from iidfusion.kg.models import KGModel, create_kg_model, get_kg_model_class
from iidfusion.kg.models.base import check_strategy_options
from iidfusion.tasks.kg.checkpoint import CHECKPOINT_NAME, kg_checkpoint
from iidfusion.tasks.kg.config import KGExperimentConfig
from iidfusion.tasks.kg.data import KGDataModule
from iidfusion.tasks.kg.module import KGModule, ValidationSchedule


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
    (and the trainer's hardware settings built as the run will).
    """
    _validate(config)
    get_kg_model_class(config.model.name).check_options(config.model.options)
    check_strategy_options(config.model)
    iid, rank = config.objective.iid, config.model.rank
    if iid.beta > 0 and iid.d1 and not 1 <= iid.d1 <= rank + 1:
        raise ValueError(
            f"objective.iid.d1 = {iid.d1} Fourier bins do not fit L_dc's embeddings of width {2 * rank} "
            f"(--rank {rank}): it must be in [1, {rank + 1}], or 0 for min(16, rank + 1)"
        )
    check_trainer_settings(config.train)


def _validate(config: KGExperimentConfig) -> None:
    check_rules(config)
    get_kg_model_class(config.model.name)  # a ValueError naming --model for an unknown name
    train = config.train
    if spawns_processes(train.strategy) and not train.checkpoints:
        raise ValueError(
            f"train.strategy (--strategy) {train.strategy!r} trains in child processes, whose history and "
            "best weights come back through the last checkpoint: it needs train.checkpoints"
        )
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

    Lightning trains (:class:`~iidfusion.tasks.kg.module.KGModule`, the trainer of
    :func:`~iidfusion.engine.trainer.build_trainer`). ``run_dir`` receives checkpoints and
    logs as ``config.train`` asks (none when ``None``); ``resume``: a checkpoint of this run
    (``run_dir/checkpoints/last.ckpt``) to continue from, refused if it is of another run
    (:func:`check_resume`). ``log``: a line per validation on stderr.
    """
    _validate(config)
    if spawns_processes(config.train.strategy) and run_dir is None:
        raise ValueError(f"train.strategy (--strategy) {config.train.strategy!r} needs an output folder (run_dir)")
    digest = graph_digest(kg, features)
    if resume is not None:
        check_resume(resume, config, digest)
    quiet_lightning()
    threads = torch.get_num_threads()
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    try:
        return _fit(kg, features, config, log, None if run_dir is None else Path(run_dir), resume, digest)
    finally:
        torch.set_num_threads(threads)


def _fit(
    kg: KnowledgeGraph,
    features: Mapping[str, Tensor],
    config: KGExperimentConfig,
    log: Callable[[str], None] | None,
    run_dir: Path | None,
    resume: str | Path | None,
    digest: str,
) -> KGFitResult:
    start = time.perf_counter()
    module = KGModule(build_model(kg, features, config), kg, config, log=log)
    data = KGDataModule(kg, batch_size=config.train.batch_size, seed=config.seed)
    best = BestWeights(module.monitor)
    trainer = build_trainer(
        config.train,
        run_dir,
        config.seed,
        best,
        record=RunRecord(config.model.name, config.seed, digest),
        description=f"kg seed {config.seed}",
        callbacks=[ValidationSchedule(config.train.eval_every, config.train.max_epochs)],
        patience=config.train.patience,
    )
    with warnings.catch_warnings():
        # The best checkpoint waits for the first validation (epoch eval_every) without a word.
        warnings.filterwarnings("ignore", message=rf"`ModelCheckpoint\(monitor='{module.monitor}'\)` could not find")
        # A resumed run writes its checkpoints where the interrupted one did, by design.
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        fit_interruptible(trainer, module, data, resume)
    if best.weights is None:  # trained in child processes (ddp_spawn, ddp_fork): read what rank 0 saved
        assert run_dir is not None
        state = read_checkpoint(run_dir / "checkpoints" / "last.ckpt", "the run's last checkpoint")
        best.load_state_dict(state["callbacks"][BestWeights.__qualname__])
        module.history = list(state["kg"]["history"])
    assert best.weights is not None  # the last epoch is always validated (early stopping stops after one)
    model = copy.deepcopy(module.model).to(trainer.strategy.root_device)
    model.load_state_dict(best.weights)
    valid = module.evaluate("valid", model)
    return KGFitResult(
        model.cpu(),
        best.best_epoch + 1,
        valid,
        module.evaluate("test", model),
        module.history,
        time.perf_counter() - start,
        trainer_device(trainer),
        trainer.is_global_zero,
    )


def graph_digest(kg: KnowledgeGraph, features: Mapping[str, Tensor]) -> str:
    """The data digest (:func:`~iidfusion.engine.resume.data_digest`) of the graph (names,
    splits) and of every feature modality (name, shape, values).
    """
    return data_digest(
        [
            "\n".join(kg.entities) + "\0",
            "\n".join(kg.relations) + "\0",
            kg.train,
            "\0",
            kg.valid,
            "\0",
            kg.test,
            "\0",
            *features.items(),
        ]
    )


# Options a resumed KG run may change: how long and where it trains and what it logs; the data
# and feature sources may be named otherwise (their content is checked by digest).
RESUMABLE_CHANGES = frozenset(
    {
        "data",
        "features",
        "train.max_epochs",
        "train.accelerator",
        "train.devices",
        "train.num_nodes",
        "train.strategy",
        "train.num_threads",
        "train.checkpoints",
        "train.loggers",
        "train.progress_bar",
    }
)


def check_resume(path: str | Path, config: KGExperimentConfig, digest: str) -> None:
    """Refuse to resume from ``path`` unless it is a checkpoint of this very run: written by
    ``iidfusion kg fit`` for the same model and seed, with the same settings (but
    :data:`RESUMABLE_CHANGES`) and on the same graph and features (``digest``, :func:`graph_digest`).
    """
    resume_checks.check_resume(
        path,
        command="iidfusion kg fit",
        method=config.model.name,
        seed=config.seed,
        options=iter_options(config),
        resumable=RESUMABLE_CHANGES,
        digest=digest,
        other_data=f"another graph or other features than --data {config.data} (their digest differs)",
    )


def save_run(result: KGFitResult, config: KGExperimentConfig, out: str | Path, kg: KnowledgeGraph) -> list[Path]:
    """Write ``config.yaml``, ``metrics.json`` and ``model.ckpt`` (:mod:`iidfusion.tasks.kg.checkpoint`) to
    ``out``, all or nothing.
    """
    with staged_files(out) as stage:
        stage.write_text("config.yaml", yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))
        record = result.summary() | provenance(config, device=result.device)
        stage.write_text("metrics.json", json.dumps(record, indent=2) + "\n")
        torch.save(kg_checkpoint(result.model, kg, config, best_epoch=result.best_epoch), stage.path(CHECKPOINT_NAME))
    return [Path(out) / name for name in ("config.yaml", "metrics.json", CHECKPOINT_NAME)]
