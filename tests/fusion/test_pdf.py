"""PDF: holo-confidence for any M, co-belief weights, relative calibration, ConfidNet loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from iidfusion.fusion import PDFStrategy, at_test_time, holo_confidence, relative_calibration


def manual_weights(model, out, calibrated: bool) -> torch.Tensor:
    """softmax(cb) or softmax(cb * RC), written out per modality from PDF's definitions."""
    mono = torch.cat([model.strategy.confidnets[m](out.features[m]) for m in model.modalities], 1)
    mono = mono.clamp(model.strategy.min_confidence, 1.0)
    logs = mono.log()
    holo = torch.stack([(logs.sum(1) - logs[:, k]) / logs.sum(1) for k in range(len(model.modalities))], 1)
    co_belief = mono + holo
    if calibrated:
        probabilities = [torch.softmax(out.unimodal_logits[m], 1) for m in model.modalities]
        du = torch.stack([(p - 1 / p.shape[1]).abs().mean(1) for p in probabilities], 1)
        co_belief = co_belief * du / du.max(dim=1, keepdim=True).values
    return torch.softmax(co_belief, 1).detach()


def test_holo_confidence_for_two_modalities_is_pdfs_formula():
    mono = torch.tensor([[0.9, 0.2], [0.5, 0.5], [0.01, 0.99]])
    holo = holo_confidence(mono.log())
    expected_first = mono[:, 1].log() / (mono[:, 0] * mono[:, 1]).log()
    expected_second = mono[:, 0].log() / (mono[:, 0] * mono[:, 1]).log()
    torch.testing.assert_close(holo, torch.stack([expected_first, expected_second], 1))


@pytest.mark.parametrize("num_modalities", [2, 3, 4])
def test_holo_confidences_sum_to_m_minus_one(num_modalities):
    mono = torch.rand(7, num_modalities, generator=torch.Generator().manual_seed(num_modalities)) * 0.98 + 0.01
    holo = holo_confidence(mono.log())
    torch.testing.assert_close(holo.sum(1), torch.full((7,), num_modalities - 1.0))
    # the least confident modality gives the others the most holo-confidence: its own is smallest
    assert (holo.argmin(1) == mono.argmin(1)).all()


def test_holo_confidence_guards_all_certain_modalities():
    holo = holo_confidence(torch.zeros(2, 3))
    torch.testing.assert_close(holo, torch.full((2, 3), 2 / 3))


def test_relative_calibration():
    probabilities = torch.tensor([[[0.7, 0.2, 0.1], [0.4, 0.3, 0.3]], [[1 / 3, 1 / 3, 1 / 3]] * 2])
    rc = relative_calibration(probabilities)
    du = (probabilities - 1 / 3).abs().mean(-1)
    torch.testing.assert_close(rc[0], du[0] / du[0].max())
    assert rc[0, 0] == 1 and 0 < rc[0, 1] < 1
    torch.testing.assert_close(rc[1], torch.ones(2))  # all uniform: no calibration


@pytest.mark.parametrize("num_modalities", [2, 3, 4])
@pytest.mark.parametrize("mode", ["if", "lf"])
def test_weights_are_the_co_belief_softmax_and_calibrated_only_at_test_time(
    make_model, make_inputs, num_modalities, mode
):
    model = make_model(num_modalities, mode, "pdf")
    inputs = make_inputs(model)
    model.train()
    train_out = model(inputs)
    torch.testing.assert_close(train_out.weights, manual_weights(model, train_out, calibrated=False))
    model.eval()  # validation: evaluation mode, but PDF's validation does not calibrate
    torch.testing.assert_close(model(inputs).weights, train_out.weights)
    with at_test_time(model):
        test_out = model(inputs)
    assert not model.strategy.test_time  # the block restores the state
    torch.testing.assert_close(test_out.weights, manual_weights(model, test_out, calibrated=True))
    for weights in (train_out.weights, test_out.weights):
        torch.testing.assert_close(weights.sum(1), torch.ones(6))
    assert (test_out.weights - train_out.weights).abs().max() > 1e-4  # calibration changed them
    model.strategy.calibrate = False
    with at_test_time(model):
        torch.testing.assert_close(model(inputs).weights, train_out.weights)


def test_the_test_evaluation_calibrates_and_validation_does_not(make_model, make_inputs):
    from iidfusion.data.features.base import MultiViewData
    from iidfusion.tasks.classification.evaluate import infer

    model = make_model(3, "if", "pdf").eval()
    inputs = make_inputs(model)
    logits, weights = infer(model, MultiViewData(inputs, torch.zeros(6, dtype=torch.long)))
    with at_test_time(model):
        expected = model(inputs)
    torch.testing.assert_close(weights, expected.weights)
    assert (weights - model(inputs).weights).abs().max() > 1e-4


def test_zero_confidence_is_clamped_before_the_log(make_model, make_inputs):
    model = make_model(3, "if", "pdf")
    with torch.no_grad():
        model.strategy.confidnets["image"][2].bias.fill_(-1e4)  # sigmoid -> exactly 0
    for training in (True, False):
        weights = model.train(training)(make_inputs(model)).weights
        assert torch.isfinite(weights).all()
        torch.testing.assert_close(weights.sum(1), torch.ones(6))


def test_confidence_loss_is_l1_to_the_detached_true_class_probability(make_model, make_inputs, make_labels):
    model = make_model(3, "if", "pdf")
    out = model(make_inputs(model))
    labels = make_labels()
    losses = model.strategy.auxiliary_losses(out, labels)
    assert set(losses) == {"unimodal_ce", "confidence_l1"}
    expected = 0.0
    for m in model.modalities:
        tcp = torch.softmax(out.unimodal_logits[m], 1).gather(1, labels[:, None]).squeeze(1)
        expected = expected + (model.strategy.confidnets[m](out.features[m]).squeeze(1) - tcp).abs().mean()
    torch.testing.assert_close(losses["confidence_l1"], expected)
    ce = sum(F.cross_entropy(out.unimodal_logits[m], labels) for m in model.modalities)
    torch.testing.assert_close(losses["unimodal_ce"], ce)


def test_confidence_loss_trains_only_the_confidnets(make_model, make_inputs, make_labels):
    model = make_model(2, "if", "pdf")
    out = model(make_inputs(model))
    model.strategy.auxiliary_losses(out, make_labels())["confidence_l1"].backward()
    for m in model.modalities:
        assert model.strategy.confidnets[m][0].weight.grad.abs().sum() > 0
        assert model.unimodal_head(m).weight.grad is None  # TCP target detached
        assert all(p.grad is None for p in model.encoders[m].parameters())  # features detached


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_confidence": 0.0}, "min_confidence"),
        ({"min_confidence": 1.0}, "min_confidence"),
        ({"confidnet_hidden": 0}, "confidnet_hidden"),
        ({"confidence_loss_weight": -1.0}, "confidence_loss_weight"),
        ({"modalities": ("image",)}, "at least two modalities"),
        ({"modalities": ("image", "image")}, "unique"),
    ],
)
def test_bad_options_raise(kwargs, message):
    arguments = {"modalities": ("image", "text"), **kwargs}
    with pytest.raises(ValueError, match=message):
        PDFStrategy(arguments.pop("modalities"), 3, width=8, **arguments)
