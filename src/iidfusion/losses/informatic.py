"""Informatic constraint L_ic (docs/method.md, "Informatic constraint"; paper, "Informatic-constrained
linear target mapping").

IID wants the fused feature z to carry more label information than the modalities z^m alone:
maximise I(z; y) - sum_m I(z^m; y), with the variational posterior q(y | .) = softmax(g(.)) of the
SAME linear head g on z and on every z^m, N_z the diagonal Gaussian fitted to the batch and KL
terms to N(0, I) "against collapse". The paper's formula is not available to us; these are the
readings we implement (``variant``), all of the form

    L_ic = CE(g(z), y) + lam KL(N_z || N(0, I)) + R_m[ u_m ]

with R_m a reduction over the M modalities (``reduction``: ``"mean"`` by default, so that alpha
means the same for every M; ``"sum"`` as the paper writes it; ``"weighted"`` by the fusion weights)
and the unimodal term u_m:

* ``"paper"`` (default; the reading of the paper's prose, term by term):
  u_m = mean_i relu(log C - CE_i(g(z^m), y)) + lam KL(N_{z^m} || N(0, I)).

  - The fused part: by Barber and Agakov, I(z; y) >= H(y) - E[-log q(y | z)] for any q, so
    minimising CE(g(z), y) maximises a variational LOWER bound on I(z; y) (H(y) is a constant).
  - The unimodal part: log q(y_i | z_i^m) + log C is the pointwise information that g reads from
    z^m alone, measured against chance (q = 1/C). Its positive part per sample, averaged, is
    >= 0 and an UPPER bound on the same Barber-Agakov estimate H(y) - CE(g(z^m), y) for balanced
    classes; minimising it suppresses what g can read from each modality alone and stops at
    chance, sample by sample: a confidently wrong unimodal prediction is never rewarded beyond
    chance. It is not a bound on the true I(z^m; y): information that g does not read may stay
    in z^m (a fresh probe measures how much: docs/method.md, "Informatic constraint").
  - The KL terms of N_z and of each N_{z^m} to N(0, I) are penalised, as the paper states, which
    keeps the batch moments from collapsing while the unimodal part pushes g(z^m) to chance.
  - Open choices: chance is 1/C (not the label prior: stateless, exact for balanced classes), and
    the threshold is per sample rather than on the batch mean (which a few confidently wrong
    samples could satisfy while the rest stay readable). L_ic >= 0.

  With a linear g and fusion weights that sum to one, g(z) = sum_m w_m g(z^m), so the fused
  prediction is a convex combination of the unimodal ones: for C = 2 the two parts cannot both
  reach their optimum, and for C >= 3 "fused right, every modality at chance" is reached only
  by unimodal predictions that cancel in the sum. alpha sets the trade-off; the paper tunes it.
  ``"aim"`` is this reading's former name (its value was lower by R_m log C; same gradient).
* ``"vib"``: u_m = lam KL(N_{z^m} || N(0, I)), a variational-information-bottleneck reading. The KL
  of the batch Gaussian uses no label, so it is not a bound on I(z^m; y): for the aggregate
  Gaussian, E KL(p(z | x) || r) = I(z; x) + KL(q || r), the batch KL is the slack of the bottleneck
  bound, not the bound. With it L_ic is a second fused CE plus a moment-matching pull. L_ic >= 0.
* ``"margin"``: u_m = mean_i max(0, CE_i(g(z)) - sg[CE_i(g(z^m))] + margin), the paper's condition
  that IF's loss is no higher than a single modality's: the fused CE of a sample is pushed down
  until it sits ``margin`` below every unimodal CE. The unimodal CE is detached (sg), so no modality
  is ever pushed towards a wrong prediction. L_ic >= 0.
* ``"literal"``: u_m = CE(g(z^m), y) - lam min(KL(N_{z^m}), log C), the public transcription: it
  trains the shared head on every modality (as late fusion trains its heads, the opposite of the
  paper's second part) and pushes the unimodal Gaussians away from N(0, I), capped at log C.
  L_ic >= -lam log C (x M for ``"sum"``).

* ``"ce-only"``: L_ic = CE(g(z), y) alone, no KL and no unimodal term: not a reading but the
  control of docs/protocol.md. IID's total loss holds the task CE and alpha L_ic, so IID trains
  the fused CE with weight 1 + alpha; this control does that and nothing else. L_ic >= 0.

Every KL is that of the batch Gaussian (per-dimension mean and unbiased variance, floored at
``var_floor``), AVERAGED over the d dimensions, so ``lam`` does not depend on the width, and taken
against N(0, r^2 I) with r = ``kl_scale`` (1: the paper's standard Gaussian, for standardised
features; features that live at another scale, such as N3-regularised KG embeddings, set r to it,
so that the term guards against collapse instead of pulling every variance to 1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from iidfusion.core.validation import (
    check_batch,
    check_modalities,
    check_modality_keys,
    cross_entropy_per_sample,
    stack_and_check,
    upcast,
)

Variant = Literal["paper", "vib", "margin", "literal", "ce-only", "aim"]
VARIANTS: tuple[str, ...] = ("paper", "vib", "margin", "literal", "ce-only")
# Former names of readings, still accepted: "aim" is "paper" (docs/method.md).
VARIANT_ALIASES: dict[str, str] = {"aim": "paper"}
Reduction = Literal["mean", "sum", "weighted"]
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "weighted")
DEFAULT_VARIANT: Variant = "paper"


@dataclass
class InformaticConstraintOutput:
    """L_ic and its parts, for logging. CEs are batch means; ``unimodal_ce`` is before any clamp."""

    loss: Tensor
    fused_ce: Tensor
    unimodal_ce: dict[str, Tensor]
    fused_kl: Tensor
    unimodal_kl: dict[str, Tensor]


def gaussian_kl_to_standard(features: Tensor, *, var_floor: float = 1e-4, scale: float = 1.0) -> Tensor:
    """KL(N(mu, diag s^2) || N(0, scale^2 I)) of the Gaussian fitted to a (B, d) batch, averaged over d.

    Per dimension 0.5 (s^2 + mu^2 - 1 - log s^2) >= 0 of the features divided by ``scale``; s^2 is
    the unbiased batch variance, floored at ``var_floor`` so that a collapsed dimension gives a
    large finite penalty, not inf. A stack ``(..., B, d)`` of batches gives one KL per batch,
    shape ``(...)``.
    """
    if features.ndim < 2 or features.shape[-2] < 2:
        raise ValueError(
            f"a batch Gaussian needs features of shape (batch >= 2, dim), got {tuple(features.shape)}; "
            "the variance of one sample is undefined (use drop_last=True in the training loader)"
        )
    features = upcast(features) if scale == 1.0 else upcast(features) / scale
    # Two passes by hand: torch.var_mean over dim -2 is ten times slower on CPUs.
    mean = features.mean(-2, keepdim=True)
    centred = features - mean
    var = torch.linalg.vecdot(centred, centred, dim=-2) / (features.shape[-2] - 1)
    var = var.clamp_min(var_floor)
    return 0.5 * (var + mean.squeeze(-2).square() - 1.0 - var.log()).mean(-1)


def check_informatic_options(
    variant: str, reduction: str, lam: float, margin: float, var_floor: float, kl_scale: float = 1.0
) -> None:
    """ValueError naming the first bad option of L_ic (also used by configs before any work starts)."""
    if variant not in VARIANTS and variant not in VARIANT_ALIASES:
        raise ValueError(f"unknown L_ic variant {variant!r}; expected one of {list(VARIANTS)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown L_ic reduction {reduction!r}; expected one of {list(REDUCTIONS)}")
    for name, value in (("lam", lam), ("margin", margin)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"L_ic option {name} must be finite and >= 0, got {value}")
    for name, value in (("var_floor", var_floor), ("kl_scale", kl_scale)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"L_ic option {name} must be finite and > 0, got {value}")


def _modality_weights(reduction: str, weights: Tensor | None, batch: int, num_modalities: int, like: Tensor) -> Tensor:
    """(B, M) per-sample weights of the unimodal terms: 1/M, 1, or the fusion weights normalised per sample."""
    if reduction == "weighted":
        if weights is None or tuple(weights.shape) != (batch, num_modalities):
            shape = None if weights is None else tuple(weights.shape)
            raise ValueError(
                f"reduction='weighted' needs modality_weights of shape ({batch}, {num_modalities}), got {shape}"
            )
        weights = upcast(weights.detach()).to(like.dtype)
        if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
            raise ValueError("reduction='weighted' needs finite, non-negative modality_weights")
        return weights / weights.sum(dim=1, keepdim=True).clamp_min(torch.finfo(like.dtype).tiny)
    value = 1.0 / num_modalities if reduction == "mean" else 1.0
    return like.new_full((batch, num_modalities), value)


def informatic_constraint(
    fused_logits: Tensor,
    shared_head_logits: Mapping[str, Tensor],
    fused_features: Tensor,
    features: Mapping[str, Tensor],
    labels: Tensor,
    *,
    lam: float = 0.1,
    variant: Variant = DEFAULT_VARIANT,
    reduction: Reduction = "mean",
    margin: float = 0.1,
    modality_weights: Tensor | None = None,
    var_floor: float = 1e-4,
    kl_scale: float = 1.0,
) -> InformaticConstraintOutput:
    """L_ic of a batch (module docstring; docs/method.md).

    ``fused_logits`` = g(z) (B, C); ``shared_head_logits[m]`` = g(z^m) (B, C), the same head;
    ``fused_features`` = z (B, d); ``features[m]`` = z^m (B, d); ``labels`` (B,) in [0, C).
    ``modality_weights`` (B, M), in ``features`` order: the fusion weights, needed (and read) only
    by ``reduction="weighted"``; they are detached, the weights are not trained by L_ic.

    Lower bounds (every CE and KL >= 0, capped KLs <= log C; factor M for "sum"):
    "paper", "vib", "margin" and "ce-only" >= 0; "literal" >= -lam log C.
    """
    check_informatic_options(variant, reduction, lam, margin, var_floor, kl_scale)
    variant = VARIANT_ALIASES.get(variant, variant)  # type: ignore[assignment]
    names = check_modalities(features)
    check_modality_keys(shared_head_logits, names, "shared_head_logits")
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
    # The fused terms lead the stacks: one CE and one Gaussian KL call for all M + 1 codes.
    stacks = stack_and_check(
        {"shared_head_logits": shared_head_logits, "features": features},
        names,
        None,
        labels,
        num_classes,
        leads={"shared_head_logits": ("fused_logits", fused_logits), "features": ("fused_features", fused_features)},
    )
    labels = labels.long()
    log_c = math.log(num_classes)
    every_ce = cross_entropy_per_sample(
        stacks["shared_head_logits"], labels.expand(len(names) + 1, batch)
    )  # (1 + M, B)
    every_kl = gaussian_kl_to_standard(stacks["features"], var_floor=var_floor, scale=kl_scale)  # (1 + M,)
    fused_per_sample, per_sample = every_ce[0], every_ce[1:]
    fused_ce, fused_kl, unimodal_kl = fused_per_sample.mean(), every_kl[0], every_kl[1:]
    weights = _modality_weights(reduction, modality_weights, batch, len(names), per_sample).T  # (M, B)
    batch_weights = weights.mean(dim=1)  # (M,): the weight of a batch-level term (a KL)

    if variant == "ce-only":
        return InformaticConstraintOutput(
            loss=fused_ce,
            fused_ce=fused_ce,
            unimodal_ce=dict(zip(names, per_sample.mean(1).unbind(), strict=True)),
            fused_kl=fused_kl,
            unimodal_kl=dict(zip(names, unimodal_kl.unbind(), strict=True)),
        )
    if variant == "paper":
        readable = torch.relu(log_c - per_sample)  # pointwise information g reads beyond chance
        unimodal = (weights * readable).mean(dim=1).sum() + lam * (batch_weights * unimodal_kl).sum()
    elif variant == "vib":
        unimodal = lam * (batch_weights * unimodal_kl).sum()
    elif variant == "margin":
        hinge = torch.relu(fused_per_sample.unsqueeze(0) - per_sample.detach() + margin)
        unimodal = (weights * hinge).mean(dim=1).sum()
    else:  # "literal"
        unimodal = (weights * per_sample).mean(dim=1).sum() - lam * (batch_weights * unimodal_kl.clamp_max(log_c)).sum()
    return InformaticConstraintOutput(
        loss=fused_ce + lam * fused_kl + unimodal,
        fused_ce=fused_ce,
        unimodal_ce=dict(zip(names, per_sample.mean(1).unbind(), strict=True)),
        fused_kl=fused_kl,
        unimodal_kl=dict(zip(names, unimodal_kl.unbind(), strict=True)),
    )


class InformaticConstraint(nn.Module):
    """``nn.Module`` form of :func:`informatic_constraint`, holding its options."""

    def __init__(
        self,
        lam: float = 0.1,
        variant: Variant = DEFAULT_VARIANT,
        *,
        reduction: Reduction = "mean",
        margin: float = 0.1,
        var_floor: float = 1e-4,
        kl_scale: float = 1.0,
    ) -> None:
        super().__init__()
        check_informatic_options(variant, reduction, lam, margin, var_floor, kl_scale)
        self.lam = lam
        self.variant: Variant = variant
        self.reduction: Reduction = reduction
        self.margin = margin
        self.var_floor = var_floor
        self.kl_scale = kl_scale

    def forward(
        self,
        fused_logits: Tensor,
        shared_head_logits: Mapping[str, Tensor],
        fused_features: Tensor,
        features: Mapping[str, Tensor],
        labels: Tensor,
        modality_weights: Tensor | None = None,
    ) -> InformaticConstraintOutput:
        return informatic_constraint(
            fused_logits,
            shared_head_logits,
            fused_features,
            features,
            labels,
            lam=self.lam,
            variant=self.variant,
            reduction=self.reduction,
            margin=self.margin,
            modality_weights=modality_weights,
            var_floor=self.var_floor,
            kl_scale=self.kl_scale,
        )

    def extra_repr(self) -> str:
        return (
            f"lam={self.lam}, variant={self.variant!r}, reduction={self.reduction!r}, "
            f"margin={self.margin}, var_floor={self.var_floor}, kl_scale={self.kl_scale}"
        )
