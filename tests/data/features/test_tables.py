"""Tables as multi-view data: CSV and Parquet, views by column prefix or pattern, labels and ids by column."""

import sys
import types

import numpy as np
import pytest

from iidfusion.data.features.multiview import make_splits, read_multiview_file
from iidfusion.data.features.registry import describe, load_dataset
from iidfusion.data.features.tables import default_view, read_table


def write_table(path, rows=60, delimiter=",", extra=""):
    """A table with two image columns groups (img_*), two tabular ones (tab_*), a text column, an id and labels."""
    rng = np.random.default_rng(0)
    classes = np.array(["cat", "dog", "eel"])[np.arange(rows) % 3]
    header = ["id", "img_0", "img_1", "img_2", "tab_age", "tab_bmi", "note", "label"]
    lines = [delimiter.join(header)]
    for i in range(rows):
        values = [
            f"r{i}",
            *(f"{v:.4f}" for v in rng.random(3)),
            str(20 + i),
            f"{rng.random():.3f}",
            f"n{i}",
            classes[i],
        ]
        lines.append(delimiter.join(values))
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def test_views_by_prefix_labels_and_ids_by_name(tmp_path):
    path = write_table(tmp_path / "t.csv")
    with pytest.warns(UserWarning, match="ignored column 'note': text, not numbers"):
        arrays = read_multiview_file(path)
    assert {name: view.shape for name, view in arrays.views.items()} == {"img": (60, 3), "tab": (60, 2)}
    assert arrays.ids[:2].tolist() == ["r0", "r1"] and arrays.labels[:3].tolist() == ["cat", "dog", "eel"]
    assert arrays.views["tab"][5].tolist() == [25.0, pytest.approx(arrays.views["tab"][5][1])]
    assert "labels: column 'label'" in arrays.notes and "row ids: column 'id'" in arrays.notes
    assert default_view("img_0") == "img" and default_view("age") == "age" and default_view("a_b_c") == "a"


def test_views_by_pattern_and_by_name_of_the_default_rule(tmp_path):
    path = write_table(tmp_path / "t.csv")
    arrays = read_multiview_file(path, views=("image=img_*", "body=tab_[ab]*"), labels="label", id_column="id")
    assert list(arrays.views) == ["image", "body"] and arrays.views["body"].shape == (60, 2)
    assert list(read_multiview_file(path, views=("tab", "img")).views) == ["tab", "img"]
    splits = load_dataset(path, views=("image=img_*", "tab"), seed=1)
    assert splits.view_dims == {"image": 3, "tab": 2} and splits.class_names == ("cat", "dog", "eel")
    rows = np.sort(np.concatenate([splits.rows[part] for part in ("train", "val", "test")]))
    assert rows.tolist() == list(range(60)) and splits.ids[splits.rows["test"][0]] == f"r{splits.rows['test'][0]}"


@pytest.mark.parametrize(("suffix", "delimiter"), [(".tsv", "\t"), (".csv", ";"), (".txt", ",")])
def test_delimiters(tmp_path, suffix, delimiter):
    arrays = read_multiview_file(write_table(tmp_path / f"t{suffix}", delimiter=delimiter), views=("img", "tab"))
    assert arrays.views["img"].shape == (60, 3)


@pytest.mark.parametrize(
    ("views", "labels", "id_column", "said"),
    [
        (("image=pix_*",), None, None, r"--views 'image=pix_\*' matches no column; views by prefix: img, tab, note"),
        (("image=img_*", "again=img_0"), None, None, "column 'img_0' is in two views"),
        (("n=note",), None, None, "column 'note' of view 'n' holds text, not numbers"),
        ((), "target", None, "--labels 'target' is not a column"),
        ((), None, "key", "--id-column 'key' is not a column"),
        (("=img_*",), None, None, "names no view"),
    ],
)
def test_wrong_columns_are_named(tmp_path, views, labels, id_column, said):
    with pytest.raises(ValueError, match=said):
        read_multiview_file(write_table(tmp_path / "t.csv"), views=views, labels=labels, id_column=id_column)


def test_empty_cells_and_ragged_rows_name_the_column_and_row(tmp_path):
    path = write_table(tmp_path / "t.csv", rows=6)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[2], "", 1)  # row 2, column img_1
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="column 'img_1' of view 'img' is empty or not a number in row 2"):
        read_multiview_file(path, views=("img", "tab"))
    path.write_text("a_0,a_1,label\n1,2,0\n1,2\n")
    with pytest.raises(ValueError, match="row 1 has 2 cells, the header names 3 columns"):
        read_multiview_file(path)
    path.write_text("a_0,b_0\n1,2\n3,4\n")
    with pytest.raises(ValueError, match=r"no labels column .*pass --labels COLUMN"):
        read_multiview_file(path)
    assert read_multiview_file(path, require_labels=False).labels is None
    path.write_text("a_0,a_0,label\n1,2,0\n")
    with pytest.raises(ValueError, match="two columns named 'a_0'"):
        read_multiview_file(path)


