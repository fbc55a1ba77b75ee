"""Multi-view feature files (``.mat``, ``.npz``) to train / validation / test splits (DESIGN.md 3).

File formats
------------
``.mat`` (MATLAB v5/v7, read with :func:`scipy.io.loadmat`):

* whole form: the views in a cell array ``X`` (1xM or Mx1; a plain numeric ``X`` is one view),
  labels under ``Y``, ``y``, ``gt`` or ``labels``, any shape N, 1xN or Nx1;
* split form, as in the trusted multi-view literature: ``x1_train``, ``x2_train``, ...,
  ``x1_test``, ... (optionally ``x1_val``, ...) with labels ``gt_train``, ``gt_test``
  (``gt_val``), or the same with any other label key (``Y_train``, ...);
* view names come from a cell array of strings under ``view_names`` or ``feas`` when the file
  has one; otherwise views are called ``view0``, ``view1``, ... in cell / ``x<k>`` order.

MATLAB v7.3 files are HDF5, which scipy cannot read; they are refused with an error that says
to re-save them with ``save(..., '-v7')`` (we do not depend on h5py).

``.npz`` (numpy): one array per view, the array's key is the view's name (in file order),
labels under ``labels``, ``y``, ``Y`` or ``gt``. Split form: every key ends in ``_train``,
``_val`` or ``_test`` (``pix_train``, ``labels_train``, ...).

Orientation: each view matrix may be samples x features or features x samples; the axis whose
length equals the number of labels is the sample axis. A square matrix (as many features as
samples) is read as samples x features, the layout of the literature's files.

Processing
----------
Labels are remapped to 0..C-1 in sorted order of the file's values, which are kept as
``class_names``. Without splits in the file, stratified splits are drawn by ``seed`` with
:data:`VAL_FRACTION` and :data:`TEST_FRACTION` of every class (at least one sample of each
class in each split). A file with only train and test gets its validation split carved,
stratified, from its training split (``val_fraction`` of the training split). Features are
min-max scaled per view and per feature with the minimum and range of the TRAINING split only,
so validation and test values may leave [0, 1]; constant training columns get range 1.

Checks (ValueError naming the file, split, view and row): no NaN or inf in the file; none after
scaling and the cast to float32 either (a test value of 1e300, or one far outside a narrow
training range, overflows float32); at least two classes in the training split, and no class
in the validation or test split that training never sees (a model cannot learn it, and its
test accuracy would be 0 by construction).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse
import torch

from iidfusion.data.base import DatasetSplits, MultiViewData

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
VAL_FRACTION = 0.1
TEST_FRACTION = 0.2
MAT_LABEL_KEYS: tuple[str, ...] = ("Y", "y", "gt", "labels")
NPZ_LABEL_KEYS: tuple[str, ...] = ("labels", "y", "Y", "gt")
VIEW_NAME_KEYS: tuple[str, ...] = ("view_names", "feas")

_MAT_SPLIT_VIEW = re.compile(r"^[xX](\d+)_(train|val|test)$")
_SPLIT_SUFFIX = re.compile(r"^(.+)_(train|val|test)$")


@dataclass
class MultiViewArrays:
    """A multi-view file's content before label encoding, splitting and scaling.

    ``views`` are (N, d_m) arrays with samples as rows, ``labels`` the file's own label values,
    ``splits`` the row indices of each split when the file defines them (``None`` otherwise).
    """

    views: dict[str, np.ndarray]
    labels: np.ndarray
    source: str
    splits: dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        if not self.views:
            raise ValueError(f"{self.source}: no views")
        n = len(self.labels)
        counts = {name: view.shape[0] for name, view in self.views.items()}
        if any(count != n for count in counts.values()):
            listed = ", ".join(f"{name!r} {count}" for name, count in counts.items())
            raise ValueError(f"{self.source}: views have different sample counts ({listed}) for {n} labels")

    @classmethod
    def from_data(cls, data: MultiViewData, source: str) -> MultiViewArrays:
        """Wrap in-memory tensors (e.g. the synthetic benchmark) so they split like a file."""
        views = {name: view.detach().cpu().numpy() for name, view in data.views.items()}
        return cls(views, data.labels.detach().cpu().numpy(), source)


def read_multiview_file(path: str | Path) -> MultiViewArrays:
    """Read a ``.mat`` or ``.npz`` multi-view file (formats in the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if not path.is_file():
        raise ValueError(f"{path} is not a file")
    readers = {".mat": _read_mat, ".npz": _read_npz}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; expected one of {sorted(readers)}")
    return reader(path)


def encode_labels(labels: np.ndarray, source: str = "labels") -> tuple[np.ndarray, tuple[str, ...]]:
    """Codes 0..C-1 in sorted order of the label values, and the values as class names."""
    labels = np.asarray(labels)
    if labels.dtype.kind in "fc" and not np.all(np.isfinite(labels)):
        raise ValueError(f"{source}: {int(np.sum(~np.isfinite(labels)))} labels are NaN or inf")
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
        return {name: (view - self.minimum[name]) / self.span[name] for name, view in views.items()}


def make_splits(
    arrays: MultiViewArrays,
    name: str,
    *,
    seed: int = 0,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = TEST_FRACTION,
    scale: bool = True,
) -> DatasetSplits:
    """Encode labels, split (the file's splits, else stratified by ``seed``), scale on train."""
    _check_fractions(val_fraction, test_fraction)
    _check_finite(arrays)
    codes, class_names = encode_labels(arrays.labels, arrays.source)
    index = split_indices(arrays, codes, class_names, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    _check_split_classes(index, codes, class_names, arrays.source)
    views = {
        part: {view: array[rows].astype(np.float64) for view, array in arrays.views.items()}
        for part, rows in index.items()
    }
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below, as one error
        if scale:
            scaler = MinMaxScaler.fit(views["train"])
            views = {part: scaler.transform(part_views) for part, part_views in views.items()}
        data = {
            part: MultiViewData(
                {view: torch.from_numpy(array.astype(np.float32)) for view, array in views[part].items()},
                torch.from_numpy(codes[rows]),
            )
            for part, rows in index.items()
        }
    _check_finite_after_scaling(data, arrays.source)
    return DatasetSplits(name, data["train"], data["val"], data["test"], len(class_names), class_names)


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
                f"{source}: class {shown} of the {part} split has no training sample; every class needs training samples"
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


def _read_mat(path: Path) -> MultiViewArrays:
    content = _load_mat(path)
    keys = [key for key in content if not key.startswith("__")]
    split_keys = [key for key in keys if _MAT_SPLIT_VIEW.match(key)]
    if split_keys:
        parts = {}
        for split in _splits_present(split_keys, _MAT_SPLIT_VIEW, path):
            numbered = sorted(
                (int(match.group(1)), key)
                for key in split_keys
                if (match := _MAT_SPLIT_VIEW.match(key)) and match.group(2) == split
            )
            labels = _find_labels(content, [f"{key}_{split}" for key in MAT_LABEL_KEYS], path)
            parts[split] = ([content[key] for _, key in numbered], labels)
        names = _mat_view_names(content, len(next(iter(parts.values()))[0]), path)
        return _assemble({split: (dict(zip(names, views)), labels) for split, (views, labels) in parts.items()}, path)
    cell_key = next((key for key in ("X", "x") if key in content), None)
    if cell_key is None:
        raise ValueError(
            f"{path}: no views found; expected a cell array 'X' or split keys 'x1_train', 'x1_test', ...; "
            f"keys in the file: {keys}"
        )
    cell = content[cell_key]
    views = list(cell.ravel()) if cell.dtype == object else [cell]
    labels = _find_labels(content, list(MAT_LABEL_KEYS), path)
    names = _mat_view_names(content, len(views), path)
    return _assemble({"all": (dict(zip(names, views)), labels)}, path)


def _read_npz(path: Path) -> MultiViewArrays:
    try:
        with np.load(path, allow_pickle=False) as archive:
            content = {key: archive[key] for key in archive.files}
    except Exception as error:  # zip, pickle and OS errors alike: one clear message
        raise ValueError(f"cannot read {path} as a .npz file: {error}") from error
    keys = list(content)
    if any(_SPLIT_SUFFIX.match(key) for key in keys):
        stray = [key for key in keys if not _SPLIT_SUFFIX.match(key)]
        if stray:
            raise ValueError(f"{path}: split-form keys mixed with keys without _train/_val/_test: {stray}")
        parts = {}
        for split in _splits_present(keys, _SPLIT_SUFFIX, path):
            in_split = {
                m.group(1): content[key] for key in keys if (m := _SPLIT_SUFFIX.match(key)) and m.group(2) == split
            }
            parts[split] = _npz_views_and_labels(in_split, path, f" in the {split} split")
        return _assemble(parts, path)
    return _assemble({"all": _npz_views_and_labels(content, path, "")}, path)


def _npz_views_and_labels(
    content: dict[str, np.ndarray], path: Path, where: str
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    label_keys = [key for key in NPZ_LABEL_KEYS if key in content]
    labels = _find_labels(content, label_keys or list(NPZ_LABEL_KEYS), path)
    views = {key: value for key, value in content.items() if key not in label_keys}
    if not views:
        raise ValueError(f"{path}: no views{where}; keys found: {list(content)}")
    return views, labels


def _load_mat(path: Path) -> dict[str, np.ndarray]:
    try:
        major, _ = scipy.io.matlab.matfile_version(str(path))
    except Exception as error:
        raise ValueError(f"cannot read {path} as a .mat file: {error}") from error
    if major == 2:
        raise ValueError(
            f"{path} is a MATLAB v7.3 (HDF5) file, which is not supported; re-save it in MATLAB with save(..., '-v7')"
        )
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


def _find_labels(content: Mapping[str, np.ndarray], candidates: Sequence[str], path: Path) -> np.ndarray:
    found = [key for key in candidates if key in content]
    if not found:
        keys = [key for key in content if not key.startswith("__")]
        raise ValueError(f"{path}: no labels; expected one of {list(candidates)}, keys found: {keys}")
    vectors = {key: _label_vector(content[key], key, path) for key in found}
    first = vectors[found[0]]
    for key in found[1:]:
        if not np.array_equal(vectors[key], first):
            raise ValueError(f"{path}: label keys {found} disagree; keep one")
    return first


def _label_vector(value: np.ndarray, key: str, path: Path) -> np.ndarray:
    value = np.asarray(value)
    if value.dtype == object:  # a MATLAB cell array of strings
        value = np.array([_cell_string(item) for item in value.ravel()]).reshape(value.shape)
    if value.ndim == 1 or (value.ndim == 2 and 1 in value.shape):
        return value.reshape(-1)
    raise ValueError(f"{path}: labels under {key!r} have shape {value.shape}; expected N, 1xN or Nx1")


def _cell_string(item: object) -> str:
    return "".join(str(part) for part in np.asarray(item).ravel())


def _mat_view_names(content: Mapping[str, np.ndarray], count: int, path: Path) -> list[str]:
    key = next((key for key in VIEW_NAME_KEYS if key in content), None)
    if key is None:
        return [f"view{i}" for i in range(count)]
    names = [_cell_string(item) for item in np.asarray(content[key]).ravel()]
    if len(names) != count or len(set(names)) != count:
        raise ValueError(f"{path}: {key!r} gives view names {names}; expected {count} distinct names, one per view")
    return names


def _assemble(parts: dict[str, tuple[dict[str, np.ndarray], np.ndarray]], path: Path) -> MultiViewArrays:
    """Orient and check each part's views, then stack the parts into one set of rows with split indices."""
    oriented = {split: _orient_views(views, labels, path, split) for split, (views, labels) in parts.items()}
    first_split, first = next(iter(oriented.items()))
    widths = {name: view.shape[1] for name, view in first.items()}
    for split, views in oriented.items():
        other = {name: view.shape[1] for name, view in views.items()}
        if other != widths:
            raise ValueError(
                f"{path}: views of the {split} split {other} differ from the {first_split} split's {widths}"
            )
    if list(parts) == ["all"]:
        return MultiViewArrays(first, parts["all"][1], str(path))
    sizes = [len(labels) for _, labels in parts.values()]
    offsets = np.cumsum([0, *sizes])
    splits = {split: np.arange(offsets[i], offsets[i + 1]) for i, split in enumerate(parts)}
    views = {name: np.concatenate([oriented[split][name] for split in parts]) for name in widths}
    labels = np.concatenate([labels for _, labels in parts.values()])
    return MultiViewArrays(views, labels, str(path), splits)


def _orient_views(views: dict[str, np.ndarray], labels: np.ndarray, path: Path, split: str) -> dict[str, np.ndarray]:
    """Rows as samples: the axis as long as the labels is the sample axis (rows when square)."""
    n = len(labels)
    oriented: dict[str, np.ndarray] = {}
    for name, view in views.items():
        if scipy.sparse.issparse(view):
            view = view.toarray()
        view = np.asarray(view)
        if view.dtype.kind not in "biuf":
            raise ValueError(f"{path}: view {name!r} holds {view.dtype} values, not numbers")
        if view.ndim == 1:
            view = view.reshape(-1, 1)
        if view.ndim != 2:
            raise ValueError(f"{path}: view {name!r} has shape {view.shape}; expected a 2-D matrix")
        if view.shape[0] == n:
            oriented[name] = view
        elif view.shape[1] == n:
            oriented[name] = view.T
    if len(oriented) < len(views):
        where = "" if split == "all" else f" in the {split} split"
        shapes = ", ".join(f"{name!r} {np.shape(view)}" for name, view in views.items())
        raise ValueError(
            f"{path}: views have different sample counts{where}: {n} labels, view shapes {shapes}; "
            f"each view needs {n} rows (samples x features) or {n} columns (features x samples)"
        )
    return oriented
