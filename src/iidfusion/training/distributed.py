"""Cross-process features for L_dc under data parallelism (issue 4, item 2).

With DDP each process holds B samples; L_dc estimated on them compares clouds of B points.
Gathering the features of all W processes gives clouds of W*B points, a better estimate of
the inter-modal distance at no extra memory for activations. Gradients flow to the local
part only (the other parts are detached copies): each process back-propagates into its
own samples, and DDP's gradient averaging then combines the W local contributions.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.distributed as dist
from torch import Tensor

from iidfusion.losses.coherence import DistributionCoherence, DistributionCoherenceOutput


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def gather_with_local_grad(x: Tensor) -> Tensor:
    """All processes' ``x`` (B_r, ...) concatenated in rank order; gradient reaches the local rows.

    Batch sizes may differ between processes (a last, smaller batch): rows are padded for
    the collective and trimmed after. Without an initialised process group it returns ``x``.
    """
    world, rank = _world()
    if world == 1:
        return x
    size = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    padded = x.detach().new_zeros((max(counts), *x.shape[1:]))
    padded[: x.shape[0]] = x.detach()
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    pieces = [part[:count] for part, count in zip(parts, counts)]
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

    def forward(self, features: Mapping[str, Tensor]) -> DistributionCoherenceOutput:
        world, _ = _world()
        if world == 1:
            return super().forward(features)
        output = super().forward({name: gather_with_local_grad(z) for name, z in features.items()})
        output.loss = world * output.loss - (world - 1) * output.loss.detach()
        return output


def sum_across_processes(x: Tensor) -> Tensor:
    """The element-wise sum of ``x`` over all processes (``x`` itself on one process)."""
    world, _ = _world()
    if world == 1:
        return x
    total = x.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total
