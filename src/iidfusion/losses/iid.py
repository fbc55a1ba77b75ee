"""The IID training objective (docs/method.md; paper, "Loss & Training").

    L = CE(g(z), y) + alpha L_ic + beta L_dc + sum of the fusion strategy's own auxiliary terms

read from a :class:`iidfusion.fusion.FusionOutput`; the loss never reaches into the model. With
``alpha == 0`` (``beta == 0``) L_ic (L_dc) is not computed at all, so the baselines pay nothing.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Protocol

from torch import Tensor, nn

from iidfusion.fusion.base import FusionOutput, FusionStrategy
from iidfusion.losses._validation import check_batch, check_modalities, check_values, cross_entropy_per_sample
from iidfusion.losses.coherence import DistributionCoherence, Pair
from iidfusion.losses.informatic import InformaticConstraint


class _Default(enum.Enum):
    """Sentinel type: "build the default module" (``None`` means "no module")."""

    DEFAULT = "default"


DEFAULT = _Default.DEFAULT


class RegularizerSwitches(Protocol):
    """Anything saying which IID regularizers are on, e.g. :class:`iidfusion.fusion.MethodSpec`."""

    @property
    def use_ic(self) -> bool: ...

    @property
    def use_dc(self) -> bool: ...


@dataclass
class IIDLossOutput:
    """The total loss and every term separately (unweighted), for logging.

    ``terms``: ``"task"``; ``"informatic"`` (L_ic) when alpha > 0; ``"coherence"`` (L_dc) when
    beta > 0; each strategy term as ``"strategy/<name>"`` (already weighted by the strategy).
    ``pair_distances`` (P,) and ``pairs``: L_dc per modality pair, empty when beta == 0.
    """

    total: Tensor
    terms: dict[str, Tensor]
    pair_distances: Tensor | None = None
    pairs: tuple[Pair, ...] = field(default=())


class IIDLoss(nn.Module):
    """Task CE + ``alpha`` L_ic + ``beta`` L_dc + strategy terms.

    ``informatic`` / ``coherence``: the regularizer modules; by default an
    :class:`InformaticConstraint` with its defaults and a :class:`DistributionCoherence` of width
    ``feature_dim`` (required then), built only when their weight is > 0. ``None`` means no
    module, which requires the weight to be 0.
    """

    def __init__(
        self,
        alpha: float,
        beta: float,
        *,
        informatic: InformaticConstraint | None | _Default = DEFAULT,
        coherence: DistributionCoherence | None | _Default = DEFAULT,
        feature_dim: int | None = None,
    ) -> None:
        super().__init__()
        if not (0 <= alpha < math.inf and 0 <= beta < math.inf):
            raise ValueError(f"alpha and beta must be finite and >= 0, got alpha={alpha}, beta={beta}")
        if informatic is DEFAULT:
            informatic = InformaticConstraint() if alpha > 0 else None
        if coherence is DEFAULT:
            if beta > 0 and feature_dim is None:
                raise ValueError("beta > 0 needs feature_dim (the fused width d) or a DistributionCoherence module")
            coherence = DistributionCoherence(feature_dim) if beta > 0 else None
        if alpha > 0 and informatic is None:
            raise ValueError(f"alpha={alpha} > 0 but no InformaticConstraint was given")
        if beta > 0 and coherence is None:
            raise ValueError(f"beta={beta} > 0 but no DistributionCoherence was given")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.informatic = informatic
        self.coherence = coherence

    @classmethod
    def from_method(
        cls,
        spec: RegularizerSwitches,
        *,
        alpha: float,
        beta: float,
        feature_dim: int | None = None,
        informatic: InformaticConstraint | None | _Default = DEFAULT,
        coherence: DistributionCoherence | None | _Default = DEFAULT,
    ) -> IIDLoss:
        """The loss of a method: ``alpha`` if ``spec.use_ic`` else 0, ``beta`` if ``spec.use_dc`` else 0."""
        return cls(
            alpha if spec.use_ic else 0.0,
            beta if spec.use_dc else 0.0,
            informatic=informatic,
            coherence=coherence,
            feature_dim=feature_dim,
        )

    def forward(
        self,
        output: FusionOutput,
        labels: Tensor,
        index: Tensor | None = None,
        strategy: FusionStrategy | None = None,
    ) -> IIDLossOutput:
        """Every term of the batch; ``strategy`` (the model's) adds its auxiliary losses."""
        if output.logits.ndim != 2:
            raise ValueError(f"output.logits must be (batch, classes), got shape {tuple(output.logits.shape)}")
        batch, num_classes = output.logits.shape
        check_modalities(output.features, "output.features")
        for name, feature in output.features.items():
            check_batch(feature, batch, f"output.features[{name!r}]")
        check_batch(labels, batch, "labels")
        check_values({"output.logits": output.logits}, labels, num_classes)
        labels = labels.long()

        task = cross_entropy_per_sample(output.logits, labels).mean()
        terms = {"task": task}
        total = task
        pair_distances, pairs = None, ()
        if self.alpha > 0 and self.informatic is not None:
            ic = self.informatic(
                output.logits, output.shared_head_logits, output.fused_features, output.features, labels, output.weights
            )
            terms["informatic"] = ic.loss
            total = total + self.alpha * ic.loss
        if self.beta > 0 and self.coherence is not None:
            dc = self.coherence(output.features)
            terms["coherence"] = dc.loss
            total = total + self.beta * dc.loss
            pair_distances, pairs = dc.pair_distances, dc.pairs
        if strategy is not None:
            for name, value in strategy.auxiliary_losses(output, labels, index).items():
                terms[f"strategy/{name}"] = value
                total = total + value
        return IIDLossOutput(total=total, terms=terms, pair_distances=pair_distances, pairs=pairs)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}"
