"""``iidfusion extract`` on fixture data sets: caches that load, reuse, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iidfusion.cli.main import main
from iidfusion.data import load_dataset
from iidfusion.data.rgbd import write_toy_rgbd
from iidfusion.data.vision_language import write_toy_vision_language

QUICK = ["--image-encoder", "resnet18", "--image-size", "32", "--batch-size", "16", "--device", "cpu"]
NO_FILES = ["--no-checkpoints", "--loggers", "", "--no-progress-bar", "--accelerator", "cpu"]
CONFIGS = sorted(p for family in ("vl", "rgbd") for p in (Path(__file__).parents[2] / "configs" / family).glob("*.yaml"))


def test_extract_vision_language_then_reuse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_toy_vision_language(tmp_path / "mvsa", "mmbt", per_class=(4, 2, 2))
    out = tmp_path / "features"
    argv = ["extract", "--data-format", "mmbt", "--root", str(root), "--out", str(out), "--noise", "0,5", "--max-length", "16", *QUICK]
    with pytest.warns(UserWarning, match="random"):
        assert main(argv) == 0
    first = capsys.readouterr().out
    assert first.count("extracted") == 4 and "features image 1536, text 128" in first  # 3 regions x 512; random BERT 128
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["class_names"] == ["class0", "class1", "class2"]
    assert manifest["settings"]["encoders"]["image"]["arch"] == "resnet18"
    assert (out / "tokenizer").is_dir()
    splits = load_dataset(out / "features_noise5.npz")
    assert splits.view_dims == {"image": 1536, "text": 128} and len(splits.test) == 6
    with pytest.warns(UserWarning):
        assert main(argv) == 0
    assert "extracted" not in capsys.readouterr().out  # the cache is current: nothing recomputed
    # The cache goes through the same `compare` as any multi-view file (here its noisy test variant).
    runs = tmp_path / "compare"
    assert main(["compare", "--data", str(out / "features_noise5.npz"), "--methods", "iid-l", "--seeds", "1",
                 "--max-epochs", "2", "--batch-size", "8", "--noise", "0", "--out", str(runs), *NO_FILES]) == 0
    assert "iid-l" in (runs / "results.md").read_text()


def test_extract_rgbd_salt_and_pepper(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_toy_rgbd(tmp_path / "nyud", per_class=(5, 2))
    out = tmp_path / "features"
    argv = ["extract", "--data-format", "rgbd", "--root", str(root), "--out", str(out), "--noise", "10", "--noise-kind", "salt-and-pepper", "--val-fraction", "0.2", *QUICK]
    with pytest.warns(UserWarning, match="random initialisation"):
        assert main(argv) == 0
    assert "features rgb 512, depth 512" in capsys.readouterr().out
    splits = load_dataset(out / "features_noise10.npz")
    assert splits.class_names == ("scene0", "scene1", "scene2") and (len(splits.train), len(splits.val)) == (12, 3)
    assert json.loads((out / "manifest.json").read_text())["settings"]["noise"]["kind"] == "salt-and-pepper"
    runs = tmp_path / "compare"
    assert main(["compare", "--data", str(out / "features_noise10.npz"), "--methods", "iid-q", "--seeds", "1",
                 "--max-epochs", "2", "--batch-size", "8", "--noise", "0", "--out", str(runs), *NO_FILES]) == 0
    assert "iid-q" in (runs / "results.md").read_text()


def test_extract_user_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["extract", "--data-format", "rgbd", "--root", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "RGB-D split folder not found" in capsys.readouterr().err
    root = write_toy_vision_language(tmp_path / "d", "mmbt", per_class=(2, 1, 1))
    assert main(["extract", "--data-format", "mmbt", "--root", str(root), "--out", str(tmp_path / "o"), "--noise", "5,x"]) == 2
    assert "--noise must be comma-separated numbers" in capsys.readouterr().err


def test_parser_choices_match_the_library() -> None:
    from iidfusion.cli.extract import NOISE_KINDS, RAW_FORMATS
    from iidfusion.data.input_noise import PIXEL_NOISE
    from iidfusion.encoders.families import RAW_FORMATS as LIBRARY_FORMATS

    assert RAW_FORMATS == LIBRARY_FORMATS and set(NOISE_KINDS) == set(PIXEL_NOISE)


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


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shipped_configs_load_for_finetune(path: Path) -> None:
    from iidfusion.cli.extract import finetune_settings
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
    from iidfusion.cli.extract import finetune_settings
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
