import pytest

from iidfusion.training.outputs import check_output_folder, run_folder, staged_files, write_text_atomic


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


def test_result_files_get_the_permissions_of_a_plain_open(tmp_path):
    with staged_files(tmp_path) as stage:
        stage.write_text("a.txt", "A")
    (tmp_path / "plain.txt").write_text("B")
    assert (tmp_path / "a.txt").stat().st_mode == (tmp_path / "plain.txt").stat().st_mode


def _run_folder_with(tmp_path, content: str):
    folder = tmp_path / "runs" / "m" / "seed0"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(content)
    return folder


def test_an_output_folder_is_checked_first(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"--out .*file is a file; it must be a folder"):
        check_output_folder(tmp_path / "file")
    with pytest.raises(ValueError, match=r"--out .*file/sub: .*file is a file, not a folder"):
        check_output_folder(tmp_path / "file" / "sub")
    with pytest.raises(ValueError, match=r"--out /proc/iidfusion/out: cannot write in /proc"):
        check_output_folder("/proc/iidfusion/out")  # not writable, even for root
    previous = _run_folder_with(tmp_path, "first")
    with pytest.raises(ValueError, match=r"already holds a run; pass --overwrite to replace it$"):
        check_output_folder(previous)
    with pytest.raises(ValueError, match=r"pass --overwrite to replace it or --resume last to continue it"):
        check_output_folder(previous, resume=False)
    for accepted in ({"overwrite": True}, {"resume": True}, {"shared": True}):
        check_output_folder(previous, **accepted)
    check_output_folder(tmp_path / "new" / "deeper")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "runs"]  # the write probe left nothing


def test_a_failed_run_leaves_no_folder_and_no_new_parent(tmp_path):
    (tmp_path / "runs").mkdir()
    with pytest.raises(RuntimeError):
        with run_folder(tmp_path / "runs" / "m" / "seed0") as folder:
            (folder / "csv").mkdir(parents=True)
            (folder / "csv" / "metrics.csv").write_text("epoch\n0\n")
            raise RuntimeError("diverged")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"] and not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("resumable", [True, False])
def test_an_interrupted_run_is_kept_only_if_it_can_be_resumed(tmp_path, resumable):
    with pytest.raises(KeyboardInterrupt):
        with run_folder(tmp_path / "run", resumable=lambda folder: resumable) as folder:
            folder.mkdir()
            (folder / "last.ckpt").write_text("state")
            raise KeyboardInterrupt
    assert (tmp_path / "run" / "last.ckpt").exists() == resumable


def test_overwrite_replaces_the_previous_run_as_a_whole_once_the_new_one_succeeds(tmp_path):
    folder = _run_folder_with(tmp_path, "first")
    (folder / "old_only.txt").write_text("of the first run")
    with run_folder(folder, overwrite=True):
        assert not folder.exists()  # the new run starts in an empty folder
        folder.mkdir()
        (folder / "metrics.json").write_text("second")
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.json"] and (folder / "metrics.json").read_text() == "second"
    assert sorted(p.name for p in folder.parent.iterdir()) == ["seed0"]  # the aside copy is gone


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_overwrite_keeps_the_previous_run_when_the_new_one_fails(tmp_path, failure):
    folder = _run_folder_with(tmp_path, "first")
    with pytest.raises(failure):
        with run_folder(folder, overwrite=True, resumable=lambda f: True):
            folder.mkdir()
            (folder / "metrics.json").write_text("half of the second")
            raise failure()
    assert (folder / "metrics.json").read_text() == "first"
    assert sorted(p.name for p in folder.parent.iterdir()) == ["seed0"]
