"""An MMKRL-style multimodal KG embedding: one translation score per knowledge source, summed.

Lu et al., "MMKRL: A robust embedding approach for multi-modal knowledge graph representation
learning" (Applied Intelligence, 2022). Its code is not available to us; this is our
reconstruction from the paper's description, every decision in docs/method.md ("MMKRL"):

* Knowledge sources: the structural embedding E_s (a learnt N x 2k table, N(0, 1) x
  ``init_scale``) and each pretrained feature modality, projected linearly to the same space,
  E_m = X_m W_m + b_m (Xavier-initialised W_m, b_m = 0).
* Reconstruction by summed plausibility functions: one TransE plausibility per source
  (Bordes et al., 2013), f_m(h, r, t) = -||E_m[h] + r - C[t]||_2, against the fused candidate
  table C = sum_m w_m E_m (static weights, as the OTKGE-style model), summed with the fusion
  weights: s(h, r, t) = sum_m w_m f_m(h, r, t). Every query is scored 1-N, against all
  entities, with reciprocal relations (ids R..2R-1), so training and evaluation are those of
  the OTKGE-style model.
* Alignment by norm constraints: ``align_weight`` x mean over the batch and over the feature
  sources of ||E_m[h] - E_s[h]||^2, which pulls every source's embedding of an entity onto its
  structural one and so shrinks the error of reconstructing one source from another.
* Adversarial training: a fast-gradient (FGM) step on every source's query embedding,
  E_m[h] + delta_m with delta_m = eps ||E_m[h]|| g_m / ||g_m|| and g_m the gradient of the task
  loss; ``adversarial_weight`` x the task loss of the perturbed scores joins the loss. Each
  step is bounded: ||delta_m|| = eps ||E_m[h]|| per entity.

IID plug-in: the target mapping g(z) = -||z + r - C||_2 is the same for every source, so the
shared-head logits of L_ic are the per-source plausibilities g(E_m[h]) = f_m, and the fused
logits are their weighted sum; L_dc compares the distributions of {E_m[h]} over the batch.
A registered fusion strategy (``strategy="qmf"``, ...) replaces the static weights of the sum
by per-query weights, as in the OTKGE-style model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn

from iidfusion.core.config import at_least, check_rules, merge_config, option
from iidfusion.core.output import FusionOutput
from iidfusion.kg.features import STRUCTURE
from iidfusion.kg.models.base import (
    KGModel,
    KGModelConfig,
    KGOutput,
    fusion_strategy,
    register_kg_model,
    static_weights,
)


@dataclass
class MMKRLOptions:
    """MMKRL's own settings (``model.options`` of a config with ``model.name: mmkrl``).

    ``align_weight``: weight of the norm-constraint alignment (0: off).
    ``adversarial_epsilon``: size of the FGM step relative to the embedding's norm (0: off).
    ``adversarial_weight``: weight of the task loss on the perturbed scores (0: off).
    """

    align_weight: float = option(0.1, "weight of the norm-constraint alignment (0: off)", rule=at_least(0))
    adversarial_epsilon: float = option(
        0.1, "size of the FGM step relative to the embedding's norm (0: off)", rule=at_least(0)
    )
    adversarial_weight: float = option(
        0.5, "weight of the task loss on the perturbed scores (0: off)", rule=at_least(0)
    )


def parse_options(options: Mapping[str, Any]) -> MMKRLOptions:
    """:class:`MMKRLOptions` from ``model.options``; an unknown key or a bad value names the key."""
    parsed = merge_config(MMKRLOptions(), options, "model.options", "model.options.")
    check_rules(parsed, "model.options.", name_flags=False)
    return parsed


def translation_scores(query: Tensor, candidates: Tensor) -> Tensor:
    """-||q - c||_2 for every candidate: (B, w), (N, w) -> (B, N), with q = head + relation.

    The matrix form |q|^2 - 2 q.c + |c|^2 scores all N candidates without a (B, N, w) tensor;
    half precisions are computed in float32, where the difference does not cancel to noise.
    """
    dtype = query.dtype
    if dtype in (torch.float16, torch.bfloat16):
        query, candidates = query.float(), candidates.float()
    squared = query.square().sum(-1, keepdim=True) - 2 * query @ candidates.T + candidates.square().sum(-1)
    return -squared.clamp_min(torch.finfo(squared.dtype).tiny).sqrt().to(dtype)


def fgm_step(embedding: Tensor, gradient: Tensor, epsilon: float) -> Tensor:
    """The fast-gradient perturbation eps ||e|| g / ||g|| of each row (zero where g is), detached."""
    gradient = gradient.detach()
    norm = gradient.norm(dim=-1, keepdim=True)
    direction = torch.where(
        norm > 0, gradient / norm.clamp_min(torch.finfo(norm.dtype).tiny), torch.zeros_like(gradient)
    )
    return epsilon * embedding.detach().norm(dim=-1, keepdim=True) * direction


class SourceProjection(nn.Module):
    """E_m = X_m W_m + b_m: a feature modality in the embedding space (features kept as a buffer)."""

    features: Tensor

    def __init__(self, features: Tensor, width: int) -> None:
        super().__init__()
        self.register_buffer("features", features.detach().float().clone())
        self.linear = nn.Linear(features.shape[1], width)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self) -> Tensor:
        return self.linear(self.features.to(self.linear.weight.dtype))


@register_kg_model("mmkrl")
class MMKRL(KGModel):
    """Translation plausibilities of every knowledge source, summed with fusion weights (module docstring).

    ``features``: {modality: (N, d_m)} pretrained per-entity features, rows in entity-id order;
    "structure" is added first. Width 2k for ``rank`` k, the parameter count of the ComplEx model.
    """

    title = "MMKRL-style"
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
        self.options = parse_options(config.options)
        self.projections = nn.ModuleDict(
            {name: SourceProjection(matrix, self.width) for name, matrix in features.items()}
        )
        self.register_buffer("fusion_weights", static_weights(self.modalities, config.modality_weights))
        self.strategy = fusion_strategy(config, self.modalities, num_entities, self.width, num_train_queries)

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        parse_options(options)

    @property
    def feature_widths(self) -> dict[str, int]:
        return {
            name: int(cast(SourceProjection, projection).features.shape[1])
            for name, projection in self.projections.items()
        }

    def entity_tables(self) -> dict[str, Tensor]:
        return {STRUCTURE: self.entity} | {name: projection() for name, projection in self.projections.items()}

    def fuse(self, tables: Mapping[str, Tensor]) -> Tensor:
        """The static-weight fused candidate table C = sum_m w_m E_m (N, 2k)."""
        weights = self.fusion_weights.to(self.entity.dtype)
        return sum(w * tables[m] for w, m in zip(weights, self.modalities, strict=True))

    def summed_scores(
        self, features: Mapping[str, Tensor], relation: Tensor, candidates: Tensor, weights: Tensor | None
    ) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """(fused scores sum_m w_m f_m, {m: f_m}, weights (B, M)) of the query embeddings ``features``.

        ``weights`` None: the static ones, or the strategy's from these features and scores.
        """
        sources = {m: translation_scores(features[m] + relation, candidates) for m in self.modalities}
        if weights is None:
            if self.strategy is None:
                weights = self.fusion_weights.to(candidates.dtype).expand(len(relation), -1)
            else:
                weights = self.strategy(features, sources)
        fused = cast(Tensor, sum(weights[:, i : i + 1] * sources[m] for i, m in enumerate(self.modalities)))
        return fused, sources, weights

    def forward(
        self, queries: Tensor, *, tables: Mapping[str, Tensor] | None = None, need_modalities: bool = True
    ) -> KGOutput:
        """Score (B, 2) queries (entity, relation incl. reciprocal ids) against every entity.

        The per-source scores make up the fused ones, so they are returned whatever
        ``need_modalities`` says.
        """
        tables = self.entity_tables() if tables is None else tables
        candidates = self.fuse(tables)
        heads, relation_ids = queries[:, 0], queries[:, 1]
        relation = self.relation[relation_ids]
        features = {m: tables[m][heads] for m in self.modalities}
        logits, sources, weights = self.summed_scores(features, relation, candidates, None)
        fused_query = cast(Tensor, sum(weights[:, i : i + 1] * features[m] for i, m in enumerate(self.modalities)))
        fusion = FusionOutput(
            logits=logits,
            unimodal_logits=sources,
            shared_head_logits=sources,
            features=features,
            fused_features=fused_query,
            weights=weights,
            modalities=self.modalities,
            mode="if",
        )
        return KGOutput(fusion=fusion, relation=relation, candidates=candidates, moduli=torch.abs)

    def alignment(self, features: Mapping[str, Tensor]) -> Tensor:
        """Mean over the batch and the feature sources of ||E_m[h] - E_s[h]||^2."""
        structure = features[STRUCTURE]
        gaps = [(features[m] - structure).square().sum(-1).mean() for m in self.modalities if m != STRUCTURE]
        return torch.stack(gaps).mean()

    def adversarial_features(self, output: KGOutput, task_loss: Callable[[Tensor], Tensor]) -> dict[str, Tensor]:
        """Every source's query embedding moved by one FGM step up the task loss (module docstring)."""
        features = output.fusion.features
        names = [m for m in self.modalities if features[m].requires_grad]
        if not names:
            raise ValueError("the adversarial step needs query embeddings that require grad (a training forward pass)")
        gradients = torch.autograd.grad(
            task_loss(output.fusion.logits), [features[m] for m in names], retain_graph=True
        )
        steps = dict(zip(names, gradients, strict=True))
        epsilon = self.options.adversarial_epsilon
        return {
            m: features[m] + fgm_step(features[m], steps[m], epsilon) if m in steps else features[m]
            for m in self.modalities
        }

    def auxiliary_losses(
        self, output: KGOutput, tails: Tensor, task_loss: Callable[[Tensor], Tensor]
    ) -> dict[str, Tensor]:
        """``alignment`` and ``adversarial``, weighted by their options (left out when 0)."""
        options, terms = self.options, {}
        if options.align_weight > 0:
            terms["alignment"] = options.align_weight * self.alignment(output.fusion.features)
        if options.adversarial_weight > 0 and options.adversarial_epsilon > 0:
            perturbed = self.adversarial_features(output, task_loss)
            logits, _, _ = self.summed_scores(perturbed, output.relation, output.candidates, output.fusion.weights)
            terms["adversarial"] = options.adversarial_weight * task_loss(logits)
        return terms
