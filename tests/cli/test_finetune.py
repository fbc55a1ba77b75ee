"""``iidfusion finetune`` on fixture data sets: end-to-end runs, shipped configs, option precedence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iidfusion.cli.main import SUBCOMMANDS, main
from tests.toy_data import write_toy_rgbd

NO_FILES = ["--no-checkpoints", "--loggers", "", "--no-progress-bar", "--accelerator", "cpu"]
# The finetune configs, one per data set and family (configs/vl/mvsa_single.yaml is compare's, on features).
CONFIGS = sorted(
    p
    for family in ("vl", "rgbd")
    for p in (Path(__file__).parents[2] / "configs" / family).glob("*_*.yaml")
    if p.stem.rsplit("_", 1)[1] in ("static", "qmf", "pdf")
)


def test_finetune_end_to_end_on_rgbd_fixture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_toy_rgbd(tmp_path / "nyud", per_class=(8, 3))
    out = tmp_path / "runs"
    argv = [
        "finetune",
        "--data-format",
        "rgbd",
        "--root",
        str(root),
        "--val-fraction",
        "0.25",
        "--image-size",
        "16",
        "--freeze",
        "rgb=9,depth=9",
        "--methods",
        "if-static,iid-l",
        "--seeds",
        "1",
        "--max-epochs",
        "2",
        "--batch-size",
        "8",
        "--noise",
        "0,5",
        "--out",
        str(out),
        *NO_FILES,
    ]
    with pytest.warns(UserWarning, match="random initialisation"):
        assert main(argv) == 0
    printed = capsys.readouterr()
    assert "[2/2] iid-l seed 0: test acc % by noise level {0: " in printed.err  # progress as `compare`'s, on stderr
    assert "| iid-l |" in printed.out and "results written to" in printed.out
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["finetune"]["freeze_epochs"] == {"rgb": 9, "depth": 9}
    assert [(r["method"], r["seed"]) for r in results["runs"]] == [("if-static", 0), ("iid-l", 0)]
    assert {(r["method"], r["noise"]) for r in results["results"]} == {
        (m, n) for m in ("if-static", "iid-l") for n in (0.0, 5.0)
    }


def test_finetune_end_to_end_on_hfm_fixture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """HFM's own files: tweet and attribute words, each its own (random, tiny) text encoder, trained end to end."""
    root = Path(__file__).resolve().parents[1] / "fixtures" / "hfm"
    argv = [
        "finetune",
        "--data-format",
        "hfm",
        "--root",
        str(root),
        "--text-encoder",
        "random",
        "--max-length",
        "16",
        "--methods",
        "iid-l",
        "--seeds",
        "1",
        "--max-epochs",
        "1",
        "--batch-size",
        "4",
        "--noise",
        "0,5",
        "--out",
        str(tmp_path / "runs"),
        *NO_FILES,
    ]
    with pytest.warns(UserWarning, match="randomly initialised BERT"):
        assert main(argv) == 0
    assert "[1/1] iid-l seed 0: test acc % by noise level {0: " in capsys.readouterr().err
    results = json.loads((tmp_path / "runs" / "results.json").read_text())
    assert {(r["method"], r["noise"]) for r in results["results"]} == {("iid-l", 0.0), ("iid-l", 5.0)}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shipped_configs_load_for_finetune(path: Path) -> None:
    from iidfusion.cli.finetune import finetune_settings
    from iidfusion.cli.main import build_parser
    from iidfusion.tasks.classification.config import resolve_methods

    args = build_parser().parse_args(
        [
            "finetune",
            "--data-format",
            "rgbd" if path.parent.name == "rgbd" else "mmbt",
            "--root",
            "unused",
            "--config",
            str(path),
        ]
    )
    settings = finetune_settings(args, "rgbd" if path.parent.name == "rgbd" else "vision-language")
    config, finetune = settings.experiment, settings.finetune
    family = path.stem.rsplit("_", 1)[1]
    assert (
        resolve_methods(config.methods)
        == {
            "static": ("lf-static", "if-static", "iid-l"),
            "qmf": ("qmf", "if-qmf", "iid-q"),
            "pdf": ("pdf", "if-pdf", "iid-p"),
        }[family]
    )
    assert config.seeds == 5 and config.eval.noise == (0.0, 5.0, 10.0) and config.optim.lr in (5e-5, 1e-4)
    assert finetune.freeze_epochs == ({} if path.parent.name == "rgbd" else {"image": 3, "text": 5})
    expected_alpha = {"mvsa_single": 0.01, "mvsa_multiple": 0.1, "nyud2": 1.0}.get(path.stem.rsplit("_", 1)[0])
    if expected_alpha is not None:
        assert config.loss.alpha == expected_alpha  # the paper's best alpha where it reports one


