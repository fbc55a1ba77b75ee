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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
        return trained_kg_model(state, f"{flag} {path}")
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
    module = FusionModule.for_feature_views(
        record["method"], record["view_dims"], record["num_classes"], record["num_train"], config,
        seed=record.get("seed"), class_names=record.get("class_names", ()),
    )  # fmt: skip
    module.record = record
    try:
        module.load_state_dict(state["state_dict"])
    except RuntimeError as error:
        raise ValueError(f"{where}: its weights do not fit the model it records ({str(error).splitlines()[0]})") from None
    return module.eval()
