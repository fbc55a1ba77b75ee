"""Small helpers shared by the evidence modules: markdown tables, CSV text, atomic outputs.

Every study writes its table, raw records and figure together through
:func:`iidfusion.training.outputs.staged_files`, so an interrupted run leaves either the
previous complete set of files or the new one, never a mix.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iidfusion.training.outputs import staged_files

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def fmt(value: float | None, spec: str = ".3g") -> str:
    """``value`` formatted with ``spec``; None and NaN read "n/a" (a value that does not exist)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> str:
    """A GitHub markdown table; columns from ``numeric_from`` on are right-aligned."""
    align = ["---" if k < numeric_from else "---:" for k in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


def csv_text(records: Sequence[Mapping[str, Any]]) -> str:
    """CSV of records that share their keys (the first record's keys are the header)."""
    if not records:
        raise ValueError("no records to write")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()


def json_text(value: Any) -> str:
    """Indented JSON; NaN becomes null (JSON has no NaN)."""

    def clean(item: Any) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, Mapping):
            return {str(k): clean(v) for k, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [clean(v) for v in item]
        return item

    return json.dumps(clean(value), indent=2) + "\n"


def new_figure(columns: int = 1, *, width: float = 6.0, height: float = 4.2) -> tuple[Figure, Any]:
    """A figure with ``columns`` side-by-side axes on the non-interactive Agg canvas."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, columns, figsize=(width * columns, height), squeeze=False)
    return figure, axes[0]


def write_outputs(
    folder: str | Path, texts: Mapping[str, str], figures: Mapping[str, Figure] | None = None
) -> list[Path]:
    """Write ``texts`` ({file name: content}) and ``figures`` ({file name: figure}) to ``folder``.

    All files are staged and renamed together; figures are closed after saving.
    """
    import matplotlib.pyplot as plt

    figures = dict(figures or {})
    try:
        with staged_files(folder) as stage:
            for name, text in texts.items():
                stage.write_text(name, text)
            for name, figure in figures.items():
                figure.savefig(stage.path(name), dpi=130, bbox_inches="tight")
    finally:
        for figure in figures.values():
            plt.close(figure)
    return [Path(folder) / name for name in [*texts, *figures]]


def reduction_dims(width: int, d1: int, d2: int) -> tuple[int, int] | None:
    """The (d1, d2) that L_dc uses for ``LossConfig`` values ``d1``, ``d2`` (0 = automatic) at ``width``;
    None without reduction. Built exactly as the trainer builds it, so bad values fail the same way."""
    from iidfusion.losses.coherence import DistributionCoherence

    reducer = DistributionCoherence(width, d1 or None, d2 or None).reducer
    return (reducer.d1, reducer.d2) if reducer is not None else None
