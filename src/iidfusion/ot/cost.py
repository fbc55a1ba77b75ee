"""Ground costs between point clouds (docs/method.md, "Distribution coherence": C_jk = ||x_j - y_k||_2)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

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
    For ``p=1``, the expansion of a problem is known to about machine eps times
    ``max |x_i|^2 + max |y_j|^2`` (measured: at most 6 times that, for d up to 1024, in
    float32); pairs whose squared distance is below ``4 sqrt(d + 2)`` times that resolution
    are coincident: their distance is exactly 0, so ``pairwise_cost(x, x)`` has a zero
    diagonal on every machine, and their gradient is 0, a subgradient of the norm, instead of
    the NaN of ``sqrt`` at 0. The threshold is per problem (a problem of large distances does
    not zero the small ones of another). The gradient is computed in closed form (one autograd
    node, no boolean masks, which are slow on CPUs), which matters when the cost is recomputed
    at every training step.

    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 (Euclidean distance) or 2 (squared distance), got {p!r}")
    if x.ndim < 2 or y.ndim < 2:
        raise ValueError(f"x and y must have shape (..., n, d); got x {tuple(x.shape)}, y {tuple(y.shape)}")
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"x and y must have the same point dimension d; got x {tuple(x.shape)}, y {tuple(y.shape)}")
    if not (x.is_floating_point() and y.is_floating_point()):
        raise ValueError(f"x and y must be floating point; got {x.dtype} and {y.dtype}")
    if x.shape[-2] == 0 or y.shape[-2] == 0:
        raise ValueError(f"empty point cloud: x has {x.shape[-2]} points, y has {y.shape[-2]} points")
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


# Coincident pairs: squared distances below _RESOLUTION_PER_SQRT_DIM sqrt(d + 2) machine
# epsilons of max |x_i|^2 + max |y_j|^2 (the rounding of the expansion; docstring above).
_RESOLUTION_PER_SQRT_DIM = 4.0


class _EuclideanDistance(torch.autograd.Function):
    """||x_i - y_j|| with d/dx_i = sum_j w_ij (x_i - y_j), w = grad / distance.

    Both clouds are centred and divided by the resolution r of their problem (docstring of
    :func:`pairwise_cost`), so that the squared distances come out of one batched product of
    augmented matrices, [x^, 1, |x^|^2] [-2 y^, |y^|^2, 1]^T = |x^ - y^|^2, in units of r^2:
    coincident pairs are those at most 1. Two scalar thresholds of that product give the
    distance (coincident pairs set to 0) and, for backward, the inverse distance (coincident
    pairs set to +inf, whose inverse square root is 0); everything else works in place, since
    on CPUs the (P, n, m) passes, not the arithmetic, bound the time. The gradient needs no
    rescaling ((x - y) / D = (x^ - y^) / D^).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, y: Tensor) -> Tensor:
        xc, yc, _ = _centred(x, y)
        if xc.dtype in (torch.float16, torch.bfloat16):  # half precision loses the expansion
            xc, yc = xc.float(), yc.float()
        with torch.autocast(x.device.type, enabled=False):  # autocast would run the product in half
            x_norms, y_norms = torch.linalg.vecdot(xc, xc), torch.linalg.vecdot(yc, yc)
            ulps = _RESOLUTION_PER_SQRT_DIM * math.sqrt(xc.shape[-1] + 2) * torch.finfo(xc.dtype).eps
            resolution = (ulps * (x_norms.amax(-1) + y_norms.amax(-1))).clamp_min_(torch.finfo(xc.dtype).tiny)
            resolution = resolution.sqrt_()[..., None, None]
            x_hat, y_hat = xc / resolution, yc / resolution
            x_aug = torch.cat([x_hat, torch.ones_like(x_hat[..., :1]), (x_norms[..., None] / resolution.square())], -1)
            y_aug = torch.cat(
                [y_hat * -2.0, (y_norms[..., None] / resolution.square()), torch.ones_like(y_hat[..., :1])], -1
            )
            squared = torch.matmul(x_aug, y_aug.transpose(-1, -2))  # |x^ - y^|^2
            distance = torch.threshold(squared, 1.0, 0.0).sqrt_().mul_(resolution)
            if any(ctx.needs_input_grad):
                inverse = torch.threshold_(squared, 1.0, math.inf).rsqrt_()  # 1 / D^, and 0 where coincident
                ctx.save_for_backward(x_hat, y_hat, inverse)
        ctx.inputs = (x.shape, x.dtype, y.shape, y.dtype)
        return distance.to(x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:
        x_hat, y_hat, inverse = ctx.saved_tensors
        x_shape, x_dtype, y_shape, y_dtype = ctx.inputs
        weights = torch.mul(grad.to(inverse.dtype), inverse)
        grad_x = x_hat * weights.sum(-1, keepdim=True) - torch.matmul(weights, y_hat)
        grad_y = y_hat * weights.sum(-2).unsqueeze(-1) - torch.matmul(weights.transpose(-1, -2), x_hat)
        return grad_x.sum_to_size(x_shape).to(x_dtype), grad_y.sum_to_size(y_shape).to(y_dtype)
