"""Readers of multi-view .mat / .npz files, label encoding, stratified splits, scaling, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from iidfusion.data.features.multiview import (
    MinMaxScaler,
    MultiViewArrays,
    encode_labels,
    make_splits,
    read_multiview_file,
    split_indices,
    stratified_split,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def cell(*arrays: np.ndarray) -> np.ndarray:
    """A 1xM MATLAB cell array (a numpy object array; filled one by one so equal shapes do not merge)."""
    out = np.empty((1, len(arrays)), dtype=object)
    for i, array in enumerate(arrays):
        out[0, i] = array
    return out


def toy_views(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat([1, 2, 3], n // 3)
    return rng.normal(size=(n, 4)), rng.uniform(5, 9, size=(n, 3)), labels


def write_mat(tmp_path: Path, content: dict, name: str = "toy.mat") -> Path:
    path = tmp_path / name
    scipy.io.savemat(path, content)
    return path


@pytest.mark.parametrize("label_key", ["Y", "y", "gt", "labels"])
@pytest.mark.parametrize("label_shape", ["N", "1xN", "Nx1"])
def test_mat_whole_form_every_label_key_and_shape(tmp_path: Path, label_key: str, label_shape: str) -> None:
    a, b, labels = toy_views()
    shaped = {"N": labels, "1xN": labels.reshape(1, -1), "Nx1": labels.reshape(-1, 1)}[label_shape]
    arrays = read_multiview_file(write_mat(tmp_path, {"X": cell(a, b), label_key: shaped}))
    assert list(arrays.views) == ["view0", "view1"]
    np.testing.assert_array_equal(arrays.views["view0"], a)
    np.testing.assert_array_equal(arrays.views["view1"], b)
    np.testing.assert_array_equal(arrays.labels, labels)
    assert arrays.splits is None


def test_mat_features_by_samples_orientation_is_transposed(tmp_path: Path) -> None:
    a, b, labels = toy_views()
    rows = read_multiview_file(write_mat(tmp_path, {"X": cell(a, b), "Y": labels}, "rows.mat"))
    cols = read_multiview_file(write_mat(tmp_path, {"X": cell(a.T, b), "Y": labels}, "cols.mat"))
    for name in rows.views:
        np.testing.assert_array_equal(rows.views[name], cols.views[name])


def test_square_view_is_read_as_samples_by_features(tmp_path: Path) -> None:
    labels = np.repeat([0, 1], 3)
    square = np.arange(36.0).reshape(6, 6)
    arrays = read_multiview_file(write_mat(tmp_path, {"X": cell(square), "y": labels}))
    np.testing.assert_array_equal(arrays.views["view0"], square)


def test_mat_view_names_from_the_file(tmp_path: Path) -> None:
    a, b, labels = toy_views()
    names = cell(np.array(["pixel"]), np.array(["fourier"]))
    arrays = read_multiview_file(write_mat(tmp_path, {"X": cell(a, b), "Y": labels, "view_names": names}))
    assert list(arrays.views) == ["pixel", "fourier"]


def test_mat_split_form_of_an_excerpt_of_the_literatures_handwritten_file() -> None:
    """An excerpt of the trusted multi-view literature's file: 2 training and 1 test sample per digit."""
    path = FIXTURES / "handwritten_6views_excerpt.mat"
    content = scipy.io.loadmat(path)
    splits = make_splits(read_multiview_file(path), "hw6", seed=3, scale=False)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (10, 10, 10)
    assert splits.view_dims == {"view0": 240, "view1": 76, "view2": 216, "view3": 47, "view4": 64, "view5": 6}
    assert splits.class_names == tuple(str(c) for c in range(1, 11))
    # The file's test split is kept as is, in order; labels 1..10 become 0..9.
    np.testing.assert_array_equal(splits.test.views["view1"].numpy(), content["x2_test"].astype(np.float32))
    np.testing.assert_array_equal(splits.test.labels.numpy(), content["gt_test"].ravel() - 1)
    # The validation split is carved from the file's train split, stratified: one of each class.
    assert torch.bincount(splits.val.labels).tolist() == [1] * 10
    train_rows = {row.tobytes() for row in content["x1_train"].astype(np.float32)}
    assert all(row.tobytes() in train_rows for row in splits.val.views["view0"].numpy())


