"""Multi-view feature files (``.mat``, ``.npz``, CSV, Parquet) to train / validation / test splits
(docs/reproduce.md, "Data").

File formats
------------
``.mat`` (MATLAB v5/v7, read with :func:`scipy.io.loadmat`), ``.npz`` (numpy, read without
pickles), and tables, one row per sample: CSV (``.csv``, ``.tsv``, ``.txt``) and Parquet
(``.parquet``, ``.pq``; with the extra ``parquet``), whose columns make the views by prefix or by
pattern (:mod:`iidfusion.data.features.tables`). Any other file type is refused with how to
convert it. Row ids (``id_column=``, ``--id-column``): a table's column, or a key of an ``.npz`` /
``.mat`` file, kept out of the views. Which arrays are the views and which the labels is found by
:func:`iidfusion.data.features.layout.find_layout`, whatever the layout: views in a cell array (any
name: ``X``, ``fea``, ``data``, ...) or a struct, or as several top-level matrices, stored
samples x features or features x samples, sparse or dense; labels as an integer or string
vector under any name (``Y``, ``y``, ``gt``, ``gnd``, ``truth``, ``truelabel``, ``label``,
``labels``, ``class`` first) or as a cell with one copy per view. ``views=`` and ``labels=``
(``--views``, ``--labels`` on the command line) name them when the detection cannot decide.

Split form, as in the trusted multi-view literature: ``x1_train``, ``x2_train``, ...,
``x1_test``, ... (optionally ``x1_val``, ...) with labels ``gt_train``, ``gt_test``
(``gt_val``) or any other label key; more generally, every key ending in ``_train``,
``_val`` or ``_test`` (``pix_train``, ``labels_train``, ...; what ``iidfusion extract``
writes). Each split is read as a whole-form file, with the keys the training split used.

View names: a cell's views are named by a cell of strings under ``view_names`` or ``feas``
when the file has one (else ``view0``, ``view1``, ... in cell / ``x<k>`` order), a struct's
by its fields, top-level matrices by their keys. MATLAB v7.3 files are
HDF5, which scipy cannot read; they are refused with an error that says to re-save them with
``save(..., '-v7')`` (we do not depend on h5py).

Processing
----------
Labels are remapped to 0..C-1 in sorted order of the file's values, which are kept as
``class_names`` (0-based, 1-based, +-1 or strings alike). Without splits in the file,
stratified splits are drawn by ``seed`` with :data:`VAL_FRACTION` and :data:`TEST_FRACTION`
of every class (at least one sample of each class in each split). A file with only train and
test gets its validation split carved, stratified, from its training split (``val_fraction``
of the training split). Features are min-max scaled per view and per feature with the minimum
and range of the TRAINING split only, so validation and test values may leave [0, 1];
constant training columns get range 1.

Checks (ValueError naming the file, split, view and row): no NaN or inf in the file; none after
scaling and the cast to float32 either (a test value of 1e300, or one far outside a narrow
training range, overflows float32); at least two classes in the training split, and no class
in the validation or test split that training never sees (a model cannot learn it, and its
test accuracy would be 0 by construction).
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import torch

from iidfusion.data.features.base import DatasetSplits, MultiViewData
from iidfusion.data.features.layout import VIEW_NAME_KEYS, cell_string, find_layout
from iidfusion.data.features.tables import TABLE_SUFFIXES, read_table, table_layout

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
VAL_FRACTION = 0.1
TEST_FRACTION = 0.2

_MAT_SPLIT_VIEW = re.compile(r"^[xX](\d+)_(train|val|test)$")
_SPLIT_SUFFIX = re.compile(r"^(.+)_(train|val|test)$")


@dataclass
class MultiViewArrays:
    """A multi-view file's content before label encoding, splitting and scaling.

    ``views`` are (N, d_m) arrays with samples as rows, ``labels`` the file's own label values
    (None for data read without labels, to predict), ``splits`` the row indices of each split
    when the file defines them (``None`` otherwise), ``notes`` what the layout detection picked
    and passed over, ``ids`` the rows' ids when the file has an id column.
    """

    views: dict[str, np.ndarray]
    labels: np.ndarray | None
    source: str
    splits: dict[str, np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.views:
            raise ValueError(f"{self.source}: no views")
        counts = {name: view.shape[0] for name, view in self.views.items()}
        n = len(self.labels) if self.labels is not None else next(iter(counts.values()))
        if any(count != n for count in counts.values()):
            listed = ", ".join(f"{name!r} {count}" for name, count in counts.items())
            raise ValueError(f"{self.source}: views have different sample counts ({listed}) for {n} labels")
        if self.ids is not None and len(self.ids) != n:
            raise ValueError(f"{self.source}: {len(self.ids)} row ids for {n} samples")

    def __len__(self) -> int:
        return int(next(iter(self.views.values())).shape[0])

    @classmethod
    def from_data(cls, data: MultiViewData, source: str) -> MultiViewArrays:
        """Wrap in-memory tensors (e.g. the synthetic benchmark) so they split like a file."""
        views = {name: view.detach().cpu().numpy() for name, view in data.views.items()}
        return cls(views, data.labels.detach().cpu().numpy(), source)


def read_multiview_file(
    path: str | Path,
    *,
    views: Sequence[str] = (),
    labels: str | None = None,
    id_column: str | None = None,
    require_labels: bool = True,
) -> MultiViewArrays:
    """Read a multi-view file: ``.mat``, ``.npz``, CSV or Parquet (formats in the module docstring).

    ``views`` (keys of matrices, cells or structs; for a table, ``NAME=GLOB`` column patterns or
    view names) and ``labels`` (a key or column) replace the detection of
    :func:`~iidfusion.data.features.layout.find_layout` (a table's:
    :func:`~iidfusion.data.features.tables.table_layout`). ``id_column``: the key or column of the
    rows' ids. ``require_labels=False``: data that may have no labels (to predict).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if not path.is_file():
        raise ValueError(f"{path} is not a file")
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        arrays = _read_table(path, tuple(views), labels or None, id_column or None, require_labels)
    elif suffix in (".mat", ".npz"):
        reader = _read_mat if suffix == ".mat" else _read_npz
        arrays = reader(path, tuple(views), labels or None, id_column or None, require_labels)
    else:
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; {CONVERT}")
    for note in arrays.notes:
        if "ignored " in note:  # what a training command would otherwise drop unsaid (`datasets` lists every note)
            warnings.warn(f"{path}: {note}", PassedOverWarning, stacklevel=2)
    return arrays


