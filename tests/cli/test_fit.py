import json

import pytest
import yaml

from cli_support import FAST
from iidfusion.cli.main import main
from iidfusion.engine.outputs import MARKER


def test_fit_prints_saves_and_resumes(tiny_npz, tmp_path, capsys):
    args = [
        "fit",
        "--data",
        str(tiny_npz),
        "--method",
        "iid-p",
        "--seed",
        "1",
        "--out",
        str(tmp_path),
        "--noise",
        "0,10",
        *FAST,
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "iid-p on tiny, seed 1: 2 epochs" in out and "| 10 |" in out
    run = tmp_path / "iid-p" / "seed1"
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["method"] == "iid-p" and [t["noise"] for t in summary["test"]] == [0.0, 10.0]
    assert "max_epochs: 2" in (run / "config.yaml").read_text()
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "csv" / "version_0" / "metrics.csv").is_file()

    assert main([*args, "--max-epochs", "3", "--resume"]) == 0  # --resume alone: from the last checkpoint
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 3
    assert "3 epochs" in capsys.readouterr().out


def test_fit_from_config_file(tiny_npz, tmp_path, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(f"data: {tiny_npz}\nmethod: lf-static\nseed: 2\ntrain:\n  loggers: []\n  checkpoints: false\n")
    assert main(["fit", "--config", str(config), "--out", str(tmp_path / "o"), *FAST]) == 0
    assert "lf-static on tiny, seed 2" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "o" / "lf-static" / "seed2").iterdir()) == [
        MARKER,
        "config.yaml",
        "metrics.json",
    ]


@pytest.mark.parametrize(
    "command",
    [["fit"], ["compare"], ["suite"], ["demo"], ["finetune", "--data-format", "mmbt", "--root", "missing"]],
)
def test_print_config_prints_the_resolved_configuration_and_stops(command, tmp_path, capsys):
    """Defaults < --config < flags, printed as the YAML that --config reads back; nothing runs or is written."""
    config = tmp_path / "base.yaml"
    config.write_text("loss:\n  alpha: 0.3\ntrain:\n  max_epochs: 9\n")
    out = tmp_path / "out"
    args = [*command, "--config", str(config), "--max-epochs", "7", "--out", str(out), "--print-config"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    values = yaml.safe_load(printed)
    assert values["loss"]["alpha"] == 0.3 and values["train"]["max_epochs"] == 7 and values["out"] == str(out)
    assert not out.exists()
    again = tmp_path / "printed.yaml"
    again.write_text(printed)
    assert main([*command, "--config", str(again), "--print-config"]) == 0
    assert capsys.readouterr().out == printed