def test_mat_split_form_with_val_keys_keeps_the_files_splits(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    content = {}
    sizes = {"train": 12, "val": 4, "test": 6}
    for split, n in sizes.items():
        content[f"x1_{split}"] = rng.normal(size=(n, 3))
        content[f"x2_{split}"] = rng.normal(size=(2, n))  # features x samples
        content[f"gt_{split}"] = np.arange(n) % 2
    splits = make_splits(read_multiview_file(write_mat(tmp_path, content)), "toy", scale=False)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 4, 6)
    np.testing.assert_allclose(splits.val.views["view1"].numpy(), content["x2_val"].T.astype(np.float32))


def test_val_is_carved_from_train_stratified(tmp_path: Path) -> None:
    content = {"x1_train": np.ones((20, 2)), "gt_train": np.arange(20) % 2, "gt_test": [1, 1, 0]}
    content["x1_test"] = np.ones((3, 2))
    splits = make_splits(read_multiview_file(write_mat(tmp_path, content)), "toy", val_fraction=0.2)
    assert splits.num_classes == 2
    assert torch.bincount(splits.val.labels, minlength=2).tolist() == [2, 2]
    assert torch.bincount(splits.train.labels, minlength=2).tolist() == [8, 8]


def test_classes_are_checked_per_split(tmp_path: Path) -> None:
    """A file's training split with one class, or a test class that training never sees, is refused
    (it trained to 50 % and to 0 % on the unseen class before)."""
    one_class = {
        "x1_train": np.ones((10, 2)),
        "gt_train": np.zeros(10),
        "x1_test": np.ones((4, 2)),
        "gt_test": [0, 1, 0, 1],
    }
    with pytest.raises(
        ValueError, match=r"one\.mat: the training split has a single class \(0\); it needs at least two"
    ):
        make_splits(read_multiview_file(write_mat(tmp_path, one_class, "one.mat")), "one")
    unseen = {
        "x1_train": np.ones((20, 2)),
        "gt_train": np.arange(20) % 2,
        "x1_test": np.ones((3, 2)),
        "gt_test": [2, 2, 0],
    }
    with pytest.raises(ValueError, match=r"unseen\.mat: class '2' of the test split has no training sample"):
        make_splits(read_multiview_file(write_mat(tmp_path, unseen, "unseen.mat")), "unseen")


@pytest.mark.parametrize("scale", [True, False])
def test_values_that_overflow_float32_are_refused_after_scaling(tmp_path: Path, scale: bool) -> None:
    """1e300 is finite in the file; scaled (or not) and cast to float32 it was inf in the test split."""
    rng = np.random.default_rng(0)
    a, b, labels = rng.normal(size=(60, 3)), rng.normal(size=(60, 2)), np.arange(60) % 3
    arrays = MultiViewArrays({"a": a, "b": b}, labels, "big.npz")
    index = split_indices(arrays, *encode_labels(labels), seed=0, val_fraction=0.1, test_fraction=0.2)
    a[index["test"][1], 2] = 1e300
    with pytest.raises(
        ValueError, match=r"big\.npz: view 'a' of the test split has 1 values beyond float32's range .*row 1 "
    ):
        make_splits(arrays, "big", scale=scale)


def test_mat_split_views_are_ordered_numerically(tmp_path: Path) -> None:
    content = {f"x{k}_{split}": np.full((4, k), float(k)) for k in (1, 2, 10) for split in ("train", "test")}
    content |= {"gt_train": np.array([0, 1, 0, 1]), "gt_test": np.array([0, 1, 0, 1])}
    arrays = read_multiview_file(write_mat(tmp_path, content))
    assert [view.shape[1] for view in arrays.views.values()] == [1, 2, 10]


