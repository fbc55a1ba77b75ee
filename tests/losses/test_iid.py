import pytest
import torch
import torch.nn.functional as F
from torch import nn

from iidfusion.fusion import FusionModel, available_methods, get_method
from iidfusion.losses import DistributionCoherence, IIDLoss, InformaticConstraint

WIDTH = 16


def make_model(modalities=3, strategy="static", num_classes=4, seed=0, **strategy_kwargs):
    torch.manual_seed(seed)
    dims = {f"m{k}": 5 + k for k in range(modalities)}
    encoders = {name: nn.Sequential(nn.Linear(dim, 12), nn.Tanh()) for name, dim in dims.items()}
    model = FusionModel(
        encoders,
        dict.fromkeys(dims, 12),
        num_classes,
        width=WIDTH,
        strategy=strategy,
        strategy_kwargs=strategy_kwargs or None,
    )
    inputs = {name: torch.randn(8, dim) for name, dim in dims.items()}
    labels = torch.randint(num_classes, (8,))
    return model, inputs, labels


class Forbidden(nn.Module):
    """A regularizer that must not run."""

    def forward(self, *args, **kwargs):
        raise AssertionError("a regularizer with weight 0 was computed")


def test_zero_weights_give_task_ce_plus_strategy_terms_and_compute_nothing_else():
    model, inputs, labels = make_model()
    output = model(inputs)
    loss = IIDLoss(0.0, 0.0, informatic=Forbidden(), coherence=Forbidden())
    result = loss(output, labels, strategy=model.strategy)
    expected_aux = model.strategy.auxiliary_losses(output, labels)
    task = F.cross_entropy(output.logits, labels)
    torch.testing.assert_close(result.total, task + sum(expected_aux.values()))
    assert set(result.terms) == {"task"} | {f"strategy/{k}" for k in expected_aux}
    assert result.pair_distances is None and result.pairs == ()
    # without a strategy: the task CE alone, and the default modules are not even built
    bare = IIDLoss(0.0, 0.0)
    assert bare.informatic is None and bare.coherence is None
    torch.testing.assert_close(bare(output, labels).total, task)


def test_total_is_the_weighted_sum_of_the_logged_terms():
    model, inputs, labels = make_model(strategy="qmf", num_samples=8)
    model.train()
    loss = IIDLoss(0.3, 0.2, feature_dim=WIDTH)
    result = loss(model(inputs), labels.int(), index=torch.arange(8), strategy=model.strategy)  # any integer dtype
    assert {"task", "informatic", "coherence", "strategy/unimodal_ce", "strategy/rank"} <= set(result.terms)
    t = result.terms
    expected = t["task"] + 0.3 * t["informatic"] + 0.2 * t["coherence"] + t["strategy/unimodal_ce"] + t["strategy/rank"]
    torch.testing.assert_close(result.total, expected)
    assert result.pairs == (("m0", "m1"), ("m0", "m2"), ("m1", "m2"))
    torch.testing.assert_close(result.pair_distances.mean(), t["coherence"])


@pytest.mark.parametrize("term", ["informatic", "coherence", "total"])
def test_gradients_reach_every_encoder(term):
    model, inputs, labels = make_model(modalities=3)
    result = IIDLoss(1.0, 1.0, feature_dim=WIDTH)(model(inputs), labels)
    (result.total if term == "total" else result.terms[term]).backward()
    for name, encoder in model.encoders.items():
        grads = [p.grad for p in encoder.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, f"no gradient reaches encoder {name!r} through {term}"


@pytest.mark.parametrize("name", available_methods())
def test_from_method_switches_the_regularizers(name):
    spec = get_method(name)
    loss = IIDLoss.from_method(spec, alpha=0.5, beta=0.1, feature_dim=WIDTH)
    assert loss.alpha == (0.5 if spec.use_ic else 0.0) and loss.beta == (0.1 if spec.use_dc else 0.0)
    assert (loss.informatic is not None) == spec.use_ic and (loss.coherence is not None) == spec.use_dc


def test_given_modules_are_used():
    model, inputs, labels = make_model(modalities=2)
    output = model(inputs)
    custom = IIDLoss(
        1.0,
        1.0,
        informatic=InformaticConstraint(lam=0.0, variant="literal"),
        coherence=DistributionCoherence(WIDTH, reduce=False, debias=True),
    )
    result = custom(output, labels)
    from iidfusion.losses import distribution_coherence, informatic_constraint

    ic = informatic_constraint(
        output.logits,
        output.shared_head_logits,
        output.fused_features,
        output.features,
        labels,
        lam=0.0,
        variant="literal",
    )
    torch.testing.assert_close(result.terms["informatic"], ic.loss)
    torch.testing.assert_close(result.terms["coherence"], distribution_coherence(output.features, debias=True).loss)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": -1.0, "beta": 0.0}, "alpha and beta"),
        ({"alpha": float("inf"), "beta": 0.0}, "alpha and beta must be finite"),
        ({"alpha": 0.0, "beta": float("nan")}, "alpha and beta must be finite"),
        ({"alpha": 0.0, "beta": 0.5}, "feature_dim"),
        ({"alpha": 0.5, "beta": 0.0, "informatic": None}, "InformaticConstraint"),
        ({"alpha": 0.0, "beta": 0.5, "coherence": None}, "DistributionCoherence"),
    ],
)
def test_bad_configuration_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        IIDLoss(**kwargs)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda out, y: (out, torch.full_like(y, 4)), "labels must lie in"),
        (lambda out, y: (out, y[:5]), "labels"),
        (lambda out, y: (out.__setattr__("logits", out.logits.detach().clone().fill_(float("nan"))) or out, y), "NaN"),
        (lambda out, y: (out.features.update(m1=out.features["m1"][:4]) or out, y), "m1"),
        (
            lambda out, y: (out.features.update(m0=out.features["m0"].detach().clone().fill_(float("nan"))) or out, y),
            "NaN",
        ),
        (lambda out, y: ([out.features.pop(k) for k in ("m1", "m2")] and out, y), "at least two"),
    ],
)
def test_bad_input_raises_a_clear_value_error(corrupt, message):
    model, inputs, labels = make_model()
    output, labels = corrupt(model(inputs), labels)
    with pytest.raises(ValueError, match=message):
        IIDLoss(0.5, 0.5, feature_dim=WIDTH)(output, labels)
