"""Informatic constraint L_ic (DESIGN.md 1.1; paper, "Informatic-constrained linear target mapping").

IID wants the fused feature z to carry more label information than the modalities z^m alone:
maximise I(z; y) - sum_m I(z^m; y), with the variational posterior q(y | .) = softmax(g(.)) of the
SAME linear head g on z and on every z^m. The variational form (our reconstruction) is

    L_ic = CE(g(z), y) + lam KL(N_z || N(0, I)) - sum_m [ min(CE(g(z^m), y), log C) - lam KL(N_{z^m} || N(0, I)) ]

("aim", the default). N_z is the diagonal Gaussian fitted to the batch (per-dimension mean and
unbiased variance, floored), and its KL to the standard normal is closed-form and AVERAGED over
the d dimensions, so ``lam`` does not depend on the feature width. Each unimodal cross-entropy is
clamped per sample at log C, the chance level: a modality that already explains nothing about a
sample is not pushed further, and the loss is bounded below.

``variant="literal"`` is the one public transcription of the formula, with the opposite sign on
the unimodal bracket:

    L_ic = CE(g(z), y) + lam KL(N_z) + sum_m [ CE(g(z^m), y) - lam min(KL(N_{z^m}), log C) ]

It trains the shared head to classify each modality alone (as the auxiliary heads of late fusion
do) and pushes the unimodal batch Gaussians AWAY from N(0, I). Its last term is unbounded below
(a growing feature variance or mean grows the KL without limit), so we cap each subtracted KL at
log C nats per dimension; the cap is the only change to the transcription.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from iidfusion.losses._validation import (
    check_batch,
    check_modalities,
    check_same_keys,
    stack_and_check,
    upcast,
)

Variant = Literal["aim", "literal"]
VARIANTS: tuple[str, ...] = ("aim", "literal")


@dataclass
class InformaticConstraintOutput:
    """L_ic and its parts, for logging. CEs are batch means; ``unimodal_ce`` is before the clamp."""

    loss: Tensor
    fused_ce: Tensor
    unimodal_ce: dict[str, Tensor]
    fused_kl: Tensor
    unimodal_kl: dict[str, Tensor]


def gaussian_kl_to_standard(features: Tensor, *, var_floor: float = 1e-4) -> Tensor:
    """KL(N(mu, diag s^2) || N(0, I)) of the Gaussian fitted to a (B, d) batch, averaged over d.

    Per dimension 0.5 (s^2 + mu^2 - 1 - log s^2) >= 0; s^2 is the unbiased batch variance, floored
    at ``var_floor`` so that a collapsed dimension gives a large finite penalty, not inf. A stack
    ``(..., B, d)`` of batches gives one KL per batch, shape ``(...)``.
    """
    if features.ndim < 2 or features.shape[-2] < 2:
        raise ValueError(
            f"a batch Gaussian needs features of shape (batch >= 2, dim), got {tuple(features.shape)}; "
            "the variance of one sample is undefined (use drop_last=True in the training loader)"
        )
    var, mean = torch.var_mean(upcast(features), dim=-2, correction=1)
    var = var.clamp_min(var_floor)
    return 0.5 * (var + mean.square() - 1.0 - var.log()).mean(-1)


def informatic_constraint(
    fused_logits: Tensor,
    shared_head_logits: Mapping[str, Tensor],
    fused_features: Tensor,
    features: Mapping[str, Tensor],
    labels: Tensor,
    *,
    lam: float = 0.1,
    variant: Variant = "aim",
    var_floor: float = 1e-4,
) -> InformaticConstraintOutput:
    """L_ic of a batch (module docstring; DESIGN.md 1.1).

    ``fused_logits`` = g(z) (B, C); ``shared_head_logits[m]`` = g(z^m) (B, C), the same head;
    ``fused_features`` = z (B, d); ``features[m]`` = z^m (B, d); ``labels`` (B,) in [0, C).

    Lower bounds (all CEs and KLs are >= 0, every clamped CE <= log C, every capped KL <= log C):
    "aim": L_ic >= -M log C; "literal": L_ic >= -M lam log C.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown L_ic variant {variant!r}; expected one of {VARIANTS}")
    if not (math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be finite and >= 0, got {lam}")
    names = check_modalities(features)
    check_same_keys(features, shared_head_logits, "shared_head_logits")
    if fused_logits.ndim != 2:
        raise ValueError(f"fused_logits must be (batch, classes), got shape {tuple(fused_logits.shape)}")
    batch, num_classes = fused_logits.shape
    for name in names:
        check_batch(features[name], batch, f"features[{name!r}]")
        if shared_head_logits[name].shape != fused_logits.shape:
            raise ValueError(
                f"shared_head_logits[{name!r}] has shape {tuple(shared_head_logits[name].shape)}, "
                f"expected {tuple(fused_logits.shape)} like fused_logits"
            )
    check_batch(fused_features, batch, "fused_features")
    check_batch(labels, batch, "labels")
    stacks = stack_and_check(
        {"shared_head_logits": shared_head_logits, "features": features},
        names,
        {"fused_logits": fused_logits, "fused_features": fused_features},
        labels,
        num_classes,
    )
    stacked_logits, stacked_features = stacks["shared_head_logits"], stacks["features"]

    labels = labels.long()
    log_c = math.log(num_classes)
    fused_ce = F.cross_entropy(upcast(fused_logits), labels)
    fused_kl = gaussian_kl_to_standard(fused_features, var_floor=var_floor)
    per_sample = F.cross_entropy(
        stacked_logits.flatten(0, 1), labels.repeat(len(names)), reduction="none"
    ).view(len(names), batch)  # (M, B)
    unimodal_kl = gaussian_kl_to_standard(stacked_features, var_floor=var_floor)  # (M,)
    if variant == "aim":
        bracket = per_sample.clamp_max(log_c).mean(1) - lam * unimodal_kl
        loss = fused_ce + lam * fused_kl - bracket.sum()
    else:
        bracket = per_sample.mean(1) - lam * unimodal_kl.clamp_max(log_c)
        loss = fused_ce + lam * fused_kl + bracket.sum()
    unimodal_ce = per_sample.mean(1)
    return InformaticConstraintOutput(
        loss=loss,
        fused_ce=fused_ce,
        unimodal_ce=dict(zip(names, unimodal_ce.unbind())),
        fused_kl=fused_kl,
        unimodal_kl=dict(zip(names, unimodal_kl.unbind())),
    )


class InformaticConstraint(nn.Module):
    """``nn.Module`` form of :func:`informatic_constraint`, holding ``lam``, ``variant``, ``var_floor``."""

    def __init__(self, lam: float = 0.1, variant: Variant = "aim", var_floor: float = 1e-4) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown L_ic variant {variant!r}; expected one of {VARIANTS}")
        if not (math.isfinite(lam) and lam >= 0 and var_floor > 0):
            raise ValueError(f"need a finite lam >= 0 and var_floor > 0, got lam={lam}, var_floor={var_floor}")
        self.lam = lam
        self.variant: Variant = variant
        self.var_floor = var_floor

    def forward(
        self,
        fused_logits: Tensor,
        shared_head_logits: Mapping[str, Tensor],
        fused_features: Tensor,
        features: Mapping[str, Tensor],
        labels: Tensor,
    ) -> InformaticConstraintOutput:
        return informatic_constraint(
            fused_logits,
            shared_head_logits,
            fused_features,
            features,
            labels,
            lam=self.lam,
            variant=self.variant,
            var_floor=self.var_floor,
        )

    def extra_repr(self) -> str:
        return f"lam={self.lam}, variant={self.variant!r}, var_floor={self.var_floor}"
