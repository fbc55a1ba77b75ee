"""Tests of iidfusion.ot.cost.pairwise_cost."""

from __future__ import annotations

import pytest
import torch

from iidfusion.ot import pairwise_cost


def test_matches_explicit_differences(make_clouds) -> None:
    x, y = make_clouds(3, 7, 5, d=4, shift=100.0)  # far from the origin: centring matters
    difference = x.unsqueeze(2) - y.unsqueeze(1)
    torch.testing.assert_close(pairwise_cost(x, y, p=2), difference.square().sum(-1))
    torch.testing.assert_close(pairwise_cost(x, y, p=1), difference.norm(dim=-1))
    torch.testing.assert_close(pairwise_cost(x[0], y[0]), difference[0].norm(dim=-1))


def test_safe_gradient_at_coincident_points(make_clouds) -> None:
    x, _ = make_clouds(1, 6, 1)
    x = x[0].requires_grad_()
    cost = pairwise_cost(x, x.detach().clone())
    assert torch.all(cost.diagonal() == 0)
    cost.sum().backward()
    assert torch.isfinite(x.grad).all()
    # Off the diagonal the gradient is that of the norm: sum_j (x_i - x_j) / |x_i - x_j|.
    difference = x.detach().unsqueeze(1) - x.detach().unsqueeze(0)
    norms = difference.norm(dim=-1).fill_diagonal_(1.0)
    torch.testing.assert_close(x.grad, (difference / norms.unsqueeze(-1)).sum(1))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_identical_points_are_exactly_zero_whatever_the_scale(make_clouds, dtype) -> None:
    """The expansion leaves rounding noise (3e-8 in float32 at unit scale) where the points
    coincide; the contract is a cost of exactly 0 there, on every machine."""
    x, _ = make_clouds(4, 9, 9, d=5, shift=50.0)
    x = (x * torch.tensor([1e-3, 1.0, 1e3, 1e6]).view(4, 1, 1)).to(dtype)  # one scale per problem
    cost = pairwise_cost(x, x.clone())
    assert torch.all(cost.diagonal(dim1=-2, dim2=-1) == 0)
    assert torch.all(cost - torch.diag_embed(cost.diagonal(dim1=-2, dim2=-1)) + torch.eye(9, dtype=dtype) > 0)


def test_the_zero_threshold_is_per_problem(make_clouds) -> None:
    """A problem of huge distances in the batch does not zero the small distances of another."""
    x, y = make_clouds(2, 5, 6, d=3)
    x[1], y[1] = x[1] * 1e6, y[1] * 1e6
    small = x.float().requires_grad_()
    pairwise_cost(small, y.float())[0].sum().backward()
    difference = (x.unsqueeze(2) - y.unsqueeze(1))[0]
    torch.testing.assert_close(pairwise_cost(small, y.float())[0].double(), difference.norm(dim=-1), rtol=1e-5, atol=0)
    expected = (difference / difference.norm(dim=-1, keepdim=True)).sum(1)
    torch.testing.assert_close(small.grad[0].double(), expected, rtol=1e-4, atol=1e-5)


def test_gradcheck(make_clouds) -> None:
    x, y = make_clouds(2, 4, 3)
    for p in (1, 2):
        assert torch.autograd.gradcheck(
            lambda a, b, p=p: pairwise_cost(a, b, p), (x.requires_grad_(), y.requires_grad_())
        )


def test_low_precision_is_finite(make_clouds) -> None:
    x, y = make_clouds(2, 8, 8)
    for dtype in (torch.float32, torch.bfloat16):
        cost = pairwise_cost(x.to(dtype), y.to(dtype))
        assert cost.dtype == dtype and torch.isfinite(cost).all() and (cost >= 0).all()


def test_euclidean_cost_under_cpu_autocast_keeps_float32(make_clouds) -> None:
    """bf16-mixed training runs L_dc under autocast: the product must not drop to bfloat16
    (it did once, and backward then mixed dtypes)."""
    x, y = (t.float().requires_grad_() for t in make_clouds(3, 8, 6))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cost = pairwise_cost(x, y)
    assert cost.dtype == torch.float32
    cost.sum().backward()
    reference = [t.detach().clone().requires_grad_() for t in (x, y)]
    pairwise_cost(*reference).sum().backward()
    torch.testing.assert_close(cost, pairwise_cost(*reference).detach())
    torch.testing.assert_close(x.grad, reference[0].grad)


@pytest.mark.parametrize(
    ("x", "y", "p", "message"),
    [
        (torch.rand(3, 2), torch.rand(3, 2), 3, "p must be"),
        (torch.rand(3), torch.rand(3, 2), 1, "shape"),
        (torch.rand(3, 2), torch.rand(3, 4), 1, "point dimension"),
        (torch.rand(0, 2), torch.rand(3, 2), 1, "empty"),
        (torch.ones(3, 2, dtype=torch.long), torch.ones(3, 2, dtype=torch.long), 1, "floating"),
    ],
)
def test_bad_input_raises(x: torch.Tensor, y: torch.Tensor, p: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pairwise_cost(x, y, p)


def test_leading_dimensions_broadcast(make_clouds) -> None:
    x, y = make_clouds(2, 5, 4)
    y_shared = y[0].requires_grad_()
    x = x.requires_grad_()
    cost = pairwise_cost(x, y_shared)
    assert cost.shape == (2, 5, 4)
    torch.testing.assert_close(cost[1], pairwise_cost(x[1], y_shared))
    cost.sum().backward()
    assert y_shared.grad.shape == (4, 3) and x.grad.shape == (2, 5, 3)
