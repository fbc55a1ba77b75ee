"""The engine's trainer: extra callbacks, gradient accumulation, DDP without buffer broadcasts,
the best weights of a spawned run, early stopping on validations without a better score."""

import pickle
import sys
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from iidfusion.engine import trainer as engine_trainer
from iidfusion.engine.trainer import BestWeights, ReseedEachBatch, build_loggers, build_strategy, build_trainer


def test_build_trainer_appends_extra_callbacks(fast_config, tmp_path):
    """Callbacks of the caller come after the built-in ones (Lightning keeps checkpoints last)."""
    best, extra = BestWeights("val/acc"), Callback()
    trainer = build_trainer(fast_config.train, tmp_path, 0, best, callbacks=[extra])
    callbacks = trainer.callbacks
    assert isinstance(callbacks[0], ReseedEachBatch) and callbacks[1] is best
    assert callbacks.index(best) < callbacks.index(extra) and callbacks.count(extra) == 1
    checkpoints = [i for i, c in enumerate(callbacks) if isinstance(c, ModelCheckpoint)]
    assert [callbacks[i].filename for i in checkpoints] == ["best", "last"] and min(checkpoints) > callbacks.index(
        extra
    )
    assert extra not in build_trainer(fast_config.train, None, 0, BestWeights("val/acc")).callbacks


def test_build_trainer_accumulates_gradients_when_asked(fast_config):
    assert build_trainer(fast_config.train, None, 0, BestWeights("val/acc")).accumulate_grad_batches == 1
    assert (
        build_trainer(
            fast_config.train, None, 0, BestWeights("val/acc"), accumulate_grad_batches=4
        ).accumulate_grad_batches
        == 4
    )


@pytest.mark.parametrize(
    "name", ["ddp", "ddp_fork", "ddp_spawn_find_unused_parameters_true", "ddp_find_unused_parameters_true"]
)
def test_ddp_strategies_keep_each_process_buffers(name):
    """QMF's history is merged at epoch end: DDP must not broadcast rank 0's buffers, also when
    unused parameters must be found (frozen encoders)."""
    strategy = build_strategy(name)
    assert strategy._ddp_kwargs["broadcast_buffers"] is False
    assert strategy._ddp_kwargs.get("find_unused_parameters", False) is name.endswith("_find_unused_parameters_true")
    assert build_strategy("auto") == "auto"


def test_the_best_checkpoint_of_a_spawned_run_is_read_without_running_code(tmp_path, shell_payload):
    """Under ddp_spawn the best weights come from the checkpoint file whose path the resume
    checkpoint recorded: a crafted path to a pickle must not run it."""
    from types import SimpleNamespace

    marker, crafted = tmp_path / "ran", tmp_path / "best.ckpt"
    torch.save({"state_dict": shell_payload(marker)}, crafted)
    trainer = SimpleNamespace(checkpoint_callback=SimpleNamespace(best_model_path=str(crafted)))
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        BestWeights("val/acc").best_model(SimpleNamespace(model=torch.nn.Linear(2, 2)), trainer)
    assert not marker.exists()


class _Trainer:
    """What ValidationPatience reads of a trainer."""

    def __init__(self):
        self.callback_metrics, self.should_stop, self.sanity_checking = {}, False, False
        self.strategy = type("S", (), {"reduce_boolean_decision": staticmethod(lambda decision, all: decision)})()


@pytest.mark.parametrize(
    "stop_on, stopped_after",
    [("acc", 3), ("loss", 5), ("acc_or_loss", 7)],
)
def test_validation_patience_counts_validations_without_a_better_score(stop_on, stopped_after):
    from iidfusion.engine.trainer import ValidationPatience

    # accuracy flat at chance while the loss falls, then the loss stalls as the accuracy rises once
    scores = [(0.1, 3.3), (0.1, 3.2), (0.1, 3.1), (0.1, 3.1), (0.2, 3.2), (0.2, 3.3), (0.2, 3.3), (0.2, 3.3)]
    callback, trainer = ValidationPatience(patience=2, stop_on=stop_on), _Trainer()
    stopped = None
    for epoch, (acc, loss) in enumerate(scores, start=1):
        trainer.callback_metrics = {"val/acc": torch.tensor(acc), "val/loss": torch.tensor(loss)}
        module = SimpleNamespace(monitor="val/acc")
        callback.on_validation_end(trainer, module)
        callback.on_train_epoch_end(trainer, module)
        callback.on_train_epoch_end(trainer, module)  # an epoch without validation: the same scores, not counted
        if trainer.should_stop:
            stopped = epoch
            break
    assert stopped == stopped_after
    restored = ValidationPatience(2, stop_on)
    restored.load_state_dict(callback.state_dict())
    assert restored.state_dict() == callback.state_dict()
    with pytest.raises(ValueError, match="stop_on"):
        ValidationPatience(2, "f1")


def test_every_logger_is_built_by_its_name_under_the_run_folder(fast_config, tmp_path, monkeypatch):
    """W&B and MLflow (extras, not installed here) get the run's name and write under the run folder;
    their own environment (WANDB_MODE=offline, MLFLOW_TRACKING_URI) decides the rest."""
    from dataclasses import replace

    made = []
    for name in ("WandbLogger", "MLFlowLogger"):
        monkeypatch.setattr(engine_trainer, name, lambda _name=name, **kwargs: made.append((_name, kwargs)) or _name)
    monkeypatch.setattr(engine_trainer.importlib.util, "find_spec", lambda package: SimpleNamespace(name=package))
    train = replace(fast_config.train, loggers=("csv", "wandb", "mlflow"))
    loggers = build_loggers(train, tmp_path, "iid-l seed 1")
    assert type(loggers[0]).__name__ == "CSVLogger" and loggers[1:] == ["WandbLogger", "MLFlowLogger"]
    wandb, mlflow = dict(made)["WandbLogger"], dict(made)["MLFlowLogger"]
    assert wandb["name"] == "iid-l seed 1" and wandb["save_dir"] == str(tmp_path)
    assert mlflow["run_name"] == "iid-l seed 1" and mlflow["save_dir"] == str(tmp_path / "mlruns")
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ValueError, match=r"^--loggers mlflow needs the optional package 'mlflow'.*iidfusion\[mlflow\]"):
        build_loggers(replace(train, loggers=("csv", "mlflow")), None)
