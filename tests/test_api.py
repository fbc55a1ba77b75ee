"""The Python API of a whole run (:mod:`iidfusion.api`), and the checkpoints of 0.1.0 read by today's code."""

import json
from pathlib import Path

import pytest
import yaml

import iidfusion
from iidfusion.cli.main import main
from iidfusion.engine.results import rounded
from iidfusion.kg.data import load_triples_folder
from iidfusion.kg.evaluate import evaluate_link_prediction

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CHECKPOINTS = FIXTURES / "checkpoints"
QUICK = {
    "width": 8,
    "hidden": 16,
    "batch_size": 32,
    "max_epochs": 2,
    "threads": 1,
    "progress_bar": False,
    "accelerator": "cpu",
    "max_iter": 20,
    "loggers": (),
}


def test_fit_writes_the_run_folder_of_the_command_and_saves_itself(tiny_npz, tmp_path):
    run = iidfusion.fit(data=str(tiny_npz), method="iid-q", seed=1, out=str(tmp_path / "runs"), alpha=0.5, **QUICK)
    assert run.run_dir == tmp_path / "runs" / "iid-q" / "seed1" and run.config.loss.alpha == 0.5
    written = json.loads((run.run_dir / "metrics.json").read_text())
    assert written["test"] == rounded(run.summary()["test"]) and written["data"] == "tiny"
    assert all(float(f"{m['accuracy']:.6g}") == m["accuracy"] for m in written["test"])  # for people: no float32 noise
    assert yaml.safe_load((run.run_dir / "config.yaml").read_text())["loss"]["alpha"] == 0.5
    assert (run.run_dir / "checkpoints" / "best.ckpt").is_file()
    assert sorted(p.name for p in run.save(tmp_path / "copy")) == ["config.yaml", "metrics.json"]
    assert json.loads((tmp_path / "copy" / "metrics.json").read_text())["test"] == written["test"]
    trained = iidfusion.load_model(run.run_dir / "checkpoints" / "best.ckpt")
    assert trained.method == "iid-q" and trained.config.loss.alpha == 0.5
    with pytest.raises(ValueError, match="already holds a run; pass --overwrite"):
        iidfusion.fit(data=str(tiny_npz), method="iid-q", seed=1, out=str(tmp_path / "runs"), **QUICK)


def test_options_are_named_as_the_flags_and_checked_as_the_flags_are(tiny_npz, tmp_path):
    with pytest.raises(ValueError, match="unknown option 'max_epoch'; known options: .*max_epochs"):
        iidfusion.fit(data=str(tiny_npz), max_epoch=3)
    with pytest.raises(ValueError, match=r"--lr \(optim.lr\) must be finite and > 0, got -1.0"):
        iidfusion.fit(data=str(tiny_npz), lr=-1.0, out=str(tmp_path))
    config = tmp_path / "c.yaml"
    config.write_text("loss:\n  alpha: 0.25\nstrategy:\n  qmf:\n    lam_rank: 0.5\n")
    from iidfusion.api import experiment_config

    chosen = experiment_config(config, qmf_lam_rank=0.75, tune=True, tune_alpha=(1.0, 0.1))
    assert (chosen.loss.alpha, chosen.strategy.qmf.lam_rank, chosen.tune.enabled, chosen.tune.alpha) == (
        0.25,
        0.75,
        True,
        (1.0, 0.1),
    )
    assert experiment_config(chosen, alpha=0.5).strategy.qmf.lam_rank == 0.75  # a configuration object as the base
    assert not list(tmp_path.glob("*/"))  # nothing written by a refused run


def test_compare_writes_the_results_of_the_command(tiny_npz, tmp_path):
    lines: list[str] = []
    run = iidfusion.compare(
        data=str(tiny_npz),
        methods=("lf-static", "iid-l"),
        seeds=2,
        out=str(tmp_path / "cmp"),
        noise=(0.0,),
        checkpoints=False,
        log=lines.append,
        **QUICK,
    )
    assert lines[0].startswith("departures from the paper") and len(run.results) == 4
    assert (tmp_path / "cmp" / "results.md").read_text() == run.report
    report = run.save(tmp_path / "again", title="tiny")
    assert "| iid-l | lf-static |" in report and (tmp_path / "again" / "results.csv").is_file()


def test_a_fit_checkpoint_of_0_1_0_loads_and_predicts_as_then(tmp_path, capsys):
    """``fit_best.ckpt`` and the predictions 0.1.0 made with it (make_checkpoints.sh): today's
    ``predict`` writes the same CSV, text for text, with the file's row of each sample added."""
    out = tmp_path / "predictions.csv"
    data = FIXTURES / "handwritten_6views_excerpt.mat"
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(CHECKPOINTS / "fit_best.ckpt"),
                "--data",
                str(data),
                "--split",
                "all",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    import csv

    today = list(csv.DictReader(out.open()))
    rows = [int(row.pop("row")) for row in today]
    assert today == list(csv.DictReader((CHECKPOINTS / "fit_predictions.csv").open()))
    assert sorted(rows) == list(range(len(rows)))  # every row of the file, once
    trained = iidfusion.load_model(CHECKPOINTS / "fit_best.ckpt")
    assert trained.method == "iid-p" and trained.config.model.width == 4 and trained.scaler is not None


def test_a_kg_checkpoint_of_0_1_0_scores_the_test_metrics_it_recorded():
    recorded = json.loads((CHECKPOINTS / "kg_metrics.json").read_text())
    trained = iidfusion.load_model(CHECKPOINTS / "kg_model.ckpt")
    assert trained.method == "kg" and trained.config.features == recorded["config"]["features"]
    kg = load_triples_folder(FIXTURES / "wn9img_layout")
    test = evaluate_link_prediction(trained.model.scorer(), kg, "test", tie_policy=recorded["tie_policy"])
    assert test.as_dict() == recorded["test"]  # float for float