def test_finetune_config_sections_and_flag_precedence(tmp_path: Path) -> None:
    from iidfusion.cli.finetune import finetune_settings
    from iidfusion.cli.main import build_parser

    config_file = tmp_path / "c.yaml"
    config_file.write_text(
        "loss: {alpha: 0.5}\nfinetune: {accumulate_grad_batches: 4, freeze_epochs: {text: 2}}\n"
        "encoders: {max_length: 64, regions: 1}\n"
    )
    args = build_parser().parse_args(
        [
            "finetune",
            "--data-format",
            "mmbt",
            "--root",
            "x",
            "--config",
            str(config_file),
            "--max-length",
            "32",
            "--accumulate-grad-batches",
            "8",
        ]
    )
    settings = finetune_settings(args, "vision-language")
    config, finetune, encoders = settings.experiment, settings.finetune, settings.encoders
    assert config.loss.alpha == 0.5 and finetune.freeze_epochs == {"text": 2}
    assert finetune.accumulate_grad_batches == 8 and encoders.max_length == 32 and encoders.regions == 1
    assert finetune_settings(
        build_parser().parse_args(["finetune", "--data-format", "mmbt", "--root", "x"]), "vision-language"
    ).finetune.freeze_epochs == {"image": 3, "text": 5}  # the family's default


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "finetune: {freeze: 3}\n",
            "unknown config key 'finetune.freeze' in .*c.yaml; known keys: accumulate_grad_batches",
        ),
        (
            "encoders: {init_seed: 3}\n",
            "'encoders.init_seed' in .*c.yaml: the encoders are initialised from each run's seed",
        ),
        ("encoders: {regions: two}\n", "config key 'encoders.regions' must be an int, got 'two'"),
        ("tune: {enabled: true}\n", "tune.enabled: `finetune` does not tune"),
        ("loss: {alpha: -1}\n", "--alpha \\(loss.alpha\\) must be finite and >= 0, got -1"),
        ("methods: [iid-x]\n", "unknown method 'iid-x'"),
    ],
)
def test_bad_finetune_settings_are_refused_before_any_data_is_read(tmp_path: Path, text: str, said: str) -> None:
    from iidfusion.cli.finetune import finetune_settings
    from iidfusion.cli.main import build_parser

    config_file = tmp_path / "c.yaml"
    config_file.write_text(text)
    args = build_parser().parse_args(["finetune", "--data-format", "mmbt", "--root", "x", "--config", str(config_file)])
    with pytest.raises(ValueError, match=said):
        finetune_settings(args, "vision-language")


def test_finetune_has_no_tuning_flags() -> None:
    from iidfusion.cli.main import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["finetune", "--data-format", "mmbt", "--root", "x", "--tune"])


def test_registered_by_its_own_module_after_extract() -> None:
    from iidfusion.cli import finetune
    from iidfusion.cli.main import build_parser

    assert SUBCOMMANDS[SUBCOMMANDS.index("extract") + 1] == "finetune"
    assert build_parser().parse_args(["finetune", "--data-format", "mmbt", "--root", "x"]).handler is finetune.run