# What a refused file type is told: the types read, and how to convert to them.
CONVERT = (
    "accepted: .npz, .mat, .csv, .tsv, .txt, .parquet, .pq; convert a table with pandas' "
    "df.to_csv('data.csv', index=False) (a column per feature, view by prefix: img_0, img_1, ..., tab_age, label), "
    "arrays with numpy.savez('data.npz', image=X1, text=X2, labels=y), or see docs/reproduce.md, 'Data'"
)


def _read_table(
    path: Path, views: Sequence[str], labels: str | None, id_column: str | None, require_labels: bool
) -> MultiViewArrays:
    columns = read_table(path)
    found, label_values, ids, notes = table_layout(
        columns, str(path), views=views, labels=labels, id_column=id_column, require_labels=require_labels
    )
    return MultiViewArrays(found, label_values, str(path), notes=notes, ids=ids)


def _pop_ids(content: dict[str, np.ndarray], id_column: str | None, path: Path) -> np.ndarray | None:
    """The array of row ids under ``id_column`` (removed from ``content``), or None."""
    if id_column is None:
        return None
    if id_column not in content:
        raise ValueError(f"{path}: --id-column {id_column!r} is not in the file; keys: {list(content)}")
    return np.asarray(content.pop(id_column)).reshape(-1)


