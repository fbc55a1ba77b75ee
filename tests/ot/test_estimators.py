"""Tests of iidfusion.ot.estimators: each against the exact value on cases where it must agree."""

from __future__ import annotations

import math

import pytest
import torch

import ot
from iidfusion.ot import (
    pairwise_cost,
    rip_dimension,
    sinkhorn_unbalanced,
    wasserstein_entropic,
    wasserstein_exact,
    wasserstein_max_sliced,
    wasserstein_rip,
    wasserstein_sampled,
    wasserstein_sliced,
)


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=generator, dtype=torch.float64)
    y = torch.randn(30, 3, generator=generator, dtype=torch.float64) * 0.7 + torch.tensor([1.0, 0.0, 0.5])
    return x, y


def _generator(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("p", [1, 2])
def test_exact_matches_pot_and_is_differentiable(pair, p: int) -> None:
    x, y = pair
    expected = ot.emd2(ot.unif(40), ot.unif(30), ot.dist(x.numpy(), y.numpy(), metric="euclidean") ** p)
    x = x.clone().requires_grad_()
    value = wasserstein_exact(x, y, p=p)
    assert value.shape == () and value.item() == pytest.approx(expected, rel=1e-10)
    value.backward()
    assert torch.isfinite(x.grad).all()


def test_translation_has_known_distance(pair) -> None:
    x, _ = pair
    shift = torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)
    assert wasserstein_exact(x, x + shift).item() == pytest.approx(shift.norm().item(), rel=1e-12)
    assert wasserstein_exact(x, x + shift, p=2).item() == pytest.approx(shift.square().sum().item(), rel=1e-12)
    # Sliced: exact for translations up to Monte Carlo error (documented rescaling).
    sliced = wasserstein_sliced(x, x + shift, n_projections=2000, generator=_generator())
    assert sliced.item() == pytest.approx(shift.norm().item(), rel=0.05)
    sliced2 = wasserstein_sliced(x, x + shift, n_projections=2000, generator=_generator(), p=2)
    assert sliced2.item() == pytest.approx(shift.square().sum().item(), rel=0.05)
    maximum = wasserstein_max_sliced(x, x + shift, n_projections=2000, generator=_generator())
    assert shift.norm().item() * 0.98 <= maximum.item() <= shift.norm().item() * (1 + 1e-12)


@pytest.mark.parametrize("p", [1, 2])
def test_sliced_estimators_are_lower_bounds(pair, p: int) -> None:
    x, y = pair
    exact = wasserstein_exact(x, y, p=p).item()
    maximum = wasserstein_max_sliced(x, y, n_projections=500, generator=_generator(), p=p).item()
    assert 0.3 * exact < maximum <= exact  # every direction is a lower bound
    sliced = wasserstein_sliced(x, y, n_projections=4000, generator=_generator(), p=p).item()
    assert 0.3 * exact < sliced <= exact * 1.02  # a lower bound in expectation (2% Monte Carlo slack)


def _directions(d: int, count: int, seed: int) -> torch.Tensor:
    """The unit directions ``(d, count)`` that the sliced estimators draw from ``_generator(seed)``."""
    directions = torch.randn(d, count, generator=_generator(seed), dtype=torch.float64)
    return directions / directions.norm(dim=0, keepdim=True)


