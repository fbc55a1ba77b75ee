"""Ground costs between point clouds (DESIGN.md 1.2, step 3: C_jk = ||x_j - y_k||_2)."""

from __future__ import annotations

import torch
from torch import Tensor

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
    than an ``(n, m, d)`` difference tensor); both clouds are first centred on their joint
    mean, which leaves the distances unchanged and limits the cancellation of that expansion.
    For ``p=1`` the gradient at coincident points (closer than the rounding error of the
    expansion) is set to 0, a subgradient of the norm, instead of the NaN that ``sqrt`` gives
    at 0.
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
    n, m = x.shape[-2], y.shape[-2]
    centre = (x.sum(-2, keepdim=True) + y.sum(-2, keepdim=True)) / (n + m)
    xc, yc = x - centre, y - centre
    norms = xc.square().sum(-1).unsqueeze(-1) + yc.square().sum(-1).unsqueeze(-2)
    squared = (norms - 2.0 * torch.matmul(xc, yc.transpose(-1, -2))).clamp_min(0.0)
    if p == 2:
        return squared
    # Below the rounding error of the expansion a distance cannot be resolved: call it 0.
    positive = squared > torch.finfo(squared.dtype).eps * norms
    # sqrt is evaluated on 1 where the distance is 0, so neither branch carries a NaN gradient.
    return torch.where(positive, torch.where(positive, squared, 1.0).sqrt(), 0.0)
