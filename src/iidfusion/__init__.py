"""iidfusion: multimodal intermediate fusion with informatic constraint and distribution coherence.

Reference implementation of IID (ICLR 2026). The public API is importable from here; the
sub-packages load lazily, so ``import iidfusion`` stays cheap (and a name that needs an optional
package not installed says which extra brings it):

* :mod:`iidfusion.ot` -- batched unbalanced Sinkhorn, Fourier + RIP reduction, W estimators.
* :mod:`iidfusion.fusion` -- fusion-weight strategies (static, QMF, PDF) and the IF / LF model.
* :mod:`iidfusion.losses` -- the informatic constraint L_ic, distribution coherence L_dc, IIDLoss;
  :class:`GatheredCoherence` -- L_dc on the features of every process under DDP.
* :mod:`iidfusion.data` -- multi-view files, the bundled data sets, the synthetic benchmark.
* :func:`fit` and :func:`compare` -- a whole run of ``iidfusion fit`` / ``compare`` from Python.
* :func:`load_model` -- a trained model back from a checkpoint of ``iidfusion fit`` or ``kg fit``;
  :func:`predict` -- its predictions for arrays in memory.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the sub-package that defines it.
_EXPORTS: dict[str, str] = {
    name: package
    for package, names in {
        "ot": (
            "FourierRIPReducer",
            "SinkhornResult",
            "pairwise_cost",
            "rip_dimension",
            "sinkhorn_unbalanced",
            "wasserstein_entropic",
            "wasserstein_exact",
            "wasserstein_max_sliced",
            "wasserstein_rip",
            "wasserstein_sampled",
            "wasserstein_sliced",
        ),
        "fusion": (
            "FusionModel",
            "FusionOutput",
            "FusionStrategy",
            "MAIN_METHODS",
            "MethodSpec",
            "PDFStrategy",
            "QMFStrategy",
            "StaticStrategy",
            "available_methods",
            "available_strategies",
            "create_strategy",
            "get_method",
            "register_strategy",
        ),
        "losses": (
            "DistributionCoherence",
            "DistributionCoherenceOutput",
            "IIDLoss",
            "IIDLossOutput",
            "InformaticConstraint",
            "InformaticConstraintOutput",
            "distribution_coherence",
            "informatic_constraint",
        ),
        "data": (
            "DatasetSplits",
            "MultiViewData",
            "MultiViewDataset",
            "SyntheticConfig",
            "available_datasets",
            "corrupt_views",
            "generate_synthetic",
            "load_dataset",
            "save_arrays",
        ),
        "engine.checkpoint": ("TrainedModel",),
        "engine.distributed": ("GatheredCoherence",),  # L_dc under DDP; engine/, since losses/ need only tensors
        "api": ("compare", "fit", "load_model", "predict"),
    }.items()
    for name in names
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'iidfusion' has no attribute {name!r}")
    extras = importlib.import_module("iidfusion.core.extras")  # the root imports every sub-package lazily
    with extras.missing_extra():  # a missing optional package names the extra that installs it
        value = getattr(importlib.import_module(f"iidfusion.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
