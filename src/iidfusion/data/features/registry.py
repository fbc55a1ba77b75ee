"""Data sets by name or by path: ``load_dataset``, ``available_datasets``, ``describe``.

A name in the registry wins over a file of the same name; anything else is read as a
``.mat``, ``.npz``, CSV or Parquet file (formats in :mod:`iidfusion.data.features.multiview`).
Arrays in memory are written to such a file first (:func:`save_arrays`), so that every
process of a run (``jobs > 1``) reads the same data by path. Bundled sets:

* ``handwritten``: UCI Multiple Features (Duin; CC BY 4.0), 2,000 digits, 6 views, 10 classes,
  from ``bundled/handwritten.npz`` (see ``bundled/README.md``); stratified splits by seed.
* ``synthetic``: the theory benchmark (:mod:`iidfusion.data.features.synthetic`) with its default
  :class:`~iidfusion.data.features.synthetic.SyntheticConfig`, :data:`SYNTHETIC_NUM_SAMPLES` samples drawn
  with the fixed :data:`SYNTHETIC_DATA_SEED`, so that, as for ``handwritten``, the name means
  one fixed data set and the ``seed`` of :func:`load_dataset` only changes the split.
* ``synthetic-many-views``: the same benchmark with 12 weak views and 27 classes
  (:data:`SYNTHETIC_MANY_VIEWS`, 2,400 samples), the many-view case.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from iidfusion.core.registry import Registry
from iidfusion.data.features.base import DatasetSplits
from iidfusion.data.features.multiview import (
    TEST_FRACTION,
    VAL_FRACTION,
    MinMaxScaler,
    MultiViewArrays,
    PassedOverWarning,
    encode_labels,
    make_splits,
    read_multiview_file,
)
from iidfusion.data.features.synthetic import SyntheticConfig, generate_synthetic
from iidfusion.data.raw.feature_cache import load_feature_cache

SYNTHETIC_NUM_SAMPLES = 2000
SYNTHETIC_DATA_SEED = 0


@dataclass(frozen=True)
class RegisteredDataset:
    """A named data set: a one-line description and a reader of its arrays."""

    name: str
    description: str
    read: Callable[[], MultiViewArrays]


_REGISTRY: Registry[RegisteredDataset] = Registry("data set")


def register_dataset(name: str, description: str, read: Callable[[], MultiViewArrays]) -> None:
    """Make ``read`` loadable as ``name`` by :func:`load_dataset` and the command line."""
    _REGISTRY.register(name, RegisteredDataset(name, description, read))


def available_datasets() -> tuple[str, ...]:
    """Names :func:`load_dataset` accepts besides file paths."""
    return tuple(_REGISTRY)


def load_dataset(
    name_or_path: str | Path,
    *,
    seed: int = 0,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = TEST_FRACTION,
    scale: bool | MinMaxScaler = True,
    views: Sequence[str] = (),
    labels: str | None = None,
    id_column: str | None = None,
) -> DatasetSplits:
    """Train / val / test splits of a bundled data set or a multi-view file, scaled on train.

    ``seed`` draws the stratified splits (and the validation split carved from a file's
    training split); fractions and scaling are described in :mod:`iidfusion.data.features.multiview`.
    ``views`` and ``labels`` name a file's arrays when its layout is not detected (a bundled
    set: ``views`` picks some of its views); ``id_column`` names the rows' ids (kept out of the
    views; ``splits.ids``, and ``splits.rows`` the file's row of every sample). A folder written
    by ``iidfusion extract`` is read with its noisy test splits
    (:func:`~iidfusion.data.raw.feature_cache.load_feature_cache`).
    """
    if Path(name_or_path).is_dir():
        if views or labels:
            raise ValueError(f"{name_or_path}: a feature cache names its views and labels; drop --views / --labels")
        return load_feature_cache(name_or_path, seed=seed, scale=scale)
    name, arrays = read_dataset(name_or_path, views, labels, id_column)
    return make_splits(arrays, name, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, scale=scale)


def describe(
    name_or_path: str | Path,
    *,
    seed: int = 0,
    views: Sequence[str] = (),
    labels: str | None = None,
    id_column: str | None = None,
) -> str:
    """A short text for ``iidfusion datasets``: views and widths, samples, classes, splits, and
    for a file what the layout detection picked (its notes).
    """
    with warnings.catch_warnings():  # the notes, printed below, name what the file's layout passed over
        warnings.simplefilter("ignore", PassedOverWarning)
        name, arrays = read_dataset(name_or_path, views, labels, id_column)
    splits = make_splits(arrays, name, seed=seed, scale=False)
    assert arrays.labels is not None  # make_splits refuses data without labels
    registered = (
        _REGISTRY.get(str(name_or_path)) if isinstance(name_or_path, str) and name_or_path in _REGISTRY else None
    )
    codes, class_names = encode_labels(arrays.labels, arrays.source)
    counts = np.bincount(codes, minlength=len(class_names))
    if arrays.splits is None:
        origin = f"stratified {1 - VAL_FRACTION - TEST_FRACTION:g}/{VAL_FRACTION:g}/{TEST_FRACTION:g} by seed {seed}"
    elif "val" in arrays.splits:
        origin = "train/val/test from the file"
    else:
        origin = f"train/test from the file, val {VAL_FRACTION:g} of train by seed {seed}"
    width = max(len(view) for view in splits.view_dims)
    lines = [
        f"{name}: {registered.description if registered else arrays.source}",
        f"views: {len(splits.view_dims)}",
        *(f"  {view:<{width}}  {dim} feature{'' if dim == 1 else 's'}" for view, dim in splits.view_dims.items()),
        f"samples: {len(arrays.labels)} (train {len(splits.train)}, val {len(splits.val)}, "
        f"test {len(splits.test)}; {origin})",
        f"classes: {splits.num_classes} ("
        + ", ".join(f"{label}: {count}" for label, count in zip(class_names, counts.tolist(), strict=True))
        + ")",
        *(["found:", *(f"  {note}" for note in arrays.notes)] if arrays.notes else []),
    ]
    return "\n".join(lines)


def read_dataset(
    name_or_path: str | Path,
    views: Sequence[str] = (),
    labels: str | None = None,
    id_column: str | None = None,
    *,
    require_labels: bool = True,
) -> tuple[str, MultiViewArrays]:
    """The name and the arrays of a bundled data set or a file, every row in file order and
    unsplit (what ``iidfusion predict`` reads); ``require_labels=False``: they may have none.
    """
    if isinstance(name_or_path, str) and name_or_path in _REGISTRY:
        if labels or id_column:
            flag = "--labels" if labels else "--id-column"
            raise ValueError(f"{flag} applies to files; the bundled data set {name_or_path!r} has its labels and rows")
        return name_or_path, _select_views(_REGISTRY.get(name_or_path).read(), views)
    path = Path(name_or_path)
    if path.exists():
        arrays = read_multiview_file(
            path, views=views, labels=labels, id_column=id_column, require_labels=require_labels
        )
        return path.stem, arrays
    known = ", ".join(_REGISTRY)
    if path.suffix or len(path.parts) > 1:
        raise FileNotFoundError(f"no such file: {path} (bundled data sets: {known})")
    raise ValueError(f"unknown data set {str(name_or_path)!r}: not a bundled name ({known}) and not a file")


def _select_views(arrays: MultiViewArrays, views: Sequence[str]) -> MultiViewArrays:
    unknown = [view for view in views if view not in arrays.views]
    if unknown:
        raise ValueError(f"{arrays.source}: no view {unknown[0]!r}; views: {list(arrays.views)}")
    if views:
        arrays.views = {view: arrays.views[view] for view in views}
    return arrays


def _read_handwritten() -> MultiViewArrays:
    with resources.as_file(resources.files("iidfusion.data.features").joinpath("bundled/handwritten.npz")) as path:
        arrays = read_multiview_file(path)
    arrays.source = "handwritten"
    return arrays


def _read_synthetic() -> MultiViewArrays:
    data = generate_synthetic(SyntheticConfig(), SYNTHETIC_NUM_SAMPLES, SYNTHETIC_DATA_SEED)
    return MultiViewArrays.from_data(data, source="synthetic")


# Many weak views: 12 modalities, 27 classes, 8 relevant among 128 dimensions per view. Averaging
# so many views is where intermediate fusion can stay at chance (docs/evidence.md).
SYNTHETIC_MANY_VIEWS: dict[str, Any] = {
    "num_modalities": 12,
    "num_classes": 27,
    "relevant_dims": 8,
    "noise_dims": 120,
    "class_separation": 3.0,
    "corrupt_fraction": 0.3,
    "shift": 2.0,
}


def _read_synthetic_many_views() -> MultiViewArrays:
    data = generate_synthetic(SyntheticConfig(**SYNTHETIC_MANY_VIEWS), 2400, seed=1)
    return MultiViewArrays.from_data(data, source="synthetic-many-views")


register_dataset(
    "handwritten",
    "UCI Multiple Features (handwritten digits; R. P. W. Duin, UCI ML Repository, CC BY 4.0)",
    _read_handwritten,
)
register_dataset(
    "synthetic",
    "synthetic multi-view benchmark of iidfusion.data.features.synthetic (default config)",
    _read_synthetic,
)
register_dataset(
    "synthetic-many-views",
    "synthetic benchmark with 12 weak views and 27 classes (iidfusion.data.features.registry.SYNTHETIC_MANY_VIEWS)",
    _read_synthetic_many_views,
)
