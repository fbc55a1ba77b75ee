import math

import numpy as np
import pytest
import torch

import ot
from iidfusion.data.features.synthetic import SyntheticConfig, generate_synthetic
from iidfusion.losses import DistributionCoherence, distribution_coherence, modality_pairs
from iidfusion.ot import FourierRIPReducer


def clouds(modalities=3, batch=12, dim=8, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return {f"m{k}": torch.randn(batch, dim, generator=g, dtype=dtype) + 0.5 * k for k in range(modalities)}


def pot_relaxed_value(x, y, eps, rho):
    """W~ of docs/method.md ("Distribution coherence") from POT's plan: <T, C> + eps KL(T | ab^T) + rho (KL(T1 | a) +
    KL(T^T 1 | b))."""
    cost = ot.dist(x.numpy(), y.numpy(), metric="euclidean") / math.sqrt(x.shape[1])
    a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
    plan = ot.unbalanced.sinkhorn_unbalanced(a, b, cost, eps, rho, numItermax=100_000, stopThr=1e-13)

    def kl(p, q):
        return float((p * np.log(p / q) - p + q).sum())

    return float((plan * cost).sum()) + eps * kl(plan, np.outer(a, b)) + rho * (kl(plan.sum(1), a) + kl(plan.sum(0), b))


def test_pairs_match_pot_on_the_raw_features():
    features = clouds(modalities=3)
    out = distribution_coherence(features, eps=0.2, rho=2.0, max_iter=5000, tol=1e-11)
    assert out.pairs == (("m0", "m1"), ("m0", "m2"), ("m1", "m2")) == modality_pairs(list(features))
    expected = [pot_relaxed_value(features[a], features[b], 0.2, 2.0) for a, b in out.pairs]
    torch.testing.assert_close(out.pair_distances, torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(out.loss, out.pair_distances.mean())
    summed = distribution_coherence(features, eps=0.2, rho=2.0, max_iter=5000, tol=1e-11, reduction="sum")
    torch.testing.assert_close(summed.loss, out.pair_distances.sum())
    assert out.transport_cost.shape == (3,)
    with pytest.raises(ValueError, match="reduction"):
        distribution_coherence(features, reduction="max")


@pytest.mark.parametrize("reduce", [False, True])
def test_identical_clouds_sit_at_the_entropic_floor_and_debias_to_zero(reduce):
    x = clouds(modalities=1, batch=16, dim=16)["m0"]
    reducer = FourierRIPReducer(16, 4, 8) if reduce else None
    kwargs = {"reducer": reducer, "eps": 0.1, "rho": 10.0, "max_iter": 5000, "tol": 1e-11}
    plain = distribution_coherence({"a": x, "b": x.clone()}, **kwargs)
    floor = plain.loss.item()
    assert floor > 0.01, "the entropic floor of identical clouds is positive"
    if not reduce:
        assert floor == pytest.approx(pot_relaxed_value(x, x, 0.1, 10.0), rel=1e-6)
    debiased = distribution_coherence({"a": x, "b": x.clone()}, debias=True, **kwargs)
    assert abs(debiased.loss.item()) < 1e-9
    # a different cloud is strictly above the floor, and its divergence strictly positive
    other = distribution_coherence({"a": x, "b": x + 0.3}, debias=True, **kwargs)
    assert other.loss.item() > 1e-3


def test_grows_with_the_shift_of_the_synthetic_benchmark():
    coherence = DistributionCoherence(32, d1=8, d2=16)
    values = []
    for shift in (0.0, 0.5, 1.0, 2.0, 4.0):
        data = generate_synthetic(SyntheticConfig(num_modalities=3, shift=shift), num_samples=64, seed=0)
        values.append(coherence(data.views).loss.item())
    assert all(later > earlier for earlier, later in zip(values, values[1:], strict=False)), values


def test_a_few_optimizer_steps_reduce_the_exact_wasserstein_distance():
    data = generate_synthetic(SyntheticConfig(relevant_dims=4, noise_dims=12, shift=3.0), num_samples=48, seed=0)
    points = {k: torch.nn.Parameter(v.clone()) for k, v in data.views.items()}
    coherence = DistributionCoherence(16, d1=4, d2=8)
    optimizer = torch.optim.Adam(points.values(), lr=0.1)

    def exact_w1():
        x, y = (points[k].detach().double().numpy() for k in ("m0", "m1"))
        return float(ot.emd2([], [], ot.dist(x, y, metric="euclidean")))

    before = exact_w1()
    for _ in range(15):
        loss = coherence(points).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = exact_w1()
    assert after < 0.8 * before, (before, after)


def test_batched_pairs_equal_pairs_solved_one_by_one():
    features = clouds(modalities=4, batch=10, dim=16, seed=3)
    coherence = DistributionCoherence(16, d1=5, d2=8, max_iter=5000, tol=1e-12, debias=True)
    out = coherence(features)
    looped = [coherence({a: features[a], b: features[b]}).loss for a, b in out.pairs]
    torch.testing.assert_close(out.pair_distances, torch.stack(looped), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("debias", [False, True])
def test_gradcheck_float64_through_the_reducer(debias):
    features = clouds(modalities=2 if debias else 3, batch=4, dim=8, seed=1)  # debias: 2 cross + 2 self problems
    reducer = FourierRIPReducer(8, 3, 4, seed=2).double()
    names = list(features)

    def loss(*tensors):
        return distribution_coherence(
            dict(zip(names, tensors, strict=True)),
            reducer=reducer,
            eps=0.3,
            rho=3.0,
            debias=debias,
            max_iter=20_000,
            tol=1e-13,
        ).loss

    assert torch.autograd.gradcheck(loss, [t.clone().requires_grad_() for t in features.values()], eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_low_precision_features_give_a_finite_loss_close_to_float64(dtype):
    features = clouds(modalities=3, batch=32, dim=32, dtype=torch.float64)
    coherence = DistributionCoherence(32, d1=8, d2=16)
    reference = coherence({k: v.float() for k, v in features.items()}).loss.double()
    leaves = {k: v.to(dtype).requires_grad_() for k, v in features.items()}
    out = coherence(leaves)
    out.loss.backward()
    assert torch.isfinite(out.loss) and all(torch.isfinite(t.grad).all() for t in leaves.values())
    assert out.loss.item() == pytest.approx(reference.item(), rel=0.05 if dtype == torch.bfloat16 else 1e-6)


@pytest.mark.parametrize(
    "features, message",
    [
        ({"a": torch.randn(4, 8)}, "at least two modalities"),
        ({"a": torch.randn(4, 8), "b": torch.randn(5, 8)}, "mismatched batch sizes"),
        ({"a": torch.randn(4, 8), "b": torch.randn(4, 6)}, "common width"),
        ({"a": torch.randn(4, 8), "b": torch.full((4, 8), float("nan"))}, r"features\['b'\] contains NaN"),
        ({"a": torch.randn(4), "b": torch.randn(4)}, r"\(batch, dim\)"),
    ],
)
def test_bad_input_raises_a_clear_value_error(features, message):
    with pytest.raises(ValueError, match=message):
        distribution_coherence(features)


def test_module_rejects_features_of_another_width_and_bad_options():
    with pytest.raises(ValueError, match="built for width 8"):
        DistributionCoherence(8, d1=2, d2=4)({"a": torch.randn(4, 6), "b": torch.randn(4, 6)})
    with pytest.raises(ValueError, match="eps"):
        DistributionCoherence(8, d1=2, d2=4, eps=0.0)
    with pytest.raises(ValueError, match="cost_scale"):
        distribution_coherence({"a": torch.randn(4, 8), "b": torch.randn(4, 8)}, cost_scale=-1.0)


def _views(count, batch=12, width=6):
    generator = torch.Generator().manual_seed(3)
    return {f"m{k}": torch.randn(batch, width, generator=generator) + 0.3 * k for k in range(count)}


@pytest.mark.parametrize("debias", [False, True])
def test_sampled_pairs_are_the_same_problems_and_estimate_the_mean_without_bias(debias):
    features = _views(5)
    full = distribution_coherence(features, debias=debias)
    by_pair = dict(zip(full.pairs, full.pair_distances.tolist(), strict=True))
    torch.manual_seed(0)
    draws = []
    for _ in range(400):
        part = distribution_coherence(features, debias=debias, pair_sample=3)
        assert len(part.pairs) == 3 == len(set(part.pairs))
        for pair, value in zip(part.pairs, part.pair_distances.tolist(), strict=True):
            assert value == pytest.approx(by_pair[pair], rel=1e-4, abs=1e-6)  # the same problem, solved alone
        draws.append(float(part.loss))
    spread = np.std(draws) / math.sqrt(len(draws))
    assert abs(np.mean(draws) - float(full.loss)) < 4 * spread  # unbiased: the mean over pairs in expectation
    summed = distribution_coherence(features, debias=debias, pair_sample=3, reduction="sum")
    assert float(summed.loss) == pytest.approx(float(summed.pair_distances.sum()) * 10 / 3, rel=1e-6)


def test_module_samples_pairs_only_in_training():
    features = _views(4)
    module = DistributionCoherence(6, reduce=False, pair_sample=2)
    assert len(module(features).pairs) == 2
    module.eval()
    assert len(module(features).pairs) == 6  # a reported distance is never an estimate
    assert len(DistributionCoherence(6, reduce=False, pair_sample=10)(features).pairs) == 6
    with pytest.raises(ValueError, match="pair_sample"):
        DistributionCoherence(6, pair_sample=0)
