"""The KG objective's own contract (iidfusion.kg.objective): the baseline is the task loss plus
N3 and nothing else, every weight enters linearly, the options are checked on construction."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from iidfusion.kg.objective import IIDTermsConfig, KGObjective, KGObjectiveConfig, degree_weights, n3_penalty
from iidfusion.tasks.kg.fit import build_model
from tests.tasks.kg.test_fit import fixture_features, small_config


@pytest.fixture
def batch_output(tiny_kg):
    """A model, one output with the per-modality scores, the batch of queries and the degree weights."""
    model = build_model(tiny_kg, fixture_features(tiny_kg), small_config()).eval()
    batch = tiny_kg.train[:10]
    with torch.no_grad():
        output = model(batch[:, :2])
    return model, output, batch, degree_weights(tiny_kg.train, tiny_kg.num_entities)


def objective(width: int, weights, *, n3_weight=1e-3, degree_weighted=True, **iid) -> KGObjective:
    config = KGObjectiveConfig(
        n3_weight=n3_weight,
        degree_weighted=degree_weighted,
        iid=IIDTermsConfig(d1=4, d2=8, coherence_points=6, **iid),
    )
    return KGObjective(config, width=width, class_weights=weights)


def test_the_baseline_is_exactly_the_weighted_cross_entropy_plus_n3(batch_output):
    model, output, batch, weights = batch_output
    tails = batch[:, 2]
    baseline = objective(model.width, weights, n3_weight=2e-3)
    assert baseline.iid.informatic is None and baseline.iid.coherence is None
    loss = baseline(output, batch)
    ce = F.cross_entropy(output.fusion.logits, tails, weight=weights)
    assert set(loss.terms) == {"task", "n3"}
    assert torch.equal(loss.terms["task"], ce) and torch.equal(loss.terms["n3"], n3_penalty(output, tails))
    assert torch.equal(loss.total, ce + 2e-3 * n3_penalty(output, tails))
    # No N3 term at all with weight 0; without degree weighting the plain cross-entropy.
    plain = objective(model.width, weights, n3_weight=0.0, degree_weighted=False)
    assert plain.class_weights is None
    loss = plain(output, batch)
    assert set(loss.terms) == {"task"}
    assert torch.equal(loss.total, F.cross_entropy(output.fusion.logits, tails))
    assert not torch.equal(loss.total, ce)  # the degree weights do change the task loss


def test_each_weight_enters_linearly_on_unweighted_terms(batch_output):
    model, output, batch, weights = batch_output
    losses = {
        (n3, a, b): objective(model.width, weights, n3_weight=n3, alpha=a, beta=b)(output, batch)
        for n3, a, b in ((1e-3, 0.5, 0.25), (4e-3, 2.0, 3.0))
    }
    first, second = losses.values()
    assert set(first.terms) == {"task", "n3", "informatic", "coherence"}
    for name in first.terms:  # the terms are logged unweighted: the same whatever the weights
        assert torch.equal(first.terms[name], second.terms[name]), name
    for (n3, a, b), loss in losses.items():
        t = loss.terms
        assert torch.equal(loss.total, t["task"] + n3 * t["n3"] + a * t["informatic"] + b * t["coherence"])
    assert float(first.terms["informatic"]) != 0 and float(first.terms["coherence"]) > 0


def test_the_model_terms_are_added_as_they_are_and_score_with_the_task_loss(batch_output):
    model, output, batch, weights = batch_output

    class Probe:
        """A model whose one own term is the objective's task loss of its fused logits."""

        def auxiliary_losses(self, output, tails, task_loss):
            return {"probe": 3.0 * task_loss(output.fusion.logits)}

    baseline = objective(model.width, weights)
    loss = baseline(output, batch, model=Probe())
    assert set(loss.terms) == {"task", "n3", "model/probe"}
    assert torch.equal(loss.terms["model/probe"], 3.0 * loss.terms["task"])  # the degree-weighted CE
    assert torch.equal(loss.total, baseline(output, batch).total + loss.terms["model/probe"])


def test_only_the_informatic_constraint_needs_the_per_modality_scores(tiny_kg, batch_output):
    model, _, batch, weights = batch_output
    assert not objective(model.width, weights).needs_modalities
    coherence = objective(model.width, weights, beta=0.5)
    assert not coherence.needs_modalities
    lean = model(batch[:, :2], need_modalities=False)
    assert torch.isfinite(coherence(lean, batch).terms["coherence"])
    informatic = objective(model.width, weights, alpha=0.5)
    assert informatic.needs_modalities
    with pytest.raises(ValueError, match="shared_head_logits: expected modalities"):
        informatic(lean, batch)


def test_degree_weights_count_heads_and_tails_not_relations():
    train = torch.tensor([[0, 3, 1], [0, 3, 2], [1, 0, 0]])  # relation id 3 is no entity's degree
    weights = degree_weights(train, num_entities=4)
    assert weights.dtype == torch.float32
    assert torch.allclose(weights, torch.tensor([1.0, 0.1 + 0.9 * 2 / 3, 0.1 + 0.9 / 3, 0.1]), rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"n3_weight": -1.0}, r"^n3_weight, alpha and beta must be >= 0; got -1.0, 0.0, 0.0$"),
        ({"alpha": -0.5}, r"^n3_weight, alpha and beta must be >= 0; got 0.005, -0.5, 0.0$"),
        ({"beta": -2.0}, r"^n3_weight, alpha and beta must be >= 0; got 0.005, 0.0, -2.0$"),
        ({"coherence_points": 1}, r"^coherence_points must be >= 2, got 1$"),
    ],
)
def test_bad_weights_are_one_line_naming_them(change, message):
    config = KGObjectiveConfig(degree_weighted=False)
    top = {k: v for k, v in change.items() if k == "n3_weight"}
    iid = dataclasses.replace(config.iid, **{k: v for k, v in change.items() if k != "n3_weight"})
    with pytest.raises(ValueError, match=message):
        KGObjective(dataclasses.replace(config, iid=iid, **top), width=8)


def test_degree_weighting_needs_the_weights_and_keeps_them_as_a_buffer():
    with pytest.raises(ValueError, match=r"^degree_weighted needs class_weights \(see degree_weights\)$"):
        KGObjective(KGObjectiveConfig(), width=8)
    weights = torch.tensor([0.1, 1.0])
    weighted = KGObjective(KGObjectiveConfig(), width=8, class_weights=weights)
    assert torch.equal(weighted.state_dict()["class_weights"], weights)  # moves with the module, saved with it
    ignored = KGObjective(KGObjectiveConfig(degree_weighted=False), width=8, class_weights=weights)
    assert ignored.class_weights is None and "class_weights" not in ignored.state_dict()
