"""Multimodal knowledge-graph link prediction: OTKGE- and MMKRL-style models with the IID plug-in.

Triples and id maps (:mod:`~iidfusion.kg.data`), per-entity modality features
(:mod:`~iidfusion.kg.features`), the registry of models (:mod:`~iidfusion.kg.registry`): the
OTKGE-style one (:mod:`~iidfusion.kg.model`) and the MMKRL-style one (:mod:`~iidfusion.kg.mmkrl`), their loss
(:mod:`~iidfusion.kg.objective`) and filtered ranking (:mod:`~iidfusion.kg.evaluate`). Training
and the seeded baseline-vs-IID comparison live with the other training code, in
:mod:`iidfusion.training` (``kg_fit``, ``kg_compare``), so that this package holds no training
loop (docs/architecture.md, layers). The command line is ``iidfusion kg fit|compare``;
``docs/reproduce.md`` (Table 3) has the FB-IMG / WN9-IMG protocol.
"""

from iidfusion.kg.data import KnowledgeGraph, load_kg, load_triples_folder, read_triples, with_reciprocals
from iidfusion.kg.evaluate import (
    DEFAULT_TIE_POLICY,
    KnownTails,
    LinkPredictionMetrics,
    evaluate_link_prediction,
    filtered_ranks,
)
from iidfusion.kg.features import build_modality_features, entity_name_embeddings, load_entity_features
from iidfusion.kg.mmkrl import MMKRL, MMKRLOptions
from iidfusion.kg.model import KGModelConfig, KGOutput, MultimodalKGE, OTProjection, OTProjectionConfig
from iidfusion.kg.objective import IIDTermsConfig, KGObjective, KGObjectiveConfig
from iidfusion.kg.registry import KGModel, available_kg_models, create_kg_model, get_kg_model_class, register_kg_model

__all__ = [
    "DEFAULT_TIE_POLICY",
    "IIDTermsConfig",
    "KGModel",
    "KGModelConfig",
    "KGObjective",
    "KGObjectiveConfig",
    "KGOutput",
    "KnowledgeGraph",
    "KnownTails",
    "LinkPredictionMetrics",
    "MMKRL",
    "MMKRLOptions",
    "MultimodalKGE",
    "OTProjection",
    "OTProjectionConfig",
    "available_kg_models",
    "build_modality_features",
    "create_kg_model",
    "entity_name_embeddings",
    "evaluate_link_prediction",
    "filtered_ranks",
    "get_kg_model_class",
    "load_entity_features",
    "load_kg",
    "load_triples_folder",
    "read_triples",
    "register_kg_model",
    "with_reciprocals",
]
