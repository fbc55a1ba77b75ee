"""Data sets: feature-level multi-view data (:mod:`~iidfusion.data.features`) and the raw pipelines
(:mod:`~iidfusion.data.raw`).

The feature-level names are exported here; imports are lazy (PEP 562), so that
``import iidfusion.data`` stays cheap: scipy and the readers load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from iidfusion.core.extras import missing_extra

_EXPORTS: dict[str, str] = {
    "MultiViewData": "features.base",
    "MultiViewDataset": "features.base",
    "DatasetSplits": "features.base",
    "MultiViewArrays": "features.multiview",
    "MinMaxScaler": "features.multiview",
    "read_multiview_file": "features.multiview",
    "make_splits": "features.multiview",
    "save_arrays": "features.multiview",
    "encode_labels": "features.multiview",
    "stratified_split": "features.multiview",
    "load_dataset": "features.registry",
    "available_datasets": "features.registry",
    "describe": "features.registry",
    "register_dataset": "features.registry",
    "corrupt_views": "features.noise",
    "FEATURE_NOISE": "features.noise",
    "SyntheticConfig": "features.synthetic",
    "generate_synthetic": "features.synthetic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with missing_extra():  # scipy and the readers come with the extra 'train'
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
