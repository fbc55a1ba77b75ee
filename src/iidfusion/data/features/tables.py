"""Tables as multi-view data: CSV (``.csv``, ``.tsv``, ``.txt``) and Parquet (``.parquet``, ``.pq``)
files with one row per sample (docs/reproduce.md, "Data").

Columns
-------
The first row of a CSV file names the columns (the delimiter, ``,`` ``;`` or a tab, is detected;
``.tsv`` is tab-separated); a Parquet file names its own. A Parquet column of fixed-length lists
of numbers (an embedding per row) is read as that many columns ``NAME_0``, ``NAME_1``, ...

* Labels: ``labels=COLUMN`` (``--labels``); by default the first column named as in
  :data:`~iidfusion.data.features.layout.LABEL_NAMES` (``Y``, ``y``, ``gt``, ``label``, ``labels``,
  ``class``, ...; exact, then ignoring case). Numbers or text alike.
* Row ids: ``id_column=COLUMN`` (``--id-column``), by default a column named ``id`` (any case).
  Never a feature; ``iidfusion predict`` writes it beside each prediction.
* Views: ``views=`` items ``NAME=GLOB`` take the columns matching the shell-style pattern (``fnmatch``,
  case-sensitive: ``image=img_*``, ``tab=age`` or ``tab=[at]*``), in the order of the file; an
  item ``NAME`` alone is the view ``NAME`` of the default rule. Without ``views``, every other
  column belongs to the view named by its **prefix before the first ``_``** (``img_0``,
  ``img_1``, ... form the view ``img``; ``tab_age`` and ``tab_bmi`` the view ``tab``), and a column
  without ``_`` is a view of its own. A column of text (not numbers) is passed over with a note
  unless a view names it, which is an error.

A view column with an empty cell or a value that is not a number is an error naming the column
and the row (the first line after the header is row 0), as is a label missing from a row.
"""

from __future__ import annotations

import csv
import fnmatch
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from iidfusion.core.extras import missing_extra
from iidfusion.data.features.layout import LABEL_NAMES

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
TABLE_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES
ID_NAMES = ("id",)


