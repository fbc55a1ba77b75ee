"""Tests of iidfusion.ot.sinkhorn: agreement with POT and GeomLoss, gradients, dtypes, inputs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from geomloss import SamplesLoss

import ot
from iidfusion.ot import pairwise_cost, sinkhorn_unbalanced, smallest_safe_eps

INF = float("inf")


def _pot_unbalanced(cost: torch.Tensor, a: np.ndarray, b: np.ndarray, eps: float, rho: float):
    """POT's plan, linear cost and 'total' cost for one problem, solved to convergence."""
    plan, log = ot.unbalanced.sinkhorn_unbalanced(
        a,
        b,
        cost.numpy(),
        eps,
        rho,
        method="sinkhorn",
        reg_type="kl",
        numItermax=200_000,
        stopThr=1e-15,
        log=True,
    )
    total = ot.unbalanced.sinkhorn_unbalanced2(
        a,
        b,
        cost.numpy(),
        eps,
        rho,
        method="sinkhorn",
        reg_type="kl",
        numItermax=200_000,
        stopThr=1e-15,
        returnCost="total",
    )
    return plan, float(log["cost"]), float(total)


@pytest.mark.parametrize(("eps", "rho"), [(0.1, 1.0), (0.5, 0.3), (0.05, 10.0)])
def test_matches_pot_unbalanced(make_clouds, eps: float, rho: float) -> None:
    x, y = make_clouds(2, 12, 9)
    cost = pairwise_cost(x, y)
    generator = torch.Generator().manual_seed(1)
    a = torch.rand(2, 12, generator=generator, dtype=torch.float64) + 0.5
    b = torch.rand(9, generator=generator, dtype=torch.float64) + 0.5
    a = a / a.sum(-1, keepdim=True)
    b = 1.5 * b / b.sum()  # unequal masses: the generalised KL matters
    result = sinkhorn_unbalanced(cost, a, b, eps=eps, rho=rho, tol=1e-13, max_iter=100_000)
    for p in range(2):
        plan, linear, total = _pot_unbalanced(cost[p], a[p].numpy(), b.numpy(), eps, rho)
        # POT 0.9.7 evaluates returnCost="total" with sum p log(p / q), without the "- p + q"
        # mass terms of the generalised KL (ot.backend kl_div(mass=False)); add them back
        # from POT's own plan to get the objective of docs/method.md ("Distribution coherence").
        mass = plan.sum()
        generalised = (
            total
            + eps * (a[p].sum().item() * b.sum().item() - mass)
            + rho * (a[p].sum().item() - mass)
            + rho * (b.sum().item() - mass)
        )
        assert result.value[p].item() == pytest.approx(generalised, rel=1e-6)
        assert result.transport_cost[p].item() == pytest.approx(linear, rel=1e-6)
    assert result.marginal_error.max().item() < 1e-10


def test_value_is_the_dual_optimum(make_clouds) -> None:
    """At the optimum the relaxed value equals rho (|a| - m) + rho (|b| - m) + eps (|a||b| - m)."""
    x, y = make_clouds(3, 10, 14)
    eps, rho = 0.2, 0.7
    result = sinkhorn_unbalanced(pairwise_cost(x, y), eps=eps, rho=rho, tol=1e-13, return_plan=True)
    mass = result.plan.sum((1, 2))
    torch.testing.assert_close(result.value, (2 * rho + eps) * (1 - mass), rtol=1e-9, atol=0)


def test_balanced_matches_pot(make_clouds) -> None:
    x, y = make_clouds(2, 15, 11)
    cost = pairwise_cost(x, y)
    eps = 0.2
    result = sinkhorn_unbalanced(cost, eps=eps, tol=1e-13, max_iter=100_000)
    a, b = ot.unif(15), ot.unif(11)
    for p in range(2):
        linear = ot.sinkhorn2(a, b, cost[p].numpy(), eps, method="sinkhorn_log", stopThr=1e-14, numItermax=100_000)
        assert result.transport_cost[p].item() == pytest.approx(float(linear), rel=1e-6)
        total = ot.solve(cost[p].numpy(), a, b, reg=eps, reg_type="KL", max_iter=100_000, tol=1e-14).value
        assert result.value[p].item() == pytest.approx(float(total), rel=1e-6)
    assert result.marginal_error.max().item() < 1e-10


