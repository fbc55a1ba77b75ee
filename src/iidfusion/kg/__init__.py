"""Multimodal knowledge-graph link prediction: OTKGE- and MMKRL-style models with the IID plug-in.

Triples and id maps (:mod:`~iidfusion.kg.data`), per-entity modality features
(:mod:`~iidfusion.kg.features`), the registry of models (:mod:`~iidfusion.kg.registry`): the
OTKGE-style one (:mod:`~iidfusion.kg.model`) and the MMKRL-style one (:mod:`~iidfusion.kg.mmkrl`), their loss
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
from iidfusion.kg.mmkrl import MMKRL, MMKRLOptions
from iidfusion.kg.model import KGModelConfig, KGOutput, MultimodalKGE, OTProjection, OTProjectionConfig
from iidfusion.kg.objective import IIDTermsConfig, KGObjective, KGObjectiveConfig
from iidfusion.kg.registry import KGModel, available_kg_models, create_kg_model, get_kg_model_class, register_kg_model
from iidfusion.kg.train import KGExperimentConfig, KGFitResult, KGTrainConfig, fit_kg, load_experiment_config

__all__ = [
    "DEFAULT_TIE_POLICY",
    "IIDTermsConfig",
    "KGExperimentConfig",
    "KGFitResult",
    "KGModel",
    "KGModelConfig",
    "KGObjective",
    "KGObjectiveConfig",
    "KGOutput",
    "KGRunResult",
    "KGTrainConfig",
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
    "fit_kg",
    "get_kg_model_class",
    "load_entity_features",
    "load_experiment_config",
    "load_kg",
    "load_triples_folder",
    "read_triples",
    "register_kg_model",
    "run_comparison",
    "with_reciprocals",
    "write_comparison",
]