class PassedOverWarning(UserWarning):
    """An array of a data file that is neither a view nor the labels (the layout's notes say why)."""


# The keys of the labels and the row ids in a file of arrays written by :func:`save_arrays`.
ARRAY_LABELS_KEY = "labels"
ARRAY_IDS_KEY = "ids"


def save_arrays(
    folder: str | Path, views: Mapping[str, Any], labels: Any, *, ids: Any = None
) -> tuple[Path, dict[str, Any]]:
    """Write arrays in memory (numpy arrays or tensors by view name, one row per sample; an image
    per row as an (N, H, W) array is flattened when read) with their ``labels`` (and row ``ids``)
    to an ``.npz`` file in ``folder``, named by a hash of the content (written once, kept when
    there: a run on the same arrays finds the same file, unchanged).

    Returns the path and the options that read it back (``data``, ``views``, ``labels``,
    ``id_column``: what ``load_dataset`` and the commands take). So every process of a run reads
    the arrays by path, whatever ``jobs``, and the run's records name a file that holds its data.
    """
    arrays = {str(name): _as_array(view, f"view {name!r}") for name, view in views.items()}
    if not arrays:
        raise ValueError("no views given: data= takes a mapping of view name -> array (one row per sample)")
    reserved = {ARRAY_LABELS_KEY, ARRAY_IDS_KEY} & set(arrays)
    if reserved:
        raise ValueError(f"a view may not be called {sorted(reserved)[0]!r}: the name of the labels or ids in the file")
    extra = {ARRAY_LABELS_KEY: _as_array(labels, "labels").reshape(-1)}
    if ids is not None:
        extra[ARRAY_IDS_KEY] = _as_array(ids, "ids").reshape(-1)
    counts = {name: len(array) for name, array in {**arrays, **extra}.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"views, labels and ids have different numbers of rows: {counts}")
    digest = hashlib.sha256()
    for name, array in {**arrays, **extra}.items():
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"data-{digest.hexdigest()[:16]}.npz"
    if not path.is_file():
        fd, staged = tempfile.mkstemp(prefix=".data-", suffix=".npz", dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                contents: dict[str, Any] = {**arrays, **extra}
                np.savez(handle, **contents)
            os.replace(staged, path)
        finally:
            Path(staged).unlink(missing_ok=True)
    options = {
        "data": str(path),
        "views": tuple(arrays),
        "labels": ARRAY_LABELS_KEY,
        "id_column": ARRAY_IDS_KEY if ids is not None else "",
    }
    return path, options


def _as_array(value: Any, what: str) -> np.ndarray:
    """A numpy array of ``value`` (an array, a tensor, a list), refused when it holds objects."""
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.dtype == object:
        array = array.astype(str)  # text labels or ids (a pandas column of strings)
    if array.ndim == 0:
        raise ValueError(f"{what} is a single value; expected one row per sample")
    return array


def encode_labels(labels: np.ndarray, source: str = "labels") -> tuple[np.ndarray, tuple[str, ...]]:
    """Codes 0..C-1 in sorted order of the label values, and the values as class names."""
    labels = np.asarray(labels)
    if labels.dtype.kind in "fc" and not np.all(np.isfinite(labels)):
        raise ValueError(f"{source}: {int(np.sum(~np.isfinite(labels)))} labels are NaN or inf")
    if labels.dtype.kind == "c" or (labels.dtype.kind == "f" and not np.all(labels == np.round(labels))):
        fractional = labels[labels != np.round(labels.real)]
        raise ValueError(
            f"{source}: {len(fractional)} labels are not whole numbers (e.g. {fractional.flat[0]}); class labels "
            "are integers or strings, never guessed from other numbers (is it the right array? --labels KEY)"
        )
    values, codes = np.unique(labels, return_inverse=True)
    names = tuple(_label_name(value) for value in values)
    if len(values) < 2:
        raise ValueError(f"{source}: a single class ({names[0] if names else 'no labels'}); need at least two")
    return codes.reshape(-1).astype(np.int64), names


def stratified_split(
    codes: np.ndarray,
    fractions: Mapping[str, float],
    rest: str,
    *,
    seed: int,
    class_names: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Split positions 0..N-1 per class: ``round(f * n_c)`` (at least 1) to each named part, the rest to ``rest``.

    Every part gets at least one sample of every class, so a class with too few samples is an
    error rather than a split that silently lacks it. Indices come back sorted.
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in (rest, *fractions)}
    for code in np.unique(codes):  # a class absent here (e.g. from a file's train split) is skipped
        members = rng.permutation(np.flatnonzero(codes == code))
        sizes = {name: max(1, round(fraction * len(members))) for name, fraction in fractions.items()}
        if len(members) - sum(sizes.values()) < 1:
            name = class_names[code] if class_names is not None else str(code)
            wanted = ", ".join(f"{part} {fraction:g}" for part, fraction in fractions.items())
            raise ValueError(
                f"class {name!r} has {len(members)} samples, too few for a stratified split ({wanted}, "
                f"rest {rest}); each split needs at least one sample of every class"
            )
        start = 0
        for part, size in sizes.items():
            parts[part].append(members[start : start + size])
            start += size
        parts[rest].append(members[start:])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


@dataclass(frozen=True)
class MinMaxScaler:
    """Per-feature min-max scaling with statistics of one split (the training split)."""

    minimum: dict[str, np.ndarray]
    span: dict[str, np.ndarray]

    @classmethod
    def fit(cls, views: Mapping[str, np.ndarray]) -> MinMaxScaler:
        minimum = {name: view.min(axis=0) for name, view in views.items()}
        span = {name: np.ptp(view, axis=0) for name, view in views.items()}
        # A constant column gets range 1: zero on the training split, shifted elsewhere.
        return cls(minimum, {name: np.where(width > 0, width, 1.0) for name, width in span.items()})

    def transform(self, views: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, view in views.items():
            if name not in self.minimum:
                raise ValueError(
                    f"view {name!r} is not one of the views the scaling was fitted on ({', '.join(self.minimum)})"
                )
            if view.shape[1:] != self.minimum[name].shape:
                raise ValueError(
                    f"view {name!r} has {view.shape[1]} features, the scaling was fitted on "
                    f"{self.minimum[name].shape[0]}"
                )
        return {name: (view - self.minimum[name]) / self.span[name] for name, view in views.items()}

    def state(self) -> dict[str, dict[str, torch.Tensor]]:
        """The statistics as float64 tensors (what a checkpoint read with ``weights_only`` holds)."""
        return {
            "minimum": {k: torch.from_numpy(v.copy()) for k, v in self.minimum.items()},
            "span": {k: torch.from_numpy(v.copy()) for k, v in self.span.items()},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Mapping[str, torch.Tensor]]) -> MinMaxScaler:
        return cls(
            {k: v.double().numpy() for k, v in state["minimum"].items()},
            {k: v.double().numpy() for k, v in state["span"].items()},
        )


def make_splits(
    arrays: MultiViewArrays,
    name: str,
    *,
    seed: int = 0,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = TEST_FRACTION,
    scale: bool | MinMaxScaler = True,
) -> DatasetSplits:
    """Encode labels, split (the file's splits, else stratified by ``seed``), scale on train.

    ``scale``: a fitted :class:`MinMaxScaler` scales every split with it instead (a trained
    model's, so that the data it predicts are scaled as those it was trained on).
    """
    _check_fractions(val_fraction, test_fraction)
    _check_finite(arrays)
    if arrays.labels is None:
        raise ValueError(f"{arrays.source}: no labels, which training and evaluation need (--labels KEY names them)")
    codes, class_names = encode_labels(arrays.labels, arrays.source)
    index = split_indices(arrays, codes, class_names, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    _check_split_classes(index, codes, class_names, arrays.source)
    views = {
        part: {view: array[rows].astype(np.float64) for view, array in arrays.views.items()}
        for part, rows in index.items()
    }
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below, as one error
        scaler = scale if isinstance(scale, MinMaxScaler) else MinMaxScaler.fit(views["train"]) if scale else None
        if scaler is not None:
            try:
                views = {part: scaler.transform(part_views) for part, part_views in views.items()}
            except ValueError as error:
                raise ValueError(f"{arrays.source}: {error}") from None
        data = {
            part: MultiViewData(
                {view: torch.from_numpy(array.astype(np.float32)) for view, array in views[part].items()},
                torch.from_numpy(codes[rows]),
            )
            for part, rows in index.items()
        }
    _check_finite_after_scaling(data, arrays.source)
    splits = DatasetSplits(name, data["train"], data["val"], data["test"], len(class_names), class_names, scaler)
    splits.rows, splits.ids = dict(index), arrays.ids
    return splits


def scaled_rows(arrays: MultiViewArrays, scaler: MinMaxScaler | None) -> dict[str, torch.Tensor]:
    """Every row of ``arrays``, in file order and unsplit, scaled with ``scaler`` (a trained
    model's) as float32 views: what a model predicts on new data, labelled or not.
    """
    _check_finite(arrays)
    views = {name: view.astype(np.float64) for name, view in arrays.views.items()}
    with np.errstate(over="ignore", invalid="ignore"):
        if scaler is not None:
            try:
                views = scaler.transform(views)
            except ValueError as error:
                raise ValueError(f"{arrays.source}: {error}") from None
        tensors = {name: torch.from_numpy(view.astype(np.float32)) for name, view in views.items()}
    dummy = torch.zeros(len(arrays), dtype=torch.long)
    _check_finite_after_scaling({"whole": MultiViewData(tensors, dummy)}, arrays.source)
    return tensors


def _check_split_classes(
    index: Mapping[str, np.ndarray], codes: np.ndarray, class_names: Sequence[str], source: str
) -> None:
    """Two classes or more in training, and every class of validation and test seen in training."""
    trained = set(np.unique(codes[index["train"]]).tolist())
    if len(trained) < 2:
        only = class_names[next(iter(trained))] if trained else "none"
        raise ValueError(f"{source}: the training split has a single class ({only}); it needs at least two")
    for part in ("val", "test"):
        unseen = sorted(set(np.unique(codes[index[part]]).tolist()) - trained)
        if unseen:
            shown = ", ".join(repr(class_names[c]) for c in unseen)
            raise ValueError(
                f"{source}: class {shown} of the {part} split has no training sample; every class needs training "
                "samples"
            )


def _check_finite_after_scaling(data: Mapping[str, MultiViewData], source: str) -> None:
    """No inf or NaN created by the scaling or the float32 cast (the file itself was checked before)."""
    for part, split in data.items():
        for name, view in split.views.items():
            bad = ~torch.isfinite(view)
            if bool(bad.any()):
                row = int(bad.any(dim=1).nonzero()[0])
                raise ValueError(
                    f"{source}: view {name!r} of the {part} split has {int(bad.sum())} values beyond float32's range "
                    f"after min-max scaling on the training split (first in row {row} of that split)"
                )


def split_indices(
    arrays: MultiViewArrays,
    codes: np.ndarray,
    class_names: Sequence[str],
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
) -> dict[str, np.ndarray]:
    """Row indices of train / val / test: the file's own, a val carved from its train, or stratified."""
    if arrays.splits is None:
        fractions = {"val": val_fraction, "test": test_fraction}
        return stratified_split(codes, fractions, "train", seed=seed, class_names=class_names)
    if "val" in arrays.splits:
        return dict(arrays.splits)
    train = arrays.splits["train"]
    carved = stratified_split(codes[train], {"val": val_fraction}, "train", seed=seed, class_names=class_names)
    return {"train": train[carved["train"]], "val": train[carved["val"]], "test": arrays.splits["test"]}


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction}: "
            "each must lie in (0, 1) and their sum below 1"
        )


