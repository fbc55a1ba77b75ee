"""Experiment configuration: dataclasses with documented defaults, YAML files and CLI flags.

One experiment is an :class:`ExperimentConfig`, grouped in sections (``model``, ``strategy``,
``loss``, ``optim``, ``train``, ``eval``) so no function takes twenty arguments. Values come, in
increasing precedence, from the dataclass defaults, a YAML file (``--config``) and the
command-line flags. Every leaf option carries its help text in the field metadata; the command
line (:mod:`iidfusion.cli.options`) builds one flag per leaf from it (``train.max_epochs`` ->
``--max-epochs``), so every option has a documented default in ``--help``. A key the schema does not know is an error naming
it, never silently ignored.

The ``strategy`` section is not written here: it is one sub-section per registered fusion
strategy, the options dataclass that strategy declares (:func:`iidfusion.fusion.registry.strategy_sections`),
so this module names no strategy (but in :data:`RENAMED_KEYS`, the keys of earlier releases).
"""

from __future__ import annotations

import dataclasses
import typing
import warnings
from collections.abc import Iterator, Mapping
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
    is_section,
    merge_config,
    one_of,
    option,
    positive,
)
from iidfusion.fusion.registry import StrategySections, strategy_sections
from iidfusion.losses.config import IIDConfig as LossConfig  # the ``loss`` section: IID's options, shared with the KG

# Keys of earlier releases read as their new names: a config file or flag that uses one gets a
# FutureWarning; a recorded config (a checkpoint, suite.json) is read silently (CHANGELOG.md).
RENAMED_KEYS: dict[str, str] = {"model.lam_rank": "strategy.qmf.lam_rank"}


PROBABILITY = Rule(lambda v: 0 <= v < 1, "in [0, 1)")
# A noise level is the noise's std in tenths of a view's: 1e6 drowns every feature 1e5 times over, far
# inside float32 (a level of 1e308 made every noisy feature inf, and the accuracy at it meaningless).
MAX_NOISE_LEVEL = 1e6


@dataclass(frozen=True)
class ModelConfig:
    """Encoders and fusion model (docs/method.md: encoders h_m, projections to width d)."""

    width: int = option(64, "common width d of the projected unimodal features", rule=at_least(1, MAX_WIDTH))
    hidden: int = option(128, "hidden units of each feature view's MLP encoder", rule=at_least(1, MAX_WIDTH))
    layers: int = option(1, "hidden layers of each MLP encoder (0: a linear encoder)", rule=at_least(0, MAX_LAYERS))
    dropout: float = option(0.0, "dropout in the MLP encoders", rule=PROBABILITY)
    unimodal_reduction: str = option("sum", "the auxiliary unimodal CE terms over modalities: sum (as QMF, PDF) or mean")
    unimodal_heads: str = option(
        "separate", "base structure: separate (the paper's: g trained on the fused feature only; QMF and PDF read "
        "heads of their own) or shared (the unimodal logits are g(z^m), trained with the unimodal CE)",
        rule=one_of(("separate", "shared")),
    )  # fmt: skip


@dataclass(frozen=True)
class OptimConfig:
    """AdamW optimizer."""

    lr: float = option(1e-3, "learning rate (AdamW)", rule=positive())
    weight_decay: float = option(1e-4, "weight decay (AdamW)", rule=at_least(0))


