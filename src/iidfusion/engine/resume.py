"""Resuming a run: what every checkpoint records of its run, and the one check that a resume continues it.

A task's checkpoints record its run (:class:`RunRecord`: the method or model, the seed and the
digest of its data, :func:`data_digest`) beside the hyperparameters Lightning saves. Resuming
(:func:`check_resume`) reads the checkpoint with ``torch.load(weights_only=True)`` first, so a
crafted file cannot run code and a truncated or foreign one is one clear error, and refuses it
when the run it continues was trained with other settings (but those the task declares
resumable) or on other data: a resumed run continues the same run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback
from torch import Tensor

from iidfusion.core.config import ConfigOption
from iidfusion.engine.checkpoint import read_checkpoint


class RunRecord(Callback):
    """Saves, in every checkpoint, the run's method and seed and a digest of its data (:func:`data_digest`), which
    :func:`check_resume` reads.
    """

    def __init__(self, method: str, seed: int, data: str) -> None:
        self.method, self.seed, self.data = method, int(seed), data

    def state_dict(self) -> dict[str, Any]:
        return {"method": self.method, "seed": self.seed, "data": self.data}


def data_digest(pieces: Iterable[str | Tensor | tuple[str, Tensor]]) -> str:
    """SHA-256 of ``pieces`` in order, the identity of a run's data in its checkpoints: a string
    as its UTF-8 bytes, a tensor as its values, a ``(name, tensor)`` pair as its name, shape and
    dtype, then its values.
    """
    digest = hashlib.sha256()
    for piece in pieces:
        if isinstance(piece, str):
            digest.update(piece.encode())
            continue
        if isinstance(piece, tuple):
            name, piece = piece
            digest.update(f"{name}{tuple(piece.shape)}{piece.dtype}".encode())
        digest.update(piece.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def check_resume(
    path: str | Path,
    *,
    command: str,
    method: str,
    seed: int,
    options: Iterable[ConfigOption],
    resumable: frozenset[str],
    digest: str,
    other_data: str,
) -> None:
    """Refuse to resume from ``path`` unless it is a readable checkpoint of this very run.

    It must hold the state Lightning restores and the record of ``command``
    (hyperparameters and :class:`RunRecord`), with the same ``method`` and ``seed``, the same
    value for every one of ``options`` (the run's settings; but the keys in ``resumable``,
    which the task declares a resumed run may change) and the same data (``digest``,
    :func:`data_digest`); ``other_data`` ends the message of a digest that differs
    ("other data than --data X ...").
    """
    saved, record = resume_record(path, command, method, seed)
    refuse_changed_settings(path, saved, ((o.key, o.flag, o.default) for o in options), resumable)
    if record.get("data") != digest:
        raise ValueError(f"--resume {path}: the run was trained on {other_data}")


def resume_record(path: str | Path, command: str, method: str, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The hyperparameters and :class:`RunRecord` of the checkpoint at ``path``, read with
    ``weights_only=True``; a ValueError unless ``command`` wrote it for ``method`` with ``seed``.
    """
    state = read_checkpoint(path, "--resume")
    needed = ("state_dict", "loops", "callbacks", "hyper_parameters")
    if not isinstance(state, dict) or any(key not in state for key in needed):
        raise ValueError(f"--resume {path}: not a checkpoint written by `{command}` (it lacks {', '.join(needed)})")
    saved = state["hyper_parameters"]
    record = state["callbacks"].get(RunRecord.__qualname__) if isinstance(state["callbacks"], dict) else None
    if not isinstance(saved, dict) or not isinstance(record, dict):
        raise ValueError(f"--resume {path}: not a checkpoint written by `{command}` (no record of its run)")
    if (record.get("method"), record.get("seed")) != (method, seed):
        raise ValueError(
            f"--resume {path}: the checkpoint is of method {record.get('method')!r} with seed {record.get('seed')}, "
            f"not {method!r} with seed {seed}"
        )
    return saved, record


def refuse_changed_settings(
    path: str | Path, saved: dict[str, Any], options: Iterable[tuple[str, str, Any]], resumable: frozenset[str]
) -> None:
    """A ValueError listing every (dotted key, flag, value) of ``options`` outside ``resumable``
    whose value differs from the one recorded in the checkpoint's hyperparameters ``saved`` (tuples saved as lists).
    """
    changed = []
    for key, flag, now in options:
        before = _recorded(saved, key)
        if key not in resumable and before != (list(now) if isinstance(now, tuple) else now):
            changed.append(f"{flag} {before!r} -> {now!r}")
    if changed:
        raise ValueError(
            f"--resume {path}: the run was trained with other settings ({'; '.join(changed)}); "
            "resume with the run's settings, or start a new run (--overwrite)"
        )


def _recorded(hyper_parameters: dict[str, Any], key: str) -> Any:
    """The value of the dotted ``key`` in a checkpoint's hyperparameters (tuples saved as lists)."""
    value: Any = hyper_parameters
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return "(not recorded)"
        value = value[part]
    return value
