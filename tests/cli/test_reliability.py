"""Runs that stop half way: Ctrl-C and --resume, --overwrite, and how errors are reported (--debug)."""

import json
import signal

import pytest

from cli_support import FAST, files_under

from iidfusion.cli.main import DEBUG_ENV, main
from iidfusion.training.runner import ReseedEachBatch
from iidfusion_studies.cli import main as studies_main


def _fit(tiny_npz, out, *extra):
    return ["fit", "--data", str(tiny_npz), "--method", "iid-q", "--out", str(out), "--loggers", "csv", "--patience", "0",
            *FAST, *extra]


def test_an_interrupted_fit_says_how_to_resume_and_plot_reads_both_parts(tiny_npz, tmp_path, monkeypatch, capsys):
    def interrupt_in_the_second_epoch(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(ReseedEachBatch, "on_train_epoch_end", interrupt_in_the_second_epoch, raising=False)
        assert main(_fit(tiny_npz, tmp_path, "--max-epochs", "3")) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted; continue with the same command and --resume last" in err, err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Lightning's SIG_IGN undone
    run = tmp_path / "iid-q" / "seed0"
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "metrics.json").exists()
    assert main(_fit(tiny_npz, tmp_path, "--max-epochs", "3")) == 2  # not silently restarted over it
    assert "already holds a run" in capsys.readouterr().err
    assert main(_fit(tiny_npz, tmp_path, "--max-epochs", "3", "--resume", "last")) == 0
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 3
    capsys.readouterr()
    assert studies_main(["plot", "--runs", str(run), "--out", str(tmp_path / "fig.png")]) == 0
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
    import iidfusion.training.compare as compare

    debug = ["--debug"] if how == "flag" else []
    if how == "env":
        monkeypatch.setenv(DEBUG_ENV, "1")
    assert main([*debug, "fit", "--data", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.splitlines()[-1].startswith("iidfusion fit: error: no such file: ")

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

    import iidfusion.training.compare as compare

    monkeypatch.delenv(DEBUG_ENV, raising=False)
    monkeypatch.setattr(compare, "load_splits", lambda *args, **kwargs: np.arange(3).reshape(2, 2))
    assert main(["fit", "--data", str(tiny_npz), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("iidfusion fit: internal error: ValueError: cannot reshape")
    assert "--debug" in err and DEBUG_ENV in err
