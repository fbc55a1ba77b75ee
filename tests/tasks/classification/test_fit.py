import csv
from dataclasses import replace

import pytest
import torch

from iidfusion.tasks.classification.fit import fit_method


def test_resume_gives_the_same_model(tiny_splits, fast_config, tmp_path):
    """4 epochs straight == 2 epochs, interruption, resume from last.ckpt to 4 (QMF history included)."""
    config = replace(
        fast_config,
        model=replace(fast_config.model, dropout=0.2),  # dropout draws from the global RNG
        train=replace(fast_config.train, max_epochs=4, patience=0, loggers=("csv",)),
    )
    straight = fit_method(tiny_splits, "iid-q", 7, config, tmp_path / "straight")
    half = replace(config, train=replace(config.train, max_epochs=2))
    fit_method(tiny_splits, "iid-q", 7, half, tmp_path / "resumed")
    torch.manual_seed(123)  # whatever ran in between
    resumed = fit_method(
        tiny_splits, "iid-q", 7, config, tmp_path / "resumed", resume=tmp_path / "resumed/checkpoints/last.ckpt"
    )
    a, b = straight.module.state_dict(), resumed.module.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    history = a["model.strategy.loss_history"]
    assert history.gt(0).all() and int(a["model.strategy.epochs_seen"]) == 4
    assert straight.metrics == resumed.metrics
    assert (resumed.best_val_acc, resumed.best_epoch) == (straight.best_val_acc, straight.best_epoch)
    logged = [(tmp_path / "resumed" / "csv" / v / "metrics.csv").read_text() for v in ("version_0", "version_1")]
    assert "train/task" in logged[0] and "train/task" in logged[1], "the resumed run keeps the first logs"


def test_checkpoints_and_epoch_logs(tiny_splits, fast_config, tmp_path):
    config = replace(fast_config, train=replace(fast_config.train, loggers=("csv", "tensorboard")))
    result = fit_method(tiny_splits, "if-qmf", 0, config, tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert list((tmp_path / "tensorboard" / "version_0").glob("events.out.tfevents.*"))
    with open(tmp_path / "csv" / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    columns = set(rows[0])
    expected = {
        "train/loss",
        "train/task",
        "train/strategy/unimodal_ce",
        "train/weight/m0",
        "train/weight/m2",
        "val/wasserstein/m0-m1",
        "val/wasserstein/m1-m2",
        "val/wasserstein/mean",
        "val/acc",
        "val/macro_f1",
        "val/loss",
        "val/shared_head_acc/m0",
        "val/drop_acc/m2",
    }
    assert expected <= columns, expected - columns
    epochs = {row["epoch"] for row in rows if row["train/task"]}
    assert epochs == {"0", "1"}, "one train row per epoch"
    val = [float(row["val/acc"]) for row in rows if row["val/acc"]]
    assert result.best_val_acc == max(val) and result.epochs == 2
    assert [m.noise for m in result.metrics] == [0.0, 10.0]
    assert all(0 <= m.accuracy <= 1 and 0 <= m.macro_f1 <= 1 for m in result.metrics)


def test_bfloat16_mixed_precision_trains(tiny_splits, fast_config):
    """The bf16 autocast path (CPU here, GPU alike) gives finite losses and usable metrics."""
    config = replace(
        fast_config, train=replace(fast_config.train, precision="bf16-mixed", loggers=(), checkpoints=False)
    )
    result = fit_method(tiny_splits, "iid-p", 0, config)
    assert all(torch.isfinite(p).all() for p in result.module.parameters())
    assert all(0 <= m.accuracy <= 1 for m in result.metrics) and result.epochs == 2


def test_resume_refuses_other_settings_data_runs_and_files_that_are_no_checkpoint(
    tiny_npz, tiny_splits, fast_config, tmp_path, shell_payload
):
    from iidfusion.data import load_dataset
    from iidfusion.tasks.classification.fit import check_resume

    fit_method(tiny_splits, "if-static", 0, fast_config, tmp_path / "run")
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    longer = replace(
        fast_config,
        train=replace(fast_config.train, max_epochs=9, threads=2),
        eval=replace(fast_config.eval, noise=(0.0,)),
    )
    check_resume(
        last, "if-static", 0, longer, tiny_splits
    )  # training longer, elsewhere, evaluated otherwise: the same run
    refusals = [
        (
            ("if-static", 0, replace(fast_config, loss=replace(fast_config.loss, alpha=0.7)), tiny_splits),
            r"trained with other settings \(--alpha 1\.0 -> 0\.7\)",
        ),
        (
            ("if-static", 0, replace(fast_config, optim=replace(fast_config.optim, lr=0.5)), tiny_splits),
            r"--lr 0\.001 -> 0\.5",
        ),
        (("if-static", 0, fast_config, load_dataset(tiny_npz, seed=1)), r"trained on other data than --data"),
        (("iid-p", 0, fast_config, tiny_splits), r"of method 'if-static' with seed 0, not 'iid-p' with seed 0"),
        (("if-static", 3, fast_config, tiny_splits), r"not 'if-static' with seed 3"),
    ]
    for args, message in refusals:
        with pytest.raises(ValueError, match=message):
            check_resume(last, *args)
    marker = tmp_path / "ran"
    files = {
        "foreign.ckpt": lambda p: torch.save({"weights": torch.ones(2)}, p),
        "garbage.ckpt": lambda p: p.write_bytes(b"not a checkpoint at all"),
        "truncated.ckpt": lambda p: p.write_bytes(last.read_bytes()[:2000]),
        "crafted.ckpt": lambda p: torch.save({"state_dict": {}, "payload": shell_payload(marker)}, p),
    }
    for name, write in files.items():
        write(tmp_path / name)
        expected = "not a checkpoint written by" if name == "foreign.ckpt" else "not a readable checkpoint"
        with pytest.raises(ValueError, match=rf"--resume .*{name}: {expected}"):
            check_resume(tmp_path / name, "if-static", 0, fast_config, tiny_splits)
    assert not marker.exists()


def test_min_epochs_keeps_early_stopping_from_ending_a_run_too_soon(tiny_splits, fast_config):
    # a learning rate so small that the accuracy never moves: patience 1 stops at the second epoch
    train = replace(fast_config.train, max_epochs=8, patience=1, min_epochs=5, loggers=(), checkpoints=False)
    frozen = replace(fast_config.optim, lr=1e-9)
    assert (
        fit_method(
            tiny_splits, "if-static", 0, replace(fast_config, optim=frozen, train=replace(train, min_epochs=0))
        ).epochs
        == 2
    )
    assert fit_method(tiny_splits, "if-static", 0, replace(fast_config, optim=frozen, train=train)).epochs == 5
