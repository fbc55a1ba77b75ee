"""Multimodal knowledge-graph link prediction: OTKGE-style fusion with the IID plug-in.

Triples and id maps (:mod:`~iidfusion.kg.data`), per-entity modality features
(:mod:`~iidfusion.kg.features`), the model (:mod:`~iidfusion.kg.model`), its loss
(:mod:`~iidfusion.kg.objective`), filtered ranking (:mod:`~iidfusion.kg.evaluate`), training
(:mod:`~iidfusion.kg.train`) and the seeded baseline-vs-IID comparison
(:mod:`~iidfusion.kg.compare`). The command line is ``iidfusion kg fit|compare``;
``docs/reproduce.md`` (Table 3) has the FB-IMG / WN9-IMG protocol.
"""

from iidfusion.kg.compare import KGRunResult, run_comparison, write_comparison
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
from iidfusion.kg.train import KGExperimentConfig, KGFitResult, KGTrainConfig, fit_kg, load_experiment_config

__all__ = [
    "DEFAULT_TIE_POLICY",
    "IIDTermsConfig",
    "KGExperimentConfig",
    "KGFitResult",
    "KGModelConfig",
    "KGObjective",
    "KGObjectiveConfig",
    "KGOutput",
    "KGRunResult",
    "KGTrainConfig",
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
    "fit_kg",
    "load_entity_features",
    "load_experiment_config",
    "load_kg",
    "load_triples_folder",
    "read_triples",
    "run_comparison",
    "with_reciprocals",
    "write_comparison",
]
