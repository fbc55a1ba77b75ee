import numpy as np

from iidfusion.cli.main import main


def _tiny(tmp_path):
    """Sweep flags on two views of 90 samples, 3 classes (trains in a fraction of a second)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 30)
    path = tmp_path / "tiny.npz"
    np.savez(
        path, a=rng.normal(labels[:, None], 1.0, (90, 5)), b=rng.normal(labels[:, None], 1.0, (90, 7)), labels=labels
    )
    return [
        "--data",
        str(path),
        "--method",
        "iid-l",
        "--max-epochs",
        "2",
        "--width",
        "16",
        "--hidden",
        "16",
        "--d2",
        "8",
        "--max-iter",
        "10",
        "--d1",
        "4",
    ]


def test_sweep_grid_prints_what_it_writes(tmp_path, capsys):
    args = ["sweep", *_tiny(tmp_path), "--alpha", "0.1", "--beta", "0.1,1", "--d1", "4", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    out = capsys.readouterr().out
    report = (tmp_path / "out" / "sweep_tiny.md").read_text()
    assert out.startswith(report)
    assert report.count("| 0.1 | ") == 2  # two grid points
    assert (tmp_path / "out" / "sweep_tiny.png").read_bytes()[:4] == b"\x89PNG"


def test_sweep_errors_exit_2(tmp_path, capsys):
    tiny, out = _tiny(tmp_path), str(tmp_path / "out")
    assert main(["sweep", *tiny, "--trials", "3", "--out", out]) == 2
    assert "--trials applies to --search optuna only" in capsys.readouterr().err
    assert main(["sweep", *tiny, "--method", "qmf", "--out", out]) == 2
    assert "neither L_ic nor L_dc" in capsys.readouterr().err
    assert main(["sweep", *tiny, "--search", "optuna", "--out", out]) == 2
    assert "--trials >= 1" in capsys.readouterr().err
    assert main(["sweep", *tiny, "--d1", "40", "--out", out]) == 2
    assert "d1 must be" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
