"""``model.ckpt`` of ``iidfusion kg fit`` (iidfusion.tasks.kg.checkpoint): what it records, the
model it gives back, and the files it refuses, each with one line naming the file."""

import pytest
import torch

from iidfusion import __version__
from iidfusion.engine.checkpoint import read_checkpoint
from iidfusion.tasks.kg.checkpoint import (
    is_kg_checkpoint,
    is_kg_training_checkpoint,
    kg_checkpoint,
    trained_kg_model,
)
from iidfusion.tasks.kg.fit import build_model
from tests.tasks.kg.test_fit import fixture_features, small_config


@pytest.fixture
def saved(tiny_kg, tmp_path):
    """An untrained model's checkpoint (best epoch 7), its model and configuration, and the file."""
    config = small_config(alpha=0.2)
    config.seed = 3
    model = build_model(tiny_kg, fixture_features(tiny_kg), config).eval()
    state = kg_checkpoint(model, tiny_kg, config, best_epoch=7)
    path = tmp_path / "model.ckpt"
    torch.save(state, path)
    return state, model, config, path


def _load(path):
    """What ``iidfusion.load_model`` does with a KG ``model.ckpt``: read safely, then rebuild."""
    trained = trained_kg_model(read_checkpoint(path, "checkpoint"), f"checkpoint {path}")
    return trained.model, trained.config


def test_what_a_checkpoint_records(tiny_kg, saved):
    state, model, config, _ = saved
    assert (state["format"], state["format_version"], state["iidfusion"]) == ("iidfusion-kg", 1, __version__)
    assert state["entities"] == list(tiny_kg.entities) and state["relations"] == list(tiny_kg.relations)
    assert state["feature_widths"] == {"img": 6, "ling": 4}
    assert state["num_train_queries"] == 2 * len(tiny_kg.train) and state["best_epoch"] == 7
    assert state["config"]["seed"] == 3 and state["config"]["objective"]["iid"]["alpha"] == 0.2
    assert state["state_dict"].keys() == model.state_dict().keys()
    assert all(not v.requires_grad and v.device.type == "cpu" for v in state["state_dict"].values())
    assert is_kg_checkpoint(state) and not is_kg_training_checkpoint(state)


def test_a_round_trip_gives_back_the_same_model_and_leaves_the_rng_alone(tiny_kg, saved):
    _, model, config, path = saved
    rng = torch.get_rng_state()
    loaded, loaded_config = _load(path)
    assert torch.equal(torch.get_rng_state(), rng)  # the throwaway initialisation drew nothing of the caller's
    assert loaded_config == config and not loaded.training
    assert type(loaded) is type(model) and loaded.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
    queries = tiny_kg.test[:, :2]
    assert torch.equal(loaded.scorer()(queries), model.scorer()(queries))


def test_trained_kg_model_describes_the_run(tiny_kg, saved):
    state, _, _, path = saved
    trained = trained_kg_model(state, f"checkpoint {path}")
    assert (trained.method, trained.seed, trained.inputs) == ("kg", 3, {"img": 6, "ling": 4})
    assert trained.output_names == tiny_kg.entities and trained.scaler is None
    assert set(trained.record) == {
        "format",
        "format_version",
        "iidfusion",
        "entities",
        "relations",
        "feature_widths",
        "num_train_queries",
        "best_epoch",
    }


def test_a_crafted_pickle_does_not_run(tmp_path, shell_payload):
    marker = tmp_path / "ran"
    path = tmp_path / "model.ckpt"
    torch.save({"format": "iidfusion-kg", "config": shell_payload(marker)}, path)
    with pytest.raises(ValueError, match=rf"^checkpoint {path}: not a readable checkpoint \("):
        _load(path)
    assert not marker.exists()


def test_a_checkpoint_of_another_command_is_refused(tmp_path):
    path = tmp_path / "best.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "loops": {}, "hyper_parameters": {}}, path)
    assert not is_kg_checkpoint(torch.load(path, weights_only=True))
    training = {"kg": {"history": []}, "loops": {}, "state_dict": {}}  # a KG run's Lightning checkpoint
    assert is_kg_training_checkpoint(training) and not is_kg_checkpoint(training)
    assert not is_kg_checkpoint([("format", "iidfusion-kg")]) and not is_kg_training_checkpoint("kg loops")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda s: s.update(format_version=2), "{where}: KG checkpoint format version 2, which this iidfusion cannot"),
        (lambda s: s.pop("format_version"), "{where}: KG checkpoint format version None, which this iidfusion"),
        (lambda s: [s.pop("entities"), s.pop("state_dict")], "{where}: a KG checkpoint without entities, state_dict"),
        (lambda s: s["config"].update(rnak=3), "unknown config key 'rnak' in {where}; known keys: data, "),
        (lambda s: s.update(num_train_queries=-1), "{where}: -1 training queries recorded; expected a count"),
        (lambda s: s.update(num_train_queries=2.0), "{where}: 2.0 training queries recorded; expected a count"),
        (lambda s: s["state_dict"].pop("relation"), "{where}: its weights do not fit the model it records (Error"),
        (lambda s: s["config"]["model"].update(rank=4), "{where}: its weights do not fit the model it records (Err"),
    ],
)
def test_a_damaged_checkpoint_is_one_line_naming_the_file(saved, damage, message):
    state, _, _, path = saved
    damaged = {**state, "config": {**state["config"], "model": dict(state["config"]["model"])}}
    damaged["state_dict"] = dict(state["state_dict"])
    damage(damaged)
    torch.save(damaged, path)
    with pytest.raises(ValueError) as caught:
        _load(path)
    assert str(caught.value).startswith(message.format(where=f"checkpoint {path}"))
    assert "\n" not in str(caught.value)
