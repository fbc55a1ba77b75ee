"""Fusion-weight strategies (static, QMF, PDF) and the IF / LF fusion model.

See ``docs/architecture.md`` (``iidfusion.fusion``) for the contract and docs/method.md
("The fusion model", "Fusion-weight strategies") for the formulas. The strategy modules are imported here so that their
registry names exist as soon as the package is imported.
"""

# The strategies register in this order (the order of the config's `strategy` section), before
# the methods that name them.
# isort: off
from iidfusion.core.output import FusionOutput
from iidfusion.fusion.base import FUSION_MODES, FusionStrategy, at_test_time
from iidfusion.fusion.registry import available_strategies, create_strategy, get_strategy_class, register_strategy
from iidfusion.fusion.static import StaticStrategy
from iidfusion.fusion.qmf import QMFStrategy, qmf_rank_loss
from iidfusion.fusion.pdf import PDFStrategy, holo_confidence, relative_calibration
from iidfusion.fusion.model import FusionModel
from iidfusion.fusion.methods import MAIN_METHODS, MethodSpec, available_methods, get_method
# isort: on

__all__ = [
    "FUSION_MODES",
    "FusionModel",
    "FusionOutput",
    "FusionStrategy",
    "MAIN_METHODS",
    "MethodSpec",
    "PDFStrategy",
    "QMFStrategy",
    "StaticStrategy",
    "at_test_time",
    "available_methods",
    "available_strategies",
    "create_strategy",
    "get_method",
    "get_strategy_class",
    "holo_confidence",
    "qmf_rank_loss",
    "register_strategy",
    "relative_calibration",
]
