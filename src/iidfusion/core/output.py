"""The dataclass a fusion model returns and the objectives read (docs/architecture.md, data flow).

It lives below both ``fusion`` (which produces it) and ``losses`` (which reads it), so that the
losses never depend on the models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from torch import Tensor


@dataclass
class FusionOutput:
    """Everything one forward pass of a fusion model produces; the losses read only this.

    ``logits`` (B, C): the fused prediction, g(z) in IF, sum_m w_m g_m(z^m) in LF.
    ``unimodal_logits``: per modality g_m(z^m) (B, C), the LF heads or the IF auxiliary heads.
    ``shared_head_logits``: per modality g(z^m) (B, C), the target mapping applied to each
    modality, which L_ic needs (docs/method.md, "Informatic constraint"); in LF it is
    ``unimodal_logits``. ``features``: projected unimodal features z^m (B, d).
    ``fused_features`` (B, d): z = sum_m w_m z^m (in LF only for monitoring). ``weights``
    (B, M): columns in ``modalities`` order. ``mode``: "if" or "lf".
    """

    logits: Tensor
    unimodal_logits: dict[str, Tensor]
    shared_head_logits: dict[str, Tensor]
    features: dict[str, Tensor]
    fused_features: Tensor
    weights: Tensor
    modalities: tuple[str, ...]
    mode: str


class AuxiliaryLossProvider(Protocol):
    """What an objective needs of a fusion strategy: its own weighted loss terms for a batch."""

    def auxiliary_losses(
        self, output: FusionOutput, labels: Tensor, index: Tensor | None = None
    ) -> dict[str, Tensor]: ...