def _check_finite(arrays: MultiViewArrays) -> None:
    bad = []
    for name, view in arrays.views.items():
        if view.dtype.kind in "fc":
            n_nan, n_inf = int(np.isnan(view).sum()), int(np.isinf(view).sum())
            if n_nan or n_inf:
                bad.append(f"view {name!r} has {n_nan} NaN and {n_inf} inf values")
    if bad:
        raise ValueError(f"{arrays.source}: " + "; ".join(bad))


def _label_name(value: object) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


# ---------------------------------------------------------------- readers


def _read_mat(
    path: Path, views: Sequence[str], labels: str | None, id_column: str | None, require_labels: bool
) -> MultiViewArrays:
    content = _load_mat(path)
    ids = _pop_ids(content, id_column, path)
    keys = [key for key in content if not key.startswith("__")]
    numbered_keys = [key for key in keys if _MAT_SPLIT_VIEW.match(key)]
    if numbered_keys:
        numbers = sorted({int(match.group(1)) for key in numbered_keys if (match := _MAT_SPLIT_VIEW.match(key))})
        given = _mat_view_names(content, len(numbers), path) or []  # a list of len(numbers) names when a count is given
        names = dict(zip((f"x{k}" for k in numbers), given, strict=True))
        parts = _split_parts(content, _splits_present(numbered_keys, _MAT_SPLIT_VIEW, path))
        return _read_split_form(parts, path, views or tuple(names), labels, names)
    split_keys = [key for key in keys if _SPLIT_SUFFIX.match(key)]
    if split_keys and all(_SPLIT_SUFFIX.match(key) or key in VIEW_NAME_KEYS for key in keys):
        parts = _split_parts(content, _splits_present(split_keys, _SPLIT_SUFFIX, path))
        return _read_split_form(parts, path, views, labels)
    layout = find_layout(
        content,
        str(path),
        views=views,
        labels=labels,
        view_names=_mat_view_names(content, None, path),
        require_labels=require_labels,
    )
    return MultiViewArrays(layout.views, layout.labels, str(path), notes=layout.notes, ids=ids)