def read_table(path: Path) -> dict[str, np.ndarray]:
    """The columns of the CSV or Parquet file ``path`` by name, in file order, as stored: a CSV
    file's as text (so an id keeps every digit), a Parquet file's as numbers or text ("" or NaN
    where a cell is empty); :func:`table_layout` reads the views' as numbers.
    """
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return _read_parquet(path)
    return _read_csv(path)


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    text = path.read_text(encoding="utf-8-sig")
    sample = text[: 2**16]
    if path.suffix.lower() == ".tsv":
        dialect: type[csv.Dialect] | csv.Dialect = csv.excel_tab
    else:
        try:
            dialect = csv.Sniffer().sniff(sample.split("\n", 1)[0], delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()  # blank lines at the end
    if not rows:
        raise ValueError(f"{path}: an empty table (a CSV file's first line names its columns)")
    header, body = [name.strip() for name in rows[0]], rows[1:]
    _check_header(header, path)
    for number, row in enumerate(body):
        if len(row) != len(header):
            raise ValueError(f"{path}: row {number} has {len(row)} cells, the header names {len(header)} columns")
    cells = list(zip(*body, strict=True)) if body else [() for _ in header]
    return {
        name: np.array([cell.strip() for cell in column], dtype=str) for name, column in zip(header, cells, strict=True)
    }


def as_numbers(column: np.ndarray) -> np.ndarray | None:
    """A column as float64 (NaN where a cell is empty), or None when a filled cell is not a number."""
    if column.dtype.kind in "biuf":
        return column.astype(np.float64)
    text = column.astype(str)
    filled = text != ""
    try:
        numbers = text[filled].astype(np.float64)
    except ValueError:
        return None
    values = np.full(text.shape, np.nan)
    values[filled] = numbers
    return values


def _read_parquet(path: Path) -> dict[str, np.ndarray]:
    with missing_extra():  # pyarrow comes with the extra 'parquet'
        import pyarrow.parquet as pq
    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow's errors of a damaged or foreign file: one clear line
        raise ValueError(f"cannot read {path} as a Parquet file: {error}") from None
    _check_header(list(table.column_names), path)
    columns: dict[str, np.ndarray] = {}
    for name in table.column_names:
        values = table.column(name).to_pylist()
        if any(isinstance(value, list) for value in values):
            columns |= _list_column(name, values, path)
            continue
        if all(isinstance(value, (int, float)) or value is None for value in values):
            exact = None not in values and all(isinstance(value, int) for value in values)
            columns[name] = np.array(values) if exact else np.array([np.nan if v is None else v for v in values], float)
        else:
            columns[name] = np.array(["" if value is None else str(value) for value in values])
    return columns


def _list_column(name: str, values: list, path: Path) -> dict[str, np.ndarray]:
    """A column of lists (one vector per row) as the columns ``NAME_0``, ``NAME_1``, ..."""
    lengths = {len(value) if isinstance(value, list) else -1 for value in values}
    if len(lengths) != 1 or -1 in lengths:
        raise ValueError(f"{path}: column {name!r} holds lists of different lengths (or none); one vector per row")
    try:
        matrix = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: column {name!r} holds lists of values that are not numbers") from None
    return {f"{name}_{k}": matrix[:, k] for k in range(matrix.shape[1])}


def _check_header(header: Sequence[str], path: Path) -> None:
    empty = [k for k, name in enumerate(header) if not name]
    if empty:
        raise ValueError(f"{path}: column {empty[0]} has no name; the first line names every column")
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise ValueError(f"{path}: two columns named {name!r}")
        seen.add(name)


def default_view(column: str) -> str:
    """The view of a column under the default rule: its prefix before the first ``_``."""
    return column.split("_", 1)[0] or column


def table_layout(
    columns: Mapping[str, np.ndarray],
    source: str,
    *,
    views: Sequence[str] = (),
    labels: str | None = None,
    id_column: str | None = None,
    require_labels: bool = True,
) -> tuple[dict[str, np.ndarray], np.ndarray | None, np.ndarray | None, list[str]]:
    """The views (samples x features), labels, row ids and notes of a table's ``columns``
    (rules in the module docstring). ``require_labels=False``: data that may have no labels
    (None then, also when the column ``labels`` names is not in the table).
    """
    notes: list[str] = []
    label_column = _find_column(columns, labels, LABEL_NAMES, "--labels", source, required=require_labels)
    id_name = _find_column(columns, id_column, ID_NAMES, "--id-column", source, required=bool(id_column))
    label_values = None
    if label_column is not None:
        numbers = as_numbers(columns[label_column])
        label_values = numbers if numbers is not None else columns[label_column]
        empty = label_values == "" if numbers is None else np.isnan(label_values)
        missing = np.flatnonzero(empty)
        if len(missing):
            raise ValueError(f"{source}: column {label_column!r} (the labels) is empty in row {missing[0]}")
        notes.append(f"labels: column {label_column!r}")
    ids = columns[id_name] if id_name is not None else None
    if id_name is not None:
        notes.append(f"row ids: column {id_name!r}")
    features = [name for name in columns if name not in (label_column, id_name)]
    groups = _view_columns(features, views, source)
    numeric = {name: values for name in features if (values := as_numbers(columns[name])) is not None}
    found: dict[str, np.ndarray] = {}
    for view, names in groups.items():
        text = [name for name in names if name not in numeric]
        if text and views:
            raise ValueError(
                f"{source}: column {text[0]!r} of view {view!r} holds text, not numbers (e.g. {columns[text[0]][0]!r})"
            )
        if text:
            notes.append(
                f"ignored column{'s' if len(text) > 1 else ''} {', '.join(map(repr, text))}: text, not numbers"
            )
        names = [name for name in names if name in numeric]
        if not names:
            continue
        for name in names:
            empty = np.flatnonzero(np.isnan(numeric[name]))
            if len(empty):
                raise ValueError(
                    f"{source}: column {name!r} of view {view!r} is empty or not a number in row {empty[0]}"
                )
        found[view] = np.stack([numeric[name] for name in names], axis=1)
        notes.append(f"view {view!r}: {len(names)} column{'s' if len(names) > 1 else ''} ({_span(names)})")
    if not found:
        raise ValueError(f"{source}: no numeric columns for the views; columns: {list(columns)}")
    return found, label_values, ids, notes


def _find_column(
    columns: Mapping[str, np.ndarray],
    given: str | None,
    names: Sequence[str],
    flag: str,
    source: str,
    *,
    required: bool = True,
) -> str | None:
    """The column ``given``, else the first of ``names`` (exact, then ignoring case); None when
    there is none and it is not ``required``.
    """
    if given:
        if given in columns:
            return given
        if required:
            raise ValueError(f"{source}: {flag} {given!r} is not a column; columns: {_span(list(columns))}")
        return None
    for name in names:
        if name in columns:
            return name
    lowered = {column.lower(): column for column in reversed(list(columns))}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    if required:
        raise ValueError(
            f"{source}: no labels column (common names: {', '.join(names)}); pass {flag} COLUMN; "
            f"columns: {_span(list(columns))}"
        )
    return None


def _view_columns(features: Sequence[str], views: Sequence[str], source: str) -> dict[str, list[str]]:
    """The columns of each view: ``NAME=GLOB`` items, ``NAME`` items of the default rule, or the default rule."""
    by_prefix: dict[str, list[str]] = {}
    for name in features:
        by_prefix.setdefault(default_view(name), []).append(name)
    if not views:
        return by_prefix
    groups: dict[str, list[str]] = {}
    for item in views:
        name, sep, pattern = (part.strip() for part in item.partition("="))
        if not name:
            raise ValueError(f"{source}: --views {item!r} names no view; expected NAME=GLOB (e.g. image=img_*) or NAME")
        if sep:
            matched = [column for column in features if fnmatch.fnmatchcase(column, pattern)]
        else:
            matched = by_prefix.get(name, [])
        if not matched:
            raise ValueError(
                f"{source}: --views {item!r} matches no column; views by prefix: {', '.join(by_prefix)}; "
                f"columns: {_span(list(features))}"
            )
        if name in groups:
            raise ValueError(f"{source}: --views gives the view {name!r} twice")
        taken = {column for columns in groups.values() for column in columns}
        twice = [column for column in matched if column in taken]
        if twice:
            raise ValueError(f"{source}: column {twice[0]!r} is in two views (--views {item!r})")
        groups[name] = matched
    return groups


def _span(names: Sequence[str]) -> str:
    """Column names, shortened: ``img_0, img_1, ..., img_63``."""
    return ", ".join(names) if len(names) <= 4 else f"{names[0]}, {names[1]}, ..., {names[-1]}"
