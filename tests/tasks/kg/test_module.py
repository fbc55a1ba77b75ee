"""KG training on the Lightning engine: the batch order, a plain reference loop, resume,
checkpoints and logs, bad resumes, two CPU processes."""

import dataclasses
import json

import pytest
import torch

from iidfusion import load_model
from iidfusion.cli.main import main
from iidfusion.kg.data import load_triples_folder, with_reciprocals
from iidfusion.kg.models import KGModelConfig, OTProjectionConfig
from iidfusion.kg.objective import IIDTermsConfig, KGObjective, KGObjectiveConfig, degree_weights
from iidfusion.tasks.kg import module as kg_module
from iidfusion.tasks.kg.config import OPTIMIZERS, KGExperimentConfig, KGTrainConfig
from iidfusion.tasks.kg.data import EpochShuffle
from iidfusion.tasks.kg.fit import build_model, fit_kg
from tests.kg.conftest import tiny_triples, write_split


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    for split, triples in tiny_triples().items():
        write_split(folder / split, triples)
    return folder


@pytest.fixture
def graph(folder):
    kg = load_triples_folder(folder)
    generator = torch.Generator().manual_seed(0)
    features = {"img": torch.randn(kg.num_entities, 6, generator=generator)}
    return kg, features


def config(**train) -> KGExperimentConfig:
    """A run whose cached OT plan (refreshed every 3 steps, 4 batches an epoch) crosses epochs."""
    return KGExperimentConfig(
        data="tiny",
        model=KGModelConfig(
            rank=4,
            init_scale=0.1,
            modality_weights={"img": 0.3},
            projection=OTProjectionConfig(cost_scale=1.0, plan_entities=2, refresh_every=3),
        ),
        objective=KGObjectiveConfig(
            n3_weight=1e-3, iid=IIDTermsConfig(alpha=0.1, beta=0.1, d1=2, d2=4, coherence_points=8)
        ),
        train=KGTrainConfig(
            **{
                "max_epochs": 6,
                "batch_size": 14,
                "learning_rate": 0.3,
                "eval_every": 3,
                "accelerator": "cpu",
                "num_threads": 1,
                "progress_bar": False,
                **train,
            }
        ),
    )


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_epoch_shuffle_is_the_loops_draws_in_any_order():
    generator = torch.Generator().manual_seed(3)
    draws = [torch.randperm(50, generator=generator) for _ in range(4)]
    shuffle = EpochShuffle(50, seed=3)
    for epoch in (0, 1, 3, 2, 0):  # in order, skipping ahead, and back (a resume replays)
        shuffle.set_epoch(epoch)
        assert list(shuffle) == draws[epoch].tolist()
    shares = []
    for rank in range(3):
        share = EpochShuffle(50, seed=3, world_size=3, rank=rank)
        share.set_epoch(2)
        shares.append(list(share))
    assert [len(s) for s in shares] == [16, 16, 16] == [len(EpochShuffle(50, 3, 3, r)) for r in range(3)]
    assert sorted(sum(shares, [])) == sorted(draws[2][:48].tolist())  # disjoint; 2 queries sit the epoch out


def test_lightning_run_equals_a_plain_loop(graph):
    """The loop ``kg fit`` ran before Lightning, written out: the same weights, float for float."""
    kg, features = graph
    run = config(eval_every=6)  # validated at the end only: the returned (best) model is the last
    run.model.strategy = "qmf"
    model = build_model(kg, features, run)
    objective = KGObjective(run.objective, width=model.width, class_weights=degree_weights(kg.train, kg.num_entities))
    optimizer = OPTIMIZERS[run.train.optimizer](model.parameters(), lr=run.train.learning_rate)
    queries = with_reciprocals(kg.train, kg.num_relations)
    generator = torch.Generator().manual_seed(run.seed)
    torch.set_num_threads(1)
    for _ in range(run.train.max_epochs):
        model.train()
        order = torch.randperm(len(queries), generator=generator)
        for index in order.split(run.train.batch_size):
            batch = queries[index]
            loss = objective(
                model(batch[:, :2], need_modalities=objective.needs_modalities), batch, index, model.strategy, model
            )
            optimizer.zero_grad(set_to_none=True)
            loss.total.backward()
            optimizer.step()
        model.strategy.on_train_epoch_end()
    result = fit_kg(kg, features, run)
    assert result.best_epoch == 6 and [r["epoch"] for r in result.history] == [1, 2, 3, 4, 5, 6]
    assert same_weights(result.model, model)


def _summary(result):
    return result.best_epoch, result.valid.as_dict(), result.test.as_dict(), result.history


def test_resumed_run_equals_an_uninterrupted_one(graph, tmp_path, monkeypatch):
    kg, features = graph
    straight = fit_kg(kg, features, config(), run_dir=tmp_path / "straight")
    # Stopped by max_epochs at a validated epoch (a last epoch is always validated), resumed to the full count.
    fit_kg(kg, features, config(max_epochs=3), run_dir=tmp_path / "short")
    resumed = fit_kg(
        kg, features, config(), run_dir=tmp_path / "short", resume=tmp_path / "short/checkpoints/last.ckpt"
    )
    assert _summary(resumed) == _summary(straight) and same_weights(resumed.model, straight.model)
    # Interrupted (Ctrl-C) after epoch 4, between validations, with a cached OT plan in use.
    start_epoch = kg_module.ValidationSchedule.on_train_epoch_start

    def interrupt(self, trainer, pl_module):
        if trainer.current_epoch == 4:
            raise KeyboardInterrupt
        start_epoch(self, trainer, pl_module)

    monkeypatch.setattr(kg_module.ValidationSchedule, "on_train_epoch_start", interrupt)
    with pytest.raises(KeyboardInterrupt):
        fit_kg(kg, features, config(), run_dir=tmp_path / "cut")
    monkeypatch.undo()
    state = torch.load(tmp_path / "cut/checkpoints/last.ckpt", weights_only=True)
    assert state["epoch"] == 3 and state["kg"]["training_state"]["img"]["plan"] is not None
    resumed = fit_kg(kg, features, config(), run_dir=tmp_path / "cut", resume=tmp_path / "cut/checkpoints/last.ckpt")
    assert _summary(resumed) == _summary(straight) and same_weights(resumed.model, straight.model)