# What a data file may expand to when read: more is refused before any array is allocated
# (a few hundred kilobytes of zeros deflate from gigabytes). Real features compress a few times
# at most; the ratio bound applies above RATIO_FROM bytes, where an expansion starts to cost.
MAX_DATA_BYTES = 16 * 2**30
MAX_RATIO = 100
RATIO_FROM = 64 * 2**20
_MAT_COMPRESSED = 15  # miCOMPRESSED: a zlib stream holding one variable (MATLAB's -v7 files)
_CHUNK = 2**20


def check_expanded_size(path: Path, expanded: int, stored: int, what: str) -> None:
    """A ValueError when ``expanded`` bytes (read from ``stored`` bytes of ``path``) are more
    than :data:`MAX_DATA_BYTES`, or more than :data:`MAX_RATIO` times what they are stored in.
    """
    if expanded > MAX_DATA_BYTES:
        raise ValueError(
            f"{path}: {what} would take {expanded / 2**30:.1f} GiB once read, more than the "
            f"{MAX_DATA_BYTES / 2**30:.0f} GiB a data file may hold"
        )
    if expanded > RATIO_FROM and expanded > MAX_RATIO * max(stored, 1):
        raise ValueError(
            f"{path}: {what} would expand from {stored} to {expanded} bytes ({expanded / max(stored, 1):.0f}x, "
            f"more than {MAX_RATIO}x); refused as a decompression bomb"
        )