@pytest.mark.parametrize("label_key", ["labels", "y", "Y", "gt"])
def test_npz_whole_form(tmp_path: Path, label_key: str) -> None:
    a, b, labels = toy_views()
    np.savez(tmp_path / "toy.npz", rgb=a, depth=b, **{label_key: labels})
    arrays = read_multiview_file(tmp_path / "toy.npz")
    assert list(arrays.views) == ["rgb", "depth"]
    np.testing.assert_array_equal(arrays.views["depth"], b)
    np.testing.assert_array_equal(arrays.labels, labels)


def test_npz_split_form(tmp_path: Path) -> None:
    a, b, labels = toy_views()
    np.savez(
        tmp_path / "toy.npz",
        rgb_train=a[:40],
        depth_train=b[:40],
        labels_train=labels[:40],
        rgb_test=a[40:],
        depth_test=b[40:],
        labels_test=labels[40:],
    )
    arrays = read_multiview_file(tmp_path / "toy.npz")
    np.testing.assert_array_equal(arrays.splits["train"], np.arange(40))
    np.testing.assert_array_equal(arrays.splits["test"], np.arange(40, 60))
    np.testing.assert_array_equal(arrays.views["rgb"], a)


def test_labels_remapped_with_original_values_as_class_names() -> None:
    codes, names = encode_labels(np.array([11.0, 3.0, 7.0, 3.0]))
    assert codes.tolist() == [2, 0, 1, 0]
    assert names == ("3", "7", "11")
    codes, names = encode_labels(np.array(["cat", "dog", "cat"]))
    assert codes.tolist() == [0, 1, 0] and names == ("cat", "dog")


def test_string_labels_from_a_mat_cell_array(tmp_path: Path) -> None:
    a, _, labels = toy_views()
    text = cell(*[np.array([f"class{c}"]) for c in labels])
    splits = make_splits(read_multiview_file(write_mat(tmp_path, {"X": cell(a), "labels": text})), "toy")
    assert splits.class_names == ("class1", "class2", "class3")


def test_stratified_split_keeps_class_proportions_and_is_seeded() -> None:
    codes = np.repeat(np.arange(3), [100, 50, 30])
    parts = stratified_split(codes, {"val": 0.1, "test": 0.2}, "train", seed=0)
    assert np.array_equal(np.sort(np.concatenate(list(parts.values()))), np.arange(180))
    for part, fraction in {"train": 0.7, "val": 0.1, "test": 0.2}.items():
        counts = np.bincount(codes[parts[part]], minlength=3)
        assert np.all(np.abs(counts - fraction * np.array([100, 50, 30])) <= 1), (part, counts)
    again = stratified_split(codes, {"val": 0.1, "test": 0.2}, "train", seed=0)
    other = stratified_split(codes, {"val": 0.1, "test": 0.2}, "train", seed=1)
    assert np.array_equal(again["test"], parts["test"])
    assert not np.array_equal(other["test"], parts["test"])


