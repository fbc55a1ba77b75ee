import sys

import pytest

from iidfusion.cli.main import SUBCOMMANDS, main


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("demo", "fit", "compare", "datasets"):
        assert name in SUBCOMMANDS and name in out


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("fit", ["--method METHOD", "(default: iid-p)", "--resume CKPT", "--alpha ALPHA", "(default: 0.1)"]),
        ("compare", ["--methods METHODS", "(default: main)", "--seeds SEEDS", "(default: 5)", "--noise NOISE",
                     "(default: 0,5,10)", "--max-epochs MAX_EPOCHS", "--out OUT", "--config FILE", "--data DATA"]),
        ("demo", ["(default: 15)", "(default: runs/demo)", "--jobs JOBS", "(default: 2)"]),
        ("datasets", ["NAME_OR_PATH"]),
    ],
)
def test_subcommand_help_shows_defaults(capsys, command, expected):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in expected:
        assert text in out
    assert ("--method " in out) == (command == "fit") and ("--seeds" in out) == (command in ("compare", "demo"))


def test_study_commands_run_through_iidfusion_where_the_studies_are_installed(capsys, monkeypatch):
    from iidfusion.cli.main import STUDY_COMMANDS, main

    for command in STUDY_COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0 and f"python -m iidfusion_studies {command}" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "iidfusion_studies.cli", None)  # as without the studies installed
    assert main(["plot", "--runs", "x", "--out", "y.png"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "pip install -e studies" in error
