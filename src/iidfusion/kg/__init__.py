"""Multimodal knowledge-graph link prediction: OTKGE-style fusion with the IID plug-in.

Triples and id maps (:mod:`~iidfusion.kg.data`), per-entity modality features
(:mod:`~iidfusion.kg.features`), the model (:mod:`~iidfusion.kg.model`), its loss
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
from iidfusion.kg.model import KGModelConfig, KGOutput, MultimodalKGE, OTProjection, OTProjectionConfig
from iidfusion.kg.objective import IIDTermsConfig, KGObjective, KGObjectiveConfig

__all__ = [
    "DEFAULT_TIE_POLICY",
    "IIDTermsConfig",
    "KGModelConfig",
    "KGObjective",
    "KGObjectiveConfig",
    "KGOutput",
    "KnowledgeGraph",
    "KnownTails",
    "LinkPredictionMetrics",
    "MultimodalKGE",
    "OTProjection",
    "OTProjectionConfig",
    "build_modality_features",
    "entity_name_embeddings",
    "evaluate_link_prediction",
    "filtered_ranks",
    "load_entity_features",
    "load_kg",
    "load_triples_folder",
    "read_triples",
    "with_reciprocals",
]
