"""QMF: energy confidence, weights in LF and IF, loss history, ranking regularizer."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from iidfusion.fusion import QMFStrategy, qmf_rank_loss

MODALITIES = ("image", "text", "depth")


def strategy(mode: str = "if", num_samples: int = 10, **kwargs) -> QMFStrategy:
    return QMFStrategy(MODALITIES, 4, width=8, mode=mode, num_samples=num_samples, **kwargs)


def random_logits(batch_size: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {m: 3 * torch.randn(batch_size, 4, generator=generator) for m in MODALITIES}


def qmf_reference_rank_loss(confidence: torch.Tensor, past_loss: torch.Tensor) -> torch.Tensor:
    """QMF's published formulation for one modality: MarginRankingLoss on a shifted partner."""
    partner = torch.roll(confidence, -1)
    partner_loss = torch.roll(past_loss, -1)
    target = (past_loss > partner_loss).float() - (past_loss < partner_loss).float()
    margin = (past_loss - partner_loss).abs()
    nonzero = torch.where(target == 0, torch.ones_like(target), target)
    return nn.MarginRankingLoss(margin=0.0)(confidence, partner + margin / nonzero, -target)


def test_energy_confidence_is_logsumexp_over_ten():
    logits = random_logits()
    expected = torch.stack([torch.logsumexp(logits[m], dim=1) / 10 for m in MODALITIES], dim=1)
    torch.testing.assert_close(strategy().energy_confidence(logits), expected)


def test_lf_weights_are_the_unnormalised_confidences():
    logits = random_logits()
    weights = strategy("lf")({}, logits)
    torch.testing.assert_close(weights, strategy().energy_confidence(logits))
    assert not torch.allclose(weights.sum(dim=1), torch.ones(5))
    assert not weights.requires_grad


def test_if_weights_keep_the_confidence_ratios_and_sum_to_one():
    logits = {m: f + 20 for m, f in random_logits().items()}  # all energies positive
    confidence = strategy().energy_confidence(logits)
    weights = strategy("if")({}, logits)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(5))
    torch.testing.assert_close(weights, confidence / confidence.sum(dim=1, keepdim=True))


def test_if_weights_guard_non_positive_energies():
    logits = {m: torch.full((2, 4), -50.0) for m in MODALITIES}  # logsumexp < 0 for every modality
    logits["image"][1] = 30.0  # one positive energy in the second sample
    weights = strategy("if")({}, logits)
    torch.testing.assert_close(weights[0], torch.full((3,), 1 / 3))
    assert weights[1, 0] > 0.999 and torch.isfinite(weights).all()


def test_rank_loss_matches_qmf_margin_ranking_formulation():
    generator = torch.Generator().manual_seed(3)
    confidence = torch.randn(9, 3, generator=generator)
    past = torch.rand(9, 3, generator=generator)
    past[4] = past[5]  # a tie: t = 0
    ours = qmf_rank_loss(confidence, past)
    reference = torch.stack([qmf_reference_rank_loss(confidence[:, k], past[:, k]) for k in range(3)])
    torch.testing.assert_close(ours, reference)
    assert (ours > 0).all()


def test_rank_loss_penalises_a_confident_sample_with_a_high_past_loss():
    past = torch.tensor([[1.0], [0.0]])
    # sample 0 had the higher loss; being more confident by more than the margin (1) costs
    # both cyclic pairs (0, 1) and (1, 0) cost relu(3 - 1)
    torch.testing.assert_close(qmf_rank_loss(torch.tensor([[3.0], [0.0]]), past), torch.tensor([2.0]))
    # being less confident costs nothing
    torch.testing.assert_close(qmf_rank_loss(torch.tensor([[0.0], [3.0]]), past), torch.tensor([0.0]))


def test_rank_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(4, 2\).*\(4, 3\)"):
        qmf_rank_loss(torch.zeros(4, 2), torch.zeros(4, 3))


def test_first_batch_on_an_all_zero_history_is_finite(make_model, make_inputs, make_labels):
    model = make_model(3, "if", "qmf").train()
    history = model.strategy.loss_history
    assert history.abs().sum() == 0
    torch.testing.assert_close(model.strategy.normalised_history(torch.arange(4)), torch.zeros(4, 3))
    out = model(make_inputs(model))
    labels, index = make_labels(), torch.tensor([3, 7, 0, 12, 5, 31])
    losses = model.strategy.auxiliary_losses(out, labels, index)
    assert torch.isfinite(losses["rank"]) and torch.isfinite(losses["unimodal_ce"])
    expected = torch.stack(
        [F.cross_entropy(out.unimodal_logits[m], labels, reduction="none") for m in model.modalities], dim=1
    )
    torch.testing.assert_close(history[index], expected.detach())
    assert history.abs().sum() == history[index].abs().sum()


