"""Named methods of the paper: every spec is valid and builds a working model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from iidfusion.fusion import MAIN_METHODS, MethodSpec, available_methods, get_method

EXPECTED = {
    # name: (mode, strategy, use_ic, use_dc)
    "lf-static": ("lf", "static", False, False),
    "if-static": ("if", "static", False, False),
    "iid-l": ("if", "static", True, True),
    "qmf": ("lf", "qmf", False, False),
    "if-qmf": ("if", "qmf", False, False),
    "iid-q": ("if", "qmf", True, True),
    "pdf": ("lf", "pdf", False, False),
    "if-pdf": ("if", "pdf", False, False),
    "iid-p": ("if", "pdf", True, True),
    "iid-l-no-ic": ("if", "static", False, True),
    "iid-l-no-dc": ("if", "static", True, False),
    "iid-q-no-ic": ("if", "qmf", False, True),
    "iid-q-no-dc": ("if", "qmf", True, False),
    "iid-p-no-ic": ("if", "pdf", False, True),
    "iid-p-no-dc": ("if", "pdf", True, False),
}


def test_the_paper_methods_and_their_configuration():
    assert set(available_methods()) == set(EXPECTED)
    assert MAIN_METHODS == tuple(list(EXPECTED)[:9]) == available_methods()[:9]
    for name, (mode, strategy, use_ic, use_dc) in EXPECTED.items():
        assert get_method(name) == MethodSpec(name, mode, strategy, use_ic, use_dc)


@pytest.mark.parametrize("name", available_methods())
def test_every_method_builds_a_working_model(name):
    spec = get_method(name)
    encoders = {"image": nn.Linear(3, 4), "text": nn.Linear(5, 4)}
    model = spec.build_model(encoders, {"image": 4, "text": 4}, 3, width=6, num_samples=10)
    assert model.mode == spec.mode and model.strategy.name == spec.strategy
    out = model({"image": torch.randn(2, 3), "text": torch.randn(2, 5)})
    assert out.logits.shape == (2, 3) and torch.isfinite(out.logits).all()
    losses = model.strategy.auxiliary_losses(out, torch.tensor([0, 2]), torch.tensor([1, 9]))
    assert all(torch.isfinite(value) for value in losses.values())


def test_build_model_passes_num_samples_to_qmf_only():
    encoders = {"a": nn.Identity(), "b": nn.Identity()}
    qmf = get_method("iid-q").build_model(encoders, {"a": 4, "b": 4}, 3, width=4, num_samples=17)
    assert qmf.strategy.loss_history.shape == (17, 2)
    get_method("iid-p").build_model(encoders, {"a": 4, "b": 4}, 3, width=4, num_samples=17)
    with pytest.raises(ValueError, match="num_samples"):
        get_method("qmf").build_model(encoders, {"a": 4, "b": 4}, 3, width=4)
    lam = get_method("qmf").build_model(
        encoders, {"a": 4, "b": 4}, 3, width=4, num_samples=5, strategy_kwargs={"lam_rank": 0.1}
    )
    assert lam.strategy.lam_rank == 0.1


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown method 'iid-x'; available: \['lf-static', 'if-static', 'iid-l'"):
        get_method("iid-x")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("x", "mid", "static", False, False), "unknown fusion mode 'mid'"),
        (("x", "if", "mean", False, False), "unknown fusion strategy 'mean'"),
        (("x", "lf", "static", True, False), "intermediate fusion only"),
    ],
)
def test_invalid_specs_raise(arguments, message):
    with pytest.raises(ValueError, match=message):
        MethodSpec(*arguments)
