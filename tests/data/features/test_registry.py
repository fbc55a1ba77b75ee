"""Data sets by name or path: the bundled Handwritten set, the synthetic benchmark, describe()."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from iidfusion.data import available_datasets, describe, load_dataset, register_dataset
from iidfusion.data.features.multiview import read_multiview_file
from iidfusion.data.features.registry import SYNTHETIC_DATA_SEED, SYNTHETIC_NUM_SAMPLES
from iidfusion.data.features.synthetic import SyntheticConfig, generate_synthetic

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
# handwritten_excerpt.mat: rows 0, 100, ..., 1900 of the source .mat (tests/fixtures/make_excerpts.py).
EXCERPT_ROWS = slice(0, None, 100)


def all_rows(splits) -> dict[str, np.ndarray]:
    """Every split's rows of each view, stacked (for comparisons that ignore the split)."""
    parts = [splits.train, splits.val, splits.test]
    return {name: np.concatenate([part.views[name].numpy() for part in parts]) for name in splits.view_dims}


def test_available_datasets() -> None:
    assert {"handwritten", "synthetic"} <= set(available_datasets())


def test_bundled_handwritten_shape_and_stratified_splits() -> None:
    splits = load_dataset("handwritten", seed=0)
    assert splits.view_dims == {"pix": 240, "fou": 76, "fac": 216, "zer": 47, "kar": 64, "mor": 6}
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1400, 200, 400)
    assert splits.num_classes == 10 and splits.class_names == tuple(str(d) for d in range(10))
    for part, per_class in ((splits.train, 140), (splits.val, 20), (splits.test, 40)):
        assert torch.bincount(part.labels, minlength=10).tolist() == [per_class] * 10
    train = splits.train.views["fac"]
    assert train.min() == 0 and train.max() == 1


def test_bundled_handwritten_matches_an_excerpt_of_its_source() -> None:
    """The bundled rows are the source's (float32 of its float64 values), in its order, with its labels."""
    bundled = read_multiview_file(Path(str(resources.files("iidfusion.data.features") / "bundled" / "handwritten.npz")))
    source = read_multiview_file(FIXTURES / "handwritten_excerpt.mat")
    assert list(source.views) == ["pixel", "fourier", "profile", "zer", "kar", "mor"]  # from its 'feas'
    assert len(source.labels) == 20
    np.testing.assert_array_equal(bundled.labels[EXCERPT_ROWS], source.labels)
    for mine, theirs in zip(bundled.views.values(), source.views.values(), strict=True):
        assert mine.shape[1] == theirs.shape[1]
        np.testing.assert_array_equal(mine[EXCERPT_ROWS], theirs.astype(mine.dtype))
        np.testing.assert_allclose(mine[EXCERPT_ROWS].astype(np.float64), theirs, rtol=1e-7, atol=0)


def test_seed_changes_the_split_not_the_data() -> None:
    a, b = load_dataset("handwritten", seed=0), load_dataset("handwritten", seed=1)
    assert not torch.equal(a.test.views["mor"], b.test.views["mor"])
    assert torch.equal(load_dataset("handwritten", seed=1).test.views["mor"], b.test.views["mor"])


def test_synthetic_by_name_is_the_generator_default_split() -> None:
    splits = load_dataset("synthetic", seed=2, scale=False)
    data = generate_synthetic(SyntheticConfig(), SYNTHETIC_NUM_SAMPLES, SYNTHETIC_DATA_SEED)
    assert tuple(splits.view_dims) == data.view_names
    assert len(splits.train) + len(splits.val) + len(splits.test) == SYNTHETIC_NUM_SAMPLES
    assert splits.num_classes == int(data.labels.max()) + 1
    for name, rows in all_rows(splits).items():
        expected = np.sort(data.views[name].numpy(), axis=0)
        np.testing.assert_array_equal(np.sort(rows, axis=0), expected)


def test_file_paths_load_as_str_or_path(tmp_path: Path) -> None:
    labels = np.repeat([0, 1], 10)
    np.savez(tmp_path / "mine.npz", a=np.arange(40.0).reshape(20, 2), labels=labels)
    for given in (tmp_path / "mine.npz", str(tmp_path / "mine.npz")):
        splits = load_dataset(given)
        assert splits.name == "mine" and splits.view_dims == {"a": 2}


def test_unknown_name_lists_the_bundled_sets() -> None:
    with pytest.raises(ValueError, match=r"unknown data set 'handwriten'.*handwritten, synthetic"):
        load_dataset("handwriten")
    with pytest.raises(FileNotFoundError, match=r"no such file: missing\.mat \(bundled data sets: handwritten"):
        load_dataset("missing.mat")


def test_register_dataset_refuses_a_taken_name() -> None:
    with pytest.raises(ValueError, match="already registered as 'handwritten'"):
        register_dataset("handwritten", "again", lambda: None)


def test_describe_bundled_and_file() -> None:
    text = describe("handwritten")
    assert "views: 6" in text and "pix  240 features" in text and "mor  6 features" in text
    assert "samples: 2000 (train 1400, val 200, test 400; stratified 0.7/0.1/0.2 by seed 0)" in text
    assert "classes: 10 (0: 200, 1: 200," in text
    text = describe(FIXTURES / "handwritten_6views_excerpt.mat")
    assert "view0  240 features" in text
    assert "samples: 30 (train 10, val 10, test 10; train/test from the file" in text
    assert "classes: 10 (1: 3," in text


def test_the_many_view_benchmark_has_twelve_views_and_27_classes() -> None:
    splits = load_dataset("synthetic-many-views", seed=0)
    assert len(splits.view_dims) == 12 and set(splits.view_dims.values()) == {128}
    assert splits.num_classes == 27 and len(splits.train) + len(splits.val) + len(splits.test) == 2400
