"""Helpers shared by the studies: their figures, written with their tables and records all or nothing.

Every study writes its table, raw records and figure together through
:func:`iidfusion.engine.results.write_files`, so an interrupted run leaves either the previous
complete set of files or the new one, never a mix. Tables, CSV and JSON are the library's
(:mod:`iidfusion.engine.results`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from iidfusion.engine.results import write_files
from iidfusion.losses.coherence import DistributionCoherence


def new_figure(columns: int = 1, *, width: float = 6.0, height: float = 4.2) -> tuple[Figure, Any]:
    """A figure with ``columns`` side-by-side axes on the non-interactive Agg canvas."""
    matplotlib.use("Agg", force=True)
    figure, axes = plt.subplots(1, columns, figsize=(width * columns, height), squeeze=False)
    return figure, axes[0]


def write_outputs(
    folder: str | Path, texts: Mapping[str, str], figures: Mapping[str, Figure] | None = None
) -> list[Path]:
    """Write ``texts`` ({file name: content}) and ``figures`` ({file name: figure}) to ``folder``,
    all or nothing; figures are closed after saving.
    """
    figures = dict(figures or {})
    try:
        savers = {name: functools.partial(_save_figure, figure) for name, figure in figures.items()}
        return write_files(folder, texts, savers)
    finally:
        for figure in figures.values():
            plt.close(figure)


def _save_figure(figure: Figure, path: Path) -> None:
    figure.savefig(path, dpi=130, bbox_inches="tight")


def reduction_dims(width: int, d1: int, d2: int) -> tuple[int, int] | None:
    """The (d1, d2) that L_dc uses for ``LossConfig`` values ``d1``, ``d2`` (0 = automatic) at ``width``;
    None without reduction. Built exactly as the trainer builds it, so bad values fail the same way.
    """
    reducer = DistributionCoherence(width, d1 or None, d2 or None).reducer
    return (reducer.d1, reducer.d2) if reducer is not None else None
