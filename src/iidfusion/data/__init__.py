"""iidfusion.data: multi-view data sets, their splits, and the feature noise protocol.

Imports are lazy (PEP 562) so that ``import iidfusion.data`` stays cheap: scipy and the
readers load on first use.

* :mod:`~iidfusion.data.base`: ``MultiViewData``, ``MultiViewDataset``, ``DatasetSplits``.
* :mod:`~iidfusion.data.multiview`: ``.mat`` / ``.npz`` files, stratified splits, min-max scaling.
* :mod:`~iidfusion.data.registry`: ``load_dataset``, ``available_datasets``, ``describe``.
* :mod:`~iidfusion.data.noise`: Gaussian / salt-and-pepper noise on feature views (docs/reproduce.md, "Noise protocol").
* :mod:`~iidfusion.data.synthetic`: the synthetic theory benchmark.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "MultiViewData": "base",
    "MultiViewDataset": "base",
    "DatasetSplits": "base",
    "MultiViewArrays": "multiview",
    "MinMaxScaler": "multiview",
    "read_multiview_file": "multiview",
    "make_splits": "multiview",
    "encode_labels": "multiview",
    "stratified_split": "multiview",
    "load_dataset": "registry",
    "available_datasets": "registry",
    "describe": "registry",
    "register_dataset": "registry",
    "corrupt_views": "noise",
    "FEATURE_NOISE": "noise",
    "SyntheticConfig": "synthetic",
    "generate_synthetic": "synthetic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
