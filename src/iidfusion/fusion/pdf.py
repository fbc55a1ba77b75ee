"""PDF fusion weights: mono- and holo-confidence, co-belief, relative calibration.

Cao et al., "Predictive Dynamic Fusion", ICML 2024 (code: Yinan-Xia/PDF);
docs/method.md, "Fusion-weight strategies". Our own implementation of what the released code does, generalised
from two modalities to any M >= 2:

* a ConfidNet per modality, on detached features, predicts the true-class probability
  TCP_m = softmax(f_m)[y] (detached target) under an L1 loss: the mono-confidence m_k;
* holo-confidence holo_k = sum_{j != k} log m_j / sum_j log m_j (for M = 2 the code's
  log m_other / log(m_1 m_2));
* co-belief cb_k = m_k + holo_k, detached; weights w = softmax_k(cb);
* at test time only, relative calibration: DU_k = mean_c |p_k,c - 1/C|,
  RC_k = DU_k / max_j DU_j, and w = softmax_k(cb_k * RC_k). The released test code
  multiplies the co-belief (``ccb = cb * rc``), not the mono-confidence; so do we. Its
  validation (model selection) runs without it, and so does ours: the calibration applies
  inside :func:`~iidfusion.fusion.base.at_test_time` only, which the test evaluation and
  ``predict`` enter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from iidfusion.core.config import MAX_WIDTH, Rule, at_least, check_rules, option
from iidfusion.core.output import FusionOutput
from iidfusion.core.validation import check_modality_dict, stack_modalities
from iidfusion.fusion.base import FusionStrategy, StrategyOptions
from iidfusion.fusion.registry import register_strategy


def holo_confidence(log_mono: Tensor) -> Tensor:
    """holo_k = sum_{j != k} log m_j / sum_j log m_j for log mono-confidences (B, M) <= 0.

    Where every m_j = 1 the ratio is 0/0; we return its symmetric limit (M - 1) / M (the
    value for equal confidences), which leaves the softmax weights to the m_k alone. PDF's
    code adds 1e-8 to the denominator instead.
    """
    num_modalities = log_mono.shape[-1]
    total = log_mono.sum(dim=-1, keepdim=True)
    defined = total < 0
    holo = (total - log_mono) / torch.where(defined, total, -torch.ones_like(total))
    return torch.where(defined, holo, torch.full_like(holo, (num_modalities - 1) / num_modalities))


def relative_calibration(probabilities: Tensor) -> Tensor:
    """RC_k = DU_k / max_j DU_j with DU_k = mean_c |p_k,c - 1/C|, for (B, M, C) -> (B, M).

    DU measures how far modality k's prediction is from the uniform one; the most decisive
    modality keeps RC = 1. If every prediction is exactly uniform, RC = 1 for all.
    """
    num_classes = probabilities.shape[-1]
    distance_to_uniform = (probabilities - 1.0 / num_classes).abs().mean(dim=-1)
    largest = distance_to_uniform.max(dim=-1, keepdim=True).values
    ratio = distance_to_uniform / torch.where(largest > 0, largest, torch.ones_like(largest))
    return torch.where(largest > 0, ratio, torch.ones_like(ratio))


class ConfidNet(nn.Sequential):
    """Predicts a modality's true-class probability from its feature: width -> hidden -> 1, sigmoid.

    PDF stacks three linear layers with no activation (a linear map in effect); we use one
    ReLU hidden layer, the small MLP the paper describes.
    """

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Sigmoid())


@dataclass(frozen=True)
class PDFOptions(StrategyOptions):
    """PDF's options (:class:`PDFStrategy`): config section ``strategy.pdf``, flags ``--pdf-*``."""

    confidnet_hidden: int | None = option(
        None,
        "hidden width of each modality's ConfidNet (none: the width d)",
        rule=Rule(lambda v: v is None or 1 <= v <= MAX_WIDTH, f"in [1, {MAX_WIDTH}] or none"),
    )
    min_confidence: float = option(
        1e-4,
        "the mono-confidence m_k is clamped to [min_confidence, 1] before its log",
        rule=Rule(lambda v: 0 < v < 1, "in (0, 1)"),
    )
    calibrate: bool = option(True, "relative calibration of the co-belief at test time (as PDF's test code)")
    confidence_loss_weight: float = option(
        1.0, "weight of the ConfidNets' L1 loss to the true-class probability", rule=at_least(0)
    )


