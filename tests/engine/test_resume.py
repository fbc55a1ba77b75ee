import hashlib

import pytest
import torch

from iidfusion.engine.resume import data_digest, refuse_changed_settings


def test_the_digest_hashes_strings_tensors_and_named_tensors_in_order():
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    expected = hashlib.sha256()
    expected.update(b"names\0")
    expected.update(b"view(2, 3)torch.float32" + x.numpy().tobytes())
    expected.update(torch.tensor([1, 0]).numpy().tobytes())
    assert data_digest(["names\0", ("view", x), torch.tensor([1, 0])]) == expected.hexdigest()
    assert data_digest([("view", x.t().contiguous().t())]) == data_digest([("view", x)])  # values, not memory layout
    assert data_digest([("view", x)]) != data_digest([("other", x)])


def test_a_changed_setting_outside_the_resumable_ones_is_refused():
    saved = {"train": {"max_epochs": 2, "batch_size": 32}, "loss": {"alpha": [1, 2]}}
    refuse_changed_settings(
        "c.ckpt",
        saved,
        [("train.max_epochs", "--max-epochs", 4), ("loss.alpha", "--alpha", (1, 2))],
        frozenset({"train.max_epochs"}),
    )
    with pytest.raises(
        ValueError, match=r"--resume c.ckpt: the run was trained with other settings \(--batch-size 32 -> 64\)"
    ):
        refuse_changed_settings("c.ckpt", saved, [("train.batch_size", "--batch-size", 64)], frozenset())
