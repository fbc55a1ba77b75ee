"""The LightningModule: a :class:`FusionModel` trained with :class:`IIDLoss` (issue 4, item 2).

One module serves every method of the paper: the :class:`MethodSpec` picks the fusion mode,
the weight strategy and whether L_ic / L_dc are on; the :class:`ExperimentConfig` sections
give the hyperparameters. Per training epoch it logs every loss term, the mean fusion weight
of each modality and the per-pair Wasserstein distances W~ of L_dc. Methods without L_dc
still get those distances, computed under ``no_grad`` (``train.monitor_distances``), so a
base method and its IID variant can be compared on the same quantity (the paper's Figure 4).

Metrics are accumulated in plain tensors and logged once per epoch: logging ~30 scalars at
every step through Lightning costs more than the step itself for the small MLP models.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from iidfusion.encoders.mlp import MLPEncoder
from iidfusion.fusion.methods import MethodSpec, get_method
from iidfusion.fusion.model import FusionModel
from iidfusion.losses.coherence import DistributionCoherence
from iidfusion.losses.iid import IIDLoss, IIDLossOutput
from iidfusion.losses.informatic import InformaticConstraint
from iidfusion.training.config import ExperimentConfig, LossConfig, ModelConfig, config_to_dict
from iidfusion.training.distributed import GatheredCoherence, sum_across_processes
from iidfusion.training.evaluate import classification_metrics


def strategy_options(spec: MethodSpec, model: ModelConfig) -> dict[str, Any]:
    """The weight strategy's own options from the model config (QMF's rank weight)."""
    return {"lam_rank": model.lam_rank} if spec.strategy == "qmf" else {}


def build_feature_model(
    spec: MethodSpec, view_dims: Mapping[str, int], num_classes: int, num_train: int, model: ModelConfig
) -> FusionModel:
    """The method's :class:`FusionModel` with an :class:`MLPEncoder` per feature view."""
    encoders = {v: MLPEncoder(d, model.hidden, model.layers, model.dropout) for v, d in view_dims.items()}
    return spec.build_model(
        encoders,
        {v: e.output_dim for v, e in encoders.items()},
        num_classes,
        width=model.width,
        num_samples=num_train,
        strategy_kwargs=strategy_options(spec, model),
    )


def build_loss(spec: MethodSpec, loss: LossConfig, width: int, *, gather_features: bool = False) -> IIDLoss:
    """IIDLoss of the method; the L_dc module is built for every method (monitoring uses it)."""
    coherence_class = GatheredCoherence if gather_features else DistributionCoherence
    coherence = coherence_class(
        width, loss.d1 or None, loss.d2 or None, eps=loss.eps, rho=loss.rho, max_iter=loss.max_iter
    )
    informatic = InformaticConstraint(lam=loss.lam, variant=loss.variant)  # type: ignore[arg-type]
    return IIDLoss.from_method(spec, alpha=loss.alpha, beta=loss.beta, informatic=informatic, coherence=coherence)


class EpochMeans:
    """Sample-weighted running means of detached scalars, reset every epoch."""

    def __init__(self) -> None:
        self._sums: dict[str, Tensor] = {}
        self._count = 0

    def add(self, values: Mapping[str, Tensor], count: int) -> None:
        for name, value in values.items():
            weighted = value.detach().float() * count
            self._sums[name] = self._sums[name] + weighted if name in self._sums else weighted
        self._count += count

    def pop(self) -> dict[str, Tensor]:
        means = {name: total / max(self._count, 1) for name, total in self._sums.items()}
        self._sums, self._count = {}, 0
        return means


