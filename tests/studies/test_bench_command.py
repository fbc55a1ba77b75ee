from iidfusion.cli.main import main


def test_bench_wasserstein_prints_what_it_writes(tmp_path, capsys):
    args = [
        "bench",
        "wasserstein",
        "--quick",
        "--dims",
        "16",
        "--sizes",
        "10",
        "--real",
        "none",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed == (tmp_path / "wasserstein.md").read_text()
    assert "## flat d=16 n=10" in printed and "## concentrated d=16 n=10" in printed
    assert (tmp_path / "wasserstein.png").is_file() and (tmp_path / "wasserstein.csv").is_file()


def test_bench_quick_without_out_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "wasserstein", "--quick", "--dims", "8", "--sizes", "6", "--real", "none"]) == 0
    assert "exact (truth)" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_bench_train_prints_what_it_writes(tmp_path, capsys):
    args = [
        "bench",
        "train",
        "--quick",
        "--workloads",
        "handwritten-mlp",
        "--methods",
        "if-qmf,iid-q",
        "--no-memory",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed == (tmp_path / "train_cost.md").read_text()
    assert "| qmf |" in printed


def test_bench_bad_input_exits_2(capsys):
    assert main(["bench", "wasserstein", "--quick", "--real", "mnist"]) == 2
    assert "unknown real data 'mnist'" in capsys.readouterr().err
    assert main(["bench", "train", "--quick", "--methods", "nope"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
