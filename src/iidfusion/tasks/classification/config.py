"""Experiment configuration: dataclasses with documented defaults, YAML files and CLI flags.

One experiment is an :class:`ExperimentConfig`, grouped in sections (``model``, ``strategy``,
``loss``, ``optim``, ``train``, ``eval``) so no function takes twenty arguments. Values come, in
increasing precedence, from the dataclass defaults, a YAML file (``--config``) and the
command-line flags. Every leaf option carries its help text in the field metadata; the command
line (:mod:`iidfusion.cli.options`) builds one flag per leaf from it (``train.max_epochs`` ->
``--max-epochs``), so every option has a documented default in ``--help``. A key the schema does not know is an error
naming
it, never silently ignored.

The ``strategy`` section is not written here: it is one sub-section per registered fusion
strategy, the options dataclass that strategy declares (:func:`iidfusion.fusion.registry.strategy_sections`),
so this module names no strategy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from iidfusion.core.config import (
    MAX_BATCH,
    MAX_EPOCHS,
    MAX_LAYERS,
    MAX_PROCESSES,
    MAX_RUNS,
    MAX_WIDTH,
    SEED_RULE,
    Rule,
    at_least,
    merge_config,
    nest,
    one_of,
    option,
    positive,
)
from iidfusion.core.files import read_config_file
from iidfusion.engine.settings import trainer_option
from iidfusion.fusion.methods import MAIN_METHODS, MethodSpec, available_methods, get_method
from iidfusion.fusion.registry import StrategySections, strategy_sections
from iidfusion.losses.config import IIDConfig as LossConfig  # the ``loss`` section: IID's options, shared with the KG

PROBABILITY = Rule(lambda v: 0 <= v < 1, "in [0, 1)")
FRACTION = Rule(lambda v: 0 < v < 1, "in (0, 1)")


@dataclass(frozen=True)
class ModelConfig:
    """Encoders and fusion model (docs/method.md: encoders h_m, projections to width d)."""

    width: int = option(64, "common width d of the projected unimodal features", rule=at_least(1, MAX_WIDTH))
    hidden: int = option(128, "hidden units of each feature view's MLP encoder", rule=at_least(1, MAX_WIDTH))
    layers: int = option(1, "hidden layers of each MLP encoder (0: a linear encoder)", rule=at_least(0, MAX_LAYERS))
    dropout: float = option(0.0, "dropout in the MLP encoders", rule=PROBABILITY)
    unimodal_reduction: str = option(
        "sum",
        "the auxiliary unimodal CE terms over modalities: sum (as QMF, PDF) or mean",
        rule=one_of(("sum", "mean")),
    )
    unimodal_heads: str = option(
        "separate",
        "base structure: separate (the paper's: g trained on the fused feature only; QMF and PDF read "
        "heads of their own) or shared (the unimodal logits are g(z^m), trained with the unimodal CE)",
        rule=one_of(("separate", "shared")),
    )


@dataclass(frozen=True)
class OptimConfig:
    """AdamW optimizer, and an optional L2 penalty in the loss.

    ``l2`` adds ``l2 / 2 * sum ||W||^2`` over the trained weight matrices (biases and
    normalisation gains excluded, as a regularised logistic regression leaves its intercept
    free) to the training loss. AdamW's weight decay is decoupled: it shrinks every weight by
    ``lr * weight_decay`` per step whatever the loss, which at the small learning rates that
    pretrained features want hardly regularises; the penalty's gradient goes through Adam's
    normalisation with the loss's, and it is the regulariser of the linear probes the bases are
    compared with (docs/reproduce.md, "MVSA-Single with its real images").
    """

    lr: float = option(1e-3, "learning rate (AdamW)", rule=positive())
    weight_decay: float = option(1e-4, "weight decay (AdamW, decoupled from the loss)", rule=at_least(0))
    l2: float = option(
        0.0,
        "L2 penalty l2/2 * sum of squared weight matrices added to the training loss, biases excluded "
        "(the regulariser of a logistic regression; 0: none)",
        rule=at_least(0),
    )


@dataclass(frozen=True)
class TrainConfig:
    """Lightning trainer, data loading, checkpoints and logs."""

    max_epochs: int = option(100, "maximum training epochs", rule=at_least(1, MAX_EPOCHS))
    batch_size: int = option(128, "training batch size (per process)", rule=at_least(1, MAX_BATCH))
    patience: int = option(
        10, "early stopping: epochs without a better validation score (0: off)", rule=at_least(0, MAX_EPOCHS)
    )
    stop_on: str = option(
        "acc_or_loss",
        "early stopping's score: acc, loss, or acc_or_loss (either improving resets the patience)",
        rule=one_of(("acc", "loss", "acc_or_loss")),
    )
    min_epochs: int = option(0, "epochs trained before early stopping may stop a run", rule=at_least(0, MAX_EPOCHS))
    accelerator: str = trainer_option("accelerator")
    devices: str = trainer_option("devices")
    num_nodes: int = trainer_option("num_nodes")
    strategy: str = trainer_option("strategy")
    num_workers: int = option(0, "data-loader worker processes", rule=at_least(0, MAX_PROCESSES))
    threads: int = option(
        0,
        "torch CPU threads of this process (0: torch's default; 1 suits small models)",
        rule=at_least(0, MAX_PROCESSES),
    )
    precision: str = option("32-true", "Lightning precision: 32-true, bf16-mixed, 16-mixed, ...")
    loop: str = option(
        "auto",
        "training loop: lightning, plain (the same fit without Lightning's machinery, for one device with no "
        "checkpoints or loggers), or auto (plain wherever it runs the same fit)",
        rule=one_of(("auto", "lightning", "plain")),
    )
    gather_features: bool = option(False, "all-gather features across processes for L_dc (DDP)")
    monitor_distances: bool = option(
        True, "log per-pair Wasserstein distances on a fixed validation sample, every method"
    )
    monitor_samples: int = option(
        128, "validation samples (the first ones) the monitored distances use", rule=at_least(1, MAX_BATCH)
    )
    checkpoints: bool = trainer_option("checkpoints")
    loggers: tuple[str, ...] = trainer_option("loggers")
    progress_bar: bool = trainer_option("progress_bar")


@dataclass(frozen=True)
class EvalConfig:
    """Test-set evaluation: clean and under the feature-noise protocol (docs/reproduce.md, "Noise protocol")."""

    noise: tuple[float, ...] = option((0.0, 5.0, 10.0), "noise levels (units of the view's std / 10)")
    noise_view: str = option("all", "view that receives noise: 'all' or one view name")
    noise_kind: str = option(
        "gaussian", "noise kind: gaussian or salt-and-pepper", rule=one_of(("gaussian", "salt-and-pepper"))
    )
    noise_mask: str = option(
        "independent",
        "which views of a sample are corrupted: independent (each view its own p=0.5 coin, as QMF's code) "
        "or shared (one coin per sample for every view, the earlier protocol)",
        rule=one_of(("independent", "shared")),
    )


@dataclass(frozen=True)
class TuneConfig:
    """The paper's protocol (docs/method.md, "Tuning"): choose hyperparameters per method and seed
    on the validation split. Each grid applies to the methods that have the hyperparameter (alpha
    and the variant: methods with L_ic; beta and d1: with L_dc; lr, weight decay and the L2 penalty:
    every method), so the bases get the same budget for every hyperparameter they share; an empty grid is not tuned.
    """

    enabled: bool = option(
        False, "tune each method and seed on the validation split (the paper's protocol)", flag="--tune"
    )
    alpha: tuple[float, ...] = option((1.0, 0.1, 0.01, 0.001), "alpha grid (the paper's)", flag="--tune-alpha")
    beta: tuple[float, ...] = option(
        (1.0, 0.1, 0.01), "beta grid (docs/method.md: the paper's range mapped to ours)", flag="--tune-beta"
    )
    variant: tuple[str, ...] = option(
        (), "L_ic readings to choose from (empty: loss.variant, not tuned)", flag="--tune-variant"
    )
    lam: tuple[float, ...] = option((), "grid of L_ic's KL weight lam (empty: loss.lam, not tuned)", flag="--tune-lam")
    d1: tuple[int, ...] = option((), "d1 grid (empty: loss.d1, not tuned)", flag="--tune-d1")
    lr: tuple[float, ...] = option(
        (), "learning-rate grid, for every method (empty: optim.lr, not tuned)", flag="--tune-lr"
    )
    weight_decay: tuple[float, ...] = option(
        (),
        "AdamW weight-decay grid, for every method (empty: optim.weight_decay, not tuned)",
        flag="--tune-weight-decay",
    )
    l2: tuple[float, ...] = option(
        (), "L2-penalty grid, for every method (empty: optim.l2, not tuned)", flag="--tune-l2"
    )
    sampler: str = option("grid", "grid (every combination) or tpe (Optuna's TPE, --trials trials)", flag="--sampler")
    trials: int = option(
        0,
        "trials per method and seed with --sampler tpe (0: the grid's size)",
        flag="--trials",
        rule=at_least(0, MAX_RUNS),
    )
    storage: str = option(
        "",
        "Optuna storage URL shared by processes or machines, e.g. sqlite:///tune.db (empty: in memory)",
        flag="--storage",
    )
    pruner: str = option(
        "none",
        "Optuna pruner that stops unpromising trials from their validation accuracy per epoch: "
        "none, median or hyperband",
        flag="--pruner",
        rule=one_of(("none", "median", "hyperband")),
    )


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: the data, the method(s) and seed(s), and every section above."""

    data: str = option(
        "handwritten",
        "bundled data set name or path to a .mat, .npz, .csv or .parquet file (docs/reproduce.md, 'Data')",
    )
    views: tuple[str, ...] = option(
        (),
        "the data file's views: keys of matrices, cells or structs; for a table NAME=GLOB column patterns, e.g. "
        "image=img_*,tab=tab_* (empty: detected; a table's by column prefix before the first _)",
    )
    labels: str = option("", "key or column of the data file's labels (empty: detected)")
    id_column: str = option(
        "", "key or column of the rows' ids: not a feature; predictions name each row by it (empty: a column 'id')"
    )
    val_fraction: float = option(
        0.1,
        "share of each class held out for validation, drawn by the seed (data without a validation split of its own)",
        rule=FRACTION,
    )
    test_fraction: float = option(
        0.2,
        "share of each class held out for test, drawn by the seed (data without a test split of its own)",
        rule=FRACTION,
    )
    method: str = option("iid-p", "method trained by `fit`")
    seed: int = option(0, "seed of `fit`", rule=SEED_RULE)
    methods: tuple[str, ...] = option(
        ("main",), "methods compared by `compare`; 'main' = the nine main methods, 'all' = with the ablations"
    )
    seeds: int = option(5, "seeds 0..N-1 run by `compare` and `suite`", rule=at_least(1, MAX_RUNS))
    jobs: int = option(
        1,
        "fits `compare` runs at once, each in its own process (CPU: pair with threads=1)",
        rule=at_least(1, MAX_PROCESSES),
    )
    out: str = option("runs", "output folder")
    datasets: tuple[str, ...] = option(
        ("handwritten", "synthetic"), "data sets (bundled names or files) compared by `suite`"
    )
    variants: tuple[str, ...] = option(("paper",), "L_ic readings `suite` runs the IID methods with, one table each")
    model: ModelConfig = field(default_factory=ModelConfig)
    # One section per registered strategy (strategy.qmf.lam_rank, flag --qmf-lam-rank); a fit
    # reads its method's strategy's section only.
    strategy: StrategySections = field(default_factory=strategy_sections, metadata={"flags_named_by_section": True})
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    base: ExperimentConfig | None = None,
) -> ExperimentConfig:
    """``base`` (defaults) updated by the YAML file at ``path``, then by dotted ``overrides``."""
    config = ExperimentConfig() if base is None else base
    if path is not None:
        config = merge_config(config, read_config_file(path), str(path))
    if overrides:
        config = merge_config(config, nest(overrides), "the command line")
    return config