def test_checkpoints_and_logs_where_said(graph, tmp_path):
    kg, features = graph
    result = fit_kg(kg, features, config(max_epochs=4, eval_every=2), run_dir=tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run/checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    best = torch.load(tmp_path / "run/checkpoints/best.ckpt", weights_only=True)
    assert best["epoch"] == result.best_epoch - 1
    with pytest.raises(ValueError, match="a training checkpoint of `iidfusion kg fit` .*the run's model.ckpt"):
        load_model(tmp_path / "run/checkpoints/best.ckpt")
    lines = (tmp_path / "run/csv/version_0/metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert {"val/mrr", "train/task", "train/coherence", "epoch"} <= set(header)
    logged = [
        float(row.split(",")[header.index("val/mrr")]) for row in lines[1:] if row.split(",")[header.index("val/mrr")]
    ]
    assert logged == [r["valid/mrr"] for r in result.history if "valid/mrr" in r]
    assert any((tmp_path / "run/tensorboard/version_0").glob("events.out.tfevents.*"))
    quiet = dataclasses.replace(config(max_epochs=1).train, checkpoints=False, loggers=())
    fit_kg(kg, features, dataclasses.replace(config(), train=quiet), run_dir=tmp_path / "quiet")
    assert not (tmp_path / "quiet").exists() or not any((tmp_path / "quiet").iterdir())


def test_a_resume_of_another_run_is_refused(graph, tmp_path):
    kg, features = graph
    fit_kg(kg, features, config(max_epochs=1), run_dir=tmp_path / "run")
    last = tmp_path / "run/checkpoints/last.ckpt"
    base = config()
    other = dataclasses.replace(
        base, objective=dataclasses.replace(base.objective, iid=dataclasses.replace(base.objective.iid, alpha=0.5))
    )
    with pytest.raises(ValueError, match=r"other settings \(--alpha 0.1 -> 0.5\)"):
        fit_kg(kg, features, other, resume=last)
    with pytest.raises(ValueError, match="seed 0, not 'otkge' with seed 1"):
        fit_kg(kg, features, dataclasses.replace(config(), seed=1), resume=last)
    with pytest.raises(ValueError, match="another graph or other features"):
        fit_kg(kg, {"img": features["img"] + 1}, config(), resume=last)
    assert fit_kg(kg, features, config(max_epochs=2, num_threads=2), resume=last).history[-1]["epoch"] == 2
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        fit_kg(kg, features, config(), resume=tmp_path / "bad.ckpt")


def test_kg_fit_resume_at_the_command_line(folder, graph, tmp_path, capsys):
    import numpy as np

    np.save(tmp_path / "img.npy", graph[1]["img"].numpy())
    out = tmp_path / "run"
    common = [
        "kg",
        "fit",
        "--data",
        str(folder),
        "--features",
        f"img={tmp_path / 'img.npy'}",
        "--rank",
        "4",
        "--batch-size",
        "16",
        "--eval-every",
        "2",
        "--accelerator",
        "cpu",
        "--threads",
        "1",
        "--no-progress-bar",
        "--out",
        str(out),
    ]
    assert main([*common, "--max-epochs", "2"]) == 0
    assert (out / "checkpoints/last.ckpt").is_file() and (out / "csv/version_0/metrics.csv").is_file()
    capsys.readouterr()
    assert main([*common, "--max-epochs", "4", "--alpha", "0.2", "--resume", "last"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "other settings (--alpha" in error[0]
    assert main([*common, "--max-epochs", "4", "--resume", "last"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["history"]] == [1, 2, 3, 4]
    assert (out / "csv/version_1/metrics.csv").is_file()  # a resumed run logs beside the first part


@pytest.mark.parametrize("strategy", ["ddp_fork"])
def test_two_cpu_processes(graph, tmp_path, strategy):
    """Data parallelism on CPU (gloo): each process trains on its share of every epoch's order."""
    kg, features = graph
    run = config(max_epochs=2, eval_every=2, devices="2", strategy=strategy, loggers=("csv",))
    result = fit_kg(kg, features, run, run_dir=tmp_path)
    assert result.device == "cpu, 2 processes" and result.best_epoch == 2
    assert [r["epoch"] for r in result.history] == [1, 2] and result.history[-1]["valid/mrr"] == result.valid.mrr
    assert 0 < result.test.mrr <= 1
    with pytest.raises(ValueError, match="needs an output folder"):
        fit_kg(kg, features, run)
    with pytest.raises(ValueError, match="needs train.checkpoints"):
        fit_kg(
            kg,
            features,
            dataclasses.replace(run, train=dataclasses.replace(run.train, checkpoints=False)),
            run_dir=tmp_path,
        )
