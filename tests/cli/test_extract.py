"""``iidfusion extract`` on fixture data sets: caches that load, reuse, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from iidfusion.cli.main import main
from iidfusion.data import load_dataset
from tests.toy_data import write_toy_rgbd, write_toy_vision_language

QUICK = ["--image-encoder", "resnet18", "--image-size", "32", "--batch-size", "16", "--accelerator", "cpu"]
NO_FILES = ["--no-checkpoints", "--loggers", "", "--no-progress-bar", "--accelerator", "cpu"]


def test_extract_vision_language_then_reuse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_toy_vision_language(tmp_path / "mvsa", "mmbt", per_class=(4, 2, 2))
    out = tmp_path / "features"
    argv = [
        "extract",
        "--data-format",
        "mmbt",
        "--root",
        str(root),
        "--out",
        str(out),
        "--noise",
        "0,5",
        "--max-length",
        "16",
        *QUICK,
    ]
    with pytest.warns(UserWarning, match="random"):
        assert main(argv) == 0
    first = capsys.readouterr()
    assert (
        first.err.count("extracted") == 4 and "features image 1536, text 128" in first.out
    )  # 3 regions x 512; random BERT 128
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["class_names"] == ["class0", "class1", "class2"]
    assert manifest["settings"]["encoders"]["image"]["arch"] == "resnet18"
    assert (out / "tokenizer").is_dir()
    splits = load_dataset(out / "features_noise5.npz")
    assert splits.view_dims == {"image": 1536, "text": 128} and len(splits.test) == 6
    with pytest.warns(UserWarning):
        assert main(argv) == 0
    assert "extracted" not in capsys.readouterr().err  # the cache is current: nothing recomputed
    # The cache goes through the same `compare` as any multi-view file (here its noisy test variant).
    runs = tmp_path / "compare"
    assert (
        main(
            [
                "compare",
                "--data",
                str(out / "features_noise5.npz"),
                "--methods",
                "iid-l",
                "--seeds",
                "1",
                "--max-epochs",
                "2",
                "--batch-size",
                "8",
                "--noise",
                "0",
                "--out",
                str(runs),
                *NO_FILES,
            ]
        )
        == 0
    )
    assert "iid-l" in (runs / "results.md").read_text()


def test_extract_rgbd_salt_and_pepper(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_toy_rgbd(tmp_path / "nyud", per_class=(5, 2))
    out = tmp_path / "features"
    argv = [
        "extract",
        "--data-format",
        "rgbd",
        "--root",
        str(root),
        "--out",
        str(out),
        "--noise",
        "10",
        "--noise-kind",
        "salt-and-pepper",
        "--val-fraction",
        "0.2",
        *QUICK,
    ]
    with pytest.warns(UserWarning, match="random initialisation"):
        assert main(argv) == 0
    assert "features rgb 512, depth 512" in capsys.readouterr().out
    splits = load_dataset(out / "features_noise10.npz")
    assert splits.class_names == ("scene0", "scene1", "scene2") and (len(splits.train), len(splits.val)) == (12, 3)
    assert json.loads((out / "manifest.json").read_text())["settings"]["noise"]["kind"] == "salt-and-pepper"
    runs = tmp_path / "compare"
    assert (
        main(
            [
                "compare",
                "--data",
                str(out / "features_noise10.npz"),
                "--methods",
                "iid-q",
                "--seeds",
                "1",
                "--max-epochs",
                "2",
                "--batch-size",
                "8",
                "--noise",
                "0",
                "--out",
                str(runs),
                *NO_FILES,
            ]
        )
        == 0
    )
    assert "iid-q" in (runs / "results.md").read_text()


def test_extract_user_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["extract", "--data-format", "rgbd", "--root", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    )
    assert "RGB-D split folder not found" in capsys.readouterr().err
    root = write_toy_vision_language(tmp_path / "d", "mmbt", per_class=(2, 1, 1))
    assert (
        main(["extract", "--data-format", "mmbt", "--root", str(root), "--out", str(tmp_path / "o"), "--noise", "5,x"])
        == 2
    )
    assert "--noise must be comma-separated numbers" in capsys.readouterr().err


def test_parser_choices_match_the_library() -> None:
    from iidfusion.cli.extract import NOISE_KINDS, RAW_FORMATS
    from iidfusion.data.raw.families import RAW_FORMATS as LIBRARY_FORMATS
    from iidfusion.data.raw.input_noise import PIXEL_NOISE

    assert RAW_FORMATS == LIBRARY_FORMATS and set(NOISE_KINDS) == set(PIXEL_NOISE)


def test_extract_hfm_with_minilm_then_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """HFM's own files (tests/fixtures/hfm): tweet and attribute words, each through the offline MiniLM."""
    root = Path(__file__).resolve().parents[1] / "fixtures" / "hfm"
    out = tmp_path / "features"
    argv = [
        "extract",
        "--data-format",
        "hfm",
        "--root",
        str(root),
        "--text-encoder",
        "minilm",
        "--out",
        str(out),
        "--noise",
        "0,10",
        "--batch-size",
        "8",
        "--accelerator",
        "cpu",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "features text 384, attributes 384" in printed and "tweets without image attributes: train 1" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["family"] == "texts" and manifest["samples"] == {"train": 10, "val": 4, "test": 4}
    assert manifest["settings"]["encoders"]["attributes"]["type"] == "all-MiniLM-L6-v2"
    assert any("keyword filter" in note for note in manifest["notes"])
    clean, noisy = (
        load_dataset(out / "features.npz", scale=False),
        load_dataset(out / "features_noise10.npz", scale=False),
    )
    assert clean.view_dims == {"text": 384, "attributes": 384} and clean.class_names == ("0", "1")
    assert torch.allclose(clean.train.views["text"].norm(dim=1), torch.ones(10), atol=1e-5)  # MiniLM's unit-norm output
    assert torch.equal(clean.train.views["text"], noisy.train.views["text"])  # noise on the test split only
    assert not torch.equal(clean.test.views["text"], noisy.test.views["text"])
    assert main(argv) == 0 and "extracted" not in capsys.readouterr().err  # cached
    # `compare` on these features with configs/hfm_attributes.yaml: tests/test_benchmark_scripts.py


def test_compare_on_a_cache_folder_evaluates_each_level_on_its_noisy_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`compare --data FOLDER`: level eps is the test split extracted from inputs corrupted at eps
    (the same numbers as training on features_noise<eps>.npz with --noise 0), never feature noise."""
    fixture = Path(__file__).resolve().parents[1] / "fixtures" / "vision_language" / "csv"
    out = tmp_path / "features"
    argv = [
        "extract",
        "--data-format",
        "csv",
        "--root",
        str(fixture),
        "--csv-columns",
        "image=file,text=caption,label=sentiment,id=tweet_id",
        "--text-encoder",
        "minilm",
        "--out",
        str(out),
        "--noise",
        "0,10",
        *QUICK,
    ]
    with pytest.warns(UserWarning, match="random"):
        assert main(argv) == 0
    capsys.readouterr()
    train = ["--methods", "lf-static", "--seeds", "1", "--max-epochs", "3", "--batch-size", "4", *NO_FILES]
    assert main(["compare", "--data", str(out), "--noise", "0,10", "--out", str(tmp_path / "folder"), *train]) == 0
    assert (
        main(
            [
                "compare",
                "--data",
                str(out / "features_noise10.npz"),
                "--noise",
                "0",
                "--out",
                str(tmp_path / "file"),
                *train,
            ]
        )
        == 0
    )
    by_folder = json.loads((tmp_path / "folder" / "results.json").read_text())["results"]
    by_file = json.loads((tmp_path / "file" / "results.json").read_text())["results"]
    noisy = next(r["accuracy"] for r in by_folder if r["noise"] == 10)
    assert noisy == by_file[0]["accuracy"]
    capsys.readouterr()
    assert main(["compare", "--data", str(out), "--noise", "0,5", "--out", str(tmp_path / "x"), *train]) == 2
    assert "noise levels [5.0] are not in this feature cache (cached: [0.0, 10.0])" in capsys.readouterr().err
