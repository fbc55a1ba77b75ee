import subprocess
import sys

import pytest

from iidfusion.engine.outputs import (
    MARKER,
    check_output_folder,
    is_run_folder,
    path_name,
    run_folder,
    staged_files,
    write_text_atomic,
)


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
    with pytest.raises(RuntimeError), staged_files(tmp_path) as stage:
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
    """A finished run of ours (marked) in runs/m/seed0, its metrics.json holding ``content``."""
    with run_folder(tmp_path / "runs" / "m" / "seed0") as folder:
        (folder / "metrics.json").write_text(content)
    return folder


def _names(folder):
    return sorted(p.name for p in folder.iterdir() if p.name != MARKER)


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
    with pytest.raises(ValueError, match=r"pass --overwrite to replace it or --resume to continue it"):
        check_output_folder(previous, resume=False)
    with pytest.raises(ValueError, match=r"already holds a run; pass --resume to continue it$"):
        check_output_folder(previous, overwrite=None, resume=False, resume_flag="--resume")
    for accepted in ({"overwrite": True}, {"resume": True}, {"shared": True}):
        check_output_folder(previous, **accepted)
    check_output_folder(tmp_path / "new" / "deeper")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "runs"]  # the write probe left nothing


@pytest.mark.parametrize("flags", [{}, {"overwrite": True}, {"resume": True}])
def test_a_folder_of_someone_elses_files_is_never_a_run(tmp_path, flags):
    """Without our marker a non-empty folder is refused whatever the flags, and nothing in it is touched."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "features.npz").write_text("the user's")
    with pytest.raises(
        ValueError, match=r"holds files that are not a run of iidfusion \(it has no .iidfusion-run file\)"
    ):
        check_output_folder(mine, **flags)
    with (
        pytest.raises(ValueError, match="not a run of iidfusion"),
        run_folder(mine, overwrite=flags.get("overwrite", False)),
    ):
        pass
    assert sorted(p.name for p in mine.iterdir()) == ["features.npz"]
    check_output_folder(mine, shared=True)  # a folder shared by runs (fit --out) only gets new sub-folders


def test_a_second_process_on_the_same_folder_is_refused(tmp_path):
    """The marker is locked while a run writes: another open of it (another process) cannot take it."""
    with run_folder(tmp_path / "out") as folder:
        (folder / "half.txt").write_text("in progress")
        for flags in ({}, {"overwrite": True}, {"resume": True}):
            with pytest.raises(ValueError, match=r"is in use: another iidfusion process \d+ is writing to it"):
                check_output_folder(folder, **flags)
        with pytest.raises(ValueError, match="is in use"), run_folder(folder, overwrite=True):
            pass
        assert (folder / "half.txt").is_file()
    assert _names(tmp_path / "out") == ["half.txt"]


def test_a_failed_run_leaves_no_folder_and_no_new_parent(tmp_path):
    (tmp_path / "runs").mkdir()
    with pytest.raises(RuntimeError), run_folder(tmp_path / "runs" / "m" / "seed0") as folder:
        (folder / "csv").mkdir(parents=True)
        (folder / "csv" / "metrics.csv").write_text("epoch\n0\n")
        raise RuntimeError("diverged")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"] and not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("resumable", [True, False])
def test_an_interrupted_run_is_kept_only_if_it_can_be_resumed(tmp_path, resumable):
    with pytest.raises(KeyboardInterrupt), run_folder(tmp_path / "run", resumable=lambda folder: resumable) as folder:
        (folder / "last.ckpt").write_text("state")
        raise KeyboardInterrupt
    assert (tmp_path / "run" / "last.ckpt").exists() == resumable


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_finished_work_is_kept_after_any_failure_when_asked(tmp_path, failure):
    run = run_folder(tmp_path / "run", resumable=lambda folder: True, keep_on_failure=True)
    with pytest.raises(failure), run as folder:
        (folder / "cache").mkdir()
        raise failure()
    assert _names(tmp_path / "run") == ["cache"] and is_run_folder(tmp_path / "run")


def test_overwrite_replaces_the_previous_run_as_a_whole_once_the_new_one_succeeds(tmp_path):
    folder = _run_folder_with(tmp_path, "first")
    (folder / "old_only.txt").write_text("of the first run")
    with run_folder(folder, overwrite=True):
        assert _names(folder) == []  # the new run starts in an empty folder
        (folder / "metrics.json").write_text("second")
    assert _names(folder) == ["metrics.json"] and (folder / "metrics.json").read_text() == "second"
    assert sorted(p.name for p in folder.parent.iterdir()) == ["seed0"]  # the aside copy is gone


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_overwrite_keeps_the_previous_run_when_the_new_one_fails(tmp_path, failure):
    folder = _run_folder_with(tmp_path, "first")
    with pytest.raises(failure), run_folder(folder, overwrite=True, resumable=lambda f: True, keep_on_failure=True):
        (folder / "metrics.json").write_text("half of the second")
        raise failure()
    assert (folder / "metrics.json").read_text() == "first"
    assert sorted(p.name for p in folder.parent.iterdir()) == ["seed0"]


_KILLED_OVERWRITE = """
import os, sys
from pathlib import Path
import iidfusion.engine.outputs as outputs

