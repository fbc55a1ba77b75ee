"""Shared contracts of the library: options and their rules, registries, the fusion output, modality pairs, input
checks.

Every layer above reads these; ``core`` itself needs torch only (its ``progress``,
``provenance`` and ``files`` modules the extra ``train``; layer order: docs/architecture.md).
"""

from iidfusion.core.output import AuxiliaryLossProvider, FusionOutput
from iidfusion.core.pairs import Pair, modality_pairs
from iidfusion.core.registry import Registry

__all__ = ["AuxiliaryLossProvider", "FusionOutput", "Pair", "Registry", "modality_pairs"]