def test_scaling_is_fitted_on_train_only(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train, test = rng.uniform(0, 1, size=(20, 3)), rng.uniform(-1, 3, size=(10, 3))
    train[:, 2] = 4.0  # a constant training column
    content = {"x1_train": train, "x1_test": test, "y_train": np.arange(20) % 2, "y_test": np.arange(10) % 2}
    splits = make_splits(read_multiview_file(write_mat(tmp_path, content)), "toy", seed=0)
    fitted = np.concatenate([splits.train.views["view0"].numpy(), splits.val.views["view0"].numpy()])
    np.testing.assert_allclose(fitted[:, :2].min(axis=0), 0.0, atol=1e-7)
    np.testing.assert_allclose(fitted[:, :2].max(axis=0), 1.0, atol=1e-7)
    np.testing.assert_array_equal(fitted[:, 2], 0.0)
    lo, span = train.min(axis=0), np.ptp(train, axis=0)
    span[2] = 1.0
    np.testing.assert_allclose(splits.test.views["view0"].numpy(), (test - lo) / span, rtol=1e-6)
    assert splits.test.views["view0"].min() < 0 and splits.test.views["view0"].max() > 1
    assert splits.test.views["view0"].dtype == torch.float32


def test_min_max_scaler_guards_constant_columns() -> None:
    scaler = MinMaxScaler.fit({"v": np.array([[1.0, 5.0], [3.0, 5.0]])})
    out = scaler.transform({"v": np.array([[2.0, 6.0]])})["v"]
    np.testing.assert_allclose(out, [[0.5, 1.0]])


def test_make_splits_without_scaling_keeps_values() -> None:
    a, b, labels = toy_views()
    splits = make_splits(MultiViewArrays({"a": a, "b": b}, labels, "toy"), "toy", seed=5, scale=False)
    rows = {row.tobytes() for row in a.astype(np.float32)}
    assert all(row.tobytes() in rows for row in splits.test.views["a"].numpy())
    assert splits.num_classes == 3 and splits.class_names == ("1", "2", "3")


# ---------------------------------------------------------------- bad input


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match="no such file: .*nothing.mat"):
        read_multiview_file("/nonexistent/nothing.mat")


@pytest.mark.parametrize("suffix", [".mat", ".npz"])
def test_unreadable_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"this is not a data file" * 20)
    with pytest.raises(ValueError, match=f"cannot read .*broken\\{suffix} as a \\{suffix} file"):
        read_multiview_file(path)


def test_unsupported_suffix_and_directory(tmp_path: Path) -> None:
    (tmp_path / "data.xlsx").write_text("1,2\n")
    with pytest.raises(ValueError, match=r"unsupported file type '.xlsx'; accepted: .npz, .mat, .csv, .*to_csv"):
        read_multiview_file(tmp_path / "data.xlsx")
    with pytest.raises(ValueError, match="is not a file"):
        read_multiview_file(tmp_path)


def test_matlab_v73_file_is_refused_with_advice(tmp_path: Path) -> None:
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116) + bytes(8) + b"\x00\x02IM"
    path = tmp_path / "big.mat"
    path.write_bytes(header + b"\x89HDF\r\n\x1a\n" + bytes(100))
    with pytest.raises(ValueError, match=r"v7\.3 \(HDF5\).*-v7"):
        read_multiview_file(path)


def test_mat_without_views_lists_its_keys(tmp_path: Path) -> None:
    path = write_mat(tmp_path, {"Y": np.arange(4) % 2, "note": "no matrix here"})
    with pytest.raises(ValueError, match=r"no views found.*'note'"):
        read_multiview_file(path)


def test_mat_without_labels_lists_its_keys(tmp_path: Path) -> None:
    path = write_mat(tmp_path, {"X": cell(np.ones((4, 2))), "index": np.arange(4)})  # an index, not labels
    with pytest.raises(ValueError, match=r"no labels; expected an integer or string vector.*gnd.*'index'"):
        read_multiview_file(path)


def test_npz_without_labels_or_views(tmp_path: Path) -> None:
    np.savez(tmp_path / "nolabels.npz", rgb=np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"no labels.*keys found: \['rgb'\]"):
        read_multiview_file(tmp_path / "nolabels.npz")
    np.savez(tmp_path / "noviews.npz", labels=np.arange(4))
    with pytest.raises(ValueError, match=r"no views found.*keys in the file: \['labels'\]"):
        read_multiview_file(tmp_path / "noviews.npz")


