"""An OTKGE-style multimodal knowledge-graph embedding: ComplEx + OT-projected modalities, fused.

Cao et al., "OTKGE: Multi-modal Knowledge Graph Embeddings via Optimal Transport" (NeurIPS
2022). Our own implementation of what its public code does:

* Structural ComplEx embeddings (Trouillon et al., 2016) of rank k: every entity and relation
  a vector in C^k stored as 2k reals (real half, imaginary half), initialised N(0, 1) x 1e-3,
  with reciprocal relations (ids R..2R-1) so that every query predicts a tail.
* Each pretrained modality m (features X_m, N x d_m) is projected to the structural space by
  a d_m x 2k matrix T_m = P_m + D_m: P_m is an entropic OT plan between the d_m feature
  coordinates and the 2k structural coordinates, computed WITHOUT gradient from a few
  entities (:class:`OTProjection`), and D_m a learnable correction.
* The entity table is the intermediate fusion E = sum_m w_m E_m over the modalities
  ("structure", the feature modalities): OTKGE's static (1 - a - c, a, c).
* 1-N scoring: score(h, r, t) = Re(<e_h, w_r, conj(e_t)>) against every entity at once.

IID plug-in (docs/method.md; the paper's link-prediction task, Table 3): the task is the 1-N entity
classification of a query (h, r, ?). The target mapping g is the scoring against the fused
candidate table, g(z) = score(z, r, E). It is applied to the fused query entity
z = sum_m w_m E_m[h] (the task logits) and to each modality's embedding E_m[h] (the shared-head
logits of L_ic); L_dc compares the distributions of {E_m[h]} over the batch. All of it is
returned as a :class:`iidfusion.fusion.FusionOutput`, the losses' contract.

Pluggable weights. The candidate side of the scoring is always the static-weight table E,
as OTKGE. A registered fusion strategy (``strategy="qmf"``, ...) replaces the static weights
of the QUERY entity by per-query weights, computed from the modality embeddings of the head
and their shared-head logits (which double as the strategy's unimodal logits); scoring all N
candidates with per-candidate dynamic weights would need N x N unimodal logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from iidfusion.core.config import MAX_BATCH, MAX_EPOCHS, MAX_WIDTH, at_least, option, positive
from iidfusion.fusion import FusionOutput, FusionStrategy, create_strategy, get_strategy_class
from iidfusion.fusion.base import StrategyOptions
from iidfusion.fusion.registry import strategy_options
from iidfusion.kg.features import STRUCTURE
from iidfusion.kg.registry import DEFAULT_KG_MODEL, KGModel, register_kg_model
from iidfusion.ot import sinkhorn_unbalanced


def complex_scores(query: Tensor, relation: Tensor, candidates: Tensor) -> Tensor:
    """Re(<q, r, conj(c)>) for every candidate: (B, 2k), (B, 2k), (N, 2k) -> (B, N)."""
    q_re, q_im = query.chunk(2, dim=-1)
    r_re, r_im = relation.chunk(2, dim=-1)
    c_re, c_im = candidates.chunk(2, dim=-1)
    return (q_re * r_re - q_im * r_im) @ c_re.T + (q_re * r_im + q_im * r_re) @ c_im.T


def complex_modulus(embedding: Tensor) -> Tensor:
    """|z| per complex coordinate of a (..., 2k) embedding -> (..., k): the factors of N3."""
    real, imag = embedding.chunk(2, dim=-1)
    return torch.sqrt(real.square() + imag.square())


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

    plan_entities: int = option(10, "entities whose transport plans are averaged (OTKGE: 10)",
                                flag="--projection-plan-entities", rule=at_least(1, MAX_BATCH))
    cost_scale: float = option(100.0, "scale of the feature-to-structure cost (OTKGE: 100 WN9-IMG, 300 FB-IMG)",
                               flag="--projection-cost-scale", rule=positive())
    eps: float = option(10.0, "entropic regularisation of the plan, in the cost's units (OTKGE: 10)",
                        flag="--projection-eps", rule=positive())
    max_iter: int = option(1000, "Sinkhorn iterations of the plan", flag="--projection-max-iter", rule=at_least(1, MAX_EPOCHS))
    tol: float = option(1e-6, "relative marginal error the plan stops at", flag="--projection-tol", rule=at_least(0))
    refresh_every: int = option(1, "training steps between two plan computations (OTKGE: 1)",
                                flag="--projection-refresh-every", rule=at_least(1, MAX_EPOCHS))


@dataclass
class KGModelConfig:
    """Hyperparameters of a KG model (:mod:`iidfusion.kg.registry`), :class:`MultimodalKGE` by default.

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

    name: str = option(DEFAULT_KG_MODEL, "KG model: a name of iidfusion.kg.registry (otkge, mmkrl)", flag="--model")
    rank: int = option(500, "ComplEx rank k (2k reals per embedding; OTKGE 500)", rule=at_least(1, MAX_WIDTH))
    init_scale: float = option(1e-3, "scale of the initial embeddings (OTKGE 1e-3)", rule=positive())
    modality_weights: dict[str, float] = field(default_factory=dict, metadata={"help": "static fusion weights by modality (empty: uniform)"})
    strategy: str | None = option(None, "registered fusion strategy of the query weights: qmf, pdf, static (none: "
                                  "OTKGE's static weights)", flag="--fusion-strategy")
    strategy_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": "the fusion strategy's own options"})
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
    moduli: Callable[[Tensor], Tensor] = complex_modulus


