"""The fusion output dataclass and the base class of fusion-weight strategies.

A strategy turns the projected unimodal features z^m and the unimodal logits f_m = g_m(z^m)
of a batch into per-sample fusion weights w (B, M), and owns the auxiliary loss terms that
train whatever produces those weights (DESIGN.md section 2). The weights it returns carry no
gradient: every original method detaches them before fusing (QMF detaches the energy
confidence, PDF the co-belief), so the fused prediction trains the encoders and heads, and
the weight estimators learn only from the strategy's auxiliary losses.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FUSION_MODES: tuple[str, ...] = ("if", "lf")
UNIMODAL_REDUCTIONS: tuple[str, ...] = ("sum", "mean")


@dataclass
class FusionOutput:
    """Everything one forward pass of a fusion model produces; the losses read only this.

    ``logits`` (B, C): the fused prediction, g(z) in IF, sum_m w_m g_m(z^m) in LF.
    ``unimodal_logits``: per modality g_m(z^m) (B, C), the LF heads or the IF auxiliary heads.
    ``shared_head_logits``: per modality g(z^m) (B, C), the target mapping applied to each
    modality, which L_ic needs (DESIGN.md 1.1); in LF it is ``unimodal_logits``.
    ``features``: projected unimodal features z^m (B, d). ``fused_features`` (B, d):
    z = sum_m w_m z^m (in LF only for monitoring). ``weights`` (B, M): columns in
    ``modalities`` order. ``mode``: "if" or "lf".
    """

    logits: Tensor
    unimodal_logits: dict[str, Tensor]
    shared_head_logits: dict[str, Tensor]
    features: dict[str, Tensor]
    fused_features: Tensor
    weights: Tensor
    modalities: tuple[str, ...]
    mode: str


def validate_modalities(modalities: Sequence[str]) -> tuple[str, ...]:
    """Modality names as a tuple: at least two, unique, non-empty strings."""
    names = tuple(modalities)
    if len(names) < 2:
        raise ValueError(f"fusion needs at least two modalities, got {len(names)}: {list(names)}")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"modality names must be non-empty strings, got {name!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"modality names must be unique, got {list(names)}")
    return names


def validate_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`FUSION_MODES`."""
    if mode not in FUSION_MODES:
        raise ValueError(f"unknown fusion mode {mode!r}; expected one of {list(FUSION_MODES)}")
    return mode


def validate_labels(labels: Tensor, batch_size: int, num_classes: int) -> None:
    """Raise ValueError unless ``labels`` is an integer (B,) tensor with values in 0..C-1."""
    if not isinstance(labels, Tensor):
        raise ValueError(f"labels must be a Tensor, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor of class indices, got dtype {labels.dtype}")
    if labels.shape != (batch_size,):
        raise ValueError(f"labels have shape {tuple(labels.shape)}; expected ({batch_size},), one per sample")
    if batch_size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in 0..{num_classes - 1}; got min {int(labels.min())}, max {int(labels.max())}"
        )


def check_modality_keys(keys: Iterable[str], modalities: Sequence[str], what: str) -> None:
    """Raise ValueError naming the missing and unknown keys unless ``keys`` are exactly ``modalities``."""
    keys = list(keys)
    missing = [m for m in modalities if m not in keys]
    extra = [k for k in keys if k not in modalities]
    if missing or extra:
        raise ValueError(f"{what}: expected modalities {list(modalities)}; missing {missing}, unknown {extra}")


def check_modality_dict(values: Mapping[str, Tensor], modalities: Sequence[str], what: str) -> torch.Size:
    """The common shape of per-modality tensors keyed exactly by ``modalities``.

    Raises ValueError naming the missing or unknown key, or the modality whose shape differs.
    """
    check_modality_keys(values, modalities, what)
    shape = values[modalities[0]].shape
    for name in modalities:
        if values[name].shape != shape:
            raise ValueError(
                f"{what}: modality {name!r} has shape {tuple(values[name].shape)}, "
                f"but {modalities[0]!r} has {tuple(shape)}"
            )
    return shape


def stack_modalities(values: Mapping[str, Tensor], modalities: Sequence[str], what: str) -> Tensor:
    """Stack per-modality (B, ...) tensors into (B, M, ...) in ``modalities`` order (checked)."""
    check_modality_dict(values, modalities, what)
    return torch.stack([values[m] for m in modalities], dim=1)


