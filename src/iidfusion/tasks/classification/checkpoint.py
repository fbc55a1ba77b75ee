"""The checkpoints of ``iidfusion fit``: what they record of the run, checked before the model is rebuilt.

``fit``'s Lightning checkpoints (``checkpoints/best.ckpt`` and ``last.ckpt``) hold the module's
state, its hyperparameters (the full resolved :class:`ExperimentConfig`) and, under
:data:`CHECKPOINT_RECORD`, what it takes to rebuild the model without the training data
(method, view widths, classes and their names, training-set size, seed, feature scaling).
``best.ckpt`` holds the weights of the best validation epoch, those the test metrics of
``metrics.json`` were computed with. Read with ``torch.load(weights_only=True)``
(:func:`~iidfusion.engine.checkpoint.read_checkpoint`).
"""

from __future__ import annotations

from typing import Any

import torch

from iidfusion.core.config import check_rules
from iidfusion.data.features.multiview import MinMaxScaler
from iidfusion.engine.checkpoint import TrainedModel
from iidfusion.tasks.classification.config import ExperimentConfig, config_from_dict

CHECKPOINT_RECORD = "iidfusion"  # the checkpoint entry of the module's record
RECORD_VERSION = 1


def fit_record(state: Any, where: str) -> tuple[dict[str, Any], ExperimentConfig]:
    """The record and the configuration of a ``fit`` checkpoint (already read), every size and the
    feature scaling checked before the model they describe is built (a ValueError naming ``where``).
    """
    record = state.get(CHECKPOINT_RECORD) if isinstance(state, dict) else None
    if not isinstance(record, dict) or not isinstance(state.get("hyper_parameters"), dict) or "state_dict" not in state:
        raise ValueError(
            f"{where}: not a checkpoint of `iidfusion fit` (it lacks the model record that `fit` saves; "
            "checkpoints of end-to-end training are not supported)"
        )
    if record.get("version") != RECORD_VERSION or record.get("encoders") != "mlp":
        raise ValueError(
            f"{where}: a model record of version {record.get('version')!r}, which this iidfusion cannot read"
        )
    config = config_from_dict(state["hyper_parameters"], where)  # the run's whole config (FusionModule.__init__)
    _check_record(record, config, where)
    return record, config


# What a record may describe: far beyond any real model, small enough to be refused before it is built.
MAX_VIEWS, MAX_VIEW_WIDTH, MAX_CLASSES, MAX_SAMPLES = 2**10, 2**24, 2**24, 2**40


def _check_record(record: dict[str, Any], config: Any, where: str) -> None:
    """The sizes a ``fit`` checkpoint records, checked before any of them is allocated, and its
    feature scaling: recorded (``None`` only for a run on data given unscaled, through the API)
    and, when there, one finite minimum and positive range per feature of each view.
    """
    try:
        check_rules(config)
    except ValueError as error:
        raise ValueError(f"{where}: its recorded configuration is out of range ({error})") from None
    dims = record.get("view_dims")
    if not isinstance(dims, dict) or not all(type(width) is int for width in dims.values()):
        raise ValueError(f"{where}: a model record with view widths {dims!r}; expected {{view: int}}")
    sizes = [
        ("views", len(dims), MAX_VIEWS),
        ("view width", min(dims.values(), default=0), MAX_VIEW_WIDTH),
        ("view width", max(dims.values(), default=0), MAX_VIEW_WIDTH),
        ("classes", record.get("num_classes"), MAX_CLASSES),
        ("training samples", record.get("num_train"), MAX_SAMPLES),
    ]
    for what, value, bound in sizes:
        if not (type(value) is int and 1 <= value <= bound):
            raise ValueError(f"{where}: a model record with {what} {value!r}; expected 1 to {bound}")
    if "scaler" not in record:
        raise ValueError(
            f"{where}: its model record lacks the feature scaling of its training data; predictions would "
            "be made on unscaled features"
        )
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


def trained_fusion_model(module: Any) -> TrainedModel:
    """The :class:`~iidfusion.engine.checkpoint.TrainedModel` of a module rebuilt by
    :func:`fusion_module_from_state`.
    """
    record = dict(module.record or {})
    scaler = record.get("scaler")
    return TrainedModel(
        model=module.model,
        config=module.config,
        method=module.spec.name,
        output_names=tuple(record["class_names"]) or tuple(str(c) for c in range(record["num_classes"])),
        inputs=dict(record["view_dims"]),
        seed=record.get("seed"),
        record=record,
        scaler=MinMaxScaler.from_state(scaler) if scaler is not None else None,
    )
