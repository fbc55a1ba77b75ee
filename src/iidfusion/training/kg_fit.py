"""Training a multimodal KG model: configuration, the epoch loop, model selection, run files.

OTKGE's protocol: shuffled training queries with reciprocals, batches of 1-N cross-entropy,
Adagrad (lr 0.1), filtered validation every few epochs. We keep the model of the best
validation MRR and report its test metrics (OTKGE prints the test metrics of the last epoch;
selecting on validation is the standard, leak-free choice and says the same when training
has converged).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import sys
import time
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from iidfusion.kg.data import KnowledgeGraph, with_reciprocals
from iidfusion.kg.evaluate import (
    DEFAULT_TIE_POLICY,
    TIE_POLICIES,
    KnownTails,
    LinkPredictionMetrics,
    TiePolicy,
    evaluate_link_prediction,
)
from iidfusion.kg.model import KGModelConfig, check_strategy_options
from iidfusion.kg.objective import IIDTermsConfig, KGObjective, KGObjectiveConfig, degree_weights
from iidfusion.kg.registry import KGModel, available_kg_models, create_kg_model, get_kg_model_class
from iidfusion.provenance import provenance
from iidfusion.core.config import merge_config
from iidfusion.training.config import read_config_file
from iidfusion.training.outputs import staged_files

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adagrad": torch.optim.Adagrad,
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}


@dataclass
class KGTrainConfig:
    """The loop: epochs, batch size, optimizer (OTKGE: Adagrad, lr 0.1), evaluation cadence.

    ``tie_policy`` of the filtered ranks ("pessimistic" as OTKGE, "realistic", "optimistic");
    ``device``: "cpu", "cuda", ... or "auto" (CUDA when available). ``num_threads``: CPU
    threads of torch during the run (0: torch's default). On a small graph every tensor is
    tiny and several threads mostly wait on each other, the more so on a shared machine.
    """

    max_epochs: int = 100
    batch_size: int = 1000
    learning_rate: float = 0.1
    optimizer: str = "adagrad"
    eval_every: int = 5
    eval_batch_size: int = 1024
    tie_policy: str = DEFAULT_TIE_POLICY
    device: str = "cpu"
    num_threads: int = 0


@dataclass
class KGExperimentConfig:
    """One KG experiment. ``data``: a graph name (umls, wn9img, fbimg) or a folder of triples;
    ``features``: {modality: source} (:func:`iidfusion.kg.features.build_modality_features`;
    empty: the graph folder's own, :func:`~iidfusion.kg.features.default_feature_sources`);
    ``vocabulary``: "train" or "all"."""

    data: str = "umls"
    vocabulary: str = "train"
    features: dict[str, str] = field(default_factory=dict)
    seed: int = 0
    model: KGModelConfig = field(default_factory=KGModelConfig)
    objective: KGObjectiveConfig = field(default_factory=KGObjectiveConfig)
    train: KGTrainConfig = field(default_factory=KGTrainConfig)


def load_experiment_config(path: str | Path) -> KGExperimentConfig:
    """A :class:`KGExperimentConfig` from a YAML file (the ``configs/kg/*.yaml`` files); the
    ``compare`` section is read by ``kg compare`` (:func:`iidfusion.training.kg_compare.load_kg_config`)."""
    values = read_config_file(path)
    values.pop("compare", None)
    return merge_config(KGExperimentConfig(), values, str(path))


@dataclass
class KGFitResult:
    """A trained model at its best validation epoch and what the run measured."""

    model: KGModel
    best_epoch: int
    valid: LinkPredictionMetrics
    test: LinkPredictionMetrics
    history: list[dict[str, float]]
    seconds: float

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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(kg: KnowledgeGraph, features: Mapping[str, Tensor], config: KGExperimentConfig) -> KGModel:
    """The model ``config.model.name`` for ``kg``, initialised from ``config.seed``."""
    torch.manual_seed(config.seed)
    return create_kg_model(
        kg.num_entities, kg.num_relations, features, config.model, num_train_queries=2 * len(kg.train)
    )


# Flags of `iidfusion kg` that set a config key (messages name both).
_FLAGS = {
    "seed": "--seed", "model.name": "--model", "model.rank": "--rank", "objective.iid.alpha": "--alpha", "objective.iid.beta": "--beta",
    "train.max_epochs": "--max-epochs", "train.batch_size": "--batch-size", "train.eval_every": "--eval-every",
    "train.device": "--device", "vocabulary": "--vocabulary",
}  # fmt: skip


def _kg_rules() -> dict[str, Any]:
    from iidfusion.core.config import SEED_RULE, Rule, at_least, positive
    from iidfusion.training.config import iter_options

    iid = {option.key: option.rule for option in iter_options(IIDTermsConfig(), "objective.iid.") if option.rule}
    return {
        "seed": SEED_RULE,
        "model.name": Rule(lambda v: v in available_kg_models(), f"one of {', '.join(available_kg_models())}"),
        "model.rank": at_least(1), "model.init_scale": positive(),
        "model.projection.plan_entities": at_least(1), "model.projection.cost_scale": positive(),
        "model.projection.eps": positive(), "model.projection.max_iter": at_least(1),
        "model.projection.tol": at_least(0), "model.projection.refresh_every": at_least(1),
        "objective.n3_weight": at_least(0), **iid, "objective.iid.coherence_points": at_least(2),
        "train.max_epochs": at_least(1), "train.batch_size": at_least(1), "train.learning_rate": positive(),
        "train.eval_every": at_least(1), "train.eval_batch_size": at_least(1), "train.num_threads": at_least(0),
        "vocabulary": Rule(lambda v: v in ("train", "all"), "'train' or 'all'"),
    }  # fmt: skip


def validate_kg_config(config: KGExperimentConfig) -> None:
    """Every option of ``config`` in range, before any data is read: a ValueError naming the key."""
    for key, rule in _kg_rules().items():
        value = functools.reduce(getattr, key.split("."), config)
        if not rule.check(value):
            flag = f" ({_FLAGS[key]})" if key in _FLAGS else ""
            raise ValueError(f"{key}{flag} must be {rule.expected}, got {value!r}")
    get_kg_model_class(config.model.name).check_options(config.model.options)
    check_strategy_options(config.model)
    iid, rank = config.objective.iid, config.model.rank
    if iid.beta > 0 and iid.d1 and not 1 <= iid.d1 <= rank + 1:
        raise ValueError(
            f"objective.iid.d1 = {iid.d1} Fourier bins do not fit L_dc's embeddings of width {2 * rank} "
            f"(--rank {rank}): it must be in [1, {rank + 1}], or 0 for min(16, rank + 1)"
        )
    try:
        device = resolve_device(config.train.device)
    except RuntimeError as error:
        raise ValueError(f"train.device (--device) {config.train.device!r}: {str(error).splitlines()[0]}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device (--device) {config.train.device!r}: torch sees no CUDA GPU on this machine")
    _validate(config)


def _validate(config: KGExperimentConfig) -> None:
    train = config.train
    if train.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {train.optimizer!r}; expected one of {sorted(OPTIMIZERS)}")
    if train.max_epochs < 1 or train.batch_size < 1 or train.eval_every < 1 or not train.learning_rate > 0:
        raise ValueError(f"need max_epochs, batch_size, eval_every >= 1 and learning_rate > 0; got {train}")
    if train.num_threads < 0:
        raise ValueError(f"num_threads must be >= 0 (0: torch's default), got {train.num_threads}")
    if train.tie_policy not in TIE_POLICIES:
        raise ValueError(f"unknown tie policy {train.tie_policy!r}; expected one of {list(TIE_POLICIES)}")


def fit_kg(
    kg: KnowledgeGraph,
    features: Mapping[str, Tensor],
    config: KGExperimentConfig,
    *,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> KGFitResult:
    """Train on ``kg.train``, select on filtered validation MRR, evaluate that model on test.

    ``progress``: a bar over the epochs on stderr (:mod:`iidfusion.progress`).
    """
    from iidfusion.progress import progress_bar

    _validate(config)
    threads = torch.get_num_threads()
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    try:
        with progress_bar(config.train.max_epochs, f"kg seed {config.seed}", enabled=progress, unit="epoch") as bar:
            return _fit(kg, features, config, log, bar)
    finally:
        torch.set_num_threads(threads)


def _fit(
    kg: KnowledgeGraph, features: Mapping[str, Tensor], config: KGExperimentConfig, log: Callable[[str], None] | None,
    bar: Any,
) -> KGFitResult:
    start = time.perf_counter()
    device = resolve_device(config.train.device)
    model = build_model(kg, features, config).to(device)
    objective = KGObjective(
        config.objective, width=model.width, class_weights=degree_weights(kg.train, kg.num_entities)
    ).to(device)
    optimizer = OPTIMIZERS[config.train.optimizer](model.parameters(), lr=config.train.learning_rate)
    known = KnownTails.from_kg(kg).to(device)
    queries = with_reciprocals(kg.train, kg.num_relations).to(device)
    generator = torch.Generator().manual_seed(config.seed)
    need_modalities = objective.needs_modalities

    def evaluate(split: str) -> LinkPredictionMetrics:
        model.eval()
        return evaluate_link_prediction(
            model.scorer(), kg, split, known=known, batch_size=config.train.eval_batch_size,
            tie_policy=typing.cast(TiePolicy, config.train.tie_policy),
        )

    history: list[dict[str, float]] = []
    best_valid: LinkPredictionMetrics | None = None
    best_epoch, best_state = 0, None
    for epoch in range(1, config.train.max_epochs + 1):
        model.train()
        order = torch.randperm(len(queries), generator=generator).to(device)
        sums: dict[str, float] = {}
        for begin in range(0, len(order), config.train.batch_size):
            index = order[begin : begin + config.train.batch_size]
            batch = queries[index]
            output = model(batch[:, :2], need_modalities=need_modalities)
            loss = objective(output, batch, index, model.strategy, model)
            loss.check_finite(f"at epoch {epoch}, batch {begin // config.train.batch_size}")
            optimizer.zero_grad(set_to_none=True)
            loss.total.backward()
            optimizer.step()
            for name, value in loss.terms.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach()) * len(index)
        if model.strategy is not None:
            model.strategy.on_train_epoch_end()
        record: dict[str, float] = {"epoch": epoch} | {f"loss/{k}": v / len(queries) for k, v in sums.items()}
        if epoch % config.train.eval_every == 0 or epoch == config.train.max_epochs:
            valid = evaluate("valid")
            record["valid/mrr"] = valid.mrr
            if best_valid is None or valid.mrr > best_valid.mrr:
                best_valid, best_epoch = valid, epoch
                best_state = copy.deepcopy(model.state_dict())
            bar.set_postfix_str(f"valid MRR {valid.mrr:.4f}", refresh=False)
            if log is not None:
                with bar.external_write_mode(file=sys.stderr):
                    log(f"epoch {epoch}: loss {record.get('loss/task', math.nan):.4f}, valid MRR {valid.mrr:.4f}")
        bar.update(1)
        history.append(record)
    assert best_valid is not None and best_state is not None  # the last epoch is always evaluated
    model.load_state_dict(best_state)
    return KGFitResult(model, best_epoch, best_valid, evaluate("test"), history, time.perf_counter() - start)


def save_run(result: KGFitResult, config: KGExperimentConfig, out: str | Path, kg: KnowledgeGraph) -> list[Path]:
    """Write ``config.yaml``, ``metrics.json`` and ``model.ckpt`` (:mod:`iidfusion.training.kg_checkpoint`) to
    ``out``, all or nothing."""
    from iidfusion.training.kg_checkpoint import CHECKPOINT_NAME, kg_checkpoint

    with staged_files(out) as stage:
        stage.write_text("config.yaml", yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))
        record = result.summary() | provenance(config, device=str(resolve_device(config.train.device)))
        stage.write_text("metrics.json", json.dumps(record, indent=2) + "\n")
        torch.save(kg_checkpoint(result.model, kg, config, best_epoch=result.best_epoch), stage.path(CHECKPOINT_NAME))
    return [Path(out) / name for name in ("config.yaml", "metrics.json", CHECKPOINT_NAME)]
