"""Multimodal knowledge-graph link prediction: OTKGE- and MMKRL-style models with the IID plug-in.

Triples and id maps (:mod:`~iidfusion.kg.data`), per-entity modality features
(:mod:`~iidfusion.kg.features`), the registered models (:mod:`~iidfusion.kg.models`: the
OTKGE-style and the MMKRL-style one), their loss (:mod:`~iidfusion.kg.objective`) and filtered
ranking (:mod:`~iidfusion.kg.evaluate`). Training and the seeded baseline-vs-IID comparison are
the KG task, :mod:`iidfusion.tasks.kg`; this package holds no training loop. The command line
is ``iidfusion kg fit|compare``;
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
from iidfusion.kg.models import (
    MMKRL,
    KGModel,
    KGModelConfig,
    KGOutput,
    MMKRLOptions,
    MultimodalKGE,
    OTProjection,
    OTProjectionConfig,
    available_kg_models,
    create_kg_model,
    get_kg_model_class,
    register_kg_model,
)
from iidfusion.kg.objective import IIDTermsConfig, KGObjective, KGObjectiveConfig

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