def config_from_dict(values: Mapping[str, Any], source: str) -> ExperimentConfig:
    """The configuration that :func:`config_to_dict` wrote (in a checkpoint, a results file); an
    unknown key is an error naming ``source``.
    """
    return merge_config(ExperimentConfig(), values, source)


def resolve_methods(names: tuple[str, ...]) -> tuple[str, ...]:
    """Method names with the groups 'main' and 'all' expanded, duplicates dropped, each checked."""
    expanded: list[str] = []
    for name in names:
        group = {"main": MAIN_METHODS, "all": available_methods()}.get(name, (name,))
        expanded.extend(get_method(n).name for n in group)
    if not expanded:
        raise ValueError("no methods given")
    return tuple(dict.fromkeys(expanded))


def config_to_dict(config: Any) -> dict[str, Any]:
    """A YAML/JSON-ready nested dict (tuples as lists) that :func:`load_config` reads back."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))


def dump_config(config: ExperimentConfig) -> str:
    """The YAML text of ``config``."""
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)


# Hyperparameter -> (the option it sets, whether a method has it).
TUNABLE: dict[str, tuple[str, Callable[[MethodSpec], bool]]] = {
    "alpha": ("loss.alpha", lambda spec: spec.use_ic),
    "variant": ("loss.variant", lambda spec: spec.use_ic),
    "lam": ("loss.lam", lambda spec: spec.use_ic),
    "beta": ("loss.beta", lambda spec: spec.use_dc),
    "d1": ("loss.d1", lambda spec: spec.use_dc),
    "lr": ("optim.lr", lambda spec: True),
    "weight_decay": ("optim.weight_decay", lambda spec: True),
    "l2": ("optim.l2", lambda spec: True),
}


def search_space(tune: TuneConfig, spec: MethodSpec) -> dict[str, tuple[Any, ...]]:
    """The grids of ``tune`` that apply to ``spec`` (:data:`TUNABLE`); empty grids are not tuned."""
    return {
        name: tuple(getattr(tune, name))
        for name, (_, applies) in TUNABLE.items()
        if getattr(tune, name) and applies(spec)
    }