@dataclass(frozen=True)
class TrainConfig:
    """Lightning trainer, data loading, checkpoints and logs."""

    max_epochs: int = option(100, "maximum training epochs", rule=at_least(1, MAX_EPOCHS))
    batch_size: int = option(128, "training batch size (per process)", rule=at_least(1, MAX_BATCH))
    patience: int = option(10, "early stopping: epochs without a better validation score (0: off)", rule=at_least(0, MAX_EPOCHS))
    stop_on: str = option("acc_or_loss", "early stopping's score: acc, loss, or acc_or_loss (either improving resets the patience)")
    min_epochs: int = option(0, "epochs trained before early stopping may stop a run", rule=at_least(0, MAX_EPOCHS))
    accelerator: str = option("auto", "Lightning accelerator: auto, cpu, gpu, ...")
    devices: str = option("auto", "Lightning devices: auto, a count, or a comma list of ids")
    num_nodes: int = option(1, "machines the run spans, each with --devices processes (docs/scaling.md)", rule=at_least(1, MAX_PROCESSES))
    strategy: str = option("auto", "Lightning strategy: auto, ddp, ddp_spawn, ...")
    num_workers: int = option(0, "data-loader worker processes", rule=at_least(0, MAX_PROCESSES))
    threads: int = option(0, "torch CPU threads of this process (0: torch's default; 1 suits small models)", rule=at_least(0, MAX_PROCESSES))
    precision: str = option("32-true", "Lightning precision: 32-true, bf16-mixed, 16-mixed, ...")
    gather_features: bool = option(False, "all-gather features across processes for L_dc (DDP)")
    monitor_distances: bool = option(True, "log per-pair Wasserstein distances on a fixed validation sample, every method")
    monitor_samples: int = option(128, "validation samples (the first ones) the monitored distances use", rule=at_least(1, MAX_BATCH))
    checkpoints: bool = option(True, "save best and last checkpoints")
    loggers: tuple[str, ...] = option(("csv", "tensorboard"), "loggers: csv, tensorboard (empty: none)")
    progress_bar: bool = option(True, "show a progress bar")


@dataclass(frozen=True)
class EvalConfig:
    """Test-set evaluation: clean and under the feature-noise protocol (docs/reproduce.md, "Noise protocol")."""

    noise: tuple[float, ...] = option((0.0, 5.0, 10.0), "noise levels (units of the view's std / 10)")
    noise_view: str = option("all", "view that receives noise: 'all' or one view name")
    noise_kind: str = option("gaussian", "noise kind: gaussian or salt-and-pepper")
    noise_mask: str = option(
        "independent", "which views of a sample are corrupted: independent (each view its own p=0.5 coin, as QMF's code) "
        "or shared (one coin per sample for every view, the earlier protocol)", rule=one_of(("independent", "shared")),
    )  # fmt: skip