class OTProjection(nn.Module):
    """X_m -> X_m (P_m + D_m): a modality's features mapped to the structural space (OTKGE).

    P_m (d_m x 2k) = mean over a few entities i of the Sinkhorn plan between the coordinates
    of x_i (mass 1/d_m each) and of the structural e_i (mass 1/2k each), for the cost
    scale * (x_ij - e_ik)^2, computed without gradient; D_m is learnt (Xavier init).
    """

    def __init__(self, features: Tensor, width: int, config: OTProjectionConfig) -> None:
        super().__init__()
        if features.ndim != 2:
            raise ValueError(f"features must be (entities, d_m), got shape {tuple(features.shape)}")
        if config.plan_entities < 1 or config.cost_scale <= 0 or config.eps <= 0 or config.refresh_every < 1:
            raise ValueError(f"need plan_entities >= 1, cost_scale > 0, eps > 0, refresh_every >= 1; got {config}")
        self.config = config
        self.width = int(width)
        self.register_buffer("features", features.detach().float().clone())
        self.correction = nn.Parameter(torch.empty(features.shape[1], self.width))
        nn.init.xavier_uniform_(self.correction)
        self._cached_plan: Tensor | None = None
        self._plan_age = 0

    @torch.no_grad()
    def plan(self, structural: Tensor) -> Tensor:
        """P_m from the current structural table (N, 2k), scaled by 2k * cost_scale as OTKGE."""
        count = min(self.config.plan_entities, self.features.shape[0])
        x = self.features[:count].to(structural.dtype)
        e = structural[:count].detach()
        cost = self.config.cost_scale * (x.unsqueeze(2) - e.unsqueeze(1)).square()  # (P, d_m, 2k)
        d_m = x.shape[1]
        a = torch.full((count, d_m), 1.0 / d_m, dtype=cost.dtype, device=cost.device)
        b = torch.full((count, self.width), 1.0 / self.width, dtype=cost.dtype, device=cost.device)
        result = sinkhorn_unbalanced(
            cost, a, b, eps=self.config.eps, rho=math.inf, max_iter=self.config.max_iter, tol=self.config.tol, return_plan=True
        )
        return result.plan.mean(dim=0) * (self.width * self.config.cost_scale)

    def current_plan(self, structural: Tensor) -> Tensor:
        """The plan to use now: recomputed in evaluation, every ``refresh_every`` steps in training."""
        if not self.training:
            self._cached_plan = None
            return self.plan(structural)
        if self._cached_plan is None or self._plan_age >= self.config.refresh_every:
            self._cached_plan, self._plan_age = self.plan(structural), 0
        self._plan_age += 1
        return self._cached_plan

    def cache_state(self) -> dict[str, Any]:
        """The plan in use and its age in steps (training resumes with them)."""
        return {"plan": self._cached_plan, "age": self._plan_age}

    def load_cache_state(self, state: Mapping[str, Any]) -> None:
        plan = state["plan"]
        self._cached_plan = None if plan is None else plan.to(self.correction.device)
        self._plan_age = int(state["age"])

    def forward(self, structural: Tensor) -> Tensor:
        """(N, 2k) modality embeddings of every entity."""
        return self.features.to(structural.dtype) @ (self.current_plan(structural) + self.correction)


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
        raise ValueError(f"modality_weights must be non-negative and sum to 1, got {dict(zip(modalities, weights.tolist()))}")
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
    return create_strategy(config.strategy, options, modalities=modalities, num_classes=num_entities, width=width, mode="if", **kwargs)