def test_views_with_different_sample_counts_are_named(tmp_path: Path) -> None:
    path = write_mat(tmp_path, {"X": cell(np.ones((10, 3)), np.ones((9, 2))), "Y": np.arange(10) % 2})
    with pytest.raises(ValueError, match=r"different sample counts: 10 labels.*'view0' \(10, 3\), 'view1' \(9, 2\)"):
        read_multiview_file(path)
    np.savez(tmp_path / "toy.npz", rgb=np.ones((10, 3)), depth=np.ones((8, 2)), labels=np.arange(10) % 2)
    with pytest.raises(ValueError, match=r"'depth' \(8, 2\)"):
        read_multiview_file(tmp_path / "toy.npz")


def test_split_form_views_must_agree_across_splits(tmp_path: Path) -> None:
    labels = [0, 1, 0, 1]
    content = {"x1_train": np.ones((4, 3)), "x1_test": np.ones((4, 2)), "gt_train": labels, "gt_test": labels}
    with pytest.raises(ValueError, match="views of the test split"):
        read_multiview_file(write_mat(tmp_path, content))
    content = {"x1_train": np.ones((4, 3)), "gt_train": labels}
    with pytest.raises(ValueError, match="needs train and test"):
        read_multiview_file(write_mat(tmp_path, content, "train_only.mat"))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_features_name_the_view_and_count(tmp_path: Path, bad: float) -> None:
    a, b, labels = toy_views()
    b[[1, 5, 7], 0] = bad
    arrays = read_multiview_file(write_mat(tmp_path, {"X": cell(a, b), "Y": labels}))
    kind = "3 NaN and 0 inf" if np.isnan(bad) else "0 NaN and 3 inf"
    with pytest.raises(ValueError, match=f"view 'view1' has {kind} values"):
        make_splits(arrays, "toy")


def test_single_class_is_refused(tmp_path: Path) -> None:
    arrays = read_multiview_file(write_mat(tmp_path, {"X": cell(np.ones((6, 2))), "Y": np.full(6, 4)}))
    with pytest.raises(ValueError, match=r"a single class \(4\); need at least two"):
        make_splits(arrays, "toy")


def test_class_too_small_to_stratify() -> None:
    labels = np.array([0] * 20 + [1] * 2)
    arrays = MultiViewArrays({"a": np.zeros((22, 2))}, labels, "toy")
    with pytest.raises(ValueError, match="class '1' has 2 samples, too few for a stratified split"):
        make_splits(arrays, "toy")


def test_bad_labels_and_fractions(tmp_path: Path) -> None:
    onehot = write_mat(tmp_path, {"X": cell(np.ones((4, 2))), "Y": np.eye(4)})
    with pytest.raises(ValueError, match=r"labels under 'Y' have shape \(4, 4\)"):
        read_multiview_file(onehot)
    clash = write_mat(tmp_path, {"X": cell(np.ones((4, 2))), "Y": [0, 1, 0, 1], "gt": [1, 1, 0, 0]}, "clash.mat")
    with pytest.raises(ValueError, match=r"label keys \['Y', 'gt'\] disagree"):
        read_multiview_file(clash)
    a, b, labels = toy_views()
    with pytest.raises(ValueError, match="val_fraction=0.5 and test_fraction=0.5"):
        make_splits(MultiViewArrays({"a": a}, labels, "toy"), "toy", val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="1 labels are NaN or inf"):
        encode_labels(np.array([0.0, 1.0, np.nan]))


def test_non_numeric_view_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "text.npz", words=np.array([["a"], ["b"]]), labels=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"--views 'words' is not a numeric matrix, cell or struct \(strings"):
        read_multiview_file(tmp_path / "text.npz", views=["words"])
    np.savez(tmp_path / "text2.npz", words=np.array([["a", "b"], ["c", "d"]]), labels=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"--views 'words' is not a numeric matrix.*\(other, shape \(2, 2\)\)"):
        read_multiview_file(tmp_path / "text2.npz", views=["words"])