def test_small_eps_approaches_exact_ot(make_clouds) -> None:
    x, y = make_clouds(1, 30, 25)
    cost = pairwise_cost(x, y)[0]
    eps = 1e-3 * cost.median().item()
    exact = ot.emd2(ot.unif(30), ot.unif(25), cost.numpy())
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        result = sinkhorn_unbalanced(cost.to(dtype), eps=eps, max_iter=3000)
        assert torch.isfinite(result.value) and torch.isfinite(result.transport_cost)
        tolerance = 1e-3 if dtype != torch.bfloat16 else 1e-2  # bf16 rounds the returned value
        assert result.transport_cost.item() == pytest.approx(exact, rel=tolerance)
    unbalanced = sinkhorn_unbalanced(cost.float(), eps=eps, rho=1.0, max_iter=3000)
    assert torch.isfinite(unbalanced.value) and torch.isfinite(unbalanced.f).all()


def test_matches_geomloss_convention(make_clouds) -> None:
    """GeomLoss OT_eps,rho (p=1: C = |x - y|, blur = eps, reach = rho, debias=False) is our value."""
    x, y = make_clouds(2, 20, 20, d=4)
    eps, rho = 0.1, 1.0
    ours = sinkhorn_unbalanced(pairwise_cost(x, y), eps=eps, rho=rho, tol=1e-13).value
    loss = SamplesLoss("sinkhorn", p=1, blur=eps, reach=rho, debias=False, scaling=0.99, backend="tensorized")
    torch.testing.assert_close(loss(x, y), ours, rtol=1e-5, atol=0)


@pytest.mark.parametrize("rho", [0.8, INF])
def test_gradcheck_value_wrt_cost(make_clouds, rho: float) -> None:
    x, y = make_clouds(2, 4, 5)
    cost = pairwise_cost(x, y).requires_grad_()

    def value(c: torch.Tensor) -> torch.Tensor:
        return sinkhorn_unbalanced(c, eps=0.3, rho=rho, tol=1e-14, max_iter=100_000).value

    assert torch.autograd.gradcheck(value, (cost,))


def test_gradcheck_value_wrt_points(make_clouds) -> None:
    x, y = make_clouds(1, 5, 4)
    x.requires_grad_()

    def value(points: torch.Tensor) -> torch.Tensor:
        return sinkhorn_unbalanced(pairwise_cost(points, y), eps=0.2, rho=2.0, tol=1e-14).value

    assert torch.autograd.gradcheck(value, (x,))


def test_gradient_is_the_plan(make_clouds) -> None:
    x, y = make_clouds(3, 7, 6)
    cost = pairwise_cost(x, y).requires_grad_()
    result = sinkhorn_unbalanced(cost, eps=0.1, rho=0.5, return_plan=True)
    weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    (result.value * weights).sum().backward()
    torch.testing.assert_close(cost.grad, weights[:, None, None] * result.plan)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision_inputs(make_clouds, dtype: torch.dtype) -> None:
    x, y = make_clouds(2, 16, 16)
    reference = sinkhorn_unbalanced(pairwise_cost(x, y), eps=0.05, rho=1.0)
    cost = pairwise_cost(x, y).to(dtype).requires_grad_()
    result = sinkhorn_unbalanced(cost, eps=0.05, rho=1.0, return_plan=True)
    result.value.sum().backward()
    for tensor in (result.value, result.transport_cost, result.plan, result.f, result.g, cost.grad):
        assert tensor.dtype == dtype and torch.isfinite(tensor).all()
    rtol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(result.value.double(), reference.value, rtol=rtol, atol=0)


def test_batched_equals_looped(make_clouds) -> None:
    x, y = make_clouds(4, 10, 13)
    cost = pairwise_cost(x, y)
    batched = sinkhorn_unbalanced(cost, eps=0.1, rho=1.0, tol=1e-12)
    looped = [sinkhorn_unbalanced(c, eps=0.1, rho=1.0, tol=1e-12) for c in cost]
    torch.testing.assert_close(batched.value, torch.stack([r.value for r in looped]), rtol=1e-9, atol=0)
    torch.testing.assert_close(batched.f, torch.stack([r.f for r in looped]), rtol=0, atol=1e-8)


def test_single_problem_shapes(make_clouds) -> None:
    x, y = make_clouds(1, 6, 8)
    result = sinkhorn_unbalanced(pairwise_cost(x, y)[0], eps=0.1, return_plan=True)
    assert result.value.shape == result.transport_cost.shape == result.marginal_error.shape == ()
    assert result.plan.shape == (6, 8) and result.f.shape == (6,) and result.g.shape == (8,)
    assert isinstance(result.n_iter, int) and result.n_iter >= 1


