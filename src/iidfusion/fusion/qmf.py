"""QMF fusion weights: energy confidence with a ranking regularizer on the loss history.

Zhang et al., "Provable Dynamic Fusion for Low-Quality Multimodal Data", ICML 2023
(code: QingyangZhang/QMF); docs/method.md, "Fusion-weight strategies". Our own implementation of what the
released code does:

* confidence c_m = logsumexp(f_m) / 10 per sample (the negative energy of head m);
* LF fusion sum_m c_m f_m with c detached, not normalised across modalities;
* loss sum_m CE(f_m) + CE(fused) + lam_rank * sum_m L_rank,m (the fused CE is the task
  loss, added by the caller), where L_rank compares the confidence of sample pairs
  (i, i+1) of the batch with the history of their cumulative unimodal CE.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from iidfusion.core.config import at_least, check_rules, option, positive
from iidfusion.core.output import FusionOutput
from iidfusion.core.validation import stack_modalities
from iidfusion.fusion.base import FusionStrategy, StrategyOptions
from iidfusion.fusion.registry import register_strategy


def qmf_rank_loss(confidence: Tensor, past_loss: Tensor) -> Tensor:
    """QMF's ranking regularizer for each modality: (B, M), (B, M) -> (M,).

    Pairs each sample i with i+1 (cyclically, as ``torch.roll`` in QMF's code). With the
    normalised past losses L_i, L_j: t = sign(L_i - L_j), margin = |L_i - L_j|, and
    L_rank = mean_i max(0, t (c_i - c_j) - margin): a sample with a higher past loss may
    not be more confident than its partner by more than the margin (QMF's
    ``MarginRankingLoss(c_i, c_j + margin / t, -t)`` in closed form; t = 0 gives 0).
    """
    if confidence.shape != past_loss.shape or confidence.ndim != 2:
        raise ValueError(
            f"confidence {tuple(confidence.shape)} and past_loss {tuple(past_loss.shape)} must both be (B, M)"
        )
    partner_confidence = torch.roll(confidence, shifts=-1, dims=0)
    partner_loss = torch.roll(past_loss, shifts=-1, dims=0)
    target = torch.sign(past_loss - partner_loss)
    margin = (past_loss - partner_loss).abs()
    return torch.relu(target * (confidence - partner_confidence) - margin).mean(dim=0)


@dataclass(frozen=True)
class QMFOptions(StrategyOptions):
    """QMF's options (:class:`QMFStrategy`): config section ``strategy.qmf``, flags ``--qmf-*``."""

    lam_rank: float = option(1.0, "weight of QMF's ranking regularizer L_rank", rule=at_least(0))
    energy_temperature: float = option(
        10.0, "QMF's energy temperature: confidence c_m = logsumexp(f_m) / T", rule=positive()
    )
    min_weight: float = option(
        1e-6, "IF only: each c_m is clamped to at least this before the weights are normalised", rule=positive()
    )


@register_strategy("qmf", options=QMFOptions)
class QMFStrategy(FusionStrategy):
    """Energy-based dynamic weights (QMF) with a per-sample loss history in the module state.

    ``num_samples`` (required: the training-set size, rows of the history). Options
    (:class:`QMFOptions`): ``lam_rank`` (1.0 as QMF uses for text-image and SUN RGB-D; QMF
    uses 0.1 for NYU Depth V2), ``energy_temperature`` (QMF's 10), ``min_weight`` (IF guard, below).
    ``base_options``: ``width``, ``mode``, ``unimodal_loss_weight`` (see :class:`FusionStrategy`).

    Weights. LF: w_m = c_m exactly as published (not normalised; the scale only changes
    the temperature of the fused logits). IF: w_m = max(c_m, min_weight) / sum_j
    max(c_j, min_weight). Proportional normalisation keeps the ratios c_m / c_j that QMF
    gives the modalities, so IF weighs them exactly as the LF baseline does, while the
    fused feature stays on the scale of one modality's features (unnormalised, it would
    grow with the energies and the number of modalities, and L_dc compares feature
    scales). A softmax would change the ratios to exp(c_m - c_j), nearly uniform at the
    /10 temperature. The clamp guards non-positive energies (possible when all logits of
    a head are negative); if every c_m is clamped the weights are uniform.

    History. ``loss_history`` (num_samples, M), a buffer (saved in checkpoints): the sum
    over epochs of each sample's detached unimodal CE, updated by :meth:`auxiliary_losses`
    in training mode when ``index`` (positions in the training set) is given, then read
    min-max normalised over the whole data set per modality (an empty range, as in the
    all-zero history before the first update, normalises to 0, so the rank loss is 0
    instead of QMF's 0/0). Evaluation never reads or writes it, so validation indices
    (another split) are ignored. Training without ``index`` gives a rank loss of 0.
    ``epochs_seen`` mirrors QMF's ``max_correctness`` epoch counter; the released code
    normalises by the observed min and max, not by it, and so do we. A trainer calls
    :meth:`on_train_epoch_end` after each training epoch.
    """

    requires_num_samples = True
    loss_history: Tensor
    epochs_seen: Tensor

    def __init__(
        self,
        modalities: Sequence[str],
        num_classes: int,
        *,
        num_samples: int | None = None,
        lam_rank: float = 1.0,
        energy_temperature: float = 10.0,
        min_weight: float = 1e-6,
        **base_options: Any,
    ) -> None:
        super().__init__(modalities, num_classes, **base_options)
        if num_samples is None or int(num_samples) < 1:
            raise ValueError(
                "the qmf strategy needs num_samples >= 1 (the training-set size) for its per-sample loss "
                f"history, e.g. strategy_kwargs={{'num_samples': N}}; got {num_samples!r}"
            )
        check_rules(
            QMFOptions(lam_rank=lam_rank, energy_temperature=energy_temperature, min_weight=min_weight),
            name_flags=False,
        )
        self.num_samples = int(num_samples)
        self.lam_rank = float(lam_rank)
        self.energy_temperature = float(energy_temperature)
        self.min_weight = float(min_weight)
        self.register_buffer("loss_history", torch.zeros(self.num_samples, self.num_modalities))
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))

    def energy_confidence(self, unimodal_logits: Mapping[str, Tensor]) -> Tensor:
        """c_m = logsumexp(f_m) / energy_temperature per sample, (B, M), with gradient."""
        logits = stack_modalities(unimodal_logits, self.modalities, "unimodal_logits")
        return torch.logsumexp(logits, dim=-1) / self.energy_temperature

    def forward(self, features: Mapping[str, Tensor], unimodal_logits: Mapping[str, Tensor]) -> Tensor:
        confidence = self.energy_confidence(unimodal_logits).detach()
        if self.mode == "lf":
            return confidence
        clamped = confidence.clamp_min(self.min_weight)
        return clamped / clamped.sum(dim=1, keepdim=True)

    def _check_index(self, index: Tensor, batch_size: int) -> Tensor:
        if not isinstance(index, Tensor) or index.dtype.is_floating_point or index.dtype == torch.bool:
            raise ValueError(f"index must be an integer tensor of training-set positions, got {index!r}")
        if index.shape != (batch_size,):
            raise ValueError(f"index has shape {tuple(index.shape)}; expected ({batch_size},)")
        if batch_size and (int(index.min()) < 0 or int(index.max()) >= self.num_samples):
            raise ValueError(
                f"index out of range of the qmf loss history (num_samples={self.num_samples}): "
                f"min {int(index.min())}, max {int(index.max())}"
            )
        return index.to(device=self.loss_history.device, dtype=torch.long)

    def normalised_history(self, index: Tensor) -> Tensor:
        """Rows ``index`` of the history, min-max normalised per modality over the data set, (B, M)."""
        low = self.loss_history.min(dim=0).values
        span = self.loss_history.max(dim=0).values - low
        safe_span = torch.where(span > 0, span, torch.ones_like(span))
        normalised = (self.loss_history[index] - low) / safe_span
        return torch.where(span > 0, normalised, torch.zeros_like(normalised))

    def auxiliary_losses(self, output: FusionOutput, labels: Tensor, index: Tensor | None = None) -> dict[str, Tensor]:
        """``unimodal_ce`` and ``rank`` = lam_rank * sum_m L_rank,m (QMF's training loss).

        As in QMF's training step, the history is updated with this batch before the
        rank loss reads it; call it once per training step (a second call would add the
        batch's losses to the history twice).
        """
        per_sample_ce = self.unimodal_cross_entropy(output, labels)
        rank = per_sample_ce.new_zeros(())
        if self.training and index is not None:
            rows = self._check_index(index, per_sample_ce.shape[0])
            with torch.no_grad():
                self.loss_history.index_add_(0, rows, per_sample_ce.detach().to(self.loss_history))
            confidence = self.energy_confidence({m: f.float() for m, f in output.unimodal_logits.items()})
            past = self.normalised_history(rows).to(device=confidence.device, dtype=confidence.dtype)
            rank = qmf_rank_loss(confidence, past).sum()
        return {"unimodal_ce": self.weighted_unimodal_loss(per_sample_ce), "rank": self.lam_rank * rank}

    def on_train_epoch_end(self) -> None:
        """Count a finished training epoch (``epochs_seen``, QMF's ``max_correctness``)."""
        self.epochs_seen += 1
