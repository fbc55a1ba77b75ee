"""Trained models back from their checkpoints, ready for inference (:func:`load_model`).

Two kinds of checkpoint are read, both with ``torch.load(weights_only=True)`` (tensors,
numbers, strings and containers only: a crafted file cannot run code):

* ``iidfusion fit``'s Lightning checkpoints (``checkpoints/best.ckpt`` and ``last.ckpt``): the
  module's state, its hyperparameters (the full resolved :class:`ExperimentConfig`) and the
  record of :data:`~iidfusion.training.module.CHECKPOINT_RECORD` (method, view widths,
  classes, training-set size, seed, feature scaling), from which the model is rebuilt;
* ``iidfusion kg fit``'s ``model.ckpt`` (:mod:`iidfusion.training.kg_checkpoint`).

``best.ckpt`` holds the weights of the best validation epoch, those the test metrics of
``metrics.json`` were computed with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from iidfusion.training.config import config_from_dict
from iidfusion.training.module import CHECKPOINT_RECORD, RECORD_VERSION, FusionModule
from iidfusion.training.runner import read_checkpoint

__all__ = ["TrainedModel", "load_model"]


@dataclass(frozen=True)
class TrainedModel:
    """A trained model in evaluation mode on the CPU, with what it was trained with.

    ``model``: a :class:`~iidfusion.fusion.FusionModel` (``model(views).logits``,
    ``.weights``) or, for a KG checkpoint, a :class:`~iidfusion.kg.registry.KGModel`.
    ``config``: the full resolved configuration of the run (:class:`ExperimentConfig`, or
    :class:`~iidfusion.training.kg_fit.KGExperimentConfig`). ``method``: the fusion method, or
    ``"kg"``. ``output_names``: what the output columns are (class names; entity names).
    ``inputs``: the width of each input view (feature modality of a KG model). ``seed``: the
    run's seed. ``record``: everything else the checkpoint recorded of the run.
    """

    model: nn.Module
    config: Any
    method: str
    output_names: tuple[str, ...]
    inputs: dict[str, int]
    seed: int | None
    record: dict[str, Any]

    @property
    def scaler(self) -> Any:
        """The feature scaling fitted on the training split (a ``MinMaxScaler``), or None."""
        from iidfusion.data.multiview import MinMaxScaler

        state = self.record.get("scaler")
        return MinMaxScaler.from_state(state) if state is not None else None


def load_model(path: str | Path, *, flag: str = "checkpoint") -> TrainedModel:
    """The trained model saved at ``path`` by ``iidfusion fit`` or ``iidfusion kg fit``.

    ``flag`` names the file in messages (a CLI passes its option, e.g. ``--checkpoint``).
    A file that is missing, unreadable, or not such a checkpoint is a ValueError / OSError.
    """
    from iidfusion.training.kg_checkpoint import CHECKPOINT_NAME, is_kg_checkpoint, is_kg_training_checkpoint, trained_kg_model

    state = read_checkpoint(path, flag)
    if is_kg_checkpoint(state):
        trained = trained_kg_model(state, f"{flag} {path}")
        check_finite_weights(trained.model.state_dict(), f"{flag} {path}")
        return trained
    if is_kg_training_checkpoint(state):
        raise ValueError(f"{flag} {path}: a training checkpoint of `iidfusion kg fit` (for --resume); "
                         f"the trained model is the run's {CHECKPOINT_NAME}")
    module = fusion_module_from_state(state, f"{flag} {path}")
    record = dict(module.record or {})
    return TrainedModel(
        model=module.model,
        config=module.config,
        method=module.spec.name,
        output_names=tuple(record["class_names"]) or tuple(str(c) for c in range(record["num_classes"])),
        inputs=dict(record["view_dims"]),
        seed=record.get("seed"),
        record=record,
    )


def load_fusion_module(path: str | Path, *, flag: str = "checkpoint") -> FusionModule:
    """The :class:`FusionModule` of a checkpoint of ``iidfusion fit``, in evaluation mode."""
    return fusion_module_from_state(read_checkpoint(path, flag), f"{flag} {path}")


def fusion_module_from_state(state: Any, where: str) -> FusionModule:
    """Rebuild the module a ``fit`` checkpoint (already read) describes and load its weights."""
    record = state.get(CHECKPOINT_RECORD) if isinstance(state, dict) else None
    if not isinstance(record, dict) or not isinstance(state.get("hyper_parameters"), dict) or "state_dict" not in state:
        raise ValueError(
            f"{where}: not a checkpoint of `iidfusion fit` (it lacks the model record that `fit` saves; "
            "checkpoints of end-to-end training are not supported)"
        )
    if record.get("version") != RECORD_VERSION or record.get("encoders") != "mlp":
        raise ValueError(f"{where}: a model record of version {record.get('version')!r}, which this iidfusion cannot read")
    config = config_from_dict(state["hyper_parameters"], where)  # the run's whole config (FusionModule.__init__)
    _check_record(record, config, where)
    module = FusionModule.for_feature_views(
        record["method"], record["view_dims"], record["num_classes"], record["num_train"], config,
        seed=record.get("seed"), class_names=record.get("class_names", ()),
    )  # fmt: skip
    module.record = record
    try:
        module.load_state_dict(state["state_dict"])
    except RuntimeError as error:
        raise ValueError(f"{where}: its weights do not fit the model it records ({str(error).splitlines()[0]})") from None
    check_finite_weights(state["state_dict"], where)
    return module.eval()


# What a record may describe: far beyond any real model, small enough to be refused before it is built.
MAX_VIEWS, MAX_VIEW_WIDTH, MAX_CLASSES, MAX_SAMPLES = 2**10, 2**24, 2**24, 2**40


def _check_record(record: dict[str, Any], config: Any, where: str) -> None:
    """The sizes a ``fit`` checkpoint records, checked before any of them is allocated, and its
    feature scaling: recorded (``None`` only for a run on data given unscaled, through the API)
    and, when there, one finite minimum and positive range per feature of each view."""
    from iidfusion.training.validation import check_option_rules

    try:
        check_option_rules(config)
    except ValueError as error:
        raise ValueError(f"{where}: its recorded configuration is out of range ({error})") from None
    dims = record.get("view_dims")
    if not isinstance(dims, dict) or not all(type(width) is int for width in dims.values()):
        raise ValueError(f"{where}: a model record with view widths {dims!r}; expected {{view: int}}")
    sizes = [("views", len(dims), MAX_VIEWS), ("view width", min(dims.values(), default=0), MAX_VIEW_WIDTH),
             ("view width", max(dims.values(), default=0), MAX_VIEW_WIDTH),
             ("classes", record.get("num_classes"), MAX_CLASSES), ("training samples", record.get("num_train"), MAX_SAMPLES)]
    for what, value, bound in sizes:
        if not (type(value) is int and 1 <= value <= bound):
            raise ValueError(f"{where}: a model record with {what} {value!r}; expected 1 to {bound}")
    if "scaler" not in record:
        raise ValueError(f"{where}: its model record lacks the feature scaling of its training data; predictions would "
                         "be made on unscaled features")
    scaler = record["scaler"]
    if scaler is None:
        return
    try:
        for part in ("minimum", "span"):
            values = scaler[part]
            if set(values) != set(dims):
                raise ValueError(f"its {part} covers views {sorted(values)}, not {sorted(dims)}")
            for view, tensor in values.items():
                if tuple(tensor.shape) != (dims[view],) or not bool(torch.isfinite(tensor).all()):
                    raise ValueError(f"the {part} of view {view!r} is not {dims[view]} finite numbers")
                if part == "span" and not bool((tensor > 0).all()):
                    raise ValueError(f"the range of view {view!r} has values <= 0")
    except (TypeError, KeyError, AttributeError, ValueError) as error:
        raise ValueError(f"{where}: its feature scaling is damaged ({error})") from None


def check_finite_weights(state_dict: Mapping[str, Any], where: str) -> None:
    """A ValueError naming the first weight of ``state_dict`` that holds NaN or inf: such a
    checkpoint (a diverged run, a damaged file) would predict without complaint."""
    for key, tensor in state_dict.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(f"{where}: weight {key!r} holds {bad} NaN or inf values; the run diverged or the file is damaged")
