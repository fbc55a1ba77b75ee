"""The plain loop runs the same fit as Lightning's, bit for bit, and is used only where it can."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from iidfusion.engine.plain_loop import choose_loop, plain_device, plain_loop_blocker
from iidfusion.engine.trainer import ValidationObserver
from iidfusion.tasks.classification.fit import fit_method


def _with(config, **train):
    return replace(config, train=replace(config.train, **train))


def _fingerprint(result):
    weights = torch.cat([p.detach().flatten() for p in result.module.model.parameters()])
    buffers = [b.detach().clone() for b in result.module.model.buffers()]
    metrics = [(m.noise, m.accuracy, m.macro_f1) for m in result.metrics]
    return (result.best_val_acc, result.best_val_loss, result.best_epoch, result.epochs, metrics), weights, buffers


@pytest.mark.parametrize("method", ["lf-static", "if-qmf", "if-pdf", "iid-l", "iid-p"])
def test_the_plain_loop_trains_the_same_model_as_lightning(method, tiny_splits, fast_config):
    """Weights, buffers (QMF's loss history), the best epoch, early stopping and test metrics: equal."""
    config = _with(fast_config, max_epochs=9, patience=2, min_epochs=4, checkpoints=False, loggers=())
    lightning = fit_method(tiny_splits, method, 3, _with(config, loop="lightning"))
    plain = fit_method(tiny_splits, method, 3, _with(config, loop="plain"))
    (scores_l, weights_l, buffers_l), (scores_p, weights_p, buffers_p) = _fingerprint(lightning), _fingerprint(plain)
    assert scores_p == scores_l
    assert torch.equal(weights_p, weights_l)
    assert all(torch.equal(a, b) for a, b in zip(buffers_p, buffers_l, strict=True))
    assert plain.device == lightning.device == "cpu"


@pytest.mark.parametrize("min_epochs", [0, 7])
def test_early_stopping_stops_both_loops_at_the_same_epoch(min_epochs, tiny_splits, fast_config):
    config = _with(fast_config, max_epochs=30, patience=1, stop_on="acc", min_epochs=min_epochs)
    config = replace(config, optim=replace(config.optim, lr=1e-6))  # nothing improves: patience 1 runs out at once
    epochs = {
        loop: fit_method(tiny_splits, "if-static", 0, _with(config, loop=loop)).epochs
        for loop in ("lightning", "plain")
    }
    assert epochs["plain"] == epochs["lightning"] == max(min_epochs, 2)


class _Heard(ValidationObserver):
    def __init__(self):
        self.heard = []

    def after_validation(self, epoch, scores, monitor, agree=lambda x: x):
        self.heard.append((epoch, monitor, scores[monitor], scores["val/loss"]))


def test_validation_observers_hear_the_same_scores_in_both_loops(tiny_splits, fast_config):
    """An observer (tuning's report to an Optuna trial) keeps a fit in the plain loop and hears
    what it would have heard in Lightning's."""
    config = _with(fast_config, max_epochs=4, checkpoints=False, loggers=())
    heard = {}
    for loop in ("lightning", "plain"):
        observer = _Heard()
        fit_method(tiny_splits, "if-qmf", 1, _with(config, loop=loop), callbacks=[observer])
        heard[loop] = observer.heard
    assert heard["plain"] == heard["lightning"]
    assert [h[0] for h in heard["plain"]] == [0, 1, 2, 3] and {h[1] for h in heard["plain"]} == {"val/acc"}
    assert plain_loop_blocker(config.train, run_dir=None, callbacks=[_Heard()]) is None


def test_auto_picks_the_plain_loop_only_where_nothing_needs_lightning(fast_config, tmp_path):
    train = _with(fast_config, checkpoints=True, loggers=("csv",)).train
    assert plain_loop_blocker(train, run_dir=None) is None, "without a run folder nothing is written"
    assert plain_loop_blocker(train, run_dir=tmp_path) == "checkpoints"
    assert plain_loop_blocker(replace(train, checkpoints=False), run_dir=tmp_path) == "loggers"
    quiet = replace(train, checkpoints=False, loggers=())
    assert plain_loop_blocker(quiet, run_dir=tmp_path) is None
    assert plain_loop_blocker(quiet, run_dir=None, resume=tmp_path / "last.ckpt") == "a resume"
    assert plain_loop_blocker(quiet, run_dir=None, callbacks=[Callback()]) == "extra Lightning callbacks"
    assert plain_loop_blocker(quiet, run_dir=None, precision="bf16-mixed") == "precision bf16-mixed"
    assert plain_loop_blocker(quiet, run_dir=None, num_workers=2) == "data-loader workers"
    for placement in ({"devices": "2"}, {"strategy": "ddp"}, {"num_nodes": 2}):
        assert plain_device(replace(quiet, **placement)) is None
        assert plain_loop_blocker(replace(quiet, **placement), run_dir=None) is not None
    assert plain_device(quiet) == torch.device("cpu")
    assert choose_loop("auto", None) == "plain"
    assert choose_loop("auto", "checkpoints") == "lightning"
    assert choose_loop("lightning", None) == "lightning"


def test_asking_for_the_plain_loop_where_lightning_is_needed_names_why(tiny_splits, fast_config, tmp_path):
    with pytest.raises(ValueError, match="--loop plain: this fit needs Lightning's loop for checkpoints"):
        fit_method(tiny_splits, "if-static", 0, _with(fast_config, loop="plain", checkpoints=True), tmp_path)
    assert not (tmp_path / "checkpoints").exists()
    with pytest.raises(ValueError, match="--loop 'fast'"):
        choose_loop("fast", None)