class FusionStrategy(nn.Module):
    """Base of the fusion-weight strategies (registered in :mod:`iidfusion.fusion.registry`).

    The model builds a strategy with ``modalities`` (names, in the column order of the
    weights), ``num_classes``, ``width`` (the projected feature width d) and ``mode``
    ("if" or "lf"), plus the strategy's own keyword options. ``unimodal_loss_weight``
    scales the sum of unimodal cross-entropies sum_m CE(g_m(z^m), y) that every strategy
    returns: QMF and PDF train their unimodal heads with it (weight 1 in both original
    codes), so every method, static included, trains the same auxiliary heads and the
    comparison isolates the weights and the IID terms; set it to 0 for a bare IF model.
    ``unimodal_reduction="mean"`` averages the M terms instead of summing them (the originals,
    with M = 2, sum), so that their weight against the fused CE does not grow with M.

    Subclasses implement :meth:`forward` (detached weights (B, M)) and
    :meth:`auxiliary_losses`. A strategy that needs the training-set size (QMF's loss
    history) sets ``requires_num_samples = True`` and takes ``num_samples``.
    """

    name: ClassVar[str] = ""
    requires_num_samples: ClassVar[bool] = False

    def __init__(
        self,
        modalities: Sequence[str],
        num_classes: int,
        *,
        width: int,
        mode: str = "if",
        unimodal_loss_weight: float = 1.0,
        unimodal_reduction: str = "sum",
    ) -> None:
        super().__init__()
        self.modalities = validate_modalities(modalities)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        if not (math.isfinite(unimodal_loss_weight) and unimodal_loss_weight >= 0):
            raise ValueError(f"unimodal_loss_weight must be finite and >= 0, got {unimodal_loss_weight}")
        if unimodal_reduction not in UNIMODAL_REDUCTIONS:
            raise ValueError(f"unknown unimodal_reduction {unimodal_reduction!r}; expected one of {list(UNIMODAL_REDUCTIONS)}")
        self.num_classes = int(num_classes)
        self.width = int(width)
        self.mode = validate_mode(mode)
        self.unimodal_loss_weight = float(unimodal_loss_weight)
        self.unimodal_reduction = unimodal_reduction

    @property
    def num_modalities(self) -> int:
        return len(self.modalities)

    def forward(self, features: Mapping[str, Tensor], unimodal_logits: Mapping[str, Tensor]) -> Tensor:
        """Per-sample fusion weights (B, M), columns in ``self.modalities`` order, no gradient."""
        raise NotImplementedError

    def auxiliary_losses(
        self, output: FusionOutput, labels: Tensor, index: Tensor | None = None
    ) -> dict[str, Tensor]:
        """The strategy's own loss terms, each a scalar already multiplied by its weight.

        The caller adds every value to the total as it is; the keys are for logging.
        ``index`` is the position of each sample in the training set (QMF's history).
        """
        raise NotImplementedError

    def on_train_epoch_end(self) -> None:
        """Hook a trainer calls once at the end of each training epoch (QMF counts epochs)."""

    def unimodal_cross_entropy(self, output: FusionOutput, labels: Tensor) -> Tensor:
        """Per-sample CE of each unimodal head, (B, M) in float32; validates ``labels``.

        Computed in float32 so that bfloat16 models get an accurate loss.
        """
        logits = stack_modalities(output.unimodal_logits, self.modalities, "unimodal_logits")
        batch_size, _, num_classes = logits.shape
        if num_classes != self.num_classes:
            raise ValueError(
                f"unimodal_logits have {num_classes} classes; the strategy was built for {self.num_classes}"
            )
        validate_labels(labels, batch_size, num_classes)
        targets = labels.to(device=logits.device, dtype=torch.long).unsqueeze(1).expand(batch_size, self.num_modalities)
        return F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")

    def weighted_unimodal_loss(self, per_sample_ce: Tensor) -> Tensor:
        """``unimodal_loss_weight * sum_m mean_i CE_im`` (or the mean over m) from the (B, M) per-sample CE."""
        per_modality = per_sample_ce.mean(dim=0)
        total = per_modality.sum() if self.unimodal_reduction == "sum" else per_modality.mean()
        return self.unimodal_loss_weight * total

    def extra_repr(self) -> str:
        return f"modalities={list(self.modalities)}, num_classes={self.num_classes}, mode={self.mode!r}"
