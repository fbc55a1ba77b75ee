"""Distribution coherence L_dc (docs/method.md, "Distribution coherence"; paper, "Wasserstein distribution coherence").

The generalisation bound of intermediate fusion contains sum_m K E(w_m) D(mu_m, mu), the distance
of each modality's feature distribution to the fused one, which is bounded by the pairwise
inter-modal distances. L_dc estimates those cheaply:

1. per modality, FFT of the (B, d) features along d, keep the d1 frequencies of largest
   batch-averaged amplitude, and map them with the fixed RIP matrix Phi (d2 x d) to (B, d2)
   (:class:`iidfusion.ot.FourierRIPReducer`); ``reducer=None`` skips this for small d;
2. cost C_jk = ||z~_{m1,j} - z~_{m2,k}||_2 / s, with the FIXED scale s = sqrt(d) (``cost_scale``);
3. the relaxed entropic OT value
   W~ = min_T <T, C> + eps KL(T || u v^T) + rho [KL(T 1 || u) + KL(T^T 1 || v)], u = v uniform,
   for ALL unordered pairs m1 < m2 in ONE batched :func:`iidfusion.ot.sinkhorn_unbalanced` call;
   its gradient w.r.t. C is the optimal plan (envelope theorem);
4. L_dc = the MEAN over the M(M-1)/2 unordered pairs m1 < m2 of W~ (``reduction="mean"``), so that
   beta means the same for every M; ``reduction="sum"`` gives the sum over pairs. The paper sums
   over m1 != m2, which counts each pair twice: paper beta = our beta / (M (M - 1)) with the mean
   (docs/method.md, "beta: our scale and the paper's").

Cost scale. With Phi ~ N(0, 1/d2) and an orthonormal FFT, the reduction keeps Euclidean lengths
(RIP), so ||z~_j - z~_k|| is of the order of ||z_j - z_k||, i.e. sqrt(d) times a per-coordinate
RMS distance. Dividing by the constant sqrt(d) of the INPUT width makes C that RMS distance: about
sqrt(2) for two independent standard-normal features whatever d, d1, d2 are, so eps and rho are in
the units of one feature coordinate and beta in 0.01..1 weighs L_dc like the O(1) task CE. A
constant keeps the gradient honest: it is exactly the gradient of the reported value. A detached
batch statistic (mean cost) would make the reported value scale-free while its gradient is not the
gradient of that value, and would change the meaning of eps from step to step. The price of a
constant is that shrinking every feature lowers L_dc; the task loss and the KL terms of L_ic
(which pull each batch variance to 1) resist that collapse.

``pair_sample=k`` (a departure from the paper, off by default): each call solves k of the P
unordered pairs, drawn uniformly without replacement from torch's global generator (seeded with
the run). The mean over a uniform subset is an unbiased estimate of the mean over all pairs (the
sum is rescaled by P / k), so the expected gradient is L_dc's, at k / P of the OT cost: at M = 12,
66 problems a step become k. Its variance is the price; docs/method.md, "Departures from the paper".

``debias=True`` returns the Sinkhorn divergence W~(a, b) - W~(a, a)/2 - W~(b, b)/2 per pair, the
self terms solved in the same batched call; it is zero for identical clouds, where the plain W~
sits at a positive entropic floor. (Both clouds have unit mass, so the mass term of the unbalanced
divergence vanishes.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from iidfusion.core.pairs import Pair, modality_pairs
from iidfusion.core.validation import check_modalities, stack_and_check
from iidfusion.ot import FourierRIPReducer, SinkhornResult, pairwise_cost, sinkhorn_unbalanced

# L_dc's problems (costs of order 1, eps = 0.1, rho = 10) converge to tol = 1e-5 in 5-6 Sinkhorn
# iterations on Handwritten features: checking every 3 stops at 6 instead of 10 (one more host
# synchronisation, on a GPU).
_CHECK_EVERY = 3


@dataclass
class DistributionCoherenceOutput:
    """L_dc, the per-pair relaxed OT values W~ (Sinkhorn divergences if debiased) and <T*, C>.

    ``transport_cost`` is the diagnostic <T*, C> of each cross pair (its gradient is not T*),
    computed on first access (a pass over the plans that training does not need);
    ``pairs[p]`` names the modalities of entry p.
    """

    loss: Tensor
    pair_distances: Tensor
    pairs: tuple[Pair, ...]
    _transport: SinkhornResult = field(repr=False, compare=False)

    @property
    def transport_cost(self) -> Tensor:
        return self._transport.transport_cost[: len(self.pairs)]

    @property
    def potentials(self) -> tuple[Tensor, Tensor]:
        """The dual potentials (f, g) of every problem solved, detached: the ``init`` of a later
        call on the same points (e.g. a fixed monitoring sample whose features moved a little).
        """
        return self._transport.f, self._transport.g


REDUCTIONS: tuple[str, ...] = ("mean", "sum")


def _check_options(
    eps: float, rho: float, max_iter: int, cost_scale: float | None, reduction: str, pair_sample: int | None = None
) -> None:
    if not (math.isfinite(eps) and eps > 0 and math.isfinite(rho) and rho > 0 and max_iter >= 1):
        raise ValueError(
            f"need finite eps > 0, rho > 0 and max_iter >= 1; got eps={eps}, rho={rho}, max_iter={max_iter}"
        )
    if cost_scale is not None and not (math.isfinite(cost_scale) and cost_scale > 0):
        raise ValueError(f"cost_scale must be finite and > 0, got {cost_scale}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown L_dc reduction {reduction!r}; expected one of {list(REDUCTIONS)}")
    if pair_sample is not None and pair_sample < 1:
        raise ValueError(f"pair_sample must be >= 1 pairs (None: every pair), got {pair_sample}")


def distribution_coherence(
    features: Mapping[str, Tensor],
    *,
    reducer: FourierRIPReducer | None = None,
    eps: float = 0.1,
    rho: float = 10.0,
    debias: bool = False,
    max_iter: int = 1000,
    tol: float = 1e-5,
    cost_scale: float | None = None,
    reduction: str = "mean",
    init: tuple[Tensor, Tensor] | None = None,
    pair_sample: int | None = None,
) -> DistributionCoherenceOutput:
    """L_dc of per-modality features {m: (B, d)} (module docstring; docs/method.md).

    ``reducer``: the FFT top-d1 + RIP map, or None to use the raw features. ``eps``, ``rho``: the
    entropic and marginal-relaxation weights of W~, in units of the scaled cost. ``cost_scale``:
    the divisor s of the Euclidean cost, default sqrt(d). ``max_iter``, ``tol``: Sinkhorn budget.
    ``reduction``: "mean" (default) or "sum" of the per-pair values. ``init``: the
    :attr:`~DistributionCoherenceOutput.potentials` of an earlier call on the same points, a warm
    start (the same optimum, in fewer iterations when the features moved little). ``pair_sample``:
    solve that many pairs drawn at random (module docstring); None or >= P: every pair.
    float16 / bfloat16 features are computed in float32.
    """
    names = check_modalities(features)
    dims = {n: int(features[n].shape[1]) for n in names}
    if len(set(dims.values())) != 1:
        raise ValueError(f"L_dc compares features of one common width; got widths {dims}")
    if features[names[0]].shape[0] < 1:
        raise ValueError("L_dc needs a non-empty batch")
    _check_options(eps, rho, max_iter, cost_scale, reduction, pair_sample)
    stacked = stack_and_check({"features": features}, names)["features"]  # (M, B, d)

    dim = dims[names[0]]
    clouds = reducer(stacked) if reducer is not None else stacked
    # The scale divides the (M, B, d2) clouds rather than the (P, B, B) costs: ||x/s - y/s|| = ||x - y|| / s.
    clouds = clouds * (1.0 / (math.sqrt(dim) if cost_scale is None else cost_scale))
    pairs = every_pair = modality_pairs(names)
    if pair_sample is not None and pair_sample < len(every_pair):
        drawn = torch.randperm(len(every_pair))[:pair_sample].sort().values.tolist()
        pairs = tuple(every_pair[k] for k in drawn)
    index = {n: k for k, n in enumerate(names)}
    first = [index[a] for a, _ in pairs]
    second = [index[b] for _, b in pairs]
    if debias:  # self terms W~(a, a) of every modality in a pair, in the same batched solve
        involved = sorted(set(first + second))
        selves = {m: len(pairs) + k for k, m in enumerate(involved)}
        first, second = first + involved, second + involved
    # index_select: its backward is an index_add, several times cheaper than that of clouds[list].
    selected = [clouds.index_select(0, torch.tensor(rows, device=clouds.device)) for rows in (first, second)]
    cost = pairwise_cost(selected[0], selected[1], p=1)
    result = sinkhorn_unbalanced(
        cost, eps=eps, rho=rho, max_iter=max_iter, tol=tol, check_every=_CHECK_EVERY, init=init
    )

    num_pairs = len(pairs)
    values = result.value[:num_pairs]
    if debias:
        own = result.value
        values = values - 0.5 * (
            own[[selves[m] for m in first[:num_pairs]]] + own[[selves[m] for m in second[:num_pairs]]]
        )
    return DistributionCoherenceOutput(
        loss=values.mean() if reduction == "mean" else values.sum() * (len(every_pair) / num_pairs),
        pair_distances=values,
        pairs=pairs,
        _transport=result,
    )


class DistributionCoherence(nn.Module):
    """``nn.Module`` form of :func:`distribution_coherence`, owning its :class:`FourierRIPReducer`.

    ``dim``: the feature width d. ``d1`` kept Fourier bins (default min(16, d // 2 + 1)); ``d2`` RIP
    output width (default :func:`iidfusion.ot.default_rip_width`: the RIP sample size for d1 bins,
    capped at d // 2 so that the projection always reduces); ``seed`` of Phi (a training run
    passes its own). ``reduce=False`` computes the cost on the raw features (for small d).
    ``pair_sample``: pairs solved per call in training mode (None: all; module docstring); in
    eval mode every pair is solved, so a reported distance is never an estimate.
    """

    def __init__(
        self,
        dim: int,
        d1: int | None = None,
        d2: int | None = None,
        *,
        reduce: bool = True,
        eps: float = 0.1,
        rho: float = 10.0,
        seed: int = 0,
        debias: bool = False,
        max_iter: int = 1000,
        tol: float = 1e-5,
        cost_scale: float | None = None,
        reduction: str = "mean",
        pair_sample: int | None = None,
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        _check_options(eps, rho, max_iter, cost_scale, reduction, pair_sample)
        if not reduce and (d1 is not None or d2 is not None):
            raise ValueError("d1 and d2 configure the reduction; leave them unset with reduce=False")
        self.dim = dim
        self.reducer: FourierRIPReducer | None = None
        if reduce:
            d1 = min(16, dim // 2 + 1) if d1 is None else d1
            self.reducer = FourierRIPReducer(dim, d1, d2, seed=seed)
        self.eps = eps
        self.rho = rho
        self.debias = debias
        self.max_iter = max_iter
        self.tol = tol
        self.cost_scale = cost_scale
        self.reduction = reduction
        self.pair_sample = pair_sample

    def forward(
        self, features: Mapping[str, Tensor], init: tuple[Tensor, Tensor] | None = None
    ) -> DistributionCoherenceOutput:
        """L_dc of ``features``; ``init``: a warm start (:func:`distribution_coherence`)."""
        widths = {n: tuple(f.shape[1:]) for n, f in features.items()}
        if any(w != (self.dim,) for w in widths.values()):
            raise ValueError(f"DistributionCoherence was built for width {self.dim}; got feature shapes {widths}")
        return distribution_coherence(
            features,
            reducer=self.reducer,
            eps=self.eps,
            rho=self.rho,
            debias=self.debias,
            max_iter=self.max_iter,
            tol=self.tol,
            cost_scale=self.cost_scale,
            reduction=self.reduction,
            init=init,
            pair_sample=self.pair_sample if self.training else None,
        )

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, eps={self.eps}, rho={self.rho}, debias={self.debias}, "
            f"max_iter={self.max_iter}, reduction={self.reduction!r}"
            + (f", pair_sample={self.pair_sample}" if self.pair_sample is not None else "")
        )
