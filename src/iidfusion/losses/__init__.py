"""The IID regularizers: informatic constraint L_ic, distribution coherence L_dc, and IIDLoss.

Each loss is a function plus a thin ``nn.Module`` returning a small dataclass (docs/method.md).
"""

from iidfusion.losses.informatic import (
    InformaticConstraint,
    InformaticConstraintOutput,
    gaussian_kl_to_standard,
    informatic_constraint,
)

__all__ = [
    "InformaticConstraint",
    "InformaticConstraintOutput",
    "gaussian_kl_to_standard",
    "informatic_constraint",
]
