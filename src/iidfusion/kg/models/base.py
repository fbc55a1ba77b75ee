"""The contract of every multimodal KG embedding, its configuration and its registry.

``model.name`` in a KG config (``--model``) picks a registered :class:`KGModel`: ``otkge``
(:mod:`~iidfusion.kg.models.otkge`) or ``mmkrl`` (:mod:`~iidfusion.kg.models.mmkrl`), both
registered when :mod:`iidfusion.kg.models` is imported. Every model follows the contract of
:class:`KGModel`, so training, the IID plug-in, evaluation and checkpoints work on any of them
(docs/method.md, "Knowledge-graph models"); a new model is a registered class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from iidfusion.core.config import MAX_BATCH, MAX_EPOCHS, MAX_WIDTH, at_least, option, positive
from iidfusion.core.output import FusionOutput
from iidfusion.core.registry import Registry
from iidfusion.fusion import FusionStrategy, create_strategy, get_strategy_class
from iidfusion.fusion.base import StrategyOptions
from iidfusion.fusion.registry import strategy_options
from iidfusion.kg.features import STRUCTURE

DEFAULT_KG_MODEL = "otkge"


@dataclass
class OTProjectionConfig:
    """OTKGE's transport plan between feature and structural coordinates (its ``cal_ot``).

    ``plan_entities``: the plans of the first n entities (by id) are averaged (OTKGE: 10).
    ``cost_scale``: cost C_jk = scale * (x_j - e_k)^2 (OTKGE: 100 on WN9-IMG, 300 on FB-IMG).
    ``eps``: entropic regularisation in the units of that cost; OTKGE's Sinkhorn kernel is
    exp(-0.1 C), i.e. eps = 10. The plan has unit mass and is multiplied by 2k * scale (as
    OTKGE), so each output coordinate is about ``cost_scale`` x a mean of the features.
    ``max_iter``, ``tol``: Sinkhorn budget (balanced, rho = inf); ``tol`` bounds the relative
    marginal error (the solver floors it at float32 resolution).
    ``refresh_every``: training steps between two plan computations (OTKGE: 1, every step).
    The plan moves slowly with the structural table, and on a CPU the Sinkhorn solve can
    cost more than the rest of a step, so small-graph configs refresh it less often;
    evaluation always uses a plan computed from the current weights.
    """

    plan_entities: int = option(
        10,
        "entities whose transport plans are averaged (OTKGE: 10)",
        flag="--projection-plan-entities",
        rule=at_least(1, MAX_BATCH),
    )
    cost_scale: float = option(
        100.0,
        "scale of the feature-to-structure cost (OTKGE: 100 WN9-IMG, 300 FB-IMG)",
        flag="--projection-cost-scale",
        rule=positive(),
    )
    eps: float = option(
        10.0,
        "entropic regularisation of the plan, in the cost's units (OTKGE: 10)",
        flag="--projection-eps",
        rule=positive(),
    )
    max_iter: int = option(
        1000, "Sinkhorn iterations of the plan", flag="--projection-max-iter", rule=at_least(1, MAX_EPOCHS)
    )
    tol: float = option(1e-6, "relative marginal error the plan stops at", flag="--projection-tol", rule=at_least(0))
    refresh_every: int = option(
        1,
        "training steps between two plan computations (OTKGE: 1)",
        flag="--projection-refresh-every",
        rule=at_least(1, MAX_EPOCHS),
    )


@dataclass
class KGModelConfig:
    """Hyperparameters of a KG model (:data:`KG_MODELS`), :class:`MultimodalKGE` by default.

    ``name``: the registered model ("otkge", "mmkrl"); ``options``: that model's own settings
    (checked by its ``check_options``; OTKGE's are ``projection``, so it takes none here).
    ``rank`` k (2k reals per embedding; OTKGE 500); ``init_scale`` (OTKGE 1e-3).
    ``modality_weights``: static fusion weights, keyed by modality; "structure" may be left out
    and then gets 1 - (sum of the others), OTKGE's (1 - a - c, a, c). Empty: uniform 1/M.
    ``strategy``: None (static weights everywhere, OTKGE) or a registered fusion strategy name
    for the per-query weights, built with ``strategy_kwargs``: that strategy's own options, as
    the classification config's ``strategy.<name>`` section, checked against the same options
    class (:func:`check_strategy_options`).
    """

    name: str = option(DEFAULT_KG_MODEL, "KG model: a name of iidfusion.kg.models.base (otkge, mmkrl)", flag="--model")
    rank: int = option(500, "ComplEx rank k (2k reals per embedding; OTKGE 500)", rule=at_least(1, MAX_WIDTH))
    init_scale: float = option(1e-3, "scale of the initial embeddings (OTKGE 1e-3)", rule=positive())
    modality_weights: dict[str, float] = field(
        default_factory=dict, metadata={"help": "static fusion weights by modality (empty: uniform)"}
    )
    strategy: str | None = option(
        None,
        "registered fusion strategy of the query weights: qmf, pdf, static (none: OTKGE's static weights)",
        flag="--fusion-strategy",
    )
    strategy_kwargs: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "the fusion strategy's own options"}
    )
    projection: OTProjectionConfig = field(default_factory=OTProjectionConfig)
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "the KG model's own options"})


@dataclass
class KGOutput:
    """One forward pass: the fusion contract plus what the KG-specific terms need.

    ``fusion.logits`` (B, N): fused 1-N scores; ``fusion.features[m]`` = E_m[h] (B, 2k);
    ``relation`` (B, 2k) the query relation embeddings; ``candidates`` (N, 2k) the fused table.
    ``moduli``: the per-coordinate magnitudes of an embedding, the factors N3 cubes (complex
    moduli for ComplEx, absolute values for a real-valued model).
    """

    fusion: FusionOutput
    relation: Tensor
    candidates: Tensor
    moduli: Callable[[Tensor], Tensor]


def check_features(num_entities: int, features: Mapping[str, Tensor]) -> None:
    """Feature modalities a KG model accepts: at least one, one row per entity, none named "structure"."""
    if not features:
        raise ValueError("a multimodal KG model needs at least one feature modality besides the structure")
    if STRUCTURE in features:
        raise ValueError(f"feature modality name {STRUCTURE!r} is reserved for the structural embedding")
    for name, matrix in features.items():
        if matrix.ndim != 2 or matrix.shape[0] != num_entities:
            raise ValueError(
                f"features[{name!r}] has shape {tuple(matrix.shape)}; expected ({num_entities}, width), one row per "
                "entity"
            )


class KGModel(nn.Module):
    """A multimodal KG embedding: modalities as a dict, 1-N scoring, the IID contract.

    ``forward(queries)`` scores (B, 2) queries (entity, relation, reciprocal ids R..2R-1
    included) against every entity and returns a :class:`~iidfusion.kg.models.otkge.KGOutput`:
    ``fusion.logits`` the fused scores, ``fusion.features[m]`` each modality's embedding of the
    query entity and ``fusion.shared_head_logits[m]`` its scores by the same target mapping,
    which is all L_ic and L_dc read. Every model has the structural tables this base class
    makes (``entity`` (N, 2k), ``relation`` (2R, 2k), reciprocals included, drawn from
    N(0, 1) x ``init_scale``); subclasses add their feature modalities and set ``strategy``.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""  # how reports name the model, e.g. "OTKGE-style"
    modalities: tuple[str, ...]
    width: int
    strategy: FusionStrategy | None

    def __init__(
        self, num_entities: int, num_relations: int, features: Mapping[str, Tensor], config: KGModelConfig
    ) -> None:
        """What every model checks and keeps: the features (:func:`check_features`), a rank >= 1, the
        config and the graph's sizes; then the modalities ("structure" first) and the structural tables.
        """
        super().__init__()
        check_features(num_entities, features)
        if config.rank < 1:
            raise ValueError(f"rank must be >= 1, got {config.rank}")
        self.config = config
        self.num_entities = int(num_entities)
        self.num_relations = int(num_relations)
        self.width = 2 * config.rank
        self.modalities = (STRUCTURE, *features)
        self.entity = nn.Parameter(torch.randn(num_entities, self.width) * config.init_scale)
        self.relation = nn.Parameter(torch.randn(2 * num_relations, self.width) * config.init_scale)

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """``model.options`` valid for this model, before any data is read (ValueError naming the key)."""
        if options:
            raise ValueError(f"model.options: model {cls.name!r} takes no options, got {sorted(options)}")

    def entity_tables(self) -> dict[str, Tensor]:
        """{modality: (N, width)} every entity's embedding in every modality."""
        raise NotImplementedError

    def training_state(self) -> dict[str, Any]:
        """What training carries from step to step besides the weights and buffers (caches), saved
        in training checkpoints so that a resumed run continues exactly; none by default.
        """
        return {}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`training_state` returned (on the model's device)."""

    def forward(
        self, queries: Tensor, *, tables: Mapping[str, Tensor] | None = None, need_modalities: bool = True
    ) -> KGOutput:
        raise NotImplementedError

    @property
    def feature_widths(self) -> dict[str, int]:
        """{feature modality: d_m}: the widths of the pretrained features (a checkpoint records them)."""
        raise NotImplementedError

    def auxiliary_losses(
        self, output: KGOutput, tails: Tensor, task_loss: Callable[[Tensor], Tensor]
    ) -> dict[str, Tensor]:
        """The model's own training terms, weighted, added to the loss as they are (none by default).

        ``task_loss`` maps (B, N) logits to the objective's task loss on ``tails``, so a model
        can score a changed forward pass the way the objective scores the real one.
        """
        return {}

    @torch.no_grad()
    def scorer(self) -> Callable[[Tensor], Tensor]:
        """A (B, 2) -> (B, N) scorer for evaluation, with the entity tables computed once."""
        tables = self.entity_tables()
        device = next(iter(tables.values())).device

        def score(queries: Tensor) -> Tensor:
            with torch.no_grad():
                return self(queries.to(device), tables=tables, need_modalities=False).fusion.logits

        return score


def static_weights(modalities: tuple[str, ...], given: Mapping[str, float]) -> Tensor:
    """The (M,) static fusion weights in ``modalities`` order; validated, summing to one."""
    unknown = [m for m in given if m not in modalities]
    if unknown:
        raise ValueError(f"modality_weights name unknown modalities {unknown}; the model has {list(modalities)}")
    if not given:
        return torch.full((len(modalities),), 1.0 / len(modalities))
    values = dict(given)
    if STRUCTURE not in values:
        values[STRUCTURE] = 1.0 - sum(values.values())
    missing = [m for m in modalities if m not in values]
    if missing:
        raise ValueError(f"modality_weights lack {missing}; give every modality or leave out only {STRUCTURE!r}")
    weights = torch.tensor([float(values[m]) for m in modalities])
    if not torch.isfinite(weights).all() or (weights < 0).any() or abs(float(weights.sum()) - 1.0) > 1e-6:
        raise ValueError(
            "modality_weights must be non-negative and sum to 1, got "
            f"{dict(zip(modalities, weights.tolist(), strict=True))}"
        )
    return weights


def fusion_strategy(
    config: KGModelConfig, modalities: tuple[str, ...], num_entities: int, width: int, num_train_queries: int | None
) -> FusionStrategy | None:
    """The registered strategy of ``config`` for the query weights (None: static weights)."""
    options = check_strategy_options(config)
    if config.strategy is None or options is None:
        return None
    kwargs = {}
    if get_strategy_class(config.strategy).requires_num_samples:
        if num_train_queries is None:
            raise ValueError(f"strategy {config.strategy!r} needs num_train_queries (its per-sample history)")
        kwargs["num_samples"] = num_train_queries
    return create_strategy(
        config.strategy, options, modalities=modalities, num_classes=num_entities, width=width, mode="if", **kwargs
    )


def check_strategy_options(config: KGModelConfig) -> StrategyOptions | None:
    """The options of ``config.strategy`` from ``strategy_kwargs`` (None without a strategy);
    an unknown key, a wrong type or a value out of range is a ValueError naming
    ``model.strategy_kwargs.<option>``, as a classification config's ``strategy.<name>``.
    """
    if config.strategy is None:
        if config.strategy_kwargs:
            raise ValueError(f"model.strategy_kwargs {config.strategy_kwargs} given without model.strategy")
        return None
    return strategy_options(config.strategy, config.strategy_kwargs, prefix="model.strategy_kwargs.")


ModelClass = TypeVar("ModelClass", bound=type[KGModel])

KG_MODELS: Registry[type[KGModel]] = Registry("KG model")


def register_kg_model(name: str) -> Callable[[ModelClass], ModelClass]:
    """Class decorator: register a :class:`KGModel` subclass under ``name``."""

    def decorate(cls: ModelClass) -> ModelClass:
        if not (isinstance(cls, type) and issubclass(cls, KGModel)):
            raise ValueError(f"{cls!r} is not a KGModel subclass")
        KG_MODELS.register(name, cls)
        cls.name = name
        return cls

    return decorate


def available_kg_models() -> tuple[str, ...]:
    """The registered KG model names, sorted."""
    return tuple(sorted(KG_MODELS))


def get_kg_model_class(name: str) -> type[KGModel]:
    """The class registered as ``name``; ValueError naming ``model.name`` (--model) otherwise."""
    if name not in KG_MODELS:
        raise ValueError(f"--model (model.name) must be one of {', '.join(available_kg_models())}, got {name!r}")
    return KG_MODELS.get(name)


def create_kg_model(
    num_entities: int,
    num_relations: int,
    features: Mapping[str, Tensor],
    config: KGModelConfig,
    *,
    num_train_queries: int | None = None,
) -> KGModel:
    """The model ``config.name`` for a graph of ``num_entities`` / ``num_relations`` with ``features``."""
    model_class: Any = get_kg_model_class(config.name)  # every registered model takes num_train_queries
    return model_class(num_entities, num_relations, features, config, num_train_queries=num_train_queries)
