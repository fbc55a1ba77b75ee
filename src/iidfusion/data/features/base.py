"""Containers shared by every data source: one split of multi-view data and its splits.

A batch, as every loader of :mod:`iidfusion.data` yields it, is a dict
``{"inputs": {modality: Tensor (B, ...)}, "label": LongTensor (B,), "index": LongTensor (B,)}``;
``index`` is the sample's position in its split, which QMF's per-sample loss history needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset


@dataclass
class MultiViewData:
    """One split of a multi-view data set: each view a (N, d_m) float tensor, labels 0..C-1."""

    views: dict[str, Tensor]
    labels: Tensor

    def __post_init__(self) -> None:
        if len(self.views) == 0:
            raise ValueError("MultiViewData needs at least one view")
        if self.labels.ndim != 1:
            raise ValueError(f"labels must be 1-D, got shape {tuple(self.labels.shape)}")
        n = self.labels.shape[0]
        for name, view in self.views.items():
            if view.ndim < 2 or view.shape[0] != n:
                raise ValueError(
                    f"view {name!r} has shape {tuple(view.shape)}; expected ({n}, features) to match the {n} labels"
                )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def view_names(self) -> tuple[str, ...]:
        return tuple(self.views)

    def subset(self, index: Tensor) -> MultiViewData:
        """The samples at ``index`` (a LongTensor of positions), views and labels alike."""
        return MultiViewData({k: v[index] for k, v in self.views.items()}, self.labels[index])


class MultiViewDataset(Dataset):
    """A torch ``Dataset`` over :class:`MultiViewData` yielding the batch dict of this module."""

    def __init__(self, data: MultiViewData) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, object]:
        return {
            "inputs": {name: view[i] for name, view in self.data.views.items()},
            "label": self.data.labels[i],
            "index": torch.tensor(i, dtype=torch.long),
        }


@dataclass
class DatasetSplits:
    """Train / validation / test splits of one data set, with what a model needs to know of it."""

    name: str
    train: MultiViewData
    val: MultiViewData
    test: MultiViewData
    num_classes: int
    class_names: tuple[str, ...] = field(default=())
    # The feature scaling fitted on the training split (a MinMaxScaler of iidfusion.data.features.multiview),
    # None for unscaled data: a checkpoint stores it so that predictions scale new data the same way.
    scaler: Any = None
    # Test splits extracted from inputs corrupted at a noise level (a feature cache's
    # features_noise<eps>.npz, iidfusion.data.raw.feature_cache): evaluation at that level uses them
    # instead of adding noise to the features.
    input_noise_tests: dict[float, MultiViewData] = field(default_factory=dict)
    # The row of the file of each sample of each split ({"train": rows, ...}; empty when unknown),
    # and the file's row ids (its id column, indexed by row; None without one): what predictions
    # are joined back to the user's records with.
    rows: dict[str, Any] = field(default_factory=dict)
    ids: Any = None

    @property
    def view_dims(self) -> dict[str, int]:
        """Feature width of each view, in view order."""
        return {name: int(view.shape[1]) for name, view in self.train.views.items()}

    def split(self, name: str) -> MultiViewData:
        """The split called ``name`` ("train", "val" or "test")."""
        splits: Mapping[str, MultiViewData] = {"train": self.train, "val": self.val, "test": self.test}
        if name not in splits:
            raise ValueError(f"unknown split {name!r}; expected one of {sorted(splits)}")
        return splits[name]
