"""Reuse of a trained model: fit -> predict gives back metrics.json's test accuracy; load_model."""

import csv
import json

import pytest
import torch
import yaml

import iidfusion
from cli_support import FAST
from iidfusion.cli.main import main
from iidfusion.tasks.classification.config import LossConfig, config_from_dict
from iidfusion.tasks.classification.module import FusionModule


@pytest.fixture(scope="module")
def run(tiny_npz, tmp_path_factory):
    """A fit of a method with per-sample fusion weights (QMF) with seed 1 (its own split)."""
    out = tmp_path_factory.mktemp("fit")
    assert (
        main(
            [
                "fit",
                "--data",
                str(tiny_npz),
                "--method",
                "iid-q",
                "--seed",
                "1",
                "--out",
                str(out),
                *FAST,
                "--max-epochs",
                "3",
                "--loggers",
                "",
            ]
        )
        == 0
    )
    return out / "iid-q" / "seed1"


def test_fit_then_predict_gives_the_accuracy_of_metrics_json(run, tiny_npz, tmp_path, capsys):
    capsys.readouterr()
    out = tmp_path / "pred.csv"
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(run / "checkpoints" / "best.ckpt"),
                "--data",
                str(tiny_npz),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(out.open()))
    metrics = json.loads((run / "metrics.json").read_text())
    clean = next(t for t in metrics["test"] if t["noise"] == 0)
    accuracy = sum(r["label"] == r["predicted_name"] for r in rows) / len(rows)
    assert len(rows) == 24 and [int(r["index"]) for r in rows] == list(range(24))
    assert accuracy == pytest.approx(clean["accuracy"], abs=1e-6)
    assert f"accuracy {100 * clean['accuracy']:.2f}%" in capsys.readouterr().out
    probabilities = [[float(r[f"prob_{c}"]) for c in "012"] for r in rows]
    weights = [[float(r[k]) for k in r if k.startswith("weight_")] for r in rows]
    assert all(abs(sum(p) - 1) < 1e-4 for p in probabilities) and all(
        len(w) == 3 and abs(sum(w) - 1) < 1e-4 for w in weights
    )
    assert len({tuple(w) for w in weights}) > 1, "QMF's weights differ from sample to sample"
    assert all(
        r["predicted_name"] == "012"[max(range(3), key=p.__getitem__)] for r, p in zip(rows, probabilities, strict=True)
    )


def test_metrics_json_records_provenance_and_the_full_config(run):
    metrics = json.loads((run / "metrics.json").read_text())
    provenance = metrics["provenance"]
    assert provenance["iidfusion"] == iidfusion.__version__ and provenance["torch"] == torch.__version__
    assert {"git_commit", "lightning", "python", "device", "platform"} <= set(provenance)
    assert provenance["device"] == "cpu"
    assert metrics["config"] == yaml.safe_load((run / "config.yaml").read_text())
    assert (
        metrics["config"]["train"]["max_epochs"] == 3 and metrics["config"]["loss"]["alpha"] == LossConfig().alpha
    )  # a default too


def test_load_model_returns_the_trained_model_with_its_config(run, tiny_npz):
    trained = iidfusion.load_model(run / "checkpoints" / "best.ckpt")
    assert trained.method == "iid-q" and trained.seed == 1 and trained.output_names == ("0", "1", "2")
    assert trained.config == config_from_dict(yaml.safe_load((run / "config.yaml").read_text()), "config.yaml")
    assert not trained.model.training
    splits = iidfusion.load_dataset(tiny_npz, seed=1)
    logits = trained.model(splits.test.views).logits
    metrics = json.loads((run / "metrics.json").read_text())
    accuracy = float((logits.argmax(1) == splits.test.labels).float().mean())
    assert accuracy == pytest.approx(metrics["test"][0]["accuracy"], abs=1e-6)
    # Lightning's idiom works too, and gives the same weights.
    module = FusionModule.load_from_checkpoint(run / "checkpoints" / "best.ckpt")
    assert torch.equal(module(splits.test.views), logits)


def test_predict_every_split_and_refuse_to_overwrite(run, tiny_npz, tmp_path):
    out = tmp_path / "all.csv"
    args = [
        "predict",
        "--checkpoint",
        str(run / "checkpoints" / "last.ckpt"),
        "--data",
        str(tiny_npz),
        "--out",
        str(out),
        "--split",
        "all",
    ]
    assert main(args) == 0
    rows = list(csv.DictReader(out.open()))
    assert [sum(r["split"] == s for r in rows) for s in ("train", "val", "test")] == [84, 12, 24]
    before = out.read_text()
    assert main(args) == 2 and out.read_text() == before
