"""Bad input at the command line: one line on stderr naming the problem, exit code 2, no files."""

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from cli_support import FAST, fail_the_fit, files_under
from iidfusion.cli.main import CommandError, main
from iidfusion.tasks.classification.report import RESULT_FILES

RNG = np.random.default_rng(0)


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def _bad_inputs(folder):
    a, b = RNG.normal(size=(30, 4)), RNG.normal(size=(30, 4))
    labels = np.arange(30) % 3
    with_nan, with_inf = a.copy(), b.copy()
    with_nan[3, 1], with_inf[0, 0] = np.nan, np.inf
    (folder / "garbage.mat").write_bytes(b"not a MATLAB file" * 20)
    scipy.io.savemat(folder / "no_views.mat", {"Y": labels, "name": "no matrix here"})
    scipy.io.savemat(folder / "no_labels.mat", {"X": np.array([[a, b]], dtype=object)})
    (folder / "bad_key.yaml").write_text("loss:\n  alpah: 1\n")
    (folder / "bad_top_key.yaml").write_text("epochs: 3\n")
    (folder / "bad_strategy_key.yaml").write_text("strategy:\n  pdf:\n    hidden: 3\n")
    return {
        "missing file": (["--data", str(folder / "missing.mat")], "no such file: "),
        "unreadable file": (["--data", str(folder / "garbage.mat")], "cannot read"),
        "no views": (["--data", str(folder / "no_views.mat")], "no views found"),
        "no labels": (["--data", str(folder / "no_labels.mat")], "label"),
        "mismatched views": (
            ["--data", str(_npz(folder / "mismatch.npz", a=a, b=b[:29], labels=labels))],
            "different sample counts",
        ),
        "nan": (["--data", str(_npz(folder / "nan.npz", a=with_nan, b=b, labels=labels))], "view 'a' has 1 NaN"),
        "inf": (["--data", str(_npz(folder / "inf.npz", a=a, b=with_inf, labels=labels))], "inf"),
        "single class": (["--data", str(_npz(folder / "one.npz", a=a, b=b, labels=np.zeros(30)))], "single class"),
        "single view": (["--data", str(_npz(folder / "view.npz", a=a, labels=labels))], "fusion needs at least two"),
        "unknown data name": (["--data", "mnist"], "unknown data set 'mnist'"),
        "unknown method": (["--methods", "iid-x"], "unknown method 'iid-x'"),
        "unknown config key": (["--config", str(folder / "bad_key.yaml")], "unknown config key 'loss.alpah'"),
        "unknown top-level key": (["--config", str(folder / "bad_top_key.yaml")], "unknown config key 'epochs'"),
        "missing config": (["--config", str(folder / "none.yaml")], "config file not found"),
        "unknown strategy option": (
            ["--config", str(folder / "bad_strategy_key.yaml")],
            "unknown config key 'strategy.pdf.hidden'",
        ),
        "strategy option out of range": (
            ["--qmf-lam-rank", "-1"],
            "--qmf-lam-rank (strategy.qmf.lam_rank) must be finite and >= 0, got -1.0",
        ),
        "negative noise": (["--noise", "0,-5"], "noise levels must be finite and >= 0"),
        "unknown noise view": (["--noise-view", "zzz"], "noise view 'zzz' is not a view"),
        "unknown logger": (["--loggers", "neptune"], "unknown logger 'neptune'"),
    }