def test_history_accumulates_over_epochs_and_rank_loss_trains_the_heads(make_model, make_inputs, make_labels):
    model = make_model(2, "if", "qmf", unimodal_heads="separate").train()
    index = torch.arange(6)
    first = model.strategy.auxiliary_losses(model(make_inputs(model)), make_labels(), index)
    after_one = model.strategy.loss_history[index].clone()
    model.zero_grad()
    second = model.strategy.auxiliary_losses(model(make_inputs(model)), make_labels(), index)
    torch.testing.assert_close(model.strategy.loss_history[index], 2 * after_one)
    assert first["rank"] > 0 and second["rank"] > 0
    second["rank"].backward()  # the confidence in the rank loss is not detached: it trains the heads
    assert sum(model.unimodal_head(m).weight.grad.abs().sum() for m in model.modalities) > 0


def test_min_max_normalisation_over_the_data_set():
    qmf = strategy(num_samples=4)
    qmf.loss_history.copy_(torch.tensor([[1.0, 2.0, 0.0], [3.0, 2.0, 0.0], [5.0, 2.0, 0.0], [2.0, 2.0, 0.0]]))
    torch.testing.assert_close(
        qmf.normalised_history(torch.tensor([1, 2])), torch.tensor([[0.5, 0.0, 0.0], [1.0, 0.0, 0.0]])
    )


def test_history_is_untouched_in_eval_mode_and_without_index(make_model, make_inputs, make_labels):
    model = make_model(2, "if", "qmf")
    out = model(make_inputs(model))
    model.eval()
    eval_losses = model.strategy.auxiliary_losses(out, make_labels(), torch.arange(100, 106))  # another split
    model.train()
    no_index = model.strategy.auxiliary_losses(out, make_labels(), None)
    assert model.strategy.loss_history.abs().sum() == 0
    assert eval_losses["rank"] == 0 and no_index["rank"] == 0


def test_history_and_epoch_count_are_saved_in_the_state_dict(make_model, make_inputs, make_labels):
    model = make_model(2, "lf", "qmf").train()
    model.strategy.auxiliary_losses(model(make_inputs(model)), make_labels(), torch.arange(6))
    model.strategy.on_train_epoch_end()
    model.strategy.on_train_epoch_end()
    state = model.state_dict()
    assert {"strategy.loss_history", "strategy.epochs_seen"} <= set(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    clone = make_model(2, "lf", "qmf", seed=3)
    clone.load_state_dict(torch.load(buffer))
    torch.testing.assert_close(clone.strategy.loss_history, model.strategy.loss_history)
    assert int(clone.strategy.epochs_seen) == 2
    assert clone.strategy.loss_history.abs().sum() > 0


@pytest.mark.parametrize(
    ("index", "message"),
    [
        (torch.tensor([0, 1, 2, 3, 4, 32]), r"out of range.*num_samples=32.*max 32"),
        (torch.tensor([0, 1, 2, 3, 4, -1]), r"out of range.*min -1"),
        (torch.arange(5), r"index has shape \(5,\); expected \(6,\)"),
        (torch.arange(6.0), "integer tensor"),
    ],
)
def test_bad_index_raises(make_model, make_inputs, make_labels, index, message):
    model = make_model(2, "if", "qmf").train()
    with pytest.raises(ValueError, match=message):
        model.strategy.auxiliary_losses(model(make_inputs(model)), make_labels(), index)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_samples": None}, "num_samples"),
        ({"num_samples": 0}, "num_samples"),
        ({"lam_rank": -1.0}, "lam_rank"),
        ({"energy_temperature": 0.0}, "energy_temperature"),
        ({"min_weight": 0.0}, "min_weight"),
    ],
)
def test_bad_options_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        strategy(**{"num_samples": 10, **kwargs})


def test_lam_rank_scales_the_rank_term(make_model, make_inputs, make_labels):
    losses = []
    for lam_rank in (1.0, 0.1):
        model = make_model(2, "if", "qmf", lam_rank=lam_rank, unimodal_heads="separate").train()
        out = model(make_inputs(model))
        losses.append(model.strategy.auxiliary_losses(out, make_labels(), torch.arange(6))["rank"])
    torch.testing.assert_close(losses[1], 0.1 * losses[0])
    assert losses[0] > 0


def test_gradcheck_of_energy_confidence_and_rank_loss_in_float64():
    generator = torch.Generator().manual_seed(5)
    logits = {m: torch.randn(6, 4, generator=generator, dtype=torch.float64, requires_grad=True) for m in MODALITIES}
    past = torch.rand(6, 3, generator=generator, dtype=torch.float64)
    qmf = strategy(energy_temperature=0.2)  # confidence gaps beyond the margins: active hinges

    def rank_of_logits(*tensors: torch.Tensor) -> torch.Tensor:
        return qmf_rank_loss(qmf.energy_confidence(dict(zip(MODALITIES, tensors, strict=True))), past)

    assert (rank_of_logits(*logits.values()) > 0).all()
    assert torch.autograd.gradcheck(rank_of_logits, tuple(logits.values()))