def check_strategy_options(config: KGModelConfig) -> StrategyOptions | None:
    """The options of ``config.strategy`` from ``strategy_kwargs`` (None without a strategy);
    an unknown key, a wrong type or a value out of range is a ValueError naming
    ``model.strategy_kwargs.<option>``, as a classification config's ``strategy.<name>``."""
    if config.strategy is None:
        if config.strategy_kwargs:
            raise ValueError(f"model.strategy_kwargs {config.strategy_kwargs} given without model.strategy")
        return None
    return strategy_options(config.strategy, config.strategy_kwargs, prefix="model.strategy_kwargs.")


@register_kg_model("otkge")
class MultimodalKGE(KGModel):
    """ComplEx with OT-projected feature modalities fused into one entity table (module docstring).

    ``features``: {modality: (N, d_m)} pretrained per-entity features, rows in entity-id order;
    the structural modality "structure" is added first. ``num_relations`` = R (reciprocals are
    internal). ``num_train_queries`` is needed by strategies with per-sample state (QMF).
    """

    title = "OTKGE-style"

    def __init__(
        self,
        num_entities: int,
        num_relations: int,
        features: Mapping[str, Tensor],
        config: KGModelConfig,
        *,
        num_train_queries: int | None = None,
    ) -> None:
        super().__init__(num_entities, num_relations, features, config)
        self.projections = nn.ModuleDict(
            {name: OTProjection(matrix, self.width, config.projection) for name, matrix in features.items()}
        )
        self.register_buffer("fusion_weights", static_weights(self.modalities, config.modality_weights))
        self.strategy = fusion_strategy(config, self.modalities, num_entities, self.width, num_train_queries)

    def training_state(self) -> dict[str, Any]:
        """Each projection's cached plan (:meth:`OTProjection.cache_state`)."""
        return {name: projection.cache_state() for name, projection in self.projections.items()}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        for name, projection in self.projections.items():
            projection.load_cache_state(state[name])

    @property
    def feature_widths(self) -> dict[str, int]:
        return {name: int(projection.features.shape[1]) for name, projection in self.projections.items()}

    def entity_tables(self) -> dict[str, Tensor]:
        """{modality: (N, 2k)} every entity's embedding in every modality."""
        return {STRUCTURE: self.entity} | {name: proj(self.entity) for name, proj in self.projections.items()}

    def fuse(self, tables: Mapping[str, Tensor]) -> Tensor:
        """The static-weight fused entity table E = sum_m w_m E_m (N, 2k)."""
        weights = self.fusion_weights.to(self.entity.dtype)
        return sum(w * tables[m] for w, m in zip(weights, self.modalities))

    def forward(
        self, queries: Tensor, *, tables: Mapping[str, Tensor] | None = None, need_modalities: bool = True
    ) -> KGOutput:
        """Score (B, 2) queries (entity, relation incl. reciprocal ids) against every entity.

        ``tables``: precomputed :meth:`entity_tables` (evaluation reuses them across batches).
        ``need_modalities=False`` skips the per-modality shared-head scores when nothing reads
        them (the baseline with static weights), which saves M scorings of (B, N).
        """
        tables = self.entity_tables() if tables is None else tables
        candidates = self.fuse(tables)
        heads, relation_ids = queries[:, 0], queries[:, 1]
        relation = self.relation[relation_ids]
        features = {m: tables[m][heads] for m in self.modalities}
        shared: dict[str, Tensor] = {}
        if need_modalities or self.strategy is not None:
            shared = {m: complex_scores(features[m], relation, candidates) for m in self.modalities}
        if self.strategy is None:
            weights = self.fusion_weights.to(candidates.dtype).expand(len(queries), -1)
            fused_query = candidates[heads]
        else:
            weights = self.strategy(features, shared)
            fused_query = sum(weights[:, i : i + 1] * features[m] for i, m in enumerate(self.modalities))
        fusion = FusionOutput(
            logits=complex_scores(fused_query, relation, candidates),
            unimodal_logits=shared,
            shared_head_logits=shared,
            features=features,
            fused_features=fused_query,
            weights=weights,
            modalities=self.modalities,
            mode="if",
        )
        return KGOutput(fusion=fusion, relation=relation, candidates=candidates)
