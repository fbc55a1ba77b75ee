"""Data parallelism: cross-process features for L_dc, and evaluation split across processes.

With DDP each process holds B samples; L_dc estimated on them compares clouds of B points.
Gathering the features of all W processes gives clouds of W*B points, a better estimate of
the inter-modal distance at no extra memory for activations. Gradients flow to the local
part only (the other parts are detached copies): each process back-propagates into its
own samples, and DDP's gradient averaging then combines the W local contributions.

Evaluation (validation and test) is split too: process r takes the samples r, r + W, r + 2W, ...
(:func:`shard_indices`, no sample twice and none padded in, unlike ``DistributedSampler``), and
what the metrics need is gathered exactly (:func:`gather_rows`, :func:`sum_across_processes`), so
every process computes the metrics of the whole split, equal to those of a single process
(docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as dist
from torch import Tensor

from iidfusion.losses.coherence import DistributionCoherence, DistributionCoherenceOutput

__all__ = [
    "GatheredCoherence",
    "gather_rows",
    "gather_with_local_grad",
    "shard_indices",
    "sum_across_processes",
    "world",
]


def world() -> tuple[int, int]:
    """(number of processes, this process's rank); (1, 0) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def shard_indices(size: int, world_size: int, rank: int) -> list[int]:
    """The positions of a split of ``size`` samples that process ``rank`` of ``world_size`` evaluates."""
    if world_size > 1 and size < world_size:
        raise ValueError(
            f"an evaluation split of {size} samples cannot be shared by {world_size} processes (fewer than one each)"
        )
    return list(range(rank, size, world_size))


def _collective_device(x: Tensor) -> torch.device:
    """Where ``x`` must be for a collective: NCCL only moves CUDA tensors."""
    if dist.get_backend() == "nccl" and x.device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return x.device


def gather_rows(x: Tensor) -> Tensor:
    """Every process's rows of ``x`` (counts may differ), in rank order, without gradient; ``x`` alone
    without a process group. Returned on ``x``'s device.
    """
    world_size, _ = world()
    if world_size == 1:
        return x.detach()
    device = _collective_device(x)
    return gather_with_local_grad(x.detach().to(device)).to(x.device)


def gather_with_local_grad(x: Tensor) -> Tensor:
    """All processes' ``x`` (B_r, ...) concatenated in rank order; gradient reaches the local rows.

    Batch sizes may differ between processes (a last, smaller batch): rows are padded for
    the collective and trimmed after. Without an initialised process group it returns ``x``.
    """
    world_size, rank = world()
    if world_size == 1:
        return x
    size = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world_size)]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    padded = x.detach().new_zeros((max(counts), *x.shape[1:]))
    padded[: x.shape[0]] = x.detach()
    parts = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(parts, padded.contiguous())
    pieces = [part[:count] for part, count in zip(parts, counts, strict=True)]
    pieces[rank] = x
    return torch.cat(pieces)


class GatheredCoherence(DistributionCoherence):
    """:class:`DistributionCoherence` on the features of all processes (same options).

    Every process computes the same global L_dc; its gradient reaches only the local
    samples, and DDP averages gradients over the W processes, which would shrink the
    L_dc gradient W-fold against the task loss. The loss is therefore returned as
    ``W * L - (W - 1) * stop_grad(L)``: the value of L, the gradient of W * L, so that after
    averaging each sample gets exactly d L / d z. On one process it is plain L_dc.
    """

    def forward(
        self, features: Mapping[str, Tensor], init: tuple[Tensor, Tensor] | None = None
    ) -> DistributionCoherenceOutput:
        world_size, _ = world()
        if world_size == 1:
            return super().forward(features, init)
        output = super().forward({name: gather_with_local_grad(z) for name, z in features.items()}, init)
        output.loss = world_size * output.loss - (world_size - 1) * output.loss.detach()
        return output


def sum_across_processes(x: Tensor) -> Tensor:
    """The element-wise sum of ``x`` over all processes (``x`` itself on one process)."""
    world_size, _ = world()
    if world_size == 1:
        return x
    total = x.detach().clone().to(_collective_device(x))
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.to(x.device)