class FusionModule(L.LightningModule):
    """Train, validate and checkpoint one method (``spec``) on one model."""

    def __init__(self, spec: MethodSpec | str, model: FusionModel, config: ExperimentConfig) -> None:
        super().__init__()
        self.spec = get_method(spec) if isinstance(spec, str) else spec
        if model.mode != self.spec.mode:
            raise ValueError(f"method {self.spec.name!r} is {self.spec.mode.upper()}, the model is {model.mode.upper()}")
        self.model = model
        self.loss_fn = build_loss(self.spec, config.loss, model.width, gather_features=config.train.gather_features)
        self.optim = config.optim
        self.monitor_distances = config.train.monitor_distances
        self.save_hyperparameters({"method": self.spec.name, **config_to_dict(config)})
        self._train_means = EpochMeans()
        self._val_outputs: list[tuple[Tensor, Tensor]] = []
        self._history_at_epoch_start: Tensor | None = None

    @classmethod
    def for_feature_views(
        cls, spec: MethodSpec | str, view_dims: Mapping[str, int], num_classes: int, num_train: int, config: ExperimentConfig
    ) -> FusionModule:
        """The module for multi-view feature data (MLP encoders)."""
        spec = get_method(spec) if isinstance(spec, str) else spec
        return cls(spec, build_feature_model(spec, view_dims, num_classes, num_train, config.model), config)

    def forward(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """Fused logits (B, C)."""
        return self.model(inputs).logits

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        output = self.model(batch["inputs"])
        losses = self.loss_fn(output, batch["label"], batch["index"], strategy=self.model.strategy)
        if not torch.isfinite(losses.total):
            terms = {k: float(v) for k, v in losses.terms.items()}
            raise FloatingPointError(f"non-finite training loss at epoch {self.current_epoch}, batch {batch_idx}: {terms}")
        self._train_means.add(self._step_metrics(output.features, output.weights, output.modalities, losses), len(batch["label"]))
        return losses.total

    def _step_metrics(
        self, features: Mapping[str, Tensor], weights: Tensor, modalities: tuple[str, ...], losses: IIDLossOutput
    ) -> dict[str, Tensor]:
        metrics = {"loss": losses.total, **losses.terms}
        metrics.update({f"weight/{m}": w for m, w in zip(modalities, weights.detach().float().mean(dim=0))})
        distances, pairs = losses.pair_distances, losses.pairs
        if distances is None and self.monitor_distances:
            with torch.no_grad():
                monitored = self.loss_fn.coherence({m: z.detach() for m, z in features.items()})
            distances, pairs = monitored.pair_distances, monitored.pairs
        if distances is not None:
            metrics.update({f"wasserstein/{a}-{b}": d for (a, b), d in zip(pairs, distances)})
            metrics["wasserstein/mean"] = distances.mean()
        return metrics

    def on_train_epoch_start(self) -> None:
        history = getattr(self.model.strategy, "loss_history", None)
        self._history_at_epoch_start = history.clone() if isinstance(history, Tensor) and self.trainer.world_size > 1 else None

    def on_train_epoch_end(self) -> None:
        """Log the epoch means, merge QMF's history across processes, then the strategy's hook.

        Under DDP each process adds its own samples' losses to its copy of QMF's history
        (buffers are not broadcast, see ``runner.build_strategy``); the increments of all
        processes are summed here, so every copy ends the epoch as a single process would.
        """
        self.log_dict({f"train/{k}": v for k, v in self._train_means.pop().items()}, sync_dist=True)
        if self._history_at_epoch_start is not None:
            history = self.model.strategy.loss_history
            history.copy_(self._history_at_epoch_start + sum_across_processes(history - self._history_at_epoch_start))
        self.model.strategy.on_train_epoch_end()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        output = self.model(batch["inputs"])
        self._val_outputs.append((output.logits.argmax(dim=1).detach().cpu(), batch["label"].detach().cpu()))

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs:
            return
        predictions, labels = (torch.cat(parts) for parts in zip(*self._val_outputs))
        self._val_outputs.clear()
        accuracy, f1 = classification_metrics(predictions, labels, self.model.num_classes)
        # Every process validates the whole split (datamodule): the values agree, the sync is a no-op mean.
        self.log("val/acc", accuracy, prog_bar=True, sync_dist=True)
        self.log("val/macro_f1", f1, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params: list[nn.Parameter] = [p for p in self.parameters() if p.requires_grad]
        # foreach: one fused kernel per update on every device (torch defaults to a Python loop on CPU).
        return torch.optim.AdamW(params, lr=self.optim.lr, weight_decay=self.optim.weight_decay, foreach=True)