@pytest.mark.parametrize(("n", "m", "d"), [(40, 30, 3), (32, 32, 256)])
def test_sliced_estimators_match_pot_on_the_same_directions(n: int, m: int, d: int) -> None:
    """Same units as POT (p=1): max-sliced is not rescaled, sliced only by its 1 / E|theta_1|."""
    generator = _generator(3)
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    y = torch.randn(m, d, generator=generator, dtype=torch.float64) * 0.7 + 0.3
    count = 64
    directions = _directions(d, count, seed=5).numpy()
    pot_max = ot.max_sliced_wasserstein_distance(x.numpy(), y.numpy(), n_projections=count, p=1, projections=directions)
    pot_mean = ot.sliced_wasserstein_distance(x.numpy(), y.numpy(), n_projections=count, p=1, projections=directions)
    maximum = wasserstein_max_sliced(x, y, n_projections=count, generator=_generator(5)).item()
    assert maximum == pytest.approx(pot_max, rel=1e-10)
    c = math.exp(math.lgamma(d / 2) - 0.5 * math.log(math.pi) - math.lgamma((d + 1) / 2))  # E|theta_1|
    sliced = wasserstein_sliced(x, y, n_projections=count, generator=_generator(5)).item()
    assert sliced * c == pytest.approx(pot_mean, rel=1e-10)


def test_max_sliced_known_answers() -> None:
    """d = 1: exact W1. A translation t: |t| max_l |theta_l . t/|t||, far below |t| in high d."""
    generator = _generator(7)
    x = torch.randn(33, 1, generator=generator, dtype=torch.float64)
    y = torch.randn(21, 1, generator=generator, dtype=torch.float64) + 0.4
    exact = wasserstein_exact(x, y).item()
    assert wasserstein_max_sliced(x, y, n_projections=3, generator=_generator()).item() == pytest.approx(
        exact, rel=1e-12
    )
    for d, at_most in ((3, 1.0), (1024, 0.15)):
        x = torch.randn(50, d, generator=generator, dtype=torch.float64)
        shift = torch.randn(d, generator=generator, dtype=torch.float64)
        reach = (shift / shift.norm() @ _directions(d, 256, seed=11)).abs().amax().item()
        maximum = wasserstein_max_sliced(x, x + shift, n_projections=256, generator=_generator(11)).item()
        assert maximum == pytest.approx(shift.norm().item() * reach, rel=1e-10)
        assert maximum <= at_most * shift.norm().item()  # random directions miss t in high d


@pytest.mark.parametrize("p", [1, 2])
def test_max_sliced_ascent_finds_the_translation_in_high_dimension(p: int) -> None:
    """Random directions reach ~0.1 |t| at d = 1024; the ascent finds t's direction: |t|^p."""
    generator = _generator(3)
    x = torch.randn(64, 1024, generator=generator, dtype=torch.float64)
    shift = 0.5 * torch.randn(1024, generator=generator, dtype=torch.float64)
    y = x + shift
    random_only = wasserstein_max_sliced(x, y, n_projections=64, generator=_generator(4), p=p)
    searched = wasserstein_max_sliced(x, y, n_projections=64, generator=_generator(4), p=p, ascent_steps=10)
    target = shift.norm().item() ** p
    assert random_only.item() < 0.1 * target
    assert searched.item() == pytest.approx(target, rel=1e-6)
    assert searched.item() <= wasserstein_exact(x, y, p=p).item() * (1 + 1e-9)  # still a lower bound


def test_max_sliced_ascent_never_lowers_the_value_and_stays_differentiable(pair) -> None:
    x, y = (t.clone().requires_grad_() for t in pair)
    random_only = wasserstein_max_sliced(x, y, n_projections=8, generator=_generator(2))
    searched = wasserstein_max_sliced(x, y, n_projections=8, generator=_generator(2), ascent_steps=5)
    assert searched.item() >= random_only.item()
    assert searched.item() <= wasserstein_exact(x, y).item() * (1 + 1e-9)
    searched.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="ascent_steps"):
        wasserstein_max_sliced(x, y, n_projections=8, ascent_steps=-1)


def test_entropic_approaches_exact_from_above(pair) -> None:
    x, y = pair
    exact = wasserstein_exact(x, y).item()
    median = pairwise_cost(x, y).median().item()
    previous = math.inf
    for eps in (0.1 * median, 0.01 * median, 0.002 * median):
        estimate = wasserstein_entropic(x, y, eps=eps, max_iter=5000).item()
        assert exact * (1 - 1e-6) <= estimate < previous
        previous = estimate
    assert previous == pytest.approx(exact, rel=1e-3)


