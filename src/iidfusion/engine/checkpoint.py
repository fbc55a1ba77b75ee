"""Checkpoints read back safely, and the trained model a task's checkpoint gives back.

Every checkpoint is read with ``torch.load(weights_only=True)`` (tensors, numbers, strings and
containers only), so a crafted file cannot run code; a missing, truncated or foreign file is
one error naming it. :class:`TrainedModel` is what each task's loader returns
(:func:`iidfusion.load_model` picks the loader).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["TrainedModel", "check_finite_weights", "read_checkpoint"]


@dataclass(frozen=True)
class TrainedModel:
    """A trained model in evaluation mode on the CPU, with what it was trained with.

    ``model``: a :class:`~iidfusion.fusion.FusionModel` (``model(views).logits``,
    ``.weights``) or, for a KG checkpoint, a :class:`~iidfusion.kg.models.KGModel`.
    ``config``: the full resolved configuration of the run. ``method``: the fusion method, or
    ``"kg"``. ``output_names``: what the output columns are (class names; entity names).
    ``inputs``: the width of each input view (feature modality of a KG model). ``seed``: the
    run's seed. ``record``: everything else the checkpoint recorded of the run. ``scaler``: the
    feature scaling fitted on the training split (a ``MinMaxScaler``), or None.
    """

    model: nn.Module
    config: Any
    method: str
    output_names: tuple[str, ...]
    inputs: dict[str, int]
    seed: int | None
    record: dict[str, Any]
    scaler: Any = None


def read_checkpoint(path: str | Path, flag: str) -> Any:
    """The object saved at ``path``, read with ``torch.load(weights_only=True)``: a crafted file
    cannot run code, and a missing, truncated or foreign one is one ValueError naming ``flag``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{flag} {path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, garbage, or a pickle that asks for code
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{flag} {path}: not a readable checkpoint ({reason})") from None


def check_finite_weights(state_dict: Mapping[str, Any], where: str) -> None:
    """A ValueError naming the first weight of ``state_dict`` that holds NaN or inf: such a
    checkpoint (a diverged run, a damaged file) would predict without complaint.
    """
    for key, tensor in state_dict.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(
                f"{where}: weight {key!r} holds {bad} NaN or inf values; the run diverged or the file is damaged"
            )
