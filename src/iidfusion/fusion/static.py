"""Static fusion weights: the vanilla late-fusion average and IID-L (docs/method.md, "Fusion-weight strategies")."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from iidfusion.core.config import Rule, check_rules, option
from iidfusion.core.output import FusionOutput
from iidfusion.core.validation import check_modality_dict, check_modality_keys
from iidfusion.fusion.base import FusionStrategy, StrategyOptions
from iidfusion.fusion.registry import register_strategy


def _valid_weights(weights: tuple[float, ...] | None) -> bool:
    return weights is None or (all(math.isfinite(w) and w >= 0 for w in weights) and 0 < sum(weights) < math.inf)


@dataclass(frozen=True)
class StaticOptions(StrategyOptions):
    """Static weights' options (:class:`StaticStrategy`): config section ``strategy.static``, flags ``--static-*``."""

    weights: tuple[float, ...] | None = option(
        None,
        "fusion weights, one per modality in the data's view order, normalised to sum to one (none: uniform 1/M)",
        rule=Rule(_valid_weights, "finite, non-negative, with a positive and finite sum (or none)"),
    )


@register_strategy("static", options=StaticOptions)
class StaticStrategy(FusionStrategy):
    """The same weights w_m for every sample: uniform 1/M by default, or user-given.

    ``weights`` (:class:`StaticOptions`): a sequence of M numbers in modality order, or a mapping modality -> number;
    non-negative, finite, with a positive sum, normalised to sum to one (so the IF feature
    sum stays on the scale of one modality and LF logits on the scale of one head).

    The weights read no unimodal logits (``reads_unimodal_logits = False``). Auxiliary losses:
    ``unimodal_ce`` = ``unimodal_loss_weight * sum_m CE(g_m(z^m), y)`` when that weight is > 0,
    none otherwise. In the paper's base structure (:class:`~iidfusion.fusion.FusionModel`,
    ``unimodal_heads="separate"``) the weight is 0: vanilla late fusion trains its heads through
    the fused CE only, and the paper's IF trains g on the fused feature only. With shared heads
    it is 1, as for QMF and PDF, so g is also trained on each modality.
    ``base_options``: ``width``, ``mode``, ``unimodal_loss_weight`` (see
    :class:`~iidfusion.fusion.base.FusionStrategy`).
    """

    reads_unimodal_logits = False
    fixed_weights: Tensor

    def __init__(
        self,
        modalities: Sequence[str],
        num_classes: int,
        *,
        weights: Sequence[float] | Mapping[str, float] | None = None,
        **base_options: Any,
    ) -> None:
        super().__init__(modalities, num_classes, **base_options)
        self.register_buffer("fixed_weights", self._normalised_weights(weights))

    def _normalised_weights(self, weights: Sequence[float] | Mapping[str, float] | None) -> Tensor:
        if weights is None:
            return torch.full((self.num_modalities,), 1.0 / self.num_modalities)
        if isinstance(weights, Mapping):
            check_modality_keys(weights, self.modalities, "static weights")
            values = [float(weights[m]) for m in self.modalities]
        else:
            values = [float(w) for w in weights]
            if len(values) != self.num_modalities:
                raise ValueError(
                    f"static weights: got {len(values)} values for "
                    f"{self.num_modalities} modalities {list(self.modalities)}"
                )
        check_rules(StaticOptions(tuple(values)), "static ", name_flags=False)
        total = sum(values)
        return torch.tensor([w / total for w in values], dtype=torch.float32)

    def forward(self, features: Mapping[str, Tensor], unimodal_logits: Mapping[str, Tensor]) -> Tensor:
        batch_size = check_modality_dict(features, self.modalities, "features")[0]
        reference = features[self.modalities[0]]
        return self.fixed_weights.to(device=reference.device, dtype=reference.dtype).expand(batch_size, -1)

    def auxiliary_losses(self, output: FusionOutput, labels: Tensor, index: Tensor | None = None) -> dict[str, Tensor]:
        if self.unimodal_loss_weight == 0:
            return {}
        return {"unimodal_ce": self.weighted_unimodal_loss(self.unimodal_cross_entropy(output, labels))}
