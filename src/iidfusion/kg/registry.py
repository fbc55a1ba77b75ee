"""Name -> class registry of the multimodal KG embeddings that ``iidfusion kg`` trains.

``model.name`` in a KG config (``--model``) picks one: ``otkge`` (:mod:`iidfusion.kg.model`)
or ``mmkrl`` (:mod:`iidfusion.kg.mmkrl`). Every model follows :class:`KGModel`'s contract,
so training, the IID plug-in, evaluation and checkpoints work on any of them
(docs/method.md, "Knowledge-graph models"). ``tests/kg/test_registry.py`` runs the shared
contract tests on every registered name and fails for one without its own
``tests/kg/test_model_<name>.py``: a new model is a registered class and its test file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from iidfusion.kg.features import STRUCTURE

if TYPE_CHECKING:
    from iidfusion.fusion import FusionStrategy
    from iidfusion.kg.model import KGModelConfig, KGOutput

DEFAULT_KG_MODEL = "otkge"


def check_features(num_entities: int, features: Mapping[str, Tensor]) -> None:
    """Feature modalities a KG model accepts: at least one, one row per entity, none named "structure"."""
    if not features:
        raise ValueError("a multimodal KG model needs at least one feature modality besides the structure")
    if STRUCTURE in features:
        raise ValueError(f"feature modality name {STRUCTURE!r} is reserved for the structural embedding")
    for name, matrix in features.items():
        if matrix.ndim != 2 or matrix.shape[0] != num_entities:
            raise ValueError(
                f"features[{name!r}] has shape {tuple(matrix.shape)}; expected ({num_entities}, width), one row per entity"
            )


class KGModel(nn.Module):
    """A multimodal KG embedding: modalities as a dict, 1-N scoring, the IID contract.

    ``forward(queries)`` scores (B, 2) queries (entity, relation, reciprocal ids R..2R-1
    included) against every entity and returns a :class:`~iidfusion.kg.model.KGOutput`:
    ``fusion.logits`` the fused scores, ``fusion.features[m]`` each modality's embedding of the
    query entity and ``fusion.shared_head_logits[m]`` its scores by the same target mapping,
    which is all L_ic and L_dc read. Every model has the structural tables this base class
    makes (``entity`` (N, 2k), ``relation`` (2R, 2k), reciprocals included, drawn from
    N(0, 1) x ``init_scale``); subclasses add their feature modalities and set ``strategy``.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""  # how reports name the model, e.g. "OTKGE-style"
    modalities: tuple[str, ...]
    width: int
    strategy: FusionStrategy | None

    def __init__(self, num_entities: int, num_relations: int, features: Mapping[str, Tensor], config: KGModelConfig) -> None:
        """What every model checks and keeps: the features (:func:`check_features`), a rank >= 1, the
        config and the graph's sizes; then the modalities ("structure" first) and the structural tables."""
        super().__init__()
        check_features(num_entities, features)
        if config.rank < 1:
            raise ValueError(f"rank must be >= 1, got {config.rank}")
        self.config = config
        self.num_entities = int(num_entities)
        self.num_relations = int(num_relations)
        self.width = 2 * config.rank
        self.modalities = (STRUCTURE, *features)
        self.entity = nn.Parameter(torch.randn(num_entities, self.width) * config.init_scale)
        self.relation = nn.Parameter(torch.randn(2 * num_relations, self.width) * config.init_scale)

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """``model.options`` valid for this model, before any data is read (ValueError naming the key)."""
        if options:
            raise ValueError(f"model.options: model {cls.name!r} takes no options, got {sorted(options)}")

    def entity_tables(self) -> dict[str, Tensor]:
        """{modality: (N, width)} every entity's embedding in every modality."""
        raise NotImplementedError

    def training_state(self) -> dict[str, Any]:
        """What training carries from step to step besides the weights and buffers (caches), saved
        in training checkpoints so that a resumed run continues exactly; none by default."""
        return {}

    def load_training_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`training_state` returned (on the model's device)."""

    def forward(
        self, queries: Tensor, *, tables: Mapping[str, Tensor] | None = None, need_modalities: bool = True
    ) -> KGOutput:
        raise NotImplementedError

    @property
    def feature_widths(self) -> dict[str, int]:
        """{feature modality: d_m}: the widths of the pretrained features (a checkpoint records them)."""
        raise NotImplementedError

    def auxiliary_losses(self, output: KGOutput, tails: Tensor, task_loss: Callable[[Tensor], Tensor]) -> dict[str, Tensor]:
        """The model's own training terms, weighted, added to the loss as they are (none by default).

        ``task_loss`` maps (B, N) logits to the objective's task loss on ``tails``, so a model
        can score a changed forward pass the way the objective scores the real one.
        """
        return {}

    @torch.no_grad()
    def scorer(self) -> Callable[[Tensor], Tensor]:
        """A (B, 2) -> (B, N) scorer for evaluation, with the entity tables computed once."""
        tables = self.entity_tables()
        device = next(iter(tables.values())).device

        def score(queries: Tensor) -> Tensor:
            with torch.no_grad():
                return self(queries.to(device), tables=tables, need_modalities=False).fusion.logits

        return score


ModelClass = TypeVar("ModelClass", bound=type[KGModel])

_KG_MODELS: dict[str, type[KGModel]] = {}


def register_kg_model(name: str) -> Callable[[ModelClass], ModelClass]:
    """Class decorator: register a :class:`KGModel` subclass under ``name``."""

    def decorate(cls: ModelClass) -> ModelClass:
        if not (isinstance(cls, type) and issubclass(cls, KGModel)):
            raise ValueError(f"{cls!r} is not a KGModel subclass")
        if name in _KG_MODELS and _KG_MODELS[name] is not cls:
            raise ValueError(f"a KG model is already registered as {name!r}: {_KG_MODELS[name].__name__}")
        cls.name = name
        _KG_MODELS[name] = cls
        return cls

    return decorate


def available_kg_models() -> tuple[str, ...]:
    """The registered KG model names, sorted."""
    import iidfusion.kg.mmkrl  # noqa: F401  (registers its models)
    import iidfusion.kg.model  # noqa: F401

    return tuple(sorted(_KG_MODELS))


def get_kg_model_class(name: str) -> type[KGModel]:
    """The class registered as ``name``; ValueError naming ``model.name`` (--model) otherwise."""
    known = available_kg_models()
    if name not in _KG_MODELS:
        raise ValueError(f"--model (model.name) must be one of {', '.join(known)}, got {name!r}")
    return _KG_MODELS[name]


def create_kg_model(
    num_entities: int,
    num_relations: int,
    features: Mapping[str, Tensor],
    config: KGModelConfig,
    *,
    num_train_queries: int | None = None,
) -> KGModel:
    """The model ``config.name`` for a graph of ``num_entities`` / ``num_relations`` with ``features``."""
    return get_kg_model_class(config.name)(
        num_entities, num_relations, features, config, num_train_queries=num_train_queries
    )
