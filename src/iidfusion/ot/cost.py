"""Ground costs between point clouds (docs/method.md, "Distribution coherence": C_jk = ||x_j - y_k||_2)."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

__all__ = ["pairwise_cost"]


def pairwise_cost(x: Tensor, y: Tensor, p: int = 1) -> Tensor:
    """Cost matrices between two batches of point clouds.

    Args:
        x: points ``(..., n, d)``.
        y: points ``(..., m, d)``; leading dimensions broadcast with those of ``x``.
        p: ``1`` for the Euclidean distance ``||x_i - y_j||`` (the cost of L_dc and of W1),
            ``2`` for the squared distance ``||x_i - y_j||^2`` (W2^2; no 1/2 factor).

    Returns:
        ``(..., n, m)`` costs, in the dtype of the inputs.

    The squared distance is expanded as ``|x|^2 + |y|^2 - 2 x.y`` (one matrix product rather
    than an ``(n, m, d)`` difference tensor) after centring both clouds on the mean of ``x``,
    which leaves the distances unchanged and limits the cancellation of that expansion.
    For ``p=1``, pairs closer than the rounding error of the expansion (below
    ``sqrt(5 machine eps)`` times the largest distance of their problem) are coincident:
    their distance is exactly 0, so ``pairwise_cost(x, x)`` has a zero diagonal on every
    machine, and their gradient is 0, a subgradient of the norm, instead of the NaN of
    ``sqrt`` at 0. The gradient is computed in closed form (one autograd node), which
    matters when the cost is recomputed at every training step.

    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 (Euclidean distance) or 2 (squared distance), got {p!r}")
    if x.ndim < 2 or y.ndim < 2:
        raise ValueError(
            f"x and y must have shape (..., n, d); got x {tuple(x.shape)}, y {tuple(y.shape)}"
        )
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(
            f"x and y must have the same point dimension d; got x {tuple(x.shape)}, y {tuple(y.shape)}"
        )
    if not (x.is_floating_point() and y.is_floating_point()):
        raise ValueError(f"x and y must be floating point; got {x.dtype} and {y.dtype}")
    if x.shape[-2] == 0 or y.shape[-2] == 0:
        raise ValueError(
            f"empty point cloud: x has {x.shape[-2]} points, y has {y.shape[-2]} points"
        )
    if p == 2:
        xc, yc, _ = _centred(x, y)
        return _squared(xc, yc)
    return _EuclideanDistance.apply(x, y)


def _centred(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    # Distances are translation invariant, so the centre carries no gradient.
    centre = x.detach().mean(-2, keepdim=True)
    return x - centre, y - centre, centre


def _squared(xc: Tensor, yc: Tensor) -> Tensor:
    norms = xc.square().sum(-1).unsqueeze(-1) + yc.square().sum(-1).unsqueeze(-2)
    if xc.ndim == 3 and yc.ndim == 3:  # norms - 2 x y^T fused in one batched product
        return torch.baddbmm(norms, xc, yc.transpose(-1, -2), alpha=-2.0).clamp_min(0.0)
    return (norms - 2.0 * torch.matmul(xc, yc.transpose(-1, -2))).clamp_min(0.0)


class _EuclideanDistance(torch.autograd.Function):
    """||x_i - y_j|| with d/dx_i = sum_j w_ij (x_i - y_j), w = grad / distance.

    The forward is the square root of the expansion of :func:`_squared` on the centred clouds
    (one batched matrix product; ``torch.cdist`` computes the same expansion but is slower on
    batches of small clouds). A distance is under the rounding error of the expansion when it
    is below sqrt(machine eps * (|x_i|^2 + |y_j|^2)); centred on the mean of x, |x_i| <= 2 D and
    |y_j| <= D with D the largest distance of the problem, so below sqrt(5 machine eps) D
    neither the length nor the direction is known: distance and gradient are 0 there. The
    expansion's value there is rounding noise (of the order of that bound, e.g. 3e-8 for
    identical unit-scale points in float32), not a distance.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, y: Tensor) -> Tensor:  # type: ignore[override]
        xc, yc, _ = _centred(x, y)
        if xc.dtype in (torch.float16, torch.bfloat16):  # half precision loses the expansion
            xc, yc = xc.float(), yc.float()
        with torch.autocast(x.device.type, enabled=False):  # autocast would run the product in half
            distance = _squared(xc, yc).sqrt_()
        resolution = distance.amax((-2, -1), keepdim=True) * math.sqrt(5.0 * torch.finfo(distance.dtype).eps)
        distance.masked_fill_(distance <= resolution, 0.0)
        ctx.save_for_backward(xc, yc, distance)
        ctx.inputs = (x.shape, x.dtype, y.shape, y.dtype)
        return distance.to(x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        xc, yc, distance = ctx.saved_tensors
        x_shape, x_dtype, y_shape, y_dtype = ctx.inputs  # type: ignore[attr-defined]
        weights = torch.where(distance > 0, grad.to(distance.dtype) / distance, 0.0)
        grad_x = xc * weights.sum(-1, keepdim=True) - torch.matmul(weights, yc)
        grad_y = yc * weights.sum(-2).unsqueeze(-1) - torch.matmul(weights.transpose(-1, -2), xc)
        return grad_x.sum_to_size(x_shape).to(x_dtype), grad_y.sum_to_size(y_shape).to(y_dtype)
