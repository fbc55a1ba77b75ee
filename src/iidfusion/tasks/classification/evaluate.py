"""Test-set evaluation, clean and under the feature-noise protocol (docs/reproduce.md, "Noise protocol").

Accuracy and macro-F1 come from torchmetrics, with the confusion matrix of the predictions.
Noise is applied to the test split only, with the data layer's
:func:`iidfusion.data.features.noise.corrupt_views` (each view of each sample corrupted with
probability 0.5, independently, Gaussian of std level/10 of the feature's training std by
default), on all views or one named view. The corruption is seeded by the run's seed, so two
methods trained with the same seed are tested on exactly the same noisy samples, as a paired
test needs.

Under data parallelism (an initialised process group, e.g. every process of ``--strategy ddp``
after training) each process predicts its share of the test split and the predictions are
gathered (:mod:`iidfusion.engine.distributed`): every process gets the metrics of the whole
split, the same as one process alone would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

from iidfusion.data.features.base import DatasetSplits, MultiViewData
from iidfusion.data.features.noise import corrupt_views
from iidfusion.engine.distributed import gather_rows, shard_indices, world
from iidfusion.fusion.base import at_test_time
from iidfusion.fusion.model import FusionModel


@dataclass(frozen=True)
class NoiseMetrics:
    """Test metrics at one noise level (fractions in [0, 1]) and the confusion matrix they come
    from (``confusion[t][p]``: samples of class t predicted as p).
    """

    noise: float
    accuracy: float
    macro_f1: float
    confusion: tuple[tuple[int, ...], ...] = ()

    @classmethod
    def of(cls, noise: float, predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> NoiseMetrics:
        """The metrics of ``predictions`` against ``labels`` at noise level ``noise``."""
        accuracy, f1 = classification_metrics(predictions, labels, num_classes)
        return cls(float(noise), accuracy, f1, confusion_matrix(predictions, labels, num_classes))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: noise, accuracy, macro-F1 and the confusion matrix as lists."""
        return {
            "noise": self.noise,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "confusion": [list(row) for row in self.confusion],
        }


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[tuple[int, ...], ...]:
    """``counts[t][p]``: how many samples of class t were predicted as p."""
    flat = labels.long().cpu() * num_classes + predictions.long().cpu()
    counts = torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
    return tuple(tuple(int(c) for c in row) for row in counts.tolist())


@torch.no_grad()
def infer(model: FusionModel, data: MultiViewData, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, C), fusion weights (N, M) in ``model.modalities`` order) of ``model`` in
    evaluation mode at test time (:func:`~iidfusion.fusion.at_test_time`), on the device and in the
    dtype of its parameters (float64 after a run at precision 64-true); returned on the CPU.
    """
    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    was_training = model.training
    model.eval()
    try:
        logits, weights = [], []
        with at_test_time(model):
            for start in range(0, len(data), batch_size):
                output = model({k: v[start : start + batch_size].to(device, dtype) for k, v in data.views.items()})
                logits.append(output.logits.float().cpu())
                weights.append(output.weights.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(logits), torch.cat(weights)


def predict(model: FusionModel, data: MultiViewData, batch_size: int = 1024) -> torch.Tensor:
    """Predicted classes (N,) of ``model`` in evaluation mode on the device of its parameters."""
    return infer(model, data, batch_size)[0].argmax(dim=1)


def classification_metrics(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[float, float]:
    """(accuracy, macro-F1): micro accuracy over samples, F1 averaged over classes."""
    accuracy = multiclass_accuracy(predictions, labels, num_classes=num_classes, average="micro")
    f1 = multiclass_f1_score(predictions, labels, num_classes=num_classes, average="macro")
    return float(accuracy), float(f1)


def evaluate_under_noise(
    model: FusionModel,
    splits: DatasetSplits,
    levels: Sequence[float],
    *,
    view: str = "all",
    kind: str = "gaussian",
    mask: str = "independent",
    seed: int = 0,
) -> list[NoiseMetrics]:
    """Metrics on the test split at each noise ``level`` (0 = clean) on ``view`` or all views,
    each view of a sample corrupted with a coin of its own or one shared coin (``mask``).

    Data read from a feature cache carry the test split extracted from noisy inputs at each
    cached level (``splits.input_noise_tests``); such a level is evaluated on those (the
    raw-input protocol) and never gets feature noise on top.
    """
    if view != "all" and view not in splits.test.views:
        raise ValueError(f"noise view {view!r} is not a view of {splits.name}; views: {list(splits.test.views)}")
    metrics = []
    for level in levels:
        data = splits.test
        if float(level) in splits.input_noise_tests:
            data = splits.input_noise_tests[float(level)]
        elif level != 0:  # negative or non-finite levels are refused by corrupt_views
            views = None if view == "all" else view
            data = corrupt_views(
                data, float(level), reference=splits.train, kind=kind, views=views, mask=mask, seed=seed
            )
        metrics.append(NoiseMetrics.of(level, *_predict_shared(model, data), splits.num_classes))
    return metrics


def _predict_shared(model: FusionModel, data: MultiViewData) -> tuple[torch.Tensor, torch.Tensor]:
    """(predictions, labels) of the whole of ``data``, each process predicting its share."""
    world_size, rank = world()
    if world_size == 1:
        return predict(model, data), data.labels
    share = data.subset(torch.tensor(shard_indices(len(data), world_size, rank), dtype=torch.long))
    return gather_rows(predict(model, share)), gather_rows(share.labels)
