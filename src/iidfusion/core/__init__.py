"""Shared contracts of the library: the fusion output, modality pairs, input checks, registries.

Everything above (``losses``, ``fusion``, ``data``, ``kg``, ``training``) reads these; ``core``
itself depends on torch only (layer order: docs/architecture.md).
"""

from iidfusion.core.output import AuxiliaryLossProvider, FusionOutput
from iidfusion.core.pairs import Pair, modality_pairs
from iidfusion.core.registry import Registry

__all__ = ["AuxiliaryLossProvider", "FusionOutput", "Pair", "Registry", "modality_pairs"]
