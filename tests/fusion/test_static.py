"""Static weights: uniform default, user weights validated and normalised, unimodal CE."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from iidfusion.fusion import StaticStrategy

MODALITIES = ("image", "text", "depth")


def features(batch_size: int = 4) -> dict[str, torch.Tensor]:
    return {m: torch.randn(batch_size, 8) for m in MODALITIES}


def test_default_weights_are_uniform():
    weights = StaticStrategy(MODALITIES, 3, width=8)(features(), {})
    torch.testing.assert_close(weights, torch.full((4, 3), 1 / 3))


@pytest.mark.parametrize("given", [[1.0, 2.0, 1.0], {"depth": 1.0, "image": 1.0, "text": 2.0}])
def test_user_weights_are_normalised_in_modality_order(given):
    weights = StaticStrategy(MODALITIES, 3, width=8, weights=given)(features(), {})
    torch.testing.assert_close(weights, torch.tensor([[0.25, 0.5, 0.25]]).expand(4, 3))


def test_a_zero_weight_is_allowed():
    weights = StaticStrategy(MODALITIES, 3, width=8, weights=[0, 1, 1])(features(2), {})
    torch.testing.assert_close(weights, torch.tensor([[0.0, 0.5, 0.5]] * 2))


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ([1.0, 1.0], "got 2 values for 3 modalities"),
        ([1.0, -1.0, 1.0], "non-negative"),
        ([0.0, 0.0, 0.0], "positive and finite sum"),
        ([1.0, float("nan"), 1.0], "finite"),
        ([1.0, float("inf"), 1.0], "finite"),
        ({"image": 1.0, "text": 1.0}, r"missing \['depth'\]"),
        ({"image": 1.0, "text": 1.0, "depth": 1.0, "audio": 1.0}, r"unknown \['audio'\]"),
    ],
)
def test_bad_weights_raise(given, message):
    with pytest.raises(ValueError, match=message):
        StaticStrategy(MODALITIES, 3, width=8, weights=given)


def test_weights_follow_the_dtype_of_the_features():
    strategy = StaticStrategy(MODALITIES, 3, width=8)
    weights = strategy({m: f.to(torch.bfloat16) for m, f in features().items()}, {})
    assert weights.dtype == torch.bfloat16


def test_features_must_have_every_modality():
    with pytest.raises(ValueError, match=r"missing \['depth'\]"):
        StaticStrategy(MODALITIES, 3, width=8)({"image": torch.zeros(2, 8), "text": torch.zeros(2, 8)}, {})


def test_lf_static_is_the_mean_of_the_unimodal_logits(make_model, make_inputs):
    model = make_model(3, "lf", "static")
    out = model(make_inputs(model))
    torch.testing.assert_close(out.logits, torch.stack(list(out.unimodal_logits.values())).mean(dim=0))


@pytest.mark.parametrize("unimodal_loss_weight", [0.0, 1.0, 0.5])
def test_auxiliary_loss_is_the_weighted_sum_of_unimodal_ce(make_model, make_inputs, make_labels, unimodal_loss_weight):
    model = make_model(3, "if", "static", unimodal_loss_weight=unimodal_loss_weight)
    out = model(make_inputs(model))
    labels = make_labels()
    losses = model.strategy.auxiliary_losses(out, labels)
    if unimodal_loss_weight == 0:  # no heads to train: no term at all
        assert losses == {}
        return
    expected = unimodal_loss_weight * sum(F.cross_entropy(out.unimodal_logits[m], labels) for m in model.modalities)
    assert set(losses) == {"unimodal_ce"}
    torch.testing.assert_close(losses["unimodal_ce"], torch.as_tensor(expected, dtype=torch.float32))


@pytest.mark.parametrize("mode", ["if", "lf"])
def test_the_paper_structure_trains_no_unimodal_heads_and_shared_heads_train_them(make_model, mode):
    assert make_model(3, mode, "static").strategy.unimodal_loss_weight == 0.0  # vanilla LF, the paper's IF
    assert make_model(3, mode, "static", unimodal_heads="shared").strategy.unimodal_loss_weight == 1.0
    assert make_model(3, mode, "static", unimodal_loss_weight=0.5).strategy.unimodal_loss_weight == 0.5


def test_negative_unimodal_loss_weight_is_rejected():
    with pytest.raises(ValueError, match="unimodal_loss_weight"):
        StaticStrategy(MODALITIES, 3, width=8, unimodal_loss_weight=-1.0)


def test_unimodal_terms_can_be_averaged_over_modalities(make_model, make_inputs, make_labels):
    summed = make_model(3, "if", "static", unimodal_heads="shared")
    averaged = make_model(3, "if", "static", unimodal_reduction="mean", unimodal_heads="shared")
    averaged.load_state_dict(summed.state_dict())
    inputs, labels = make_inputs(summed), make_labels()
    total = summed.strategy.auxiliary_losses(summed(inputs), labels)["unimodal_ce"]
    mean = averaged.strategy.auxiliary_losses(averaged(inputs), labels)["unimodal_ce"]
    torch.testing.assert_close(mean, total / 3)
    with pytest.raises(ValueError, match="unimodal_reduction"):
        StaticStrategy(MODALITIES, 3, width=8, unimodal_reduction="max")
