"""Views and labels found in multi-view files of every common layout (fixtures in tests/fixtures/multiview)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from iidfusion.cli.main import main
from iidfusion.data import describe, load_dataset
from iidfusion.data.features.multiview import encode_labels, make_splits, read_multiview_file

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "multiview"
_spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
make_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_fixtures)

VIEWS = make_fixtures.views()
CODES = make_fixtures.codes()
CELL_NAMES = ["view0", "view1", "view2"]
NAMED = ["rgb", "depth", "audio"]

# file -> (view names in order, their source views, class names, a note that must be printed)
LAYOUTS = {
    "fea_gnd.mat": (CELL_NAMES, VIEWS, ("1", "2", "3"), "views: cell 'fea' (3 views)"),
    "data_truth.mat": (CELL_NAMES, VIEWS, ("0", "1", "2"), "labels: 'truth'"),
    "features_truelabel_cell.mat": (CELL_NAMES, VIEWS, ("1", "2", "3"), "transposed: 'view0', 'view1', 'view2'"),
    "concatenated_features_by_samples.mat": (
        ["X1", "X2", "X3"],
        VIEWS,
        ("1", "2", "3"),
        "ignored 'X_all' (30, 12): the concatenation of the other views",
    ),
    "struct_views.mat": (NAMED, VIEWS, ("0", "1", "2"), "views: struct 'views' (3 views)"),
    "top_level.mat": (NAMED, VIEWS, ("0", "1", "2"), "views: top-level matrices 'rgb', 'depth', 'audio'"),
    "sparse_views.mat": (CELL_NAMES, make_fixtures.sparse_views(), ("1", "2", "3"), "sparse, made dense"),
    "string_labels.mat": (CELL_NAMES, VIEWS, ("class a", "class b", "class c"), "labels: 'label'"),
    "plus_minus_one.mat": (CELL_NAMES, VIEWS, ("-1", "1"), "labels: 'y'"),
    "other_label_name.npz": (["pixels", "edges", "colour"], VIEWS, ("7", "8", "9"), "labels: 'category' (the only"),
}


def test_every_layout_fixture_is_tested() -> None:
    assert sorted(LAYOUTS) == sorted(make_fixtures.layouts())
    assert all((FIXTURES / name).is_file() for name in LAYOUTS)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layout_fixture_loads_its_views_and_labels(name: str) -> None:
    names, sources, class_names, note = LAYOUTS[name]
    arrays = read_multiview_file(FIXTURES / name)
    assert list(arrays.views) == names
    for view, source in zip(arrays.views.values(), sources, strict=True):
        np.testing.assert_allclose(view, source)
    codes, names_found = encode_labels(arrays.labels)
    assert names_found == class_names
    np.testing.assert_array_equal(codes, np.where(CODES == 0, 0, 1) if class_names == ("-1", "1") else CODES)
    assert any(note in line for line in arrays.notes), arrays.notes
    splits = make_splits(arrays, name, seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (21, 3, 6)


def test_datasets_command_shows_what_was_picked(capsys) -> None:
    assert main(["datasets", str(FIXTURES / "concatenated_features_by_samples.mat")]) == 0
    out = capsys.readouterr().out
    assert "views: 3" in out and "samples: 30" in out and "classes: 3" in out
    assert "found:\n  labels: 'gt'" in out and "ignored 'X_all' (30, 12): the concatenation" in out


def cell(*arrays: np.ndarray) -> np.ndarray:
    return make_fixtures.cell(list(arrays))


def write(tmp_path: Path, content: dict, name: str = "file.mat") -> Path:
    path = tmp_path / name
    scipy.io.savemat(path, content)
    return path


# ---------------------------------------------------------------- ambiguity and overrides


def test_two_candidate_cells_are_an_error_listing_both_and_views_chooses(tmp_path: Path) -> None:
    a, b, c = VIEWS
    path = write(tmp_path, {"X": cell(a, b), "fea": cell(b, c), "Y": CODES})
    with pytest.raises(
        ValueError,
        match=r"several candidates for the views: cell 'X' \(2 views\), cell 'fea' \(2 views\); pass --views",
    ):
        read_multiview_file(path)
    arrays = read_multiview_file(path, views=["fea"])
    np.testing.assert_array_equal(arrays.views["view1"], c)
    both = read_multiview_file(path, views=["X", "fea"])
    assert list(both.views) == ["X0", "X1", "fea0", "fea1"]


def test_two_label_candidates_without_common_names_are_an_error_and_labels_chooses(tmp_path: Path) -> None:
    a, b, _ = VIEWS
    path = write(tmp_path, {"X": cell(a, b), "target": CODES, "group": CODES % 2})
    with pytest.raises(
        ValueError, match=r"several label candidates: 'target' \(30 values\), 'group' \(30 values\); pass --labels"
    ):
        read_multiview_file(path)
    arrays = read_multiview_file(path, labels="group")
    np.testing.assert_array_equal(arrays.labels, CODES % 2)
    assert "labels: 'group'" in arrays.notes


def test_a_common_label_name_wins_over_other_vectors(tmp_path: Path) -> None:
    a, b, _ = VIEWS
    arrays = read_multiview_file(write(tmp_path, {"X": cell(a, b), "fold": CODES % 2, "gnd": CODES}))
    np.testing.assert_array_equal(arrays.labels, CODES)
    assert "not used as labels: 'fold'" in arrays.notes


def test_label_names_ignore_case_after_exact_matches(tmp_path: Path) -> None:
    a, b, _ = VIEWS
    arrays = read_multiview_file(write(tmp_path, {"X": cell(a, b), "TrueLabel": CODES + 1}))
    np.testing.assert_array_equal(arrays.labels, CODES + 1)


def test_an_index_vector_is_not_taken_for_labels(tmp_path: Path) -> None:
    a, b, _ = VIEWS
    arrays = read_multiview_file(write(tmp_path, {"X": cell(a, b), "id": np.arange(30), "target": CODES}))
    np.testing.assert_array_equal(arrays.labels, CODES)


def test_label_cell_whose_copies_differ_is_an_error(tmp_path: Path) -> None:
    a, b, _ = VIEWS
    path = write(tmp_path, {"X": cell(a, b), "truelabel": cell(CODES, (CODES + 1) % 3)})
    with pytest.raises(ValueError, match=r"the cell 'truelabel' holds 2 label vectors that differ"):
        read_multiview_file(path)


def test_top_level_matrices_of_other_sizes_are_an_error_until_views_chooses(tmp_path: Path) -> None:
    a, b, _ = VIEWS
    path = write(tmp_path, {"rgb": a, "depth": b, "centres": np.ones((3, 5)), "Y": CODES})
    with pytest.raises(ValueError, match=r"different sample counts: 30 labels.*'centres' \(3, 5\).*--views"):
        read_multiview_file(path)
    assert list(read_multiview_file(path, views=["rgb", "depth"]).views) == ["rgb", "depth"]


def test_a_cell_wins_over_top_level_matrices_which_are_noted(tmp_path: Path) -> None:
    a, b, c = VIEWS
    arrays = read_multiview_file(
        write(tmp_path, {"X": cell(a, b, c), "all": np.hstack([a, b, c]), "W": np.eye(30), "Y": CODES})
    )
    assert list(arrays.views) == CELL_NAMES
    assert "ignored 'all' (30, 12): the concatenation of the views" in arrays.notes
    assert "ignored 'W' (30, 30): not a view" in arrays.notes


def test_a_concatenation_of_only_some_views_is_kept(tmp_path: Path) -> None:
    a, b, c = VIEWS
    arrays = read_multiview_file(write(tmp_path, {"a": a, "b": b, "c": c, "ab": np.hstack([a, b]), "Y": CODES}))
    assert list(arrays.views) == ["a", "b", "c", "ab"]


def test_views_and_labels_by_struct_field(tmp_path: Path) -> None:
    a, b, c = VIEWS
    path = write(tmp_path, {"data": {"rgb": a, "depth": b.T, "gt": CODES.reshape(1, -1)}, "other": {"audio": c}})
    with pytest.raises(ValueError, match="several candidates for the views: struct 'data'.*struct 'other'"):
        read_multiview_file(path)
    arrays = read_multiview_file(path, views=["data.rgb", "other.audio"], labels="data.gt")
    assert list(arrays.views) == ["data.rgb", "other.audio"]
    np.testing.assert_array_equal(arrays.labels, CODES)


def test_unknown_override_keys_list_the_candidates(tmp_path: Path) -> None:
    path = FIXTURES / "top_level.mat"
    with pytest.raises(
        ValueError, match=r"--views 'video' is not in the file; candidates: \['rgb', 'depth', 'audio', 'class'\]"
    ):
        read_multiview_file(path, views=["video"])
    with pytest.raises(ValueError, match=r"--labels 'target' is not in the file; label candidates: \['class'\]"):
        read_multiview_file(path, labels="target")
    with pytest.raises(ValueError, match=r"labels under 'rgb' have shape \(30, 5\)"):
        read_multiview_file(path, labels="rgb")


def test_split_form_views_and_labels_overrides(tmp_path: Path) -> None:
    content = {}
    for split, rows in (("train", slice(0, 24)), ("test", slice(24, 30))):
        for k, view in enumerate(VIEWS, start=1):
            content[f"x{k}_{split}"] = view[rows]
        content[f"gt_{split}"], content[f"fold_{split}"] = CODES[rows], CODES[rows] % 2
    path = write(tmp_path, content)
    arrays = read_multiview_file(path, views=["x1", "x3"], labels="fold")
    assert list(arrays.views) == ["view0", "view2"]
    np.testing.assert_array_equal(arrays.views["view2"], VIEWS[2])
    np.testing.assert_array_equal(arrays.labels, CODES % 2)
    np.testing.assert_array_equal(read_multiview_file(path).labels, CODES)


def test_overrides_through_the_registry_and_for_bundled_sets() -> None:
    splits = load_dataset(FIXTURES / "top_level.mat", views=["audio", "rgb"], labels="class")
    assert list(splits.view_dims) == ["audio", "rgb"]
    assert list(load_dataset("handwritten", views=["mor", "pix"]).view_dims) == ["mor", "pix"]
    with pytest.raises(ValueError, match=r"no view 'image'; views: \['pix'"):
        load_dataset("handwritten", views=["image"])
    with pytest.raises(ValueError, match="--labels applies to files"):
        load_dataset("handwritten", labels="Y")
    assert "labels: 'class'" in describe(FIXTURES / "top_level.mat", labels="class")


def test_datasets_and_fit_take_views_and_labels_from_flags_and_yaml(tmp_path: Path, capsys) -> None:
    a, b, c = VIEWS
    path = write(tmp_path, {"X": cell(a, b), "fea": cell(b, c), "target": CODES, "group": CODES % 2})
    assert main(["datasets", str(path)]) == 2
    assert "several label candidates" in capsys.readouterr().err
    assert main(["datasets", str(path), "--views", "fea", "--labels", "target"]) == 0
    assert "views: 'fea'" in capsys.readouterr().out
    config = tmp_path / "exp.yaml"
    config.write_text(
        f"data: {path}\nviews: [fea]\nlabels: target\nmethod: lf-static\ntrain:\n  loggers: []\n  checkpoints: false\n"
    )
    fast = [
        "--width",
        "8",
        "--hidden",
        "16",
        "--max-epochs",
        "1",
        "--threads",
        "1",
        "--no-progress-bar",
        "--accelerator",
        "cpu",
    ]
    assert main(["fit", "--config", str(config), "--out", str(tmp_path / "run"), "--noise", "0", *fast]) == 0
    assert "lf-static on file, seed 0" in capsys.readouterr().out
    assert "views:\n- fea\nlabels: target" in (tmp_path / "run" / "lf-static" / "seed0" / "config.yaml").read_text()


def test_every_array_passed_over_is_named_and_warned(tmp_path):
    """Arrays that are neither a view nor the labels (1-D, 3-D, zero-width, complex, scalar, and a
    struct's non-matrix field) are each named in a note, and a training command is warned of them."""
    rng = np.random.default_rng(0)
    a, b, labels = rng.normal(size=(30, 4)), rng.normal(size=(30, 3)), np.arange(30) % 3
    extras = {
        "short": rng.normal(size=7),
        "cube": rng.normal(size=(7, 2, 2)),
        "empty": np.zeros((30, 0)),
        "phase": rng.normal(size=(30, 3)) + 1j,
        "scale": np.array(3.0),
    }
    np.savez(tmp_path / "extra.npz", a=a, b=b, labels=labels, **extras)
    with pytest.warns(UserWarning) as warned:
        arrays = read_multiview_file(tmp_path / "extra.npz")
    assert list(arrays.views) == ["a", "b"]
    ignored = {note.split("'")[1]: note for note in arrays.notes if note.startswith("ignored")}
    assert sorted(ignored) == sorted(extras)
    assert "3-D, without 30 entries on its first axis" in ignored["cube"]
    assert "empty" in ignored["empty"] and "complex" in ignored["phase"]
    assert sorted(str(w.message).split("'")[1] for w in warned) == sorted(extras)
    scipy.io.savemat(tmp_path / "struct.mat", {"S": {"a": a, "b": b, "meta": rng.normal(size=(30, 2, 2))}, "y": labels})
    with pytest.warns(UserWarning, match=r"ignored 'S.meta' array \(30, 2, 2\) float64: 3-D, not a view used"):
        assert list(read_multiview_file(tmp_path / "struct.mat").views) == ["a", "b"]


def test_an_image_per_sample_is_a_view_flattened_with_a_note(tmp_path):
    """An (N, 8, 8) array beside the labels is a view of 64 features, said in a note, never dropped."""
    rng = np.random.default_rng(0)
    images, table, labels = rng.random((30, 8, 8)), rng.random((30, 5)), np.arange(30) % 3
    np.savez(tmp_path / "images.npz", img=images, tab=table, labels=labels)
    arrays = read_multiview_file(tmp_path / "images.npz")
    assert {name: view.shape for name, view in arrays.views.items()} == {"img": (30, 64), "tab": (30, 5)}
    assert np.array_equal(arrays.views["img"], images.reshape(30, 64))
    assert any("'img' (30, 8, 8): flattened" in note for note in arrays.notes)
    named = read_multiview_file(tmp_path / "images.npz", views=("img", "tab"))
    assert named.views["img"].shape == (30, 64)


@pytest.mark.parametrize("labels", [np.arange(30) % 3 + 0.5, np.linspace(0, 1, 30)])
def test_float_labels_are_refused_not_taken_as_classes(labels):
    with pytest.raises(ValueError, match="labels are not whole numbers"):
        encode_labels(labels, "file.npz")
    assert encode_labels((np.arange(30) % 3).astype(float), "file.npz")[1] == ("0", "1", "2")  # MATLAB's doubles
