"""The registered multimodal KG embeddings: the contract and registry (:mod:`~iidfusion.kg.models.base`), the
OTKGE-style model (:mod:`~iidfusion.kg.models.otkge`) and the MMKRL-style one (:mod:`~iidfusion.kg.models.mmkrl`).

Importing this package registers both, so :func:`create_kg_model` knows every name.
"""

from iidfusion.kg.models.base import (
    DEFAULT_KG_MODEL,
    KG_MODELS,
    KGModel,
    KGModelConfig,
    KGOutput,
    OTProjectionConfig,
    available_kg_models,
    create_kg_model,
    get_kg_model_class,
    register_kg_model,
)
from iidfusion.kg.models.mmkrl import MMKRL, MMKRLOptions
from iidfusion.kg.models.otkge import MultimodalKGE, OTProjection

__all__ = [
    "DEFAULT_KG_MODEL",
    "KG_MODELS",
    "MMKRL",
    "KGModel",
    "KGModelConfig",
    "KGOutput",
    "MMKRLOptions",
    "MultimodalKGE",
    "OTProjection",
    "OTProjectionConfig",
    "available_kg_models",
    "create_kg_model",
    "get_kg_model_class",
    "register_kg_model",
]
