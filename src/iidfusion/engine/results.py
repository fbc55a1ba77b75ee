"""The one writer of a job's results files, ``results.{csv,json,md}``, and the formats they share.

Every job that compares runs (``compare``, ``suite``, ``finetune``, ``kg compare``) writes its
results through :func:`write_results`: ``results.csv`` (one row per result, numbers to
:data:`SIGNIFICANT_DIGITS` significant digits), ``results.json`` (strict JSON: NaN and infinities as null, with the
provenance and configuration, :func:`iidfusion.core.provenance.provenance`) and
``results.md``, plus any figures, all staged and renamed into place together
(:func:`~iidfusion.engine.outputs.staged_files`): a job that fails half way leaves none of them.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from iidfusion.engine.outputs import staged_files
from iidfusion.engine.stats import t_interval

RESULT_FILES = ("results.csv", "results.json", "results.md")


def json_ready(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) as None and paths as strings, recursively: strict JSON."""
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


SIGNIFICANT_DIGITS = 6


def rounded(value: Any, digits: int = SIGNIFICANT_DIGITS) -> Any:
    """``value`` with every float rounded to ``digits`` significant digits, recursively: the numbers
    of a file people read (0.97, not the float32 noise 0.9700000286102295). Never for what is
    compared bit for bit (the kept runs of :func:`~iidfusion.engine.runs.save_outcome`).
    """
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if math.isfinite(value) else value
    if isinstance(value, Mapping):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


def json_text(value: Any, indent: int = 2) -> str:
    """``value`` as strict JSON text (:func:`json_ready`), indented, ending with a newline."""
    return json.dumps(json_ready(value), indent=indent, allow_nan=False) + "\n"


def csv_text(rows: Sequence[Mapping[str, Any]], fieldnames: Sequence[str] | None = None) -> str:
    """CSV of ``rows`` (mappings that share their keys; ``fieldnames``: the columns, by default
    the first row's keys), every value as Python writes it.
    """
    if fieldnames is None:
        if not rows:
            raise ValueError("no rows to write")
        fieldnames = list(rows[0])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def fmt_number(value: float | None, spec: str = ".3g") -> str:
    """``value`` formatted by ``spec``; None and NaN (a statistic that does not exist) read "n/a"."""
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def format_params(params: Mapping[str, Any]) -> str:
    """``name=value, ...`` of hyperparameters (floats by ``:g``): how logs and reports name a trial."""
    return ", ".join(
        f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}" for name, value in params.items()
    )


def mean_std(values: Sequence[float], decimals: int = 2) -> str:
    """The mean ± sample standard deviation of ``values`` as text (± n/a for a single value: no spread)."""
    std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    return f"{float(np.mean(values)):.{decimals}f} ± {fmt_number(std, f'.{decimals}f')}"


def mean_ci(values: Sequence[float], decimals: int = 2) -> str:
    """The mean ± the half-width of its 95 % t interval (:func:`~iidfusion.engine.stats.t_interval`)
    as text; ± n/a for a single value (no interval), never ± 0.00.
    """
    mean, half = t_interval(values)
    return f"{mean:.{decimals}f} ± {fmt_number(half, f'.{decimals}f')}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> str:
    """A GitHub markdown table; columns from ``numeric_from`` on are right-aligned."""
    align = ["---" if k < numeric_from else "---:" for k in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


def write_files(
    folder: str | Path, texts: Mapping[str, str], figures: Mapping[str, Callable[[Path], None]] | None = None
) -> list[Path]:
    """Write ``texts`` ({file name: content}) and ``figures`` ({file name: a function saving the
    figure to the path it is given}) to ``folder``, all or nothing; returns the final paths.
    """
    with staged_files(folder) as stage:
        for name, text in texts.items():
            stage.write_text(name, text)
        for name, save in (figures or {}).items():
            save(stage.path(name))
    return [Path(folder) / name for name in [*texts, *(figures or {})]]


def write_results(
    out: str | Path,
    *,
    rows: Sequence[Mapping[str, Any]],
    payload: Mapping[str, Any],
    report: str,
    fieldnames: Sequence[str] | None = None,
    figures: Mapping[str, Callable[[Path], None]] | None = None,
    extra: Mapping[str, str] | None = None,
) -> None:
    """Write ``results.csv`` (``rows``, columns ``fieldnames``), ``results.json`` (``payload``),
    ``results.md`` (``report``), the ``extra`` texts ({file name: content}) and ``figures`` to
    ``out``, all or nothing; the numbers of the CSV and JSON rounded for people (:func:`rounded`).
    """
    if not rows:
        raise ValueError("no results to write")
    texts = {
        "results.csv": csv_text([rounded(row) for row in rows], fieldnames),
        "results.json": json_text(rounded(payload)),
        "results.md": report,
        **(extra or {}),
    }
    write_files(out, texts, figures)