@dataclass(frozen=True)
class TuneConfig:
    """The paper's protocol (docs/method.md, "Tuning"): choose hyperparameters per method and seed
    on the validation split. Each grid applies to the methods that have the hyperparameter (alpha
    and the variant: methods with L_ic; beta and d1: with L_dc; lr: every method), so the bases get
    the same budget for every hyperparameter they share; an empty grid is not tuned."""

    enabled: bool = option(False, "tune each method and seed on the validation split (the paper's protocol)", flag="--tune")
    alpha: tuple[float, ...] = option((1.0, 0.1, 0.01, 0.001), "alpha grid (the paper's)", flag="--tune-alpha")
    beta: tuple[float, ...] = option((1.0, 0.1, 0.01), "beta grid (docs/method.md: the paper's range mapped to ours)", flag="--tune-beta")
    variant: tuple[str, ...] = option((), "L_ic readings to choose from (empty: loss.variant, not tuned)", flag="--tune-variant")
    lam: tuple[float, ...] = option((), "grid of L_ic's KL weight lam (empty: loss.lam, not tuned)", flag="--tune-lam")
    d1: tuple[int, ...] = option((), "d1 grid (empty: loss.d1, not tuned)", flag="--tune-d1")
    lr: tuple[float, ...] = option((), "learning-rate grid, for every method (empty: optim.lr, not tuned)", flag="--tune-lr")
    sampler: str = option("grid", "grid (every combination) or tpe (Optuna's TPE, --trials trials)", flag="--sampler")
    trials: int = option(0, "trials per method and seed with --sampler tpe (0: the grid's size)", flag="--trials", rule=at_least(0, MAX_RUNS))
    storage: str = option("", "Optuna storage URL shared by processes or machines, e.g. sqlite:///tune.db (empty: in memory)", flag="--storage")


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: the data, the method(s) and seed(s), and every section above."""

    data: str = option("handwritten", "bundled data set name or path to a .mat / .npz file")
    views: tuple[str, ...] = option((), "keys of the data file's views: matrices, cells or structs (empty: detected)")
    labels: str = option("", "key of the data file's labels (empty: detected)")
    method: str = option("iid-p", "method trained by `fit`")
    seed: int = option(0, "seed of `fit`", rule=SEED_RULE)
    methods: tuple[str, ...] = option(
        ("main",), "methods compared by `compare`; 'main' = the nine main methods, 'all' = with the ablations"
    )
    seeds: int = option(5, "seeds 0..N-1 run by `compare` and `suite`", rule=at_least(1, MAX_RUNS))
    jobs: int = option(1, "fits `compare` runs at once, each in its own process (CPU: pair with threads=1)", rule=at_least(1, MAX_PROCESSES))
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


@dataclass(frozen=True)
class ConfigOption:
    """One leaf option of the schema: its dotted key, type, default and help."""

    key: str
    type: Any
    default: Any
    help: str

    flag_override: str | None = None
    rule: Rule | None = None

    @property
    def flag(self) -> str:
        return self.flag_override or "--" + self.key.rsplit(".", 1)[-1].replace("_", "-")

    @property
    def dest(self) -> str:
        return self.key.replace(".", "__")


def iter_options(config: Any = None, prefix: str = "", flag_prefix: str = "") -> Iterator[ConfigOption]:
    """Every leaf option of ``config`` (an :class:`ExperimentConfig` by default), depth first.

    The sub-sections of a section marked ``flags_named_by_section`` put their name before
    their leaves' flags (``strategy.qmf.lam_rank`` -> ``--qmf-lam-rank``).
    """
    config = ExperimentConfig() if config is None else config
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if is_section(hints[f.name]) and f.metadata.get("flags_named_by_section"):
            for sub in dataclasses.fields(value):
                yield from iter_options(getattr(value, sub.name), f"{prefix}{f.name}.{sub.name}.", sub.name.replace("_", "-") + "-")
        elif is_section(hints[f.name]):
            yield from iter_options(value, prefix + f.name + ".", flag_prefix)
        else:
            flag = f.metadata.get("flag") or (f"--{flag_prefix}{f.name.replace('_', '-')}" if flag_prefix else None)
            yield ConfigOption(prefix + f.name, hints[f.name], value, f.metadata["help"], flag, f.metadata.get("rule"))


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{"loss.alpha": 1} -> {"loss": {"alpha": 1}}."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *sections, leaf = key.split(".")
        node = nested
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
    return nested


def _tree(values: Any) -> Any:
    """A copy of nested mappings as plain dicts (the leaves shared)."""
    return {k: _tree(v) for k, v in values.items()} if isinstance(values, Mapping) else values


def _node(values: dict[str, Any], sections: list[str], create: bool = False) -> dict[str, Any] | None:
    """The nested dict at ``sections`` of ``values`` (made where missing if ``create``), or None."""
    node: Any = values
    for section in sections:
        node = (node.setdefault(section, {}) if create else node.get(section)) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def renamed_keys(values: Mapping[str, Any], source: str, *, warn: bool = True) -> dict[str, Any]:
    """``values`` (a nested mapping, not changed) with the keys of :data:`RENAMED_KEYS` under
    their new names; giving both names of one option is a ValueError naming them and ``source``.
    ``warn``: a FutureWarning per old key (for files and flags a user can still change)."""
    values = _tree(values)
    for old, new in RENAMED_KEYS.items():
        *old_sections, old_leaf = old.split(".")
        parent = _node(values, old_sections)
        if parent is None or old_leaf not in parent:
            continue
        value = parent.pop(old_leaf)
        *new_sections, new_leaf = new.split(".")
        target = _node(values, new_sections, create=True)
        if target is None:  # a non-mapping where the new section goes: merge_config names it
            continue
        if new_leaf in target and target[new_leaf] != value:
            raise ValueError(f"{source} gives both {old} ({value!r}) and its new name {new} ({target[new_leaf]!r}); keep {new}")
        target[new_leaf] = value
        if warn:
            flags = {o.key: o.flag for o in iter_options()}
            warnings.warn(
                f"{source}: {old} (--{old_leaf.replace('_', '-')}) is deprecated; use {new} ({flags[new]})",
                FutureWarning, stacklevel=3,
            )  # fmt: skip
    return values


# Bounds of a config file: a configuration is a few hundred values, so anything far beyond is
# refused before it is expanded (an alias bomb: nine anchors of nine aliases each are 9**9 values).
CONFIG_MAX_BYTES = 2**20
CONFIG_MAX_DEPTH = 16
CONFIG_MAX_ALIASES = 100
CONFIG_MAX_VALUES = 20_000  # scalars and collections, each alias counted as what it expands to


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the bounds above checked on the composed nodes, before any
    Python object is built."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases = getattr(self, "aliases", 0) + 1
            if self.aliases > CONFIG_MAX_ALIASES:
                raise yaml.YAMLError(f"more than {CONFIG_MAX_ALIASES} aliases (*name)")
        self.depth = getattr(self, "depth", 0) + 1
        if self.depth > CONFIG_MAX_DEPTH:
            raise yaml.YAMLError(f"nested deeper than {CONFIG_MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        sizes: dict[int, int] = {}

        def expanded(node: Any) -> int:
            if sizes.get(id(node)) == -1:
                raise yaml.YAMLError("an alias inside the value it names (a recursive structure)")
            if id(node) not in sizes:
                sizes[id(node)] = -1  # being counted
                children = node.value if isinstance(node, yaml.SequenceNode) else (
                    [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else [])
                sizes[id(node)] = min(1 + sum(expanded(child) for child in children), CONFIG_MAX_VALUES + 1)
            return sizes[id(node)]

        if node is not None and expanded(node) > CONFIG_MAX_VALUES:
            raise yaml.YAMLError(f"more than {CONFIG_MAX_VALUES} values once its aliases are expanded")
        return node


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file; missing, unreadable, oversized or non-mapping files are errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        if path.stat().st_size > CONFIG_MAX_BYTES:
            raise ValueError(f"config file {path}: {path.stat().st_size} bytes, more than a config file's {CONFIG_MAX_BYTES}")
        values = yaml.load(path.read_text(encoding="utf-8"), Loader=_BoundedLoader)  # noqa: S506 (a SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read config file {path}: {str(error).splitlines()[0]}") from None
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ValueError(f"config file {path} must hold a mapping of options, got {type(values).__name__}")
    return dict(values)


def load_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    base: ExperimentConfig | None = None,
) -> ExperimentConfig:
    """``base`` (defaults) updated by the YAML file at ``path``, then by dotted ``overrides``."""
    config = ExperimentConfig() if base is None else base
    if path is not None:
        config = merge_config(config, renamed_keys(read_config_file(path), str(path)), str(path))
    if overrides:
        config = merge_config(config, renamed_keys(_nest(overrides), "the command line"), "the command line")
    return config


def recorded_config_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """A configuration as :func:`config_to_dict` wrote it (a checkpoint's hyperparameters, a
    results file), in today's layout: renamed keys under their new names and, in one written
    before the ``strategy`` section, every strategy option its run used (its default, as none
    but ``model.lam_rank`` could be set then)."""
    before_sections = "strategy" not in values
    upgraded = renamed_keys(values, "", warn=False)
    if before_sections:
        recorded = upgraded.setdefault("strategy", {})
        for name, defaults in config_to_dict(strategy_sections()).items():
            recorded[name] = defaults | recorded.get(name, {})
    return upgraded


def config_from_dict(values: Mapping[str, Any], source: str) -> ExperimentConfig:
    """The configuration that :func:`config_to_dict` wrote (in a checkpoint, a results file),
    of this release or an earlier one (:func:`recorded_config_values`); an unknown key is an
    error naming ``source``."""
    return merge_config(ExperimentConfig(), recorded_config_values(values), source)


def resolve_methods(names: tuple[str, ...]) -> tuple[str, ...]:
    """Method names with the groups 'main' and 'all' expanded, duplicates dropped, each checked.

    Imports :mod:`iidfusion.fusion` (and torch) only here, so building the CLI parser stays fast.
    """
    from iidfusion.fusion.methods import MAIN_METHODS, available_methods, get_method

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
