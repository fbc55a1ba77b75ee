import math
import os

import pytest
import torch

from iidfusion.engine.checkpoint import check_finite_weights, read_checkpoint


class RunsCode:
    """A pickle that asks to call a function while it loads."""

    def __reduce__(self):
        return (os.makedirs, ("PWNED_BY_CHECKPOINT",))


def test_a_checkpoint_of_tensors_reads_back(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3, "names": ["a", "b"]}, path)
    read = read_checkpoint(path, "--checkpoint")
    assert read["epoch"] == 3 and read["names"] == ["a", "b"] and torch.equal(read["state_dict"]["w"], torch.ones(2))


def test_a_crafted_missing_or_damaged_file_is_one_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    crafted = tmp_path / "crafted.ckpt"
    torch.save({"payload": RunsCode()}, crafted)
    with pytest.raises(ValueError, match=r"--checkpoint .*crafted\.ckpt: not a readable checkpoint"):
        read_checkpoint(crafted, "--checkpoint")
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()
    with pytest.raises(FileNotFoundError, match=r"--model .*absent\.ckpt: checkpoint not found"):
        read_checkpoint(tmp_path / "absent.ckpt", "--model")
    truncated = tmp_path / "truncated.ckpt"
    torch.save({"w": torch.ones(100)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:50])
    with pytest.raises(ValueError, match="truncated.ckpt: not a readable checkpoint"):
        read_checkpoint(truncated, "--checkpoint")


def test_non_finite_weights_are_named():
    check_finite_weights({"w": torch.ones(3), "steps": torch.tensor([7]), "note": "x"}, "model.ckpt")
    for bad in (math.nan, math.inf):
        weights = {"ok": torch.zeros(2), "head.weight": torch.tensor([1.0, bad, bad])}
        with pytest.raises(ValueError, match=r"model.ckpt: weight 'head.weight' holds 2 NaN or inf values"):
            check_finite_weights(weights, "model.ckpt")
