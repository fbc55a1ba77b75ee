"""tasks.classification.validation: a command's input refused before any data is read or file written,
with one line naming the problem; the data checked once read (views, noise view, a feature cache's levels).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from iidfusion.core.config import iter_options
from iidfusion.data.features.base import DatasetSplits, MultiViewData
from iidfusion.data.features.multiview import PassedOverWarning
from iidfusion.data.features.noise import FEATURE_NOISE
from iidfusion.tasks.classification.config import ExperimentConfig, load_config
from iidfusion.tasks.classification.validation import check_noise_view, load_splits, validate_config

SPAWN_MESSAGE = (
    "--strategy ddp_spawn trains in child processes, whose history and best weights come back through the run's "
    "checkpoints: it needs --checkpoints and cannot tune; --strategy ddp has neither limit"
)
NOISE_RANGE = "noise levels must be finite and >= 0, at most 1e+06, got "


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"jobs": 2, "train.strategy": "ddp"},
            "jobs > 1 runs fits side by side; it cannot be combined with strategy 'ddp'",
        ),
        ({"train.strategy": "ddp_spawn", "tune.enabled": True}, SPAWN_MESSAGE),
        ({"train.strategy": "ddp_spawn", "train.checkpoints": False}, SPAWN_MESSAGE),
        ({"val_fraction": 0.3, "test_fraction": 0.7}, "val_fraction 0.3 + test_fraction 0.7 leave nothing to train on"),
        ({"eval.noise": ""}, "no noise levels given (use 0 for clean data only)"),
        ({"eval.noise": "0,inf"}, NOISE_RANGE + "inf"),
        ({"eval.noise": "0,-1"}, NOISE_RANGE + "-1.0"),
        ({"eval.noise": "1000001"}, NOISE_RANGE + "1000001.0"),
        (
            {"train.loggers": "csv,nope"},
            "unknown logger 'nope'; expected some of ['csv', 'tensorboard', 'wandb', 'mlflow']",
        ),
    ],
)
def test_a_bad_combination_is_one_line_before_any_data_is_read(overrides, message):
    config = load_config(overrides={"data": "/no/such/file.npz", **overrides})  # never opened
    with pytest.raises(ValueError) as error:
        validate_config(config)
    assert str(error.value) == message


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"train.strategy": "ddp_spawn"},  # with its checkpoints and no tuning
        {"jobs": 2},
        {"val_fraction": 0.3, "test_fraction": 0.6},
        {"eval.noise": "0,1000000"},
    ],
)
def test_the_limits_themselves_are_accepted(overrides):
    validate_config(load_config(overrides={"data": "/no/such/file.npz", **overrides}))


def test_the_range_of_every_option_is_checked_first_naming_its_flag():
    config = load_config(overrides={"optim.lr": 0, "jobs": 2, "train.strategy": "ddp"})
    with pytest.raises(ValueError, match=r"^--lr \(optim\.lr\) must be "):
        validate_config(config)


def test_the_noise_kinds_the_option_accepts_are_those_the_data_layer_has():
    rule = next(o.rule for o in iter_options(ExperimentConfig()) if o.key == "eval.noise_kind")
    assert rule is not None and sorted(rule.choices) == sorted(FEATURE_NOISE)
    with pytest.raises(ValueError) as error:
        validate_config(load_config(overrides={"eval.noise_kind": "speckle"}))
    assert str(error.value) == "--noise-kind (eval.noise_kind) must be one of gaussian, salt-and-pepper, got 'speckle'"


def test_a_gpu_asked_for_where_torch_sees_none_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError) as error:
        validate_config(load_config(overrides={"train.accelerator": "gpu"}))
    assert str(error.value) == (
        "--accelerator gpu: torch sees no CUDA GPU on this machine; use --accelerator cpu (or auto)"
    )


# ---------------------------------------------------------------- the data, once read


def test_load_splits_reads_the_chosen_views_split_by_the_seed(tiny_npz):
    config = load_config(overrides={"data": str(tiny_npz), "views": "m2,m0"})
    with pytest.warns(PassedOverWarning, match="ignored 'm1' array"):
        splits = load_splits(config, seed=0)
    assert splits.view_dims == {"m2": 8, "m0": 8} and splits.num_classes == 3
    assert (len(splits.train), len(splits.val), len(splits.test)) == (84, 12, 24)
    with pytest.warns(PassedOverWarning):
        again, other = load_splits(config, seed=0), load_splits(config, seed=1)
    assert torch.equal(again.train.views["m0"], splits.train.views["m0"])
    assert not torch.equal(other.train.views["m0"], splits.train.views["m0"])


def test_one_view_is_not_enough_to_fuse(tmp_path):
    path = tmp_path / "one.npz"
    np.savez(path, a=np.random.default_rng(0).normal(size=(30, 4)), labels=np.arange(30) % 3)
    with pytest.raises(ValueError) as error:
        load_splits(load_config(overrides={"data": str(path)}), seed=0)
    assert str(error.value) == (
        f"{path}: 1 view ['a']; fusion needs at least two (`iidfusion datasets {path}` names every array or "
        "column it passed over; --views chooses)"
    )


def test_the_noise_view_is_all_or_a_view_of_the_data(tiny_npz):
    config = load_config(overrides={"data": str(tiny_npz)})
    splits = load_splits(config, seed=0)
    check_noise_view(replace(config, eval=replace(config.eval, noise_view="m1")), splits)
    with pytest.raises(ValueError) as error:
        check_noise_view(replace(config, eval=replace(config.eval, noise_view="m9")), splits)
    assert str(error.value) == "noise view 'm9' is not a view of tiny; views: ['m0', 'm1', 'm2']"


def cached_splits(levels: tuple[float, ...]) -> DatasetSplits:
    """Splits as a feature cache gives them: a test split per noise level extracted from noisy inputs."""
    data = MultiViewData({"image": torch.zeros(3, 2), "text": torch.zeros(3, 2)}, torch.tensor([0, 1, 0]))
    return DatasetSplits("cache", data, data, data, 2, input_noise_tests=dict.fromkeys(levels, data))


def test_a_feature_cache_must_hold_every_noise_level_and_noise_every_view():
    config = load_config(overrides={"data": "features/", "eval.noise": "0,10"})
    check_noise_view(config, cached_splits((0.0, 10.0, 20.0)))
    with pytest.raises(ValueError) as error:
        check_noise_view(replace(config, eval=replace(config.eval, noise=(0.0, 5.0, 30.0))), cached_splits((0.0, 10.0)))
    assert str(error.value) == (
        "features/: noise levels [5.0, 30.0] are not in this feature cache (cached: [0.0, 10.0]); "
        "run `iidfusion extract ... --noise 0,5,10,30`"
    )
    with pytest.raises(ValueError) as error:
        check_noise_view(replace(config, eval=replace(config.eval, noise_view="text")), cached_splits((0.0, 10.0)))
    assert str(error.value) == (
        "features/: a feature cache's noisy test splits corrupt every modality; --noise-view must be 'all'"
    )
