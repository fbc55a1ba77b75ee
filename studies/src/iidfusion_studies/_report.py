"""Helpers shared by the studies: their figures, written with their tables and records all or nothing.

Every study writes its table, raw records and figure together through
:func:`iidfusion.engine.results.write_files`, so an interrupted run leaves either the previous
complete set of files or the new one, never a mix. Tables, CSV, JSON and figures are the
library's (:mod:`iidfusion.engine.results`, :mod:`iidfusion.engine.figures`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from iidfusion.engine.figures import close_figure, new_figure, save_figure
from iidfusion.engine.results import write_files
from iidfusion.losses.coherence import DistributionCoherence

__all__ = ["new_figure", "reduction_dims", "write_outputs"]


def write_outputs(folder: str | Path, texts: Mapping[str, str], figures: Mapping[str, Any] | None = None) -> list[Path]:
    """Write ``texts`` ({file name: content}) and ``figures`` ({file name: figure}) to ``folder``,
    all or nothing; figures are closed after saving.
    """
    figures = dict(figures or {})
    try:
        savers = {name: functools.partial(save_figure, figure) for name, figure in figures.items()}
        return write_files(folder, texts, savers)
    finally:
        for figure in figures.values():
            close_figure(figure)


def reduction_dims(width: int, d1: int, d2: int) -> tuple[int, int] | None:
    """The (d1, d2) that L_dc uses for ``LossConfig`` values ``d1``, ``d2`` (0 = automatic) at ``width``;
    None without reduction. Built exactly as the trainer builds it, so bad values fail the same way.
    """
    reducer = DistributionCoherence(width, d1 or None, d2 or None).reducer
    return (reducer.d1, reducer.d2) if reducer is not None else None
