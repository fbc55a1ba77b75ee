"""``iidfusion finetune`` on fixture data sets: end-to-end runs, shipped configs, option precedence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iidfusion.cli.main import SUBCOMMANDS, main
from iidfusion.data.rgbd import write_toy_rgbd

NO_FILES = ["--no-checkpoints", "--loggers", "", "--no-progress-bar", "--accelerator", "cpu"]
CONFIGS = sorted(p for family in ("vl", "rgbd") for p in (Path(__file__).parents[2] / "configs" / family).glob("*.yaml"))


def test_finetune_end_to_end_on_rgbd_fixture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_toy_rgbd(tmp_path / "nyud", per_class=(8, 3))
    out = tmp_path / "runs"
    argv = ["finetune", "--data-format", "rgbd", "--root", str(root), "--val-fraction", "0.25", "--image-size", "16",
            "--freeze", "rgb=9,depth=9", "--methods", "if-static,iid-l", "--seeds", "1", "--max-epochs", "2",
            "--batch-size", "8", "--noise", "0,5", "--out", str(out), *NO_FILES]
    with pytest.warns(UserWarning, match="random initialisation"):
        assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "iid-l seed 0: test accuracy % by noise level {0: " in printed
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["finetune"]["freeze_epochs"] == {"rgb": 9, "depth": 9}
    assert {(r["method"], r["noise"]) for r in results["results"]} == {(m, n) for m in ("if-static", "iid-l") for n in (0.0, 5.0)}


def test_finetune_end_to_end_on_hfm_fixture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """HFM's own files: tweet and attribute words, each its own (random, tiny) text encoder, trained end to end."""
    root = Path(__file__).resolve().parents[1] / "fixtures" / "hfm"
    argv = ["finetune", "--data-format", "hfm", "--root", str(root), "--text-encoder", "random", "--max-length", "16",
            "--methods", "iid-l", "--seeds", "1", "--max-epochs", "1", "--batch-size", "4", "--noise", "0,5",
            "--out", str(tmp_path / "runs"), *NO_FILES]
    with pytest.warns(UserWarning, match="randomly initialised BERT"):
        assert main(argv) == 0
    assert "iid-l seed 0: test accuracy % by noise level {0: " in capsys.readouterr().out
    results = json.loads((tmp_path / "runs" / "results.json").read_text())
    assert {(r["method"], r["noise"]) for r in results["results"]} == {("iid-l", 0.0), ("iid-l", 5.0)}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shipped_configs_load_for_finetune(path: Path) -> None:
    from iidfusion.cli.finetune import finetune_settings
    from iidfusion.cli.main import build_parser
    from iidfusion.training.config import resolve_methods

    args = build_parser().parse_args(["finetune", "--data-format", "rgbd" if path.parent.name == "rgbd" else "mmbt",
                                      "--root", "unused", "--config", str(path)])
    config, finetune, _ = finetune_settings(args, "rgbd" if path.parent.name == "rgbd" else "vision-language")
    family = path.stem.rsplit("_", 1)[1]
    assert resolve_methods(config.methods) == {"static": ("lf-static", "if-static", "iid-l"), "qmf": ("qmf", "if-qmf", "iid-q"),
                                               "pdf": ("pdf", "if-pdf", "iid-p")}[family]
    assert config.seeds == 5 and config.eval.noise == (0.0, 5.0, 10.0) and config.optim.lr in (5e-5, 1e-4)
    assert finetune.freeze_epochs == ({} if path.parent.name == "rgbd" else {"image": 3, "text": 5})
    expected_alpha = {"mvsa_single": 0.01, "mvsa_multiple": 0.1, "nyud2": 1.0}.get(path.stem.rsplit("_", 1)[0])
    if expected_alpha is not None:
        assert config.loss.alpha == expected_alpha  # the paper's best alpha where it reports one


def test_finetune_config_sections_and_flag_precedence(tmp_path: Path) -> None:
    from iidfusion.cli.finetune import finetune_settings
    from iidfusion.cli.main import build_parser

    config_file = tmp_path / "c.yaml"
    config_file.write_text("loss: {alpha: 0.5}\nfinetune: {accumulate_grad_batches: 4, freeze_epochs: {text: 2}}\n"
                           "encoders: {max_length: 64, regions: 1}\n")
    args = build_parser().parse_args(["finetune", "--data-format", "mmbt", "--root", "x", "--config", str(config_file),
                                      "--max-length", "32", "--accumulate-grad-batches", "8"])
    config, finetune, encoders = finetune_settings(args, "vision-language")
    assert config.loss.alpha == 0.5 and finetune.freeze_epochs == {"text": 2}
    assert finetune.accumulate_grad_batches == 8 and encoders.max_length == 32 and encoders.regions == 1
    config_file.write_text("finetune: {freeze: 3}\n")
    with pytest.raises(ValueError, match="unknown keys \\['freeze'\\] in the config's finetune section"):
        finetune_settings(args, "vision-language")


def test_registered_by_its_own_module_after_extract() -> None:
    from iidfusion.cli import finetune
    from iidfusion.cli.main import build_parser

    assert SUBCOMMANDS[SUBCOMMANDS.index("extract") + 1] == "finetune"
    assert build_parser().parse_args(["finetune", "--data-format", "mmbt", "--root", "x"]).handler is finetune.run
