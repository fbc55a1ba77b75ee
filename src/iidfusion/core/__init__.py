"""Shared contracts of the library: options and their rules, registries, the fusion output, modality pairs, input
checks.

Every layer above reads these; ``core`` itself needs torch only (its ``progress``,
``provenance`` and ``files`` modules the extra ``train``; layer order: docs/architecture.md).
The names below load on first use, so that the standard-library modules (``config``, ``extras``)
import without torch: the command line builds its parsers from them (docs/architecture.md).
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> the module of iidfusion.core that defines it.
_EXPORTS: dict[str, str] = {
    "AuxiliaryLossProvider": "output",
    "FusionOutput": "output",
    "Pair": "pairs",
    "modality_pairs": "pairs",
    "Registry": "registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'iidfusion.core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"iidfusion.core.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
