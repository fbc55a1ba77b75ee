"""The IID training objective (docs/method.md; paper, "Loss & Training").

    L = CE(g(z), y) + alpha L_ic + beta L_dc + sum of the fusion strategy's own auxiliary terms

read from a :class:`iidfusion.core.FusionOutput`; the loss never reaches into the model. With
``alpha == 0`` (``beta == 0``) L_ic (L_dc) is not computed at all, so the baselines pay nothing.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor, nn

from iidfusion.core.output import AuxiliaryLossProvider, FusionOutput
from iidfusion.core.pairs import Pair
from iidfusion.core.validation import check_batch, check_modalities, check_values, cross_entropy_per_sample
from iidfusion.losses.coherence import DistributionCoherence
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

    def check_finite(self, where: str) -> None:
        """Raise :class:`FloatingPointError` naming every term unless ``total`` is finite.

        The one error of a diverged training step, for every task (a host read: the engine
        calls it once per step).
        """
        if not torch.isfinite(self.total):
            terms = {k: float(v) for k, v in self.terms.items()}
            raise FloatingPointError(f"non-finite training loss {where}: {terms}")


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
        coherence_points: int | None = None,
    ) -> None:
        super().__init__()
        if coherence_points is not None and coherence_points < 2:
            raise ValueError(f"coherence_points must be >= 2 (or None: the whole batch), got {coherence_points}")
        if not (0 <= alpha < math.inf and 0 <= beta < math.inf):
            raise ValueError(f"alpha and beta must be finite and >= 0, got alpha={alpha}, beta={beta}")
        if informatic is DEFAULT:
            informatic = InformaticConstraint() if alpha > 0 else None
        if coherence is DEFAULT:
            if beta > 0 and feature_dim is None:
                raise ValueError("beta > 0 needs feature_dim (the fused width d) or a DistributionCoherence module")
            coherence = DistributionCoherence(feature_dim) if beta > 0 and feature_dim is not None else None
        if alpha > 0 and informatic is None:
            raise ValueError(f"alpha={alpha} > 0 but no InformaticConstraint was given")
        if beta > 0 and coherence is None:
            raise ValueError(f"beta={beta} > 0 but no DistributionCoherence was given")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.informatic = informatic
        self.coherence = coherence
        self.coherence_points = coherence_points

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
        strategy: AuxiliaryLossProvider | None = None,
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
        return self.combine(output, labels, {"task": (task, 1.0)}, index, strategy)

    def combine(
        self,
        output: FusionOutput,
        labels: Tensor,
        task_terms: Mapping[str, tuple[Tensor, float]],
        index: Tensor | None = None,
        strategy: AuxiliaryLossProvider | None = None,
        extra_terms: Mapping[str, Tensor] | None = None,
    ) -> IIDLossOutput:
        """The objective of any task: its own ``task_terms`` ({name: (value, weight)}, summed in
        order), then alpha L_ic and beta L_dc on ``output``, then the strategy's terms, then
        ``extra_terms`` as they are (a model's own weighted terms, e.g. the KG models').

        :meth:`forward` passes the classification CE; the KG objective passes its 1-N CE and
        N3 (:class:`iidfusion.kg.KGObjective`), so both tasks share one assembly. With
        ``coherence_points`` set, L_dc sees only the first that many samples of the batch.
        """
        terms: dict[str, Tensor] = {}
        total: Tensor | None = None
        for name, (value, weight) in task_terms.items():
            terms[name] = value
            weighted = value if weight == 1.0 else weight * value
            total = weighted if total is None else total + weighted
        if total is None:
            raise ValueError("the objective needs at least one task term")
        pair_distances, pairs = None, ()
        if self.alpha > 0 and self.informatic is not None:
            ic = self.informatic(
                output.logits, output.shared_head_logits, output.fused_features, output.features, labels, output.weights
            )
            terms["informatic"] = ic.loss
            total = total + self.alpha * ic.loss
        if self.beta > 0 and self.coherence is not None:
            features = output.features
            if self.coherence_points is not None:
                features = {m: f[: self.coherence_points] for m, f in features.items()}
            dc = self.coherence(features)
            terms["coherence"] = dc.loss
            total = total + self.beta * dc.loss
            pair_distances, pairs = dc.pair_distances, dc.pairs
        if strategy is not None:
            for name, value in strategy.auxiliary_losses(output, labels, index).items():
                terms[f"strategy/{name}"] = value
                total = total + value
        for name, value in (extra_terms or {}).items():
            terms[name] = value
            total = total + value
        return IIDLossOutput(total=total, terms=terms, pair_distances=pair_distances, pairs=pairs)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}"
