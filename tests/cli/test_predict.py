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


def _predicted(run, data, out):
    """``iidfusion predict`` of the run's best checkpoint on ``data``: the rows of its CSV."""
    assert (
        main(
            ["predict", "--checkpoint", str(run / "checkpoints" / "best.ckpt"), "--data", str(data), "--out", str(out)]
        )
        == 0
    )
    return list(csv.DictReader(out.open()))


def test_fit_then_predict_gives_the_accuracy_of_metrics_json(run, tiny_npz, tmp_path, capsys):
    capsys.readouterr()
    out = tmp_path / "pred.csv"
    rows = _predicted(run, tiny_npz, out)
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


def test_predict_unlabelled_data_gives_every_row_in_file_order(run, tiny_npz, tmp_path, capsys):
    """New data without labels: no split, every row in the file's order, each named by its row number."""
    import numpy as np

    with np.load(tiny_npz) as archive:
        views = {key: archive[key] for key in archive.files if key != "labels"}
    order = np.random.default_rng(3).permutation(120)
    np.savez(tmp_path / "new.npz", **{key: view[order] for key, view in views.items()})
    out = tmp_path / "new.csv"
    checkpoint = str(run / "checkpoints" / "best.ckpt")
    capsys.readouterr()
    assert main(["predict", "--checkpoint", checkpoint, "--data", str(tmp_path / "new.npz"), "--out", str(out)]) == 0
    assert "120 rows of new (no labels)" in capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    assert [int(r["row"]) for r in rows] == list(range(120)) and "label" not in rows[0] and "split" not in rows[0]
    in_python = iidfusion.predict(iidfusion.load_model(checkpoint), {k: v[order] for k, v in views.items()})
    assert [r["predicted_name"] for r in rows] == in_python.labels
    assert [float(r["prob_0"]) for r in rows] == pytest.approx(in_python.probabilities[:, 0].tolist(), abs=1e-5)
    # the training file, every row unsplit: the same predictions for the same rows
    labelled = tmp_path / "all.csv"
    assert (
        main(
            ["predict", "--checkpoint", checkpoint, "--data", str(tiny_npz), "--split", "none", "--out", str(labelled)]
        )
        == 0
    )
    unsplit = list(csv.DictReader(labelled.open()))
    assert [unsplit[k]["predicted_name"] for k in order] == [r["predicted_name"] for r in rows]
    assert "label" in unsplit[0] and "accuracy" in capsys.readouterr().out
    error = main(
        [
            "predict",
            "--checkpoint",
            checkpoint,
            "--data",
            str(tmp_path / "new.npz"),
            "--split",
            "test",
            "--out",
            str(tmp_path / "x.csv"),
        ]
    )
    assert error == 2 and "no labels, so no split of `fit` to predict; --split none" in capsys.readouterr().err


def test_split_predictions_name_the_row_of_the_file(run, tiny_npz, tmp_path):
    import numpy as np

    out = tmp_path / "test.csv"
    rows = _predicted(run, tiny_npz, out)
    with np.load(tiny_npz) as archive:
        labels = archive["labels"]
    assert len({r["row"] for r in rows}) == 24 and all(r["label"] == str(labels[int(r["row"])]) for r in rows)


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    """A fit on a CSV table with an id column and text labels (views by prefix)."""
    import numpy as np

    folder = tmp_path_factory.mktemp("table")
    rng = np.random.default_rng(0)
    codes = np.arange(90) % 3
    lines = ["sample_id,img_0,img_1,img_2,img_3,tab_0,tab_1,label"]
    for i, code in enumerate(codes):
        values = [*(rng.normal() + code for _ in range(4)), *(rng.normal() + code for _ in range(2))]
        lines.append(",".join([f"id{1000 + i}", *(f"{v:.5f}" for v in values), "abc"[code]]))
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    unlabelled = [line.rsplit(",", 1)[0] for line in lines]
    (folder / "new.csv").write_text("\n".join([unlabelled[0], *reversed(unlabelled[1:])]) + "\n")
    args = ["fit", "--data", str(folder / "train.csv"), "--id-column", "sample_id", "--method", "lf-static"]
    assert main([*args, "--out", str(folder / "runs"), *FAST, "--loggers", ""]) == 0
    return folder


def test_predict_a_table_without_labels_names_each_row_by_its_id(table_run, tmp_path):
    checkpoint = table_run / "runs" / "lf-static" / "seed0" / "checkpoints" / "best.ckpt"
    trained = iidfusion.load_model(checkpoint)
    assert trained.inputs == {"img": 4, "tab": 2} and trained.output_names == ("a", "b", "c")
    out = tmp_path / "pred.csv"
    assert (
        main(["predict", "--checkpoint", str(checkpoint), "--data", str(table_run / "new.csv"), "--out", str(out)]) == 0
    )
    rows = list(csv.DictReader(out.open()))
    assert [r["id"] for r in rows] == [f"id{1000 + i}" for i in reversed(range(90))]
    assert list(rows[0])[:4] == ["row", "id", "predicted", "predicted_name"]
    both = tmp_path / "both.csv"
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(checkpoint),
                "--data",
                str(table_run / "train.csv"),
                "--split",
                "all",
                "--out",
                str(both),
            ]
        )
        == 0
    )
    by_id = {r["id"]: r["predicted_name"] for r in csv.DictReader(both.open())}
    assert {r["id"]: r["predicted_name"] for r in rows} == by_id  # joined by id, the same predictions
