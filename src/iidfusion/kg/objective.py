"""The training objective of the multimodal KG model: OTKGE's loss plus the IID regularizers.

    L = CE_w(g(z), t) + lambda_N3 N3 + alpha L_ic + beta L_dc + (strategy terms)

* CE_w: 1-N cross-entropy over all entities, optionally weighted per answer entity by
  0.1 + 0.9 deg(e) / max deg (OTKGE's ``-weight`` flag; deg counted on the training triples).
* N3 (Lacroix et al., 2018): lambda / B * sum over the batch of |h|^3 + |r|^3 + |t|^3, with
  |.| the modulus of each complex coordinate (ComplEx; the absolute value of each coordinate
  for a real-valued model, ``KGOutput.moduli``) of the fused head, the relation and the fused
  tail. (OTKGE's own N3 divides by the rank instead of the batch, a transcription slip of the
  KBC code we do not copy.)
* L_ic (:func:`iidfusion.losses.informatic_constraint`) with the entity classification as the
  task: fused 1-N scores vs the scores of each modality's head embedding, same candidates.
* L_dc (:class:`iidfusion.losses.DistributionCoherence`) between the modality embeddings of
  the batch's query entities (heads of the triples and, via reciprocals, tails), on at most
  ``coherence_points`` of them (the batch is shuffled, so the first ones are a random subset).
* The model's own terms (:meth:`iidfusion.kg.models.base.KGModel.auxiliary_losses`, e.g. MMKRL's
  alignment and adversarial terms), logged as ``model/<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from iidfusion.core.config import MAX_BATCH, SEED_RULE, at_least, option, redefault
from iidfusion.fusion import FusionStrategy
from iidfusion.kg.models.base import KGModel, KGOutput
from iidfusion.losses.config import IIDConfig
from iidfusion.losses.iid import IIDLossOutput


@dataclass(frozen=True)
class IIDTermsConfig(IIDConfig):
    """IID on the KG: :class:`~iidfusion.losses.IIDConfig` with defaults for ComplEx embeddings.

    The same options as the classification's ``loss`` section, and two of the KG's own. The
    baseline is alpha = beta = 0. ``kl_scale``: ComplEx embeddings live at the scale N3 sets, a
    per-dimension std of about 0.35 once trained (benchmarks/results/kg_embedding_scale.md), not 1,
    so L_ic's KL terms are taken against N(0, 0.35^2 I): they guard against collapse at the
    embeddings' own scale instead of pulling every variance to 1, with the classification's lam.
    ``d1`` / ``d2`` fit
    embeddings of width 2 * rank >= 64; ``max_iter`` is the Sinkhorn budget OTKGE-size batches
    converge in. ``coherence_points``: L_dc on at most that many of a batch's query entities
    (the batch is shuffled, so a random subset); ``reducer_seed`` draws the RIP matrix Phi.
    """

    alpha: float = redefault(IIDConfig, "alpha", 0.0, "weight of the informatic constraint L_ic (0: the baseline)")
    beta: float = redefault(IIDConfig, "beta", 0.0, "weight of the distribution coherence L_dc (0: the baseline)")
    kl_scale: float = redefault(
        IIDConfig,
        "kl_scale",
        0.35,
        "std r of the reference Gaussian N(0, r^2 I) of L_ic's KL terms (0.35: trained ComplEx embeddings)",
    )
    d1: int = redefault(IIDConfig, "d1", 32)
    d2: int = redefault(IIDConfig, "d2", 64)
    max_iter: int = redefault(IIDConfig, "max_iter", 1000)
    coherence_points: int = option(512, "query entities of a batch L_dc compares, at most", rule=at_least(2, MAX_BATCH))
    reducer_seed: int = option(0, "seed of L_dc's RIP matrix Phi", rule=SEED_RULE)


@dataclass
class KGObjectiveConfig:
    """``n3_weight`` (OTKGE: 5e-3 WN9-IMG, 1e-3 FB-IMG); ``degree_weighted`` CE (OTKGE's ``-weight``)."""

    n3_weight: float = option(5e-3, "weight of the N3 regularizer (OTKGE: 5e-3 WN9-IMG, 1e-3 FB-IMG)", rule=at_least(0))
    degree_weighted: bool = option(True, "weigh the 1-N cross-entropy by answer degree (OTKGE's -weight)")
    iid: IIDTermsConfig = field(default_factory=IIDTermsConfig)


# The total and every term unweighted (``task``, ``n3``, ``informatic``, ``coherence``), the
# strategy's and the model's own terms as they were added (``strategy/*``, ``model/*``).
KGLossOutput = IIDLossOutput


def degree_weights(train: Tensor, num_entities: int) -> Tensor:
    """OTKGE's class weights 0.1 + 0.9 deg(e) / max deg, deg over the training triples (heads and tails)."""
    degree = torch.bincount(train[:, [0, 2]].flatten(), minlength=num_entities).double()
    return (0.1 + 0.9 * degree / degree.max()).float()


def n3_penalty(output: KGOutput, tails: Tensor) -> Tensor:
    """Sum |h|^3 + |r|^3 + |t|^3 over the batch, divided by B (``output.moduli``, fused head and tail)."""
    factors = (output.fusion.fused_features, output.relation, output.candidates[tails])
    return cast(Tensor, sum(output.moduli(f).pow(3).sum() for f in factors)) / len(tails)


class KGObjective(nn.Module):
    """Computes :class:`KGLossOutput` from a model output and the (B, 3) training queries.

    The IID part is :meth:`iidfusion.losses.IIDLoss.combine`, the objective of the
    classification task too: this class only adds the KG's task terms (weighted 1-N CE, N3).
    """

    class_weights: Tensor | None

    def __init__(self, config: KGObjectiveConfig, *, width: int, class_weights: Tensor | None = None) -> None:
        super().__init__()
        iid = config.iid
        if config.n3_weight < 0 or iid.alpha < 0 or iid.beta < 0:
            raise ValueError(f"n3_weight, alpha and beta must be >= 0; got {config.n3_weight}, {iid.alpha}, {iid.beta}")
        if iid.coherence_points < 2:
            raise ValueError(f"coherence_points must be >= 2, got {iid.coherence_points}")
        self.config = config
        self.register_buffer("class_weights", class_weights if config.degree_weighted else None)
        if config.degree_weighted and class_weights is None:
            raise ValueError("degree_weighted needs class_weights (see degree_weights)")
        self.iid = iid.build_loss(width, coherence_points=iid.coherence_points, seed=iid.reducer_seed)

    @property
    def needs_modalities(self) -> bool:
        """Whether the model must return the per-modality shared-head scores."""
        return self.iid.informatic is not None

    def forward(
        self,
        output: KGOutput,
        queries: Tensor,
        index: Tensor | None = None,
        strategy: FusionStrategy | None = None,
        model: KGModel | None = None,
    ) -> KGLossOutput:
        """``model``: the model of ``output``, whose own terms join the loss (none if not given)."""
        fusion = output.fusion
        tails = queries[:, 2]
        weight = self.class_weights.to(fusion.logits.dtype) if self.class_weights is not None else None

        def task_loss(logits: Tensor) -> Tensor:
            return F.cross_entropy(logits, tails, weight=weight)

        task_terms = {"task": (task_loss(fusion.logits), 1.0)}
        if self.config.n3_weight > 0:
            task_terms["n3"] = (n3_penalty(output, tails), self.config.n3_weight)
        model_terms = {} if model is None else model.auxiliary_losses(output, tails, task_loss)
        return self.iid.combine(
            fusion, tails, task_terms, index, strategy, extra_terms={f"model/{k}": v for k, v in model_terms.items()}
        )
