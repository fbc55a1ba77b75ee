"""core.validation: the value checks, and the label range read back once per label tensor."""

from __future__ import annotations

import pytest
import torch

from iidfusion.core.validation import check_values, validate_labels
from iidfusion.fusion import FusionModel, create_strategy
from iidfusion.losses import IIDConfig


@pytest.fixture
def count_label_reads(monkeypatch):
    """How many times an integer tensor's range is reduced (torch.aminmax) from now on."""
    calls = []
    real = torch.aminmax

    def counted(x, *args, **kwargs):
        if not x.dtype.is_floating_point:
            calls.append(1)
        return real(x, *args, **kwargs)

    monkeypatch.setattr(torch, "aminmax", counted)
    return calls


def test_bad_labels_are_refused_with_their_range():
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.2; got min 0, max 3 \(3 classes\)"):
        validate_labels(torch.tensor([0, 3]), 2, 3)
    with pytest.raises(ValueError, match="x contains NaN"):
        check_values({"x": torch.tensor([1.0, float("nan")])})


def test_a_label_tensor_is_read_once_until_it_changes(count_label_reads):
    labels = torch.tensor([0, 1, 2])
    for _ in range(3):
        validate_labels(labels, 3, 3)
    assert len(count_label_reads) == 1
    with pytest.raises(ValueError, match="max 2"):  # the remembered range still answers for fewer classes
        validate_labels(labels, 3, 2)
    labels[0] = 7  # in place: the version counter moves, so it is read again
    with pytest.raises(ValueError, match="max 7"):
        validate_labels(labels, 3, 3)
    assert len(count_label_reads) == 2
    validate_labels(torch.tensor([0, 1, 2]), 3, 3)  # another tensor with the same values: read again
    assert len(count_label_reads) == 3


def test_a_training_step_reads_its_labels_once(count_label_reads):
    torch.manual_seed(0)
    encoders = {m: torch.nn.Linear(5, 6) for m in ("a", "b", "c")}
    strategy = create_strategy("qmf", modalities=tuple(encoders), num_classes=4, width=8, num_samples=10)
    model = FusionModel(encoders, dict.fromkeys(encoders, 6), 4, width=8, strategy=strategy)
    loss_fn = IIDConfig(alpha=1.0, beta=0.1).build_loss(8)
    inputs = {m: torch.randn(10, 5) for m in encoders}
    labels, index = torch.randint(0, 4, (10,)), torch.arange(10)
    output = loss_fn(model(inputs), labels, index, model.strategy)
    assert {"informatic", "coherence", "strategy/unimodal_ce"} <= set(output.terms)
    assert len(count_label_reads) == 1  # task CE, L_ic and QMF's unimodal terms share one read
    with pytest.raises(ValueError, match="labels must lie"):
        loss_fn(model(inputs), torch.full((10,), 4), index, model.strategy)