def _check_npz_sizes(path: Path) -> None:
    """Every array of the ``.npz`` at ``path`` within :func:`check_expanded_size`, from the zip's
    member headers and each array's own header, before any array is read.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            check_expanded_size(path, sum(m.file_size for m in members), path.stat().st_size, "its arrays")
            for member in members:
                check_expanded_size(path, member.file_size, member.compress_size, f"array {member.filename!r}")
                if not member.filename.endswith(".npy"):
                    continue  # numpy gives its bytes, bounded above; the layout names it as no array
                with archive.open(member) as handle:
                    try:
                        version = np.lib.format.read_magic(handle)
                        readers = {
                            (1, 0): np.lib.format.read_array_header_1_0,
                            (2, 0): np.lib.format.read_array_header_2_0,
                        }
                        shape, _, dtype = readers[version](handle)
                    except (ValueError, KeyError, SyntaxError) as error:
                        raise ValueError(
                            f"{path}: array {member.filename!r} has no readable .npy header ({error})"
                        ) from None
                nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if nbytes > member.file_size:
                    raise ValueError(
                        f"{path}: array {member.filename!r} declares shape {shape} ({nbytes} bytes) "
                        f"but holds {member.file_size} bytes"
                    )
    except (zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"cannot read {path} as a .npz file: {error}") from None


def _check_mat_sizes(path: Path) -> None:
    """The variables of the MATLAB v5/v7 file at ``path`` within :func:`check_expanded_size`:
    compressed ones are inflated chunk by chunk and counted, never held, before scipy reads them.
    """
    stored = path.stat().st_size
    expanded = 0
    with open(path, "rb") as handle:
        order = "<" if handle.read(128)[126:128] == b"IM" else ">"
        while len(tag := handle.read(8)) == 8:
            kind, size = struct.unpack(order + "II", tag)
            if kind >> 16:  # a small element: its data is in the tag
                continue
            if kind != _MAT_COMPRESSED:
                expanded += size
                handle.seek(size + (-size % 8), os.SEEK_CUR)
                continue
            inflate, left = zlib.decompressobj(), size
            while left > 0 and (chunk := handle.read(min(left, _CHUNK))):
                left -= len(chunk)
                while chunk:
                    try:
                        expanded += len(inflate.decompress(chunk, _CHUNK))
                    except zlib.error:
                        return  # scipy names the damage
                    chunk = inflate.unconsumed_tail
                    check_expanded_size(path, expanded, stored, "its variables")
    check_expanded_size(path, expanded, stored, "its variables")


def _read_npz(
    path: Path, views: Sequence[str], labels: str | None, id_column: str | None, require_labels: bool
) -> MultiViewArrays:
    _check_npz_sizes(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            content = {key: archive[key] for key in archive.files}
    except Exception as error:  # zip, pickle and OS errors alike: one clear message
        raise ValueError(f"cannot read {path} as a .npz file: {error}") from error
    ids = _pop_ids(content, id_column, path)
    keys = list(content)
    if any(_SPLIT_SUFFIX.match(key) for key in keys):
        stray = [key for key in keys if not _SPLIT_SUFFIX.match(key)]
        if stray:
            raise ValueError(f"{path}: split-form keys mixed with keys without _train/_val/_test: {stray}")
        parts = _split_parts(content, _splits_present(keys, _SPLIT_SUFFIX, path))
        return _read_split_form(parts, path, views, labels)
    # An .npz names its arrays: every matrix beside the labels is a view unless --views says otherwise.
    layout = find_layout(content, str(path), views=views, labels=labels, require_labels=require_labels)
    return MultiViewArrays(layout.views, layout.labels, str(path), notes=layout.notes, ids=ids)


def _split_parts(content: Mapping[str, object], splits: Sequence[str]) -> dict[str, dict[str, object]]:
    """``{split: {base key: value}}`` of the keys ``<base>_<split>``, splits in file order."""
    parts: dict[str, dict[str, object]] = {split: {} for split in splits}
    for key, value in content.items():
        match = _SPLIT_SUFFIX.match(key)
        if match and match.group(2) in parts:
            parts[match.group(2)][match.group(1)] = value
    return parts


def _read_split_form(
    parts: Mapping[str, Mapping[str, object]],
    path: Path,
    views: Sequence[str],
    labels: str | None,
    rename: Mapping[str, str] | None = None,
) -> MultiViewArrays:
    """Each split through :func:`find_layout`; later splits take the keys the first one used."""
    found: dict[str, tuple[dict[str, np.ndarray], np.ndarray]] = {}
    notes: list[str] = []
    for split, part in parts.items():
        layout = find_layout(part, f"{path} ({split} split)", views=views, labels=labels)
        notes = notes or [f"{split} split: {note}" for note in layout.notes]
        views, labels = layout.view_keys, layout.label_key
        named = {(rename or {}).get(name, name): view for name, view in layout.views.items()}
        assert layout.labels is not None  # find_layout requires them by default
        found[split] = (named, layout.labels)
    arrays = _assemble(found, path)
    arrays.notes = notes
    return arrays


def _load_mat(path: Path) -> dict[str, np.ndarray]:
    try:
        major, _ = scipy.io.matlab.matfile_version(str(path))
    except Exception as error:
        raise ValueError(f"cannot read {path} as a .mat file: {error}") from error
    if major == 2:
        raise ValueError(
            f"{path} is a MATLAB v7.3 (HDF5) file, which is not supported; re-save it in MATLAB with save(..., '-v7')"
        )
    if major == 1:
        _check_mat_sizes(path)
    try:
        return scipy.io.loadmat(str(path))
    except Exception as error:
        raise ValueError(f"cannot read {path} as a .mat file: {error}") from error


def _splits_present(keys: Sequence[str], pattern: re.Pattern[str], path: Path) -> list[str]:
    present = {match.group(2) for key in keys if (match := pattern.match(key))}
    if not {"train", "test"} <= present:
        raise ValueError(
            f"{path}: the split form needs train and test keys; found splits {sorted(present)} in {list(keys)}"
        )
    return [split for split in SPLIT_NAMES if split in present]


def _mat_view_names(content: Mapping[str, np.ndarray], count: int | None, path: Path) -> list[str] | None:
    """The view names a cell of strings in the file gives (``count`` of them, when known), else None."""
    key = next((key for key in VIEW_NAME_KEYS if key in content), None)
    if key is None:
        return None if count is None else [f"view{i}" for i in range(count)]
    names = [cell_string(item) for item in np.asarray(content[key]).ravel()]
    if len(set(names)) != len(names) or (count is not None and len(names) != count):
        expected = "distinct names" if count is None else f"{count} distinct names, one per view"
        raise ValueError(f"{path}: {key!r} gives view names {names}; expected {expected}")
    return names


def _assemble(parts: dict[str, tuple[dict[str, np.ndarray], np.ndarray]], path: Path) -> MultiViewArrays:
    """Check the splits' views agree, then stack the parts into one set of rows with split indices."""
    first_split, (first, _) = next(iter(parts.items()))
    widths = {name: view.shape[1] for name, view in first.items()}
    for split, (views, _) in parts.items():
        other = {name: view.shape[1] for name, view in views.items()}
        if other != widths:
            raise ValueError(
                f"{path}: views of the {split} split {other} differ from the {first_split} split's {widths}"
            )
    sizes = [len(labels) for _, labels in parts.values()]
    offsets = np.cumsum([0, *sizes])
    splits = {split: np.arange(offsets[i], offsets[i + 1]) for i, split in enumerate(parts)}
    views = {name: np.concatenate([parts[split][0][name] for split in parts]) for name in widths}
    labels = np.concatenate([labels for _, labels in parts.values()])
    return MultiViewArrays(views, labels, str(path), splits)
