"""The shared containers: MultiViewData checks, the Dataset's batch dict, DatasetSplits."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from iidfusion.data.features.base import DatasetSplits, MultiViewData, MultiViewDataset


def make_data(n: int = 6) -> MultiViewData:
    return MultiViewData(
        {"a": torch.arange(n * 2, dtype=torch.float32).reshape(n, 2), "b": torch.zeros(n, 3)},
        torch.arange(n) % 2,
    )


def test_multiview_data_checks_shapes() -> None:
    with pytest.raises(ValueError, match="at least one view"):
        MultiViewData({}, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must be 1-D, got shape \(3, 1\)"):
        MultiViewData({"a": torch.zeros(3, 2)}, torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"view 'a' has shape \(4, 2\); expected \(3, features\)"):
        MultiViewData({"a": torch.zeros(4, 2)}, torch.zeros(3, dtype=torch.long))


def test_subset_and_names() -> None:
    data = make_data()
    part = data.subset(torch.tensor([4, 1]))
    assert len(part) == 2 and part.view_names == ("a", "b")
    assert part.views["a"].tolist() == [[8.0, 9.0], [2.0, 3.0]]
    assert part.labels.tolist() == [0, 1]


def test_dataset_batches_carry_inputs_label_and_index() -> None:
    batch = next(iter(DataLoader(MultiViewDataset(make_data()), batch_size=4)))
    assert set(batch) == {"inputs", "label", "index"}
    assert batch["inputs"]["a"].shape == (4, 2) and batch["inputs"]["b"].shape == (4, 3)
    assert batch["label"].tolist() == [0, 1, 0, 1]
    assert batch["index"].dtype == torch.long and batch["index"].tolist() == [0, 1, 2, 3]


def test_dataset_splits_lookup_and_dims() -> None:
    data = make_data()
    splits = DatasetSplits("toy", data, data.subset(torch.tensor([0])), data.subset(torch.tensor([1])), 2)
    assert splits.view_dims == {"a": 2, "b": 3}
    assert splits.split("val") is splits.val
    with pytest.raises(ValueError, match=r"unknown split 'dev'"):
        splits.split("dev")
