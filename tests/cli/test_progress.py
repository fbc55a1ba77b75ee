"""Progress bars: on stderr, one per job, off with --no-progress-bar; stdout holds the results only."""

from cli_support import FAST
from iidfusion.cli.main import main

WITH_BAR = [arg for arg in FAST if arg != "--no-progress-bar"]


def test_fit_draws_one_bar_over_epochs_on_stderr(tiny_npz, tmp_path, capsys):
    assert (
        main(
            [
                "fit",
                "--data",
                str(tiny_npz),
                "--method",
                "qmf",
                "--out",
                str(tmp_path / "a"),
                "--loggers",
                "",
                *WITH_BAR,
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    # A bar over the 2 epochs (how far it is drawn before it is cleared depends on tqdm's refresh interval).
    assert "qmf seed 0" in captured.err and "/2 [" in captured.err and "epoch" in captured.err
    assert "\r" not in captured.out and "qmf seed 0:" not in captured.out and "| 0 |" in captured.out
    assert (
        main(["fit", "--data", str(tiny_npz), "--method", "qmf", "--out", str(tmp_path / "b"), "--loggers", "", *FAST])
        == 0
    )
    captured = capsys.readouterr()
    assert captured.err == "" and "| 0 |" in captured.out


def test_compare_draws_one_bar_over_runs_and_keeps_its_lines(tiny_npz, tmp_path, capsys):
    args = [
        "compare",
        "--data",
        str(tiny_npz),
        "--methods",
        "lf-static,if-static",
        "--seeds",
        "1",
        "--noise",
        "0",
        "--out",
        str(tmp_path / "c"),
        "--loggers",
        "",
        "--no-checkpoints",
        *WITH_BAR,
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "compare" in captured.err and "running if-static seed 0" in captured.err and "2/2" in captured.err
    assert "[2/2] if-static seed 0" in captured.err
    assert "epoch/s" not in captured.err and "s/epoch" not in captured.err and "seed 0:  " not in captured.err, (
        "the fits inside a comparison draw no bar"
    )
    assert "\r" not in captured.out and "| if-static |" in captured.out
