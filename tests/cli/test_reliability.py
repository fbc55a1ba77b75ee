"""Runs that stop half way: Ctrl-C and --resume, --overwrite, and how errors are reported (--debug)."""

import errno
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cli_support import FAST, fail_the_fit, files_under
from iidfusion.cli.main import DEBUG_ENV, main
from iidfusion.engine.trainer import ReseedEachBatch
from tests.toy_data import write_toy_vision_language


def _fit(tiny_npz, out, *extra):
    return [
        "fit",
        "--data",
        str(tiny_npz),
        "--method",
        "iid-q",
        "--out",
        str(out),
        "--loggers",
        "csv",
        "--patience",
        "0",
        *FAST,
        *extra,
    ]


def test_an_interrupted_fit_says_how_to_resume_and_plot_reads_both_parts(tiny_npz, tmp_path, monkeypatch, capsys):
    def interrupt_in_the_second_epoch(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(ReseedEachBatch, "on_train_epoch_end", interrupt_in_the_second_epoch, raising=False)
        assert main(_fit(tiny_npz, tmp_path, "--max-epochs", "3")) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted; continue with the same command and --resume (checkpoints" in err, err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Lightning's SIG_IGN undone
    run = tmp_path / "iid-q" / "seed0"
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "metrics.json").exists()
    assert main(_fit(tiny_npz, tmp_path, "--max-epochs", "3")) == 2  # not silently restarted over it
    assert "already holds a run" in capsys.readouterr().err
    assert main(_fit(tiny_npz, tmp_path, "--max-epochs", "3", "--resume", "last")) == 0
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 3
    capsys.readouterr()
    assert main(["plot", "--runs", str(run), "--out", str(tmp_path / "fig.png")]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| iid-q"))
    assert row.split(" | ")[1] == "3"  # epochs 0 and 1 before the interruption, 1 (redone) and 2 after


def test_overwrite_replaces_a_run_as_a_whole(tiny_npz, tmp_path, capsys):
    assert main(_fit(tiny_npz, tmp_path, "--max-epochs", "1")) == 0
    run = tmp_path / "iid-q" / "seed0"
    (run / "notes.txt").write_text("left by the first run")
    assert main(_fit(tiny_npz, tmp_path, "--max-epochs", "2", "--overwrite")) == 0
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2
    assert not (run / "notes.txt").exists() and [p.name for p in (run / "csv").iterdir()] == ["version_0"]
    assert main(_fit(tiny_npz, tmp_path, "--resume", "last", "--overwrite")) == 2
    assert "give one" in capsys.readouterr().err


def test_a_failed_fit_leaves_no_file(tiny_npz, tmp_path, capsys):
    """--eps far too small fails at the first L_dc, after the trainer started its logs."""
    out = tmp_path / "out"
    assert main(_fit(tiny_npz, out, "--method", "iid-p", "--eps", "1e-9")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--eps (loss.eps): eps=1e-09 is too small" in err and "smallest safe eps is" in err
    assert files_under(out) == [] and not out.exists()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback_of_user_errors_and_bugs(tiny_npz, tmp_path, monkeypatch, capsys, how):
    import iidfusion.api as compare  # where `fit` loads its data

    debug = ["--debug"] if how == "flag" else []
    if how == "env":
        monkeypatch.setenv(DEBUG_ENV, "1")
    assert main([*debug, "fit", "--data", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.splitlines()[-1].startswith(
        "iidfusion fit: error: no such file: "
    )

    def buggy(*args, **kwargs):
        return {}["a key that is not there"]

    monkeypatch.setattr(compare, "load_splits", buggy)
    assert main([*debug, "fit", "--data", str(tiny_npz), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "internal error: KeyError: 'a key that is not there'" in err


def test_a_library_error_is_a_bug_not_bad_input(tiny_npz, tmp_path, monkeypatch, capsys):
    """A ValueError raised inside numpy (here: a reshape our code got wrong) is one line saying it
    is an internal error, exit 1; only iidfusion's own refusals are exit 2."""
    import numpy as np

    import iidfusion.api as compare  # where `fit` loads its data

    monkeypatch.delenv(DEBUG_ENV, raising=False)
    monkeypatch.setattr(compare, "load_splits", lambda *args, **kwargs: np.arange(3).reshape(2, 2))
    assert main(["fit", "--data", str(tiny_npz), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("iidfusion fit: internal error: ValueError: cannot reshape")
    assert "--debug" in err and DEBUG_ENV in err


# ---------------------------------------------------------------- security: no code run, no write outside --out


def _custom_code_folder(folder: Path, marker: Path) -> Path:
    """A model folder whose configuration maps its classes to code that touches ``marker``."""
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "iidx",
                "auto_map": {"AutoConfig": "configuration_iidx.IIDXConfig", "AutoModel": "modeling_iidx.IIDXModel"},
            }
        )
    )
    for module in ("configuration_iidx", "modeling_iidx"):
        (folder / f"{module}.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    return folder


def test_a_model_folder_with_custom_code_is_refused_without_a_prompt(tmp_path):
    """With stdin closed: exit 2 and one line, at once; nothing waits for an answer, nothing runs."""
    marker = tmp_path / "code_ran"
    model = _custom_code_folder(tmp_path / "model", marker)
    root = write_toy_vision_language(tmp_path / "mvsa", "mmbt", per_class=(2, 1, 1))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "iidfusion.cli.main",
            "extract",
            "--data-format",
            "mmbt",
            "--root",
            str(root),
            "--text-encoder",
            str(model),
            "--image-encoder",
            "resnet18",
            "--accelerator",
            "cpu",
            "--out",
            str(tmp_path / "out"),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "maps classes to custom code (auto_map)" in done.stderr, done.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_transformers_itself_refuses_custom_code_and_never_asks(tmp_path, monkeypatch):
    """Past our own check (bypassed here), trust_remote_code=False makes transformers refuse too."""
    import builtins

    import iidfusion.encoders.text as text

    marker = tmp_path / "code_ran"
    model = _custom_code_folder(tmp_path / "model", marker)
    monkeypatch.setattr(text, "refuse_custom_code", lambda directory: None)
    monkeypatch.setattr(builtins, "input", lambda *args: pytest.fail("a prompt waited for an answer"))
    with pytest.raises(ValueError, match="cannot load a Hugging Face model from .*custom code"):
        text.load_local_text_encoder(model)
    assert not marker.exists()


def test_a_data_file_named_dot_dot_stays_inside_out(tiny_npz, tmp_path, monkeypatch, capsys):
    """`suite` names a folder of --out after each data file's stem: '...npz' (stem '..') must not climb out."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(tiny_npz, inputs / "...npz")
    monkeypatch.chdir(inputs)
    assert (
        main(
            [
                "suite",
                "--datasets",
                "...npz",
                "--methods",
                "lf-static",
                "--seeds",
                "1",
                "--noise",
                "0",
                "--out",
                "out",
                *FAST,
                "--max-epochs",
                "1",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"] and sorted(p.name for p in inputs.iterdir()) == [
        "...npz",
        "out",
    ]
    assert len(list((inputs / "out" / "data").glob("*/results.md"))) == 1


# ---------------------------------------------------------------- data loss: one process per folder, crash-safe
# overwrite


def test_a_second_comparison_on_the_same_out_is_refused_while_the_first_runs(tiny_npz, tmp_path, monkeypatch, capsys):
    """The second command (started here while the first one trains its first run) is refused
    whatever its flags, and deletes nothing; the first finishes with only its own results."""
    from iidfusion.tasks.classification import compare

    real_fit, second = compare.fit_method, []
    out = tmp_path / "cmp"
    args = ["compare", "--data", str(tiny_npz), "--methods", "lf-static", "--seeds", "1", "--out", str(out), *FAST]

    def fit_while_another_starts(*a, **k):
        if not second:
            second.extend(main([*args, *flags]) for flags in ([], ["--overwrite"], ["--resume"]))
            second.append(capsys.readouterr().err)
        return real_fit(*a, **k)

    monkeypatch.setattr(compare, "fit_method", fit_while_another_starts)
    assert main(args) == 0
    assert second[:3] == [2, 2, 2] and second[3].count(f"{out} is in use: another iidfusion process") == 3
    assert (out / "results.md").is_file() and (out / "runs" / "lf-static" / "seed0").is_dir()


def test_a_fit_killed_during_overwrite_is_restored_by_the_next_command(tiny_npz, tmp_path, capsys):
    """kill -9 in the middle of `fit --overwrite`: the previous run stays whole beside the folder,
    and the next command puts it back and says so."""
    assert main(_fit(tiny_npz, tmp_path, "--max-epochs", "1")) == 0
    run = tmp_path / "iid-q" / "seed0"
    first = (run / "metrics.json").read_text()
    killed = (
        "import os, sys\nimport iidfusion.api as api\nfrom iidfusion.cli.main import main\n"
        "api.fit_method = lambda *a, **k: os.kill(os.getpid(), 9)\nmain(sys.argv[1:])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", killed, *_fit(tiny_npz, tmp_path, "--overwrite")], capture_output=True, timeout=120
    )
    assert done.returncode == -9
    assert [p.name for p in run.parent.iterdir() if ".previous-" in p.name] != [], "the previous run is kept, named"
    capsys.readouterr()
    with pytest.warns(
        UserWarning, match=r"restored .*seed0 from seed0.previous-.*: an --overwrite stopped before it finished"
    ):
        assert main(_fit(tiny_npz, tmp_path, "--max-epochs", "1")) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (run / "metrics.json").read_text() == first and sorted(p.name for p in run.parent.iterdir()) == ["seed0"]


def test_an_interrupted_suite_keeps_its_finished_runs_and_resumes(tiny_npz, tmp_path, monkeypatch, capsys):
    fail_the_fit(monkeypatch, 2, KeyboardInterrupt())
    out = tmp_path / "suite"
    args = [
        "suite",
        "--datasets",
        str(tiny_npz),
        "--methods",
        "lf-static,if-static",
        "--seeds",
        "1",
        "--noise",
        "0",
        "--out",
        str(out),
        *FAST,
        "--max-epochs",
        "1",
    ]
    assert main(args) == 130
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .endswith(f"1 finished runs are kept in {out}: continue with the same command and --resume")
    )
    assert main(args) == 2 and "pass --resume to continue it" in capsys.readouterr().err
    monkeypatch.undo()
    assert main([*args, "--resume"]) == 0 and "1 already done, 1 to train" in capsys.readouterr().err


# ---------------------------------------------------------------- exit codes by cause: the environment is not a bug


@pytest.mark.parametrize(
    ("raised", "said"),
    [
        (
            OSError(errno.ENOSPC, "No space left on device"),
            "No space left on device (errno ENOSPC) while writing to --out ",
        ),
        (OSError(errno.EIO, "Input/output error", "/data/disk/last.ckpt"), "/data/disk/last.ckpt: Input/output error"),
        (
            MemoryError("Unable to allocate 7.28 TiB for an array"),
            "not enough memory (Unable to allocate 7.28 TiB for an array)",
        ),
    ],
)
def test_an_error_of_the_machine_inside_a_library_is_exit_2_naming_it(
    tiny_npz, tmp_path, monkeypatch, capsys, raised, said
):
    """A full disk, an I/O error or memory running out, raised inside torch (here: its save), is the
    user's environment, not a bug: one line, exit 2, and the failed run leaves nothing behind."""
    import torch

    def failing_save(*args, **kwargs):
        raise raised

    monkeypatch.setattr(torch, "save", failing_save)
    out = tmp_path / "out"
    assert main(_fit(tiny_npz, out, "--max-epochs", "1")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("iidfusion fit: error: ") and said in err, err
    assert files_under(out) == []


def test_double_precision_trains_and_evaluates(tiny_npz, tmp_path, capsys):
    """--precision 64-true: the model runs in float64, and the test split is fed to it as float64."""
    assert main(_fit(tiny_npz, tmp_path, "--max-epochs", "1", "--precision", "64-true")) == 0
    assert json.loads((tmp_path / "iid-q" / "seed0" / "metrics.json").read_text())["test"][0]["accuracy"] > 0
