"""The checkpoint of a knowledge-graph run: ``model.ckpt``, written by ``iidfusion kg fit``.

A plain ``torch.save`` of one dict, read back with ``torch.load(weights_only=True)``:

* ``format``: ``"iidfusion-kg"``; ``format_version``: 1; ``iidfusion``: the package version;
* ``config``: the full :class:`~iidfusion.tasks.kg.fit.KGExperimentConfig` as a plain dict (the
  feature sources the run used included);
* ``entities``, ``relations``: the names, in id order (an id is a row of the tables);
* ``feature_widths``: {modality: width} of each feature modality; ``num_train_queries``;
* ``best_epoch``: the epoch of the saved weights (the best validation MRR);
* ``state_dict``: the weights of the model ``config.model.name`` (:mod:`iidfusion.kg.models.base`),
  the per-entity feature matrices included (they are buffers of the model), so the model
  predicts with nothing but this file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from iidfusion import __version__
from iidfusion.core.config import MAX_WIDTH, check_rules
from iidfusion.engine.checkpoint import TrainedModel
from iidfusion.kg.data import KnowledgeGraph
from iidfusion.kg.models import KGModel, create_kg_model
from iidfusion.tasks.kg.config import KGExperimentConfig, kg_config_from_dict

KG_FORMAT = "iidfusion-kg"
KG_FORMAT_VERSION = 1
CHECKPOINT_NAME = "model.ckpt"


def kg_checkpoint(model: KGModel, kg: KnowledgeGraph, config: KGExperimentConfig, *, best_epoch: int) -> dict[str, Any]:
    """The dict ``model.ckpt`` holds (module docstring)."""
    return {
        "format": KG_FORMAT,
        "format_version": KG_FORMAT_VERSION,
        "iidfusion": __version__,
        "config": dataclasses.asdict(config),
        "entities": list(kg.entities),
        "relations": list(kg.relations),
        "feature_widths": model.feature_widths,
        "num_train_queries": 2 * len(kg.train),
        "best_epoch": int(best_epoch),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def is_kg_checkpoint(state: Any) -> bool:
    return isinstance(state, Mapping) and state.get("format") == KG_FORMAT


def is_kg_training_checkpoint(state: Any) -> bool:
    """Whether ``state`` is a Lightning checkpoint of a KG run (``<out>/checkpoints/*.ckpt``,
    :class:`~iidfusion.tasks.kg.module.KGModule`), which ``--resume`` reads.
    """
    return isinstance(state, Mapping) and "kg" in state and "loops" in state


def kg_model_from_state(state: Mapping[str, Any], where: str) -> tuple[KGModel, KGExperimentConfig]:
    """The model (evaluation mode, CPU) and configuration of a read ``model.ckpt``."""
    if state.get("format_version") != KG_FORMAT_VERSION:
        raise ValueError(
            f"{where}: KG checkpoint format version {state.get('format_version')!r}, which this iidfusion cannot read"
        )
    missing = [
        key
        for key in ("config", "entities", "relations", "feature_widths", "num_train_queries", "state_dict")
        if key not in state
    ]
    if missing:
        raise ValueError(f"{where}: a KG checkpoint without {', '.join(missing)}")
    config = kg_config_from_dict(state["config"], where)
    _check_sizes(state, config, where)
    entities = len(state["entities"])
    placeholders = {name: torch.zeros(entities, int(width)) for name, width in state["feature_widths"].items()}
    with torch.random.fork_rng(devices=[]):  # the initialisation is overwritten; leave the caller's RNG alone
        model = create_kg_model(
            entities,
            len(state["relations"]),
            placeholders,
            config.model,
            num_train_queries=int(state["num_train_queries"]),
        )
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError as error:
        raise ValueError(
            f"{where}: its weights do not fit the model it records ({str(error).splitlines()[0]})"
        ) from None
    return model.eval(), config


def _check_sizes(state: Mapping[str, Any], config: KGExperimentConfig, where: str) -> None:
    """What a ``model.ckpt`` records is checked before the model it describes is allocated."""
    try:
        check_rules(config)
    except ValueError as error:
        raise ValueError(f"{where}: its recorded configuration is out of range ({error})") from None
    widths = state["feature_widths"]
    if not isinstance(widths, Mapping) or not all(type(w) is int and 1 <= w <= MAX_WIDTH for w in widths.values()):
        raise ValueError(f"{where}: feature widths {widths!r}; expected each in [1, {MAX_WIDTH}]")
    if type(state["num_train_queries"]) is not int or state["num_train_queries"] < 0:
        raise ValueError(f"{where}: {state['num_train_queries']!r} training queries recorded; expected a count")


def trained_kg_model(state: Mapping[str, Any], where: str) -> TrainedModel:
    """The :class:`~iidfusion.engine.checkpoint.TrainedModel` of a read ``model.ckpt``."""
    model, config = kg_model_from_state(state, where)
    record = {k: v for k, v in state.items() if k not in ("state_dict", "config")}
    return TrainedModel(
        model=model,
        config=config,
        method="kg",
        output_names=tuple(state["entities"]),
        inputs=dict(state["feature_widths"]),
        seed=config.seed,
        record=record,
    )