folder, stage = Path(sys.argv[1]), sys.argv[2]
if stage == "while removing the old copy":
    outputs._remove_run = lambda path: os.kill(os.getpid(), 9)
if stage == "before the new run is marked":
    outputs._Marker.write = lambda self, **state: os.kill(os.getpid(), 9)
if stage == "after moving the previous run aside":  # the new folder is made once the old one is renamed
    real_mkdir = Path.mkdir
    def mkdir(self, *a, **k):
        return os.kill(os.getpid(), 9) if self == folder and not folder.exists() else real_mkdir(self, *a, **k)
    Path.mkdir = mkdir
with outputs.run_folder(folder, overwrite=True):
    (folder / "metrics.json").write_text("half of the second")
    if stage == "while training":
        os.kill(os.getpid(), 9)
"""


@pytest.mark.parametrize(
    "stage",
    [
        "after moving the previous run aside",
        "before the new run is marked",
        "while training",
        "while removing the old copy",
    ],
)
def test_an_overwrite_killed_at_any_point_is_noticed_and_repaired(tmp_path, stage):
    """kill -9 at each step of a replacement: the next command puts the previous run back (the new
    one did not finish) or finishes removing it (the new one did), and says so."""
    folder = _run_folder_with(tmp_path, "first")
    done = subprocess.run([sys.executable, "-c", _KILLED_OVERWRITE, str(folder), stage], capture_output=True, text=True)
    assert done.returncode == -9, done.stderr
    copies = [p for p in folder.parent.iterdir() if ".previous-" in p.name]
    assert len(copies) == 1 and is_run_folder(copies[0]), "the previous run stays findable, named after its folder"
    with (
        pytest.warns(
            UserWarning,
            match="removed .* the run that --overwrite replaced"
            if "removing" in stage
            else "restored .*seed0 from seed0.previous-.*: an --overwrite stopped before it finished",
        ),
        pytest.raises(ValueError, match="already holds a run"),
    ):
        check_output_folder(folder)
    expected = "half of the second" if "removing" in stage else "first"
    assert (folder / "metrics.json").read_text() == expected
    assert sorted(p.name for p in folder.parent.iterdir()) == ["seed0"]


def test_a_previous_copy_left_beside_a_run_is_named(tmp_path):
    folder = _run_folder_with(tmp_path, "first")
    stray = folder.with_name("seed0.previous-20250101-000000-abcd")
    with run_folder(stray) as made:
        (made / "metrics.json").write_text("older")
    with pytest.warns(UserWarning, match="seed0.previous-20250101-000000-abcd holds an earlier run of .*seed0"):
        check_output_folder(folder, overwrite=True)
    assert (stray / "metrics.json").is_file()


def test_names_read_from_data_become_harmless_path_names():
    assert [path_name(n) for n in ("..", ".", "../../etc", "/abs/x", "a b", ".hidden", "", "MVSA-Single.v2")] == [
        "data",
        "data",
        "etc",
        "abs_x",
        "a_b",
        "hidden",
        "data",
        "MVSA-Single.v2",
    ]
    assert len(path_name("x" * 1000)) == 100


@pytest.mark.parametrize("rank", [("RANK", "1"), ("LOCAL_RANK", "2"), ("NODE_RANK", "1"), ("SLURM_PROCID", "3")])
def test_the_other_processes_of_a_data_parallel_run_share_the_first_ones_folder(tmp_path, monkeypatch, rank):
    """torchrun, SLURM and Lightning start every process with the same command: the first one
    checks, marks and locks --out; the others write in it, and never refuse or delete it."""
    with run_folder(tmp_path / "out") as folder:
        (folder / "rank0.txt").write_text("the first process's")
        monkeypatch.setenv(*rank)
        check_output_folder(folder)  # in use and not empty: the first process's own run
        with pytest.raises(RuntimeError), run_folder(folder, overwrite=True) as same:
            (same / "rank1.txt").write_text("another process's")
            raise RuntimeError("a failure of that process")
        monkeypatch.delenv(rank[0])
        assert _names(folder) == ["rank0.txt", "rank1.txt"]