def _fit_at_once(barrier, options, queue):
    barrier.wait()  # a job array: every process starts the same command at the same instant
    try:
        run = iidfusion.fit(**options)
        queue.put(("trained", None) if run.result is not None else ("reported", str(run.trained_by)))
    except Exception as error:  # reported to the test, which names it
        queue.put(("failed", f"{type(error).__name__}: {error}"))


def test_a_tuning_shared_by_processes_started_at_once_trains_the_final_model_once(tiny_npz, tmp_path, capsys):
    """Three `fit --tune --storage` processes on a fresh SQLite file: all finish, one trains the
    final model into OUT/METHOD/seedK (one log version, one metrics.json), the others say where it is;
    a later process reports it at once, without training."""
    import multiprocessing

    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    out = tmp_path / "runs"
    options = dict(data=str(tiny_npz), method="iid-l", seed=1, out=str(out), tune=True, storage=storage, **QUICK) | {
        "tune_alpha": (1.0, 0.1),
        "tune_beta": (0.1,),
        "loggers": ("csv",),
    }
    context = multiprocessing.get_context("fork")
    barrier, queue = context.Barrier(3), context.Queue()
    children = [context.Process(target=_fit_at_once, args=(barrier, options, queue)) for _ in range(3)]
    for child in children:
        child.start()
    answers = sorted(queue.get(timeout=300) for _ in children)
    for child in children:
        child.join(timeout=60)
    run_dir = out / "iid-l" / "seed1"
    assert [kind for kind, _ in answers] == ["reported", "reported", "trained"], answers
    assert all(said.endswith(f"into {run_dir}") for kind, said in answers if kind == "reported"), answers
    assert sorted(p.name for p in (run_dir / "csv").iterdir()) == ["version_0"]
    assert json.loads((run_dir / "metrics.json").read_text())["tuning"]["chosen"]["alpha"] in (1.0, 0.1)
    late = iidfusion.fit(**options)
    assert late.result is None and str(late.trained_by).endswith(f"into {run_dir}")


def in_memory_views(n=90, seed=0):
    """An image per sample (N, 8, 8) and a table (N, 5), as torch and numpy, with text labels."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    codes = np.arange(n) % 3
    images = rng.normal(size=(n, 8, 8)) + codes[:, None, None]
    table = torch.tensor(rng.normal(size=(n, 5)) + codes[:, None], dtype=torch.float32)
    return {"image": images, "tab": table}, np.array(["low", "mid", "high"])[codes]


def test_compare_on_arrays_in_memory_with_two_jobs(tmp_path):
    """No registration, no module-level code: the arrays go to OUT/data-<hash>.npz, which every worker reads."""
    views, labels = in_memory_views()
    out = tmp_path / "cmp"
    options = {**QUICK, "max_epochs": 1, "seeds": 1, "jobs": 2, "methods": ("lf-static", "if-static")}
    comparison = iidfusion.compare(data=views, labels=labels, out=str(out), log=lambda line: None, **options)
    (data_file,) = out.glob("data-*.npz")
    assert comparison.config.data == str(data_file) and comparison.config.views == ("image", "tab")
    assert {r.method for r in comparison.results} == {"lf-static", "if-static"}
    splits = iidfusion.load_dataset(data_file, views=("image", "tab"), labels="labels")
    assert splits.view_dims == {"image": 64, "tab": 5} and splits.class_names == ("high", "low", "mid")
    # the same arrays are the same file name: a resumed or repeated run finds its data unchanged
    path, _ = iidfusion.save_arrays(tmp_path / "other", views, labels)
    assert path.name == data_file.name


def test_fit_on_arrays_then_predict_them_in_memory(tmp_path):
    views, labels = in_memory_views()
    run = iidfusion.fit(
        data=views, labels=labels, ids=[f"s{i}" for i in range(90)], method="if-static", out=str(tmp_path), **QUICK
    )
    assert run.config.id_column == "ids" and Path(run.config.data).parent == tmp_path
    trained = iidfusion.load_model(run.run_dir / "checkpoints" / "best.ckpt")
    predictions = iidfusion.predict(trained, {name: view[:7] for name, view in views.items()})
    assert len(predictions) == 7 and predictions.classes == ("high", "low", "mid")
    assert predictions.probabilities.shape == (7, 3) and predictions.weights.shape == (7, 2)
    assert set(predictions.labels) <= set(predictions.classes)
    same = iidfusion.predict(
        run.run_dir / "checkpoints" / "best.ckpt", {"tab": views["tab"][:7], "image": views["image"][:7]}
    )
    assert same.labels == predictions.labels
    with pytest.raises(ValueError, match=r"views \{'image': 64\} \(name: width\); the model was trained on"):
        iidfusion.predict(trained, {"image": views["image"]})


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"data": {"a": [[1.0, 2.0]] * 4}}, "needs labels= as an array"),
        ({"data": "handwritten", "labels": [0, 1]}, "go with data= as a mapping"),
        ({"data": {"labels": [[1.0]] * 4, "b": [[1.0]] * 4}, "labels": [0, 1, 0, 1]}, "may not be called 'labels'"),
        ({"data": {"a": [[1.0]] * 4, "b": [[1.0]] * 3}, "labels": [0, 1, 0, 1]}, "different numbers of rows"),
    ],
)
def test_arrays_in_memory_are_checked(tmp_path, options, said):
    with pytest.raises(ValueError, match=said):
        iidfusion.compare(out=str(tmp_path / "o"), log=lambda line: None, **options, **QUICK)