@register_strategy("pdf", options=PDFOptions)
class PDFStrategy(FusionStrategy):
    """Predictive dynamic fusion weights (PDF) for any number of modalities.

    Options (:class:`PDFOptions`): ``confidnet_hidden`` (hidden width of each ConfidNet, default ``width``),
    ``min_confidence`` (m_k is clamped to [min_confidence, 1] before its log, so a ConfidNet
    that outputs 0 cannot make holo-confidence infinite or NaN; default 1e-4),
    ``calibrate`` (relative calibration on the test split, default True, as PDF's test code),
    ``confidence_loss_weight`` (factor on the L1 term, 1 as in PDF).
    ``base_options``: ``width``, ``mode``, ``unimodal_loss_weight`` (see :class:`FusionStrategy`).

    Auxiliary losses: ``unimodal_ce`` and ``confidence_l1`` = sum_m mean_i |m_k - TCP_k|.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        num_classes: int,
        *,
        confidnet_hidden: int | None = None,
        min_confidence: float = 1e-4,
        calibrate: bool = True,
        confidence_loss_weight: float = 1.0,
        **base_options: Any,
    ) -> None:
        super().__init__(modalities, num_classes, **base_options)
        check_rules(PDFOptions(confidnet_hidden, min_confidence, calibrate, confidence_loss_weight), name_flags=False)
        hidden = self.width if confidnet_hidden is None else int(confidnet_hidden)
        self.min_confidence = float(min_confidence)
        self.calibrate = bool(calibrate)
        self.confidence_loss_weight = float(confidence_loss_weight)
        self.confidnets = nn.ModuleDict({m: ConfidNet(self.width, hidden) for m in self.modalities})

    def mono_confidence(self, features: Mapping[str, Tensor]) -> Tensor:
        """ConfidNet outputs m_k on detached features, (B, M); gradient reaches the ConfidNets only."""
        check_modality_dict(features, self.modalities, "features")
        return torch.cat([self.confidnets[m](features[m].detach()) for m in self.modalities], dim=1)

    def forward(self, features: Mapping[str, Tensor], unimodal_logits: Mapping[str, Tensor]) -> Tensor:
        with torch.no_grad():
            mono = self.mono_confidence(features).clamp(self.min_confidence, 1.0)
            co_belief = mono + holo_confidence(torch.log(mono))
            if self.calibrate and self.test_time and not self.training:
                logits = stack_modalities(unimodal_logits, self.modalities, "unimodal_logits")
                co_belief = co_belief * relative_calibration(torch.softmax(logits, dim=-1)).to(co_belief.dtype)
            return torch.softmax(co_belief, dim=1)

    def auxiliary_losses(self, output: FusionOutput, labels: Tensor, index: Tensor | None = None) -> dict[str, Tensor]:
        per_sample_ce = self.unimodal_cross_entropy(output, labels)
        logits = stack_modalities(output.unimodal_logits, self.modalities, "unimodal_logits").float()
        targets = labels.to(device=logits.device, dtype=torch.long).view(-1, 1, 1).expand(-1, self.num_modalities, 1)
        true_class_probability = torch.softmax(logits, dim=-1).gather(-1, targets).squeeze(-1).detach()
        mono = self.mono_confidence(output.features).float()
        confidence_l1 = (mono - true_class_probability).abs().mean(dim=0).sum()
        return {
            "unimodal_ce": self.weighted_unimodal_loss(per_sample_ce),
            "confidence_l1": self.confidence_loss_weight * confidence_l1,
        }