def test_a_table_trains_like_a_file_of_arrays(tmp_path):
    """The same numbers as a CSV table and as an .npz file give the same splits."""
    path = write_table(tmp_path / "t.csv")
    table = load_dataset(path, seed=2)
    arrays = read_multiview_file(path)
    np.savez(tmp_path / "t.npz", img=arrays.views["img"], tab=arrays.views["tab"], labels=arrays.labels)
    npz = load_dataset(tmp_path / "t.npz", seed=2)
    for part in ("train", "val", "test"):
        for view in ("img", "tab"):
            assert np.array_equal(table.split(part).views[view].numpy(), npz.split(part).views[view].numpy())
    text = describe(path)
    assert "img  3 features" in text and "view 'tab': 2 columns (tab_age, tab_bmi)" in text


class FakeColumn:
    def __init__(self, values):
        self.values = values

    def to_pylist(self):
        return self.values


class FakeTable:
    def __init__(self, columns):
        self.columns = columns
        self.column_names = list(columns)

    def column(self, name):
        return FakeColumn(self.columns[name])


def fake_pyarrow(monkeypatch, columns):
    """pyarrow.parquet with read_table returning ``columns``: the conversion is ours, the file format pyarrow's."""
    parquet = types.ModuleType("pyarrow.parquet")
    parquet.read_table = lambda path: FakeTable(columns)
    package = types.ModuleType("pyarrow")
    package.parquet = parquet
    monkeypatch.setitem(sys.modules, "pyarrow", package)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", parquet)


def test_parquet_columns_lists_and_nulls(tmp_path, monkeypatch):
    fake_pyarrow(
        monkeypatch,
        {
            "id": [10, 11, 12, 13],
            "emb": [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]],
            "tab_x": [1.0, 2.0, None, 4.0],
            "y": ["a", "b", "a", "b"],
        },
    )
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    columns = read_table(tmp_path / "t.parquet")
    assert list(columns) == ["id", "emb_0", "emb_1", "tab_x", "y"] and np.isnan(columns["tab_x"][2])
    arrays = read_multiview_file(tmp_path / "t.parquet", views=("emb",), labels="y")
    assert arrays.views["emb"].tolist() == [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]]
    assert arrays.ids.tolist() == [10, 11, 12, 13]
    with pytest.raises(ValueError, match="column 'tab_x' of view 'tab' is empty or not a number in row 2"):
        read_multiview_file(tmp_path / "t.parquet", labels="y")


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    with pytest.raises(
        ModuleNotFoundError, match=r"'pyarrow', which is not installed: pip install 'iidfusion\[parquet\]'"
    ):
        read_multiview_file(tmp_path / "t.parquet")


def test_parquet_file_round_trip(tmp_path):
    """With the extra 'parquet' (in `all`), a file written by pyarrow reads as the CSV of the same table does;
    without it, the same call names the extra to install."""
    csv = write_table(tmp_path / "t.csv")
    columns = read_table(csv)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        (tmp_path / "t.pq").write_bytes(b"PAR1")
        with pytest.raises(ModuleNotFoundError, match=r"pip install 'iidfusion\[parquet\]'"):
            read_multiview_file(tmp_path / "t.pq")
        return
    pq.write_table(pa.table({name: list(values) for name, values in columns.items()}), tmp_path / "t.parquet")
    from_parquet, from_csv = load_dataset(tmp_path / "t.parquet", seed=0), load_dataset(csv, seed=0)
    assert from_parquet.view_dims == from_csv.view_dims == {"img": 3, "tab": 2}
    assert np.array_equal(from_parquet.test.views["img"].numpy(), from_csv.test.views["img"].numpy())


def test_splits_keep_the_file_rows(tmp_path):
    arrays = read_multiview_file(write_table(tmp_path / "t.csv"), views=("img", "tab"))
    splits = make_splits(arrays, "t", seed=0, scale=False)
    for part in ("train", "val", "test"):
        rows = splits.rows[part]
        assert np.array_equal(
            splits.split(part).views["tab"][:, 0].numpy(), arrays.views["tab"][rows, 0].astype(np.float32)
        )
