"""The fusion output dataclass and the base class of fusion-weight strategies.

A strategy turns the projected unimodal features z^m and the unimodal logits f_m = g_m(z^m)
of a batch into per-sample fusion weights w (B, M), and owns the auxiliary loss terms that
train whatever produces those weights (docs/method.md, "Fusion-weight strategies"). The weights it returns carry no
gradient: every original method detaches them before fusing (QMF detaches the energy
confidence, PDF the co-belief), so the fused prediction trains the encoders and heads, and
the weight estimators learn only from the strategy's auxiliary losses.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from iidfusion.core.output import FusionOutput
from iidfusion.core.validation import stack_modalities, validate_labels, validate_modalities

FUSION_MODES: tuple[str, ...] = ("if", "lf")
UNIMODAL_REDUCTIONS: tuple[str, ...] = ("sum", "mean")


def validate_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`FUSION_MODES`."""
    if mode not in FUSION_MODES:
        raise ValueError(f"unknown fusion mode {mode!r}; expected one of {list(FUSION_MODES)}")
    return mode


@dataclass(frozen=True)
class StrategyOptions:
    """Base of a strategy's own options: a frozen dataclass whose fields, declared with
    :func:`iidfusion.core.config.option` (default, help, rule), are keyword arguments of the
    strategy's constructor with the same defaults. The registry gives them to the training
    configuration as the section ``strategy.<name>`` (:func:`~iidfusion.fusion.registry.strategy_sections`).
    A strategy without options of its own keeps this empty base.
    """


@contextlib.contextmanager
def at_test_time(module: nn.Module) -> Iterator[None]:
    """Within the block, every :class:`FusionStrategy` in ``module`` predicts as on the test split.

    Model selection runs on validation in evaluation mode too; the originals apply their
    test-only steps (PDF's relative calibration) when they report test results, so the
    evaluation of a test split (or of new data) enters this block and validation does not.
    """
    strategies = [m for m in module.modules() if isinstance(m, FusionStrategy)]
    before = [s.test_time for s in strategies]
    for strategy in strategies:
        strategy.test_time = True
    try:
        yield
    finally:
        for strategy, value in zip(strategies, before, strict=True):
            strategy.test_time = value


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
    :meth:`auxiliary_losses`. One whose weights never read the unimodal logits sets
    ``reads_unimodal_logits = False``: the model then builds no IF heads for it and, unless
    the unimodal heads are shared, its unimodal CE weight defaults to 0 (:class:`FusionModel`). A strategy that needs
    the training-set size (QMF's loss
    history) sets ``requires_num_samples = True`` and takes ``num_samples``. Its own options
    are declared as a :class:`StrategyOptions` dataclass given to ``register_strategy``,
    which sets ``options_class``.
    """

    name: ClassVar[str] = ""
    requires_num_samples: ClassVar[bool] = False
    # Whether the weights read the unimodal logits f_m (QMF's energy, PDF's confidence). A
    # strategy that does not (static weights) needs no unimodal heads in the paper's IF.
    reads_unimodal_logits: ClassVar[bool] = True
    options_class: ClassVar[type[StrategyOptions]] = StrategyOptions
    # True only inside :func:`at_test_time`: evaluation mode alone also covers validation, and a
    # strategy may act differently on the test split (PDF's relative calibration).
    test_time: bool = False

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
            raise ValueError(
                f"unknown unimodal_reduction {unimodal_reduction!r}; expected one of {list(UNIMODAL_REDUCTIONS)}"
            )
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

    def auxiliary_losses(self, output: FusionOutput, labels: Tensor, index: Tensor | None = None) -> dict[str, Tensor]:
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
