import pytest

from iidfusion.training.outputs import staged_files, write_text_atomic


def test_files_appear_together_on_success(tmp_path):
    with staged_files(tmp_path / "out") as stage:
        stage.write_text("a.txt", "A")
        stage.path("b.png").write_bytes(b"B")
        assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == []
    assert (tmp_path / "out" / "a.txt").read_text() == "A"
    assert (tmp_path / "out" / "b.png").read_bytes() == b"B"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.txt", "b.png"]


def test_failure_leaves_nothing(tmp_path):
    (tmp_path / "old.txt").write_text("kept")
    with pytest.raises(RuntimeError):
        with staged_files(tmp_path) as stage:
            stage.write_text("a.txt", "A")
            raise RuntimeError("plot failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.txt"]


def test_write_text_atomic_replaces(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("old")
    write_text_atomic(path, "new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["x.json"]
