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
from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import Tensor, nn

from iidfusion.fusion import FusionOutput
from iidfusion.kg.features import STRUCTURE
from iidfusion.kg.models.base import (
    KGModel,
    KGModelConfig,
    KGOutput,
    OTProjectionConfig,
    fusion_strategy,
    register_kg_model,
    static_weights,
)
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


class OTProjection(nn.Module):
    """X_m -> X_m (P_m + D_m): a modality's features mapped to the structural space (OTKGE).

    P_m (d_m x 2k) = mean over a few entities i of the Sinkhorn plan between the coordinates
    of x_i (mass 1/d_m each) and of the structural e_i (mass 1/2k each), for the cost
    scale * (x_ij - e_ik)^2, computed without gradient; D_m is learnt (Xavier init).
    """

    features: Tensor

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
            cost,
            a,
            b,
            eps=self.config.eps,
            rho=math.inf,
            max_iter=self.config.max_iter,
            tol=self.config.tol,
            return_plan=True,
        )
        assert result.plan is not None  # return_plan=True
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


@register_kg_model("otkge")
class MultimodalKGE(KGModel):
    """ComplEx with OT-projected feature modalities fused into one entity table (module docstring).

    ``features``: {modality: (N, d_m)} pretrained per-entity features, rows in entity-id order;
    the structural modality "structure" is added first. ``num_relations`` = R (reciprocals are
    internal). ``num_train_queries`` is needed by strategies with per-sample state (QMF).
    """

    title = "OTKGE-style"
    fusion_weights: Tensor

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
        return {name: cast(OTProjection, projection).cache_state() for name, projection in self.projections.items()}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        for name, projection in self.projections.items():
            cast(OTProjection, projection).load_cache_state(state[name])

    @property
    def feature_widths(self) -> dict[str, int]:
        return {
            name: int(cast(OTProjection, projection).features.shape[1]) for name, projection in self.projections.items()
        }

    def entity_tables(self) -> dict[str, Tensor]:
        """{modality: (N, 2k)} every entity's embedding in every modality."""
        return {STRUCTURE: self.entity} | {name: proj(self.entity) for name, proj in self.projections.items()}

    def fuse(self, tables: Mapping[str, Tensor]) -> Tensor:
        """The static-weight fused entity table E = sum_m w_m E_m (N, 2k)."""
        weights = self.fusion_weights.to(self.entity.dtype)
        return sum(w * tables[m] for w, m in zip(weights, self.modalities, strict=True))

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
        return KGOutput(fusion=fusion, relation=relation, candidates=candidates, moduli=complex_modulus)