def test_warm_start_converges_faster_to_the_same_value(make_clouds) -> None:
    x, y = make_clouds(3, 32, 32)
    first = sinkhorn_unbalanced(pairwise_cost(x, y), eps=0.05, rho=1.0, tol=1e-10)
    moved = pairwise_cost(x + 0.01 * torch.sin(x), y)  # the next training step's features
    cold = sinkhorn_unbalanced(moved, eps=0.05, rho=1.0, tol=1e-10)
    warm = sinkhorn_unbalanced(moved, eps=0.05, rho=1.0, tol=1e-10, init=(first.f, first.g))
    torch.testing.assert_close(warm.value, cold.value, rtol=1e-8, atol=0)
    assert warm.n_iter < cold.n_iter


def test_far_off_warm_start_is_recovered(make_clouds) -> None:
    """Potentials off by 100 cost units overflow the scaling form: the exact step recovers."""
    x, y = make_clouds(2, 12, 12)
    cost = pairwise_cost(x, y)
    cold = sinkhorn_unbalanced(cost, eps=0.01, rho=1.0, tol=1e-11)
    f = torch.full((2, 12), 100.0, dtype=torch.float64)
    warm = sinkhorn_unbalanced(cost, eps=0.01, rho=1.0, tol=1e-11, init=(f, -f))
    torch.testing.assert_close(warm.value, cold.value, rtol=1e-8, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_long_blocks_drift_and_are_redone(make_clouds, dtype: torch.dtype) -> None:
    """At small eps, 1000 iterations between checks let the scalings drift out of range of
    the stored kernel: the solver must notice and redo them, reaching the same solution."""
    x, y = make_clouds(2, 20, 15)
    cost = pairwise_cost(x, y).to(dtype)
    options = {"eps": 3e-3 * cost.median().item(), "rho": 1.0, "max_iter": 20_000, "tol": 1e-5}
    short = sinkhorn_unbalanced(cost, check_every=10, **options)
    long = sinkhorn_unbalanced(cost, check_every=1000, **options)
    assert long.marginal_error.max().item() < 1e-4
    torch.testing.assert_close(long.value, short.value, rtol=1e-6, atol=0)


def test_cost_offset_does_not_underflow(make_clouds) -> None:
    """Adding 1000 to every cost (1e5 eps) must not empty the kernel."""
    x, y = make_clouds(1, 8, 8)
    cost = pairwise_cost(x, y)
    shifted = sinkhorn_unbalanced(cost + 1000.0, eps=0.01, tol=1e-12)
    plain = sinkhorn_unbalanced(cost, eps=0.01, tol=1e-12)
    torch.testing.assert_close(shifted.transport_cost, plain.transport_cost + 1000.0, rtol=1e-10, atol=0)


def test_tolerance_and_budget() -> None:
    cost = torch.rand(2, 20, 20, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    loose = sinkhorn_unbalanced(cost, eps=0.05, tol=1e-2)
    tight = sinkhorn_unbalanced(cost, eps=0.05, tol=1e-11, max_iter=10_000)
    assert loose.n_iter < tight.n_iter and tight.marginal_error.max().item() < 1e-10
    capped = sinkhorn_unbalanced(cost, eps=0.01, tol=0.0, max_iter=25, check_every=7)
    assert capped.n_iter == 25


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_too_small_eps_is_refused_naming_the_smallest_safe_eps(dtype: torch.dtype) -> None:
    """float32 at eps = 1e-9 on unit costs returned 1.7e12 (the bound is eps + 2 rho), NaN at 1e-12."""
    cost = torch.rand(5, 6, generator=torch.Generator().manual_seed(0)).to(dtype)
    safe = smallest_safe_eps(cost.max().item(), dtype)
    too_small = [1e-9, 1e-12] if dtype == torch.float32 else [1e-15, 1e-18]
    for eps in too_small:
        with pytest.raises(ValueError, match=rf"eps={eps:g} is too small .* smallest safe eps is {safe:.2g}"):
            sinkhorn_unbalanced(cost, eps=eps, rho=1.0)
    for eps in (safe * (1 + 1e-6), 1e-9 if dtype == torch.float64 else 1e-5):
        value = sinkhorn_unbalanced(cost, eps=eps, rho=1.0).value.item()
        assert math.isfinite(value) and 0 < value <= eps + 2.0


@pytest.mark.parametrize(("eps", "rho"), [(0.01, 0.001), (0.02, 0.1), (0.1, 10.0)])
def test_value_lies_between_the_optimum_and_the_empty_plan(eps: float, rho: float) -> None:
    """An early stop (on this cost, eps = 0.01, rho = 1e-3, 2 iterations gave 21 times the empty plan's value)
    returns the best multiple of its plan: above the optimum (it is a feasible plan) and below
    eps |a||b| + rho (|a| + |b|), the value of T = 0. (The optimum: converged, as POT's in
    test_matches_pot_unbalanced.)"""
    cost = torch.rand(4, 5, 6, generator=torch.Generator().manual_seed(28), dtype=torch.float64)
    optimum = sinkhorn_unbalanced(cost, eps=eps, rho=rho, tol=1e-13, max_iter=200_000).value
    for dtype, max_iter in itertools.product((torch.float64, torch.float32), (1, 2, 5, 1000)):
        result = sinkhorn_unbalanced(cost.to(dtype), eps=eps, rho=rho, max_iter=max_iter, return_plan=True)
        empty = torch.tensor(eps, dtype=dtype) + 2 * torch.tensor(rho, dtype=dtype)  # in the dtype's rounding
        assert torch.isfinite(result.value).all() and (result.value <= empty).all()
        assert (result.value.double() >= optimum * (1 - 1e-5)).all()
        cost_of_plan = (result.plan.double() * cost).sum((1, 2))
        torch.testing.assert_close(result.transport_cost.double(), cost_of_plan, rtol=1e-5, atol=0)


def _bad_inputs() -> list[tuple[dict, str]]:
    cost = torch.rand(2, 4, 5, dtype=torch.float64)
    nan_cost = cost.clone()
    nan_cost[0, 1, 2] = math.nan
    inf_cost = cost.clone()
    inf_cost[1, 0, 0] = math.inf
    good = {"cost": cost, "eps": 0.1}
    return [
        ({**good, "cost": nan_cost}, "NaN or infinite"),
        ({**good, "cost": inf_cost}, "NaN or infinite"),
        ({**good, "eps": -0.1}, "eps"),
        ({**good, "eps": 0.0}, "eps"),
        ({**good, "eps": math.nan}, "eps"),
        ({**good, "rho": -1.0}, "rho"),
        ({**good, "rho": 0.0}, "rho"),
        ({**good, "cost": torch.rand(4, 5, 6, 7)}, "shape"),
        ({**good, "cost": torch.rand(5)}, "shape"),
        ({**good, "cost": torch.zeros(2, 0, 5)}, "empty"),
        ({**good, "cost": torch.zeros(2, 4, 0)}, "empty"),
        ({**good, "cost": torch.ones(2, 4, 5, dtype=torch.long)}, "floating"),
        ({**good, "a": torch.full((5,), 0.2, dtype=torch.float64)}, "a must have shape"),
        ({**good, "b": torch.full((3, 5), 0.2, dtype=torch.float64)}, "b must have shape"),
        ({**good, "a": torch.tensor([0.5, -0.1, 0.3, 0.3], dtype=torch.float64)}, "a must be > 0"),
        ({**good, "b": torch.tensor([0.5, 0.0, 0.2, 0.2, 0.1], dtype=torch.float64)}, "b must be > 0"),
        ({**good, "a": torch.tensor([0.5, math.nan, 0.3, 0.3], dtype=torch.float64)}, "a contains NaN"),
        ({**good, "max_iter": 0}, "max_iter"),
        ({**good, "tol": -1.0}, "tol"),
        ({**good, "check_every": 0}, "check_every"),
        ({**good, "init": (torch.zeros(2, 4), torch.zeros(2, 4))}, "init potential g"),
        ({**good, "init": (torch.full((2, 4), math.inf), torch.zeros(2, 5))}, "init potential f"),
        ({**good, "init": torch.zeros(2, 4)}, "init must be a pair"),
    ]


@pytest.mark.parametrize(("kwargs", "message"), _bad_inputs())
def test_bad_input_raises(kwargs: dict, message: str) -> None:
    cost = kwargs.pop("cost")
    with pytest.raises(ValueError, match=message):
        sinkhorn_unbalanced(cost, **kwargs)


_HOST_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")


@pytest.fixture
def count_host_reads(monkeypatch):
    """Counts the Python-level reads of a tensor's value on the host (each one a device
    synchronisation on a GPU): a CPU stand-in for a CUDA sync counter."""
    counter = {"reads": 0}
    for name in _HOST_READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            counter["reads"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counter


@pytest.mark.parametrize("check_every", [5, 10])
def test_one_host_read_per_convergence_check_and_none_per_iteration(make_clouds, count_host_reads, check_every) -> None:
    x, y = make_clouds(3, 16, 16)
    cost = pairwise_cost(x, y)  # float64, small eps: far from converged after 60 iterations

    def reads(max_iter: int) -> int:
        count_host_reads["reads"] = 0
        result = sinkhorn_unbalanced(cost, eps=0.02, rho=10.0, max_iter=max_iter, tol=0.0, check_every=check_every)
        assert result.n_iter == max_iter  # not converged: every block runs
        return count_host_reads["reads"]

    extra_iterations = 40
    added = reads(20 + extra_iterations) - reads(20)
    assert 0 < added <= extra_iterations // check_every, (added, check_every)
