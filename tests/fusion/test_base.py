"""fusion.base: the contract of a fusion-weight strategy, on a tiny strategy written here.

A strategy takes {modality: Tensor} features and unimodal logits and returns detached per-sample
weights (B, M) in the model's modality order; the base checks its construction and computes the
unimodal CE every strategy trains its heads with (docs/method.md, "Fusion-weight strategies").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from iidfusion.core.output import FusionOutput
from iidfusion.fusion import FusionModel, FusionStrategy, register_strategy
from iidfusion.fusion.base import StrategyOptions, at_test_time, validate_mode
from iidfusion.fusion.registry import STRATEGIES
from tests.fusion.conftest import NUM_CLASSES, WIDTH, build_inputs, build_labels, input_dim

MODALITIES = ("image", "text", "depth")


class ConfidenceStrategy(FusionStrategy):
    """Weights: the softmax over modalities of each unimodal head's top probability."""

    name = "confidence"

    def forward(self, features: Mapping[str, Tensor], unimodal_logits: Mapping[str, Tensor]) -> Tensor:
        top = torch.stack([unimodal_logits[m].softmax(dim=1).amax(dim=1) for m in self.modalities], dim=1)
        return top.softmax(dim=1).detach()

    def auxiliary_losses(self, output: FusionOutput, labels: Tensor, index: Tensor | None = None) -> dict[str, Tensor]:
        return {"unimodal_ce": self.weighted_unimodal_loss(self.unimodal_cross_entropy(output, labels))}


class BlindStrategy(ConfidenceStrategy):
    """Equal weights that never read the unimodal logits."""

    name = "blind"
    reads_unimodal_logits = False

    def forward(self, features: Mapping[str, Tensor], unimodal_logits: Mapping[str, Tensor]) -> Tensor:
        batch = features[self.modalities[0]].shape[0]
        return torch.full((batch, self.num_modalities), 1.0 / self.num_modalities)


class OneColumnTooMany(ConfidenceStrategy):
    name = "too-wide"

    def forward(self, features: Mapping[str, Tensor], unimodal_logits: Mapping[str, Tensor]) -> Tensor:
        return torch.ones(features[self.modalities[0]].shape[0], self.num_modalities + 1)


def model_with(strategy: FusionStrategy | str, mode: str = "if", seed: int = 0, **kwargs) -> FusionModel:
    torch.manual_seed(seed)
    encoders = {m: nn.Sequential(nn.Linear(input_dim(i), 4), nn.Tanh()) for i, m in enumerate(MODALITIES)}
    return FusionModel(
        encoders, dict.fromkeys(MODALITIES, 4), NUM_CLASSES, width=WIDTH, mode=mode, strategy=strategy, **kwargs
    )


def confidence(mode: str = "if", **options) -> ConfidenceStrategy:
    return ConfidenceStrategy(MODALITIES, NUM_CLASSES, width=WIDTH, mode=mode, **options)


# ---------------------------------------------------------------- a strategy inside a model


@pytest.mark.parametrize("mode", ["if", "lf"])
def test_a_strategy_gives_detached_weights_per_sample_in_modality_order(mode):
    model = model_with(confidence(mode), mode)
    inputs = build_inputs(model, batch_size=5)
    out = model(inputs)
    assert out.weights.shape == (5, 3) and not out.weights.requires_grad
    torch.testing.assert_close(out.weights.sum(dim=1), torch.ones(5))
    top = torch.stack([out.unimodal_logits[m].softmax(1).amax(1) for m in MODALITIES], dim=1)
    torch.testing.assert_close(out.weights, top.softmax(dim=1))  # column k is MODALITIES[k]
    assert not torch.allclose(out.weights, torch.full((5, 3), 1 / 3))  # the weights differ per sample and column


def test_a_strategy_that_does_not_read_unimodal_logits_gets_no_if_heads():
    blind = model_with(BlindStrategy(MODALITIES, NUM_CLASSES, width=WIDTH))
    assert blind.unimodal_heads is None and model_with(confidence()).unimodal_heads is not None
    out = blind(build_inputs(blind))
    for m in MODALITIES:  # the unimodal logits are then the shared head g(z^m)
        torch.testing.assert_close(out.unimodal_logits[m], blind.target_mapping(out.features[m]))


def test_by_name_a_strategy_without_heads_to_train_defaults_to_no_unimodal_ce(monkeypatch):
    monkeypatch.setattr(STRATEGIES, "_entries", dict(STRATEGIES._entries))  # registrations undone after the test
    register_strategy("blind")(BlindStrategy)
    register_strategy("confidence")(ConfidenceStrategy)
    assert model_with("blind").strategy.unimodal_loss_weight == 0.0
    assert model_with("blind", unimodal_heads="shared").strategy.unimodal_loss_weight == 1.0
    assert model_with("confidence").strategy.unimodal_loss_weight == 1.0
    assert model_with("blind", strategy_kwargs={"unimodal_loss_weight": 0.5}).strategy.unimodal_loss_weight == 0.5


def test_weights_of_the_wrong_shape_are_refused_naming_the_strategy():
    model = model_with(OneColumnTooMany(MODALITIES, NUM_CLASSES, width=WIDTH))
    with pytest.raises(ValueError) as error:
        model(build_inputs(model, batch_size=4))
    assert str(error.value) == "strategy 'too-wide' returned weights of shape (4, 4); expected (4, 3)"