CASES = [
    "missing file",
    "unreadable file",
    "no views",
    "no labels",
    "mismatched views",
    "nan",
    "inf",
    "single class",
    "single view",
    "unknown data name",
    "unknown method",
    "unknown config key",
    "unknown top-level key",
    "missing config",
    "unknown strategy option",
    "strategy option out of range",
    "negative noise",
    "unknown noise view",
    "unknown logger",
]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    return _bad_inputs(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("command", ["compare", "fit"])
@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_no_files(case, command, bad_inputs, tmp_path, capsys):
    args, message = bad_inputs[case]
    if command == "fit" and args[0] == "--methods":
        args = ["--method", args[1]]
    out = tmp_path / "out"
    assert main([command, *args, "--out", str(out), "--seeds" if command == "compare" else "--seed", "1", *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"iidfusion {command}: error: ") and err.count("\n") == 1, err
    assert message in err
    assert files_under(out) == []


def test_all_bad_cases_are_tested(bad_inputs):
    assert sorted(bad_inputs) == sorted(CASES)


def test_fit_refuses_a_method_group(tmp_path, capsys):
    assert main(["fit", "--method", "main", "--out", str(tmp_path / "o"), *FAST]) == 2
    assert "fit trains one method" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("failure", "code", "said"), [(CommandError, 2, "error: "), (RuntimeError, 1, "internal error: RuntimeError: ")]
)
def test_a_failing_comparison_keeps_its_finished_runs_and_resumes(
    tiny_npz, tmp_path, monkeypatch, capsys, failure, code, said
):
    """A failure after some runs finished (here: the third fit) writes no results.csv/json/md/png
    and keeps the two finished runs: `--resume` trains only the other two. Bad input found late
    is exit 2, a bug (any other exception) exit 1."""
    calls = fail_the_fit(monkeypatch, 3, failure("simulated failure in the third run"))
    out = tmp_path / "cmp"
    args = [
        "compare",
        "--data",
        str(tiny_npz),
        "--methods",
        "lf-static,if-static",
        "--seeds",
        "2",
        "--out",
        str(out),
        "--loggers",
        "csv",
        *FAST,
    ]
    assert main(args) == code
    lines = capsys.readouterr().err.splitlines()  # the progress of the two finished fits, then the error
    assert [line for line in lines if line.startswith("iidfusion")] == lines[-1:]
    assert f"{said}simulated failure in the third run" in lines[-1]
    assert len(calls) == 3 and not any((out / name).exists() for name in RESULT_FILES)
    assert len(list((out / "cache").glob("*.json"))) == 2 and not (out / "runs" / "lf-static" / "seed1").exists()
    assert main(args) == 2
    assert "already holds a run; pass --overwrite to replace it or --resume to continue it" in capsys.readouterr().err
    monkeypatch.undo()
    assert main([*args, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "compare: 2 of 4 runs already done, 2 to train" in err and "[2/2] if-static seed 1" in err
    results = json.loads((out / "results.json").read_text())["results"]
    assert sorted({(r["method"], r["seed"]) for r in results}) == [
        (m, s) for m in ("if-static", "lf-static") for s in (0, 1)
    ]
    assert not (out / "cache").exists() and (out / "runs" / "lf-static" / "seed1" / "csv").is_dir()


def test_an_interrupted_comparison_keeps_its_finished_runs(tiny_npz, tmp_path, monkeypatch, capsys):
    fail_the_fit(monkeypatch, 2, KeyboardInterrupt())
    out = tmp_path / "cmp"
    args = [
        "compare",
        "--data",
        str(tiny_npz),
        "--methods",
        "lf-static,if-static",
        "--seeds",
        "1",
        "--out",
        str(out),
        *FAST,
    ]
    assert main(args) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"iidfusion compare: interrupted; 1 finished runs are kept in {out}: continue with the same command and "
        "--resume"
    )
    monkeypatch.undo()
    assert main([*args, "--resume"]) == 0 and (out / "results.md").is_file()


def test_a_warning_is_one_line_naming_the_command(tmp_path):
    """A warning (here: an array of the data file passed over) is one line, as an error reads
    (with --debug: where it was raised). In a process of its own: pytest records warnings instead
    of printing them."""
    import subprocess
    import sys

    data = Path(__file__).resolve().parents[1] / "fixtures" / "multiview" / "concatenated_features_by_samples.mat"
    argv = [
        "fit",
        "--data",
        str(data),
        "--method",
        "lf-static",
        "--out",
        str(tmp_path / "a"),
        "--no-checkpoints",
        "--loggers",
        "",
        *FAST,
    ]
    run = subprocess.run([sys.executable, "-m", "iidfusion", *argv], capture_output=True, text=True, check=True)
    said = [line for line in run.stderr.splitlines() if "warning" in line]
    assert said == [
        f"iidfusion fit: warning: {data}: ignored 'X_all' (30, 12): the concatenation of the other views"
    ], run.stderr
