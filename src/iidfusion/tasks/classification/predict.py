"""Predictions of a trained model on new data: every row, in order, labelled or not.

A model trained by ``iidfusion fit`` reads its views scaled as its training split was (the
checkpoint stores that scaling: ``TrainedModel.scaler``); :func:`predict_views` applies it, runs
the model at test time in batches and gives back the class probabilities, the predicted classes
by name and the fusion weight of each view, one row per input row. ``iidfusion predict`` and
:func:`iidfusion.predict` both go through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

from iidfusion.data.features.base import MultiViewData
from iidfusion.data.features.multiview import MultiViewArrays, scaled_rows
from iidfusion.engine.checkpoint import TrainedModel
from iidfusion.fusion.model import FusionModel
from iidfusion.tasks.classification.evaluate import infer


@dataclass(frozen=True)
class Predictions:
    """A model's predictions for N rows: ``probabilities`` (N, C) over ``classes`` (the class
    names, in the model's order), ``predicted`` (N,) class indices, ``weights`` (N, M) the fusion
    weight of each of ``views`` per row.
    """

    probabilities: torch.Tensor
    predicted: torch.Tensor
    weights: torch.Tensor
    classes: tuple[str, ...]
    views: tuple[str, ...]

    @property
    def labels(self) -> list[str]:
        """The predicted class of each row, by name."""
        return [self.classes[k] for k in self.predicted.tolist()]

    def __len__(self) -> int:
        return int(self.predicted.shape[0])


def as_view_arrays(views: Mapping[str, Any], source: str) -> dict[str, np.ndarray]:
    """Arrays or tensors by view name as (N, d) numpy arrays: an array of more axes (an image per
    row) flattened as training flattens it; a 1-D array is one feature.
    """
    arrays = {}
    for name, view in views.items():
        array = view.detach().cpu().numpy() if isinstance(view, torch.Tensor) else np.asarray(view)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{source}: view {name!r} holds {array.dtype} values, not numbers")
        if array.ndim == 0:
            raise ValueError(f"{source}: view {name!r} is a single value; expected one row per sample")
        arrays[str(name)] = array.reshape(len(array), -1)
    return arrays


def predict_views(
    trained: TrainedModel, views: Mapping[str, Any], *, batch_size: int = 1024, source: str = "views"
) -> Predictions:
    """The predictions of ``trained`` (a model of ``iidfusion fit``) for every row of ``views``
    (arrays or tensors by view name, raw values as in the training file: they are scaled here with
    the model's scaling); the views and their widths must be those the model was trained on.
    """
    if trained.method == "kg":
        raise ValueError(f"{source}: a knowledge-graph model; predictions are for models of `iidfusion fit`")
    arrays = as_view_arrays(views, source)
    widths = {name: array.shape[1] for name, array in arrays.items()}
    if set(widths) != set(trained.inputs) or any(widths[name] != width for name, width in trained.inputs.items()):
        raise ValueError(f"{source}: views {widths} (name: width); the model was trained on {trained.inputs}")
    ordered = {name: arrays[name] for name in trained.inputs}
    return predict_scaled(trained, scaled_rows(MultiViewArrays(ordered, None, source), trained.scaler), batch_size)


def predict_scaled(trained: TrainedModel, views: Mapping[str, torch.Tensor], batch_size: int = 1024) -> Predictions:
    """The predictions of ``trained`` for views already scaled as its training split (a split of
    ``load_dataset(..., scale=trained.scaler)``).
    """
    model = cast(FusionModel, trained.model)
    count = len(next(iter(views.values())))
    logits, weights = infer(model, MultiViewData(dict(views), torch.zeros(count, dtype=torch.long)), batch_size)
    return Predictions(logits.softmax(dim=1), logits.argmax(dim=1), weights, trained.output_names, model.modalities)