def test_the_base_leaves_the_weights_and_losses_to_subclasses():
    base = FusionStrategy(MODALITIES, NUM_CLASSES, width=WIDTH)
    model = model_with(confidence())
    out = model(build_inputs(model))
    with pytest.raises(NotImplementedError):
        base(out.features, out.unimodal_logits)
    with pytest.raises(NotImplementedError):
        base.auxiliary_losses(out, build_labels())
    assert base.on_train_epoch_end() is None
    assert base.num_modalities == 3 and base.test_time is False and dataclasses.fields(StrategyOptions) == ()
    assert repr(confidence("lf")).endswith("(modalities=['image', 'text', 'depth'], num_classes=3, mode='lf')")


# ---------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"modalities": ("image",)}, "fusion needs at least two modalities, got 1: ['image']"),
        ({"modalities": ("image", "image")}, "modality names must be unique, got ['image', 'image']"),
        ({"modalities": ("image", "")}, "modality names must be non-empty strings, got ''"),
        ({"num_classes": 1}, "num_classes must be >= 2, got 1"),
        ({"width": 0}, "width must be >= 1, got 0"),
        ({"mode": "early"}, "unknown fusion mode 'early'; expected one of ['if', 'lf']"),
        ({"unimodal_loss_weight": -0.5}, "unimodal_loss_weight must be finite and >= 0, got -0.5"),
        ({"unimodal_loss_weight": float("nan")}, "unimodal_loss_weight must be finite and >= 0, got nan"),
        ({"unimodal_loss_weight": float("inf")}, "unimodal_loss_weight must be finite and >= 0, got inf"),
        ({"unimodal_reduction": "max"}, "unknown unimodal_reduction 'max'; expected one of ['sum', 'mean']"),
    ],
)
def test_bad_construction_is_one_line_naming_the_argument_and_value(arguments, message):
    full = {"modalities": MODALITIES, "num_classes": NUM_CLASSES, "width": WIDTH, **arguments}
    with pytest.raises(ValueError) as error:
        ConfidenceStrategy(full.pop("modalities"), full.pop("num_classes"), **full)
    assert str(error.value) == message


def test_validate_mode_returns_a_known_mode():
    assert validate_mode("if") == "if" and validate_mode("lf") == "lf"
    with pytest.raises(ValueError, match=r"unknown fusion mode 'IF'"):
        validate_mode("IF")


# ---------------------------------------------------------------- the unimodal CE


def test_unimodal_cross_entropy_is_per_sample_and_per_modality_in_modality_order():
    model = model_with(confidence())
    out = model(build_inputs(model))
    labels = build_labels()
    per_sample = model.strategy.unimodal_cross_entropy(out, labels)
    expected = torch.stack([F.cross_entropy(out.unimodal_logits[m], labels, reduction="none") for m in MODALITIES], 1)
    assert per_sample.shape == (6, 3)
    torch.testing.assert_close(per_sample, expected)


def test_unimodal_cross_entropy_of_bfloat16_logits_is_computed_in_float32():
    model = model_with(confidence())
    out = model(build_inputs(model))
    low = dataclasses.replace(out, unimodal_logits={m: v.bfloat16() for m, v in out.unimodal_logits.items()})
    labels = build_labels()
    per_sample = model.strategy.unimodal_cross_entropy(low, labels)
    assert per_sample.dtype == torch.float32
    expected = torch.stack(
        [F.cross_entropy(low.unimodal_logits[m].float(), labels, reduction="none") for m in MODALITIES], 1
    )
    torch.testing.assert_close(per_sample, expected)


def test_unimodal_cross_entropy_checks_the_classes_and_the_labels():
    model = model_with(confidence())
    out = model(build_inputs(model, batch_size=3))
    wider = dataclasses.replace(out, unimodal_logits={m: torch.zeros(3, 5) for m in MODALITIES})
    with pytest.raises(ValueError, match=r"^unimodal_logits have 5 classes; the strategy was built for 3$"):
        model.strategy.unimodal_cross_entropy(wider, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.2; got min 0, max 3"):
        model.strategy.unimodal_cross_entropy(out, torch.tensor([0, 1, 3]))


@pytest.mark.parametrize(
    ("reduction", "weight", "expected"), [("sum", 0.5, 3.0), ("mean", 0.5, 1.0), ("sum", 0.0, 0.0)]
)
def test_weighted_unimodal_loss_averages_samples_then_reduces_modalities(reduction, weight, expected):
    per_sample = torch.tensor([[1.0, 2.0, 0.0], [3.0, 6.0, 0.0]])  # modality means 2, 4, 0
    strategy = confidence(unimodal_loss_weight=weight, unimodal_reduction=reduction)
    assert strategy.weighted_unimodal_loss(per_sample).item() == expected


# ---------------------------------------------------------------- at_test_time


def test_at_test_time_marks_every_nested_strategy_and_restores_each_state_even_on_error():
    first, second = confidence(), confidence()
    second.test_time = True
    container = nn.ModuleDict({"a": first, "inner": nn.Sequential(nn.Identity(), second)})
    with at_test_time(container):
        assert first.test_time and second.test_time
    assert (first.test_time, second.test_time) == (False, True)
    with pytest.raises(RuntimeError, match="interrupted"), at_test_time(container):
        raise RuntimeError("interrupted")
    assert (first.test_time, second.test_time) == (False, True)
    with at_test_time(nn.Linear(2, 2)):  # a module without strategies: nothing to mark
        pass
