"""Optimal transport for distribution coherence (docs/method.md, "Distribution coherence").

* :func:`sinkhorn_unbalanced`: batched, log-stabilised unbalanced entropic OT whose value
  is differentiable by the envelope theorem (:class:`SinkhornResult`); :func:`smallest_safe_eps`
  the smallest eps it accepts for a cost scale and dtype;
* :func:`pairwise_cost`: Euclidean / squared-Euclidean cost matrices;
* :class:`FourierRIPReducer`, :func:`rip_dimension` and :func:`default_rip_width`: FFT top-d1
  + Gaussian RIP projection of features;
* ``wasserstein_*``: estimators of W_p^p between two point clouds, all in the same unit.
"""

from iidfusion.ot.cost import pairwise_cost
from iidfusion.ot.estimators import (
    wasserstein_entropic,
    wasserstein_exact,
    wasserstein_max_sliced,
    wasserstein_rip,
    wasserstein_sampled,
    wasserstein_sliced,
)
from iidfusion.ot.reduce import FourierRIPReducer, default_rip_width, rip_dimension
from iidfusion.ot.sinkhorn import EpsTooSmallError, SinkhornResult, sinkhorn_unbalanced, smallest_safe_eps

__all__ = [
    "EpsTooSmallError",
    "FourierRIPReducer",
    "SinkhornResult",
    "default_rip_width",
    "pairwise_cost",
    "rip_dimension",
    "sinkhorn_unbalanced",
    "smallest_safe_eps",
    "wasserstein_entropic",
    "wasserstein_exact",
    "wasserstein_max_sliced",
    "wasserstein_rip",
    "wasserstein_sampled",
    "wasserstein_sliced",
]
