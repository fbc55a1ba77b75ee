"""FusionModel: shapes, the IF / LF formulas, gradients, dtypes, bad input."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from iidfusion.fusion import FusionModel, FusionOutput, create_strategy
from tests.fusion.conftest import build_labels


@pytest.mark.parametrize("num_modalities", [2, 3, 4])
def test_output_shapes_and_dtypes(make_model, make_inputs, strategy_name, mode, num_modalities):
    model = make_model(num_modalities, mode, strategy_name)
    out = model(make_inputs(model, batch_size=5))
    assert isinstance(out, FusionOutput)
    assert out.modalities == model.modalities and len(out.modalities) == num_modalities
    assert out.mode == mode
    assert out.logits.shape == (5, model.num_classes)
    assert out.fused_features.shape == (5, model.width)
    assert out.weights.shape == (5, num_modalities)
    for field in (out.unimodal_logits, out.shared_head_logits, out.features):
        assert tuple(field) == model.modalities
    for name in model.modalities:
        assert out.unimodal_logits[name].shape == (5, model.num_classes)
        assert out.shared_head_logits[name].shape == (5, model.num_classes)
        assert out.features[name].shape == (5, model.width)
    tensors = [out.logits, out.fused_features, out.weights, *out.features.values(), *out.unimodal_logits.values()]
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in tensors)
    assert not out.weights.requires_grad


def test_auxiliary_losses_accept_any_integer_label_dtype(make_model, make_inputs, make_labels, strategy_name):
    model = make_model(2, "if", strategy_name, unimodal_heads="shared").train()  # every strategy has a unimodal CE
    out = model(make_inputs(model))
    labels = make_labels()
    as_long = model.strategy.auxiliary_losses(out, labels, torch.arange(6))
    as_int32 = model.strategy.auxiliary_losses(out, labels.int(), torch.arange(6, dtype=torch.int32))
    assert as_long.keys() == as_int32.keys()
    torch.testing.assert_close(as_long["unimodal_ce"], as_int32["unimodal_ce"])


@pytest.mark.parametrize("heads", ["shared", "separate"])
def test_if_fuses_features_and_applies_one_target_mapping(make_model, make_inputs, strategy_name, heads):
    model = make_model(3, "if", strategy_name, unimodal_heads=heads)
    out = model(make_inputs(model))
    expected_fused = sum(out.weights[:, i : i + 1] * out.features[m] for i, m in enumerate(model.modalities))
    torch.testing.assert_close(out.fused_features, expected_fused)
    torch.testing.assert_close(out.logits, model.target_mapping(expected_fused))
    own_heads = heads == "separate" and strategy_name != "static"  # static weights read no unimodal logits
    assert (model.unimodal_heads is not None) == own_heads
    for name in model.modalities:
        torch.testing.assert_close(out.shared_head_logits[name], model.target_mapping(out.features[name]))
        if own_heads:
            torch.testing.assert_close(out.unimodal_logits[name], model.unimodal_heads[name](out.features[name]))
            assert not torch.allclose(out.shared_head_logits[name], out.unimodal_logits[name])
        else:  # the target mapping on each modality
            torch.testing.assert_close(out.unimodal_logits[name], out.shared_head_logits[name])


@pytest.mark.parametrize("mode", ["if", "lf"])
@pytest.mark.parametrize("heads", ["shared", "separate"])
def test_the_base_structure_decides_what_the_unimodal_ce_trains(make_model, make_inputs, strategy_name, heads, mode):
    """Separate (the paper's): no base loss reaches g through a single modality; static trains no
    unimodal heads (vanilla LF, the paper's IF); QMF and PDF train heads of their own. Shared:
    every strategy trains the unimodal logits g(z^m) (IF) or its heads (LF) with its CE."""
    model = make_model(3, mode, strategy_name, unimodal_heads=heads)
    out = model(make_inputs(model))
    terms = model.strategy.auxiliary_losses(out, build_labels(), torch.arange(6))
    trains_unimodal = heads == "shared" or strategy_name != "static"
    assert ("unimodal_ce" in terms) == trains_unimodal
    if mode == "if" and terms:
        total = sum(terms.values()) + torch.nn.functional.cross_entropy(out.logits, build_labels())
        through_g = torch.autograd.grad(total, list(out.shared_head_logits.values()), allow_unused=True)
        reaches_g = any(g is not None and torch.count_nonzero(g) > 0 for g in through_g)
        assert reaches_g == (heads == "shared")


def test_late_fusion_keeps_its_heads_and_unknown_head_kinds_are_refused(make_model):
    for heads in ("shared", "separate"):
        assert make_model(2, "lf", "static", unimodal_heads=heads).unimodal_heads is not None
    with pytest.raises(ValueError, match="unimodal_heads"):
        make_model(2, "if", "static", unimodal_heads="tied")


def test_lf_fuses_logits_of_the_unimodal_heads(make_model, make_inputs, strategy_name):
    model = make_model(3, "lf", strategy_name)
    assert model.target_mapping is None
    out = model(make_inputs(model))
    expected = sum(out.weights[:, i : i + 1] * out.unimodal_logits[m] for i, m in enumerate(model.modalities))
    torch.testing.assert_close(out.logits, expected)
    assert out.shared_head_logits == out.unimodal_logits
    expected_fused = sum(out.weights[:, i : i + 1] * out.features[m] for i, m in enumerate(model.modalities))
    torch.testing.assert_close(out.fused_features, expected_fused)


# QMF's LF weights are its raw energy confidences, not normalised, as published (test_qmf.py).
NORMALISED = [("static", "if"), ("static", "lf"), ("qmf", "if"), ("pdf", "if"), ("pdf", "lf")]


@pytest.mark.parametrize("num_modalities", [2, 3, 4])
@pytest.mark.parametrize(("strategy_name", "mode"), NORMALISED)
def test_weights_sum_to_one_where_normalised(make_model, make_inputs, strategy_name, mode, num_modalities):
    model = make_model(num_modalities, mode, strategy_name)
    for training in (True, False):
        model.train(training)
        weights = model(make_inputs(model)).weights
        assert (weights >= 0).all()
        torch.testing.assert_close(weights.sum(dim=1), torch.ones(weights.shape[0]))


def test_gradients_reach_every_encoder(make_model, make_inputs, make_labels, strategy_name, mode):
    model = make_model(3, mode, strategy_name)
    out = model(make_inputs(model))
    F.cross_entropy(out.logits, make_labels()).backward()
    for name, encoder in model.encoders.items():
        for parameter in encoder.parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_auxiliary_losses_are_finite_scalars_with_gradient(make_model, make_inputs, make_labels, strategy_name, mode):
    model = make_model(3, mode, strategy_name, unimodal_heads="shared")  # every strategy has a unimodal CE
    out = model(make_inputs(model))
    losses = model.strategy.auxiliary_losses(out, make_labels(), torch.arange(6))
    assert "unimodal_ce" in losses
    total = sum(losses.values())
    assert total.shape == () and torch.isfinite(total)
    total.backward()
    for name in model.modalities:
        assert model.unimodal_head(name).weight.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward_is_finite_in_float32_and_bfloat16(make_model, make_inputs, make_labels, strategy_name, mode, dtype):
    model = make_model(3, mode, strategy_name).to(dtype)
    for training in (True, False):
        model.train(training)
        out = model(make_inputs(model, dtype=dtype))
        assert out.logits.dtype == dtype and out.weights.dtype == dtype
        assert torch.isfinite(out.logits).all() and torch.isfinite(out.weights).all()
        losses = model.strategy.auxiliary_losses(out, make_labels(), torch.arange(6))
        assert all(torch.isfinite(value) for value in losses.values())


DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.mark.parametrize("device", DEVICES)
def test_every_output_follows_the_device(make_model, make_inputs, make_labels, strategy_name, mode, device):
    model = make_model(3, mode, strategy_name).to(device).train()
    out = model({m: x.to(device) for m, x in make_inputs(model).items()})
    tensors = [out.logits, out.fused_features, out.weights, *out.features.values(), *out.shared_head_logits.values()]
    losses = model.strategy.auxiliary_losses(out, make_labels().to(device), torch.arange(6, device=device))
    assert {t.device.type for t in [*tensors, *losses.values()]} == {device}


def test_state_dict_round_trip_reproduces_the_output(make_model, make_inputs, strategy_name, mode):
    model = make_model(3, mode, strategy_name, seed=0).eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    clone = make_model(3, mode, strategy_name, seed=1).eval()
    clone.load_state_dict(torch.load(buffer))
    inputs = make_inputs(model)
    torch.testing.assert_close(clone(inputs).logits, model(inputs).logits)


def test_accepts_a_ready_strategy(make_model):
    template = make_model(2, "if", "pdf")
    strategy = create_strategy("pdf", modalities=template.modalities, num_classes=3, width=8, mode="if")
    model = FusionModel(dict(template.encoders), template.encoder_dims, 3, width=8, strategy=strategy)
    assert model.strategy is strategy


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda inputs: inputs.pop("depth"), r"inputs: expected modalities.*missing \['depth'\]"),
        (lambda inputs: inputs.update(audio=torch.zeros(6, 3)), r"unknown \['audio'\]"),
        (lambda inputs: inputs.update(text=inputs["text"][:4]), "mismatched batch sizes.*'image': 6.*'text': 4"),
    ],
    ids=["missing-key", "unknown-key", "batch-sizes"],
)
def test_bad_inputs_are_named(make_model, make_inputs, change, message):
    model = make_model(3)
    inputs = make_inputs(model)
    change(inputs)
    with pytest.raises(ValueError, match=message):
        model(inputs)


def test_encoder_output_of_the_wrong_width(make_model, make_inputs):
    model = make_model(2)
    inputs = make_inputs(model)
    inputs["text"] = torch.zeros(6, 9)
    model.encoders["text"] = nn.Identity()
    with pytest.raises(ValueError, match=r"encoder 'text' returned shape \(6, 9\); expected \(B, 5\)"):
        model(inputs)


def test_one_modality_is_rejected():
    with pytest.raises(ValueError, match="at least two modalities"):
        FusionModel({"image": nn.Identity()}, {"image": 4}, 3, width=8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"encoder_dims": {"a": 4}}, "encoder_dims keys"),
        ({"num_classes": 1}, "num_classes"),
        ({"width": 0}, "width"),
        ({"mode": "early"}, "unknown fusion mode 'early'"),
        ({"strategy": "mean"}, "unknown fusion strategy 'mean'.*'pdf', 'qmf', 'static'"),
        ({"strategy": "qmf"}, "num_samples"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    arguments = {"encoder_dims": {"a": 4, "b": 4}, "num_classes": 3, "width": 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        FusionModel(
            {"a": nn.Identity(), "b": nn.Identity()},
            arguments.pop("encoder_dims"),
            arguments.pop("num_classes"),
            **arguments,
        )


def test_modality_name_that_cannot_be_a_module_key():
    with pytest.raises(ValueError, match="module keys"):
        FusionModel({"rgb.left": nn.Identity(), "depth": nn.Identity()}, {"rgb.left": 4, "depth": 4}, 3, width=8)


def test_ready_strategy_must_match_the_model():
    strategy = create_strategy("static", modalities=("a", "c"), num_classes=3, width=8)
    with pytest.raises(ValueError, match="modalities"):
        FusionModel({"a": nn.Identity(), "b": nn.Identity()}, {"a": 4, "b": 4}, 3, width=8, strategy=strategy)
    with pytest.raises(ValueError, match="strategy_kwargs"):
        FusionModel(
            {"a": nn.Identity(), "c": nn.Identity()},
            {"a": 4, "c": 4},
            3,
            width=8,
            strategy=strategy,
            strategy_kwargs={"weights": [1, 1]},
        )


def test_labels_out_of_range_in_auxiliary_losses(make_model, make_inputs, strategy_name):
    model = make_model(2, "if", strategy_name, unimodal_heads="shared")  # every strategy reads the labels
    out = model(make_inputs(model, batch_size=3))
    for labels, message in [
        (torch.tensor([0, 1, 3]), r"labels must lie in 0..2; got min 0, max 3"),
        (torch.tensor([0, -1, 2]), r"labels must lie in 0..2"),
        (torch.tensor([0, 1]), r"labels have shape \(2,\); expected \(3,\)"),
        (torch.tensor([0.0, 1.0, 2.0]), "integer tensor"),
    ]:
        with pytest.raises(ValueError, match=message):
            model.strategy.auxiliary_losses(out, labels, torch.arange(3))


@pytest.mark.parametrize("mode", ["if", "lf"])
def test_gradcheck_of_the_fused_logits_in_float64(make_model, make_inputs, mode):
    # static weights: the map inputs -> logits is the whole function (dynamic weights are
    # detached by design, so finite differences would see a dependence autograd does not)
    model = make_model(3, mode, "static").double()
    inputs = {m: x.requires_grad_() for m, x in make_inputs(model, batch_size=3, dtype=torch.float64).items()}

    def fused_logits(*tensors: torch.Tensor) -> torch.Tensor:
        return model(dict(zip(model.modalities, tensors, strict=True))).logits

    assert torch.autograd.gradcheck(fused_logits, tuple(inputs.values()))