def test_sampled(pair) -> None:
    x, y = pair
    eps = 0.01
    whole = wasserstein_entropic(x, y, eps=eps)
    torch.testing.assert_close(wasserstein_sampled(x, y, k=50, eps=eps, generator=_generator()), whole)
    # Far apart clouds: the subsample's W1 is within 10% of the full one.
    far = y + 10.0
    exact = wasserstein_exact(x, far).item()
    estimates = [wasserstein_sampled(x, far, k=15, eps=eps, generator=_generator(s)).item() for s in range(5)]
    assert all(e == pytest.approx(exact, rel=0.1) for e in estimates)
    assert len(set(estimates)) > 1  # the generator draws different subsets


def test_rip_on_frequency_sparse_clouds() -> None:
    """Clouds sparse on the same 4 bins: the reduction is a near-isometry (test_reduce.py)."""
    dim, d1 = 64, 4
    generator = _generator(5)
    spectrum = torch.zeros(2, 25, dim // 2 + 1, dtype=torch.complex128)
    bins = torch.tensor([1, 3, 7, 12])
    coefficients = torch.randn(2, 25, d1, 2, generator=generator, dtype=torch.float64)
    coefficients[1, :, :, 0] += 3.0  # the second cloud is shifted in frequency space
    spectrum[:, :, bins] = torch.complex(coefficients[..., 0], coefficients[..., 1])
    x, y = torch.fft.irfft(spectrum, n=dim)
    exact = wasserstein_exact(x, y).item()
    eps = 1e-3 * pairwise_cost(x, y).median().item()
    estimate = wasserstein_rip(x, y, d1=d1, d2=rip_dimension(dim, d1), eps=eps, seed=0).item()
    assert estimate == pytest.approx(exact, rel=0.5)
    # The estimate is the entropic estimate between the reduced clouds, nothing more.
    from iidfusion.ot import FourierRIPReducer

    reducer = FourierRIPReducer(dim, d1, rip_dimension(dim, d1), seed=0).double()
    direct = sinkhorn_unbalanced(pairwise_cost(reducer(x), reducer(y)), eps=eps).transport_cost
    assert estimate == pytest.approx(direct.item(), rel=1e-9)


def test_float32_estimators_are_finite(pair) -> None:
    x, y = (t.float() for t in pair)
    values = [
        wasserstein_exact(x, y),
        wasserstein_entropic(x, y, eps=0.05),
        wasserstein_sampled(x, y, k=10, eps=0.05, generator=_generator()),
        wasserstein_sliced(x, y, n_projections=10, generator=_generator()),
        wasserstein_max_sliced(x, y, n_projections=10, generator=_generator()),
        wasserstein_rip(x, y, d1=2, d2=4, eps=0.05),
    ]
    for value in values:
        assert value.shape == () and value.dtype == torch.float32 and torch.isfinite(value)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x, y: wasserstein_exact(x[0], y), "shapes"),
        (lambda x, y: wasserstein_exact(x, y[:, :2]), "shapes"),
        (lambda x, y: wasserstein_exact(x[:0], y), "empty"),
        (lambda x, y: wasserstein_exact(x * math.nan, y), "NaN"),
        (lambda x, y: wasserstein_entropic(x, y, eps=-1.0), "eps"),
        (lambda x, y: wasserstein_sampled(x, y, k=0, eps=0.1), "k must"),
        (lambda x, y: wasserstein_sliced(x, y, n_projections=0), "n_projections"),
        (lambda x, y: wasserstein_max_sliced(x, y, n_projections=5, p=3), "p must"),
        (lambda x, y: wasserstein_rip(x, y, d1=5, d2=4, eps=0.1), "d1"),
    ],
)
def test_bad_input_raises(pair, call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(*pair)
