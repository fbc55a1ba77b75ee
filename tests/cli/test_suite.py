import json

from cli_support import FAST
from iidfusion.cli.main import main


def test_suite_prints_its_table_and_refuses_to_mix_runs(tiny_npz, tmp_path, capsys):
    out = tmp_path / "suite"
    args = [
        "suite",
        "--datasets",
        f"{tiny_npz},synthetic",
        "--methods",
        "if-static,iid-l",
        "--variants",
        "vib,margin",
        "--seeds",
        "1",
        "--noise",
        "0",
        "--max-epochs",
        "1",
        "--loggers",
        "",
        "--no-checkpoints",
        "--out",
        str(out),
        *FAST,
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith((out / "suite.md").read_text())
    assert "| margin | iid-l | if-static |" in captured.out and "[6/6]" in captured.err and "[6/6]" not in captured.out
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    assert "0 to train" in capsys.readouterr().err
    assert main(["suite", "--report-only", "--out", str(out)]) == 0
    assert capsys.readouterr().out == (out / "suite.md").read_text()
    assert main(["suite", "--report-only", "--out", str(tmp_path / "none")]) == 2
    assert "no suite.json" in capsys.readouterr().err


def test_fit_tune_records_every_trial_and_trains_the_choice(tiny_npz, tmp_path, capsys):
    out = tmp_path / "fit"
    args = [
        "fit",
        "--data",
        str(tiny_npz),
        "--method",
        "iid-l-no-dc",
        "--tune",
        "--tune-alpha",
        "0.1,0.01",
        "--noise",
        "0",
        "--loggers",
        "csv",
        "--out",
        str(out),
        *FAST,
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "iid-l-no-dc" / "seed0" / "metrics.json").read_text())
    tuning = metrics["tuning"]
    assert [t["params"] for t in tuning["trials"]] == [{"alpha": 0.1}, {"alpha": 0.01}]
    chosen = max(tuning["trials"], key=lambda t: (t["val_acc"], -t["val_loss"]))
    assert tuning["chosen"] == chosen["params"] and f"alpha={chosen['params']['alpha']}" in printed
    assert metrics["test"] == chosen["test"], "the trained choice is the very run the trial scored"
    assert (out / "iid-l-no-dc" / "seed0" / "checkpoints" / "best.ckpt").is_file()
    assert main([*args, "--resume", "last"]) == 2
    assert "--tune" in capsys.readouterr().err
