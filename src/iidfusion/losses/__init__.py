"""The IID regularizers: informatic constraint L_ic, distribution coherence L_dc, and IIDLoss.

Each loss is a function plus a thin ``nn.Module`` returning a small dataclass (docs/method.md).
"""

from iidfusion.losses.coherence import (
    DistributionCoherence,
    DistributionCoherenceOutput,
    distribution_coherence,
    modality_pairs,
)
from iidfusion.losses.config import IIDConfig
from iidfusion.losses.iid import IIDLoss, IIDLossOutput
from iidfusion.losses.informatic import (
    InformaticConstraint,
    InformaticConstraintOutput,
    gaussian_kl_to_standard,
    informatic_constraint,
)

__all__ = [
    "DistributionCoherence",
    "DistributionCoherenceOutput",
    "IIDConfig",
    "IIDLoss",
    "IIDLossOutput",
    "InformaticConstraint",
    "InformaticConstraintOutput",
    "distribution_coherence",
    "gaussian_kl_to_standard",
    "informatic_constraint",
    "modality_pairs",
]
