import numpy as np

from iidfusion.cli.main import main


def _tiny_views(path):
    """Two views of 90 samples, 3 classes: a data file that trains in a fraction of a second."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 30)
    np.savez(
        path, a=rng.normal(labels[:, None], 1.0, (90, 5)), b=rng.normal(labels[:, None], 1.0, (90, 7)), labels=labels
    )
    return str(path)


def test_plot_reads_real_fit_logs(tmp_path, capsys):
    fit = [
        "--data",
        _tiny_views(tmp_path / "tiny.npz"),
        "--max-epochs",
        "3",
        "--width",
        "16",
        "--hidden",
        "16",
        "--d2",
        "8",
        "--max-iter",
        "20",
        "--no-checkpoints",
        "--no-progress-bar",
        "--noise",
        "0",
        "--patience",
        "0",
    ]
    for method in ("if-qmf", "iid-q"):
        assert main(["fit", "--method", method, "--out", str(tmp_path), *fit]) == 0
    capsys.readouterr()
    runs = [str(tmp_path / m / "seed0") for m in ("if-qmf", "iid-q")]
    figure, table = tmp_path / "fig" / "fig4.png", tmp_path / "fig4.md"
    vector = figure.with_suffix(".pdf")
    assert main(["plot", "--runs", *runs, "--out", str(figure), str(vector), "--table", str(table)]) == 0
    printed = capsys.readouterr().out
    assert figure.read_bytes()[:4] == b"\x89PNG" and vector.read_bytes()[:4] == b"%PDF"
    assert printed.startswith(table.read_text())
    rows = [line.split(" | ") for line in printed.splitlines() if line.startswith(("| if-qmf", "| iid-q"))]
    assert len(rows) == 6  # the monitoring table, then one diagnostics row per run and modality
    assert all(row[1] == "3" for row in rows[:2])  # 3 epochs each
    assert [row[1] for row in rows[2:]] == ["a", "b", "a", "b"]


def test_plot_errors_exit_2(tmp_path, capsys):
    assert main(["plot", "--runs", str(tmp_path / "nothing"), "--out", str(tmp_path / "f.png")]) == 2
    assert "no run log" in capsys.readouterr().err
    assert main(["plot", "--runs", str(tmp_path), "--out", str(tmp_path / "f.txt")]) == 2
    assert ".png, .pdf or .svg" in capsys.readouterr().err
    assert main(["plot", "--runs", "a", "b", "--labels", "x", "--out", str(tmp_path / "f.png")]) == 2
    assert "2 runs" in capsys.readouterr().err
