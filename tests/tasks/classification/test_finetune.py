"""End-to-end training on raw fixtures: encoders inside FusionModule, freezing, accumulation, noise."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from iidfusion.data.raw.families import EncoderOptions, build_encoders, raw_dataset
from iidfusion.data.raw.rgbd import load_rgbd
from iidfusion.data.raw.vision_language import load_vision_language
from iidfusion.encoders.text import RandomTextConfig, build_wordpiece_vocab, wordpiece_tokenizer
from iidfusion.tasks.classification.config import load_config
from iidfusion.tasks.classification.finetune import FinetuneConfig, FreezeSchedule, RawDataModule, fit_end_to_end
from tests.toy_data import write_toy_rgbd, write_toy_vision_language

TINY_TEXT = RandomTextConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)


def quick_config(**overrides: object):
    values = {
        "train.max_epochs": 2,
        "train.batch_size": 8,
        "train.patience": 0,
        "train.checkpoints": False,
        "train.loggers": (),
        "train.progress_bar": False,
        "train.accelerator": "cpu",
        "eval.noise": (0.0, 10.0),
    }
    return load_config(None, {**values, **overrides})


def test_freeze_schedule_toggles_gradients_by_epoch() -> None:
    module = SimpleNamespace(
        model=SimpleNamespace(encoders=nn.ModuleDict({"image": nn.Linear(2, 2), "text": nn.Linear(2, 2)}))
    )
    schedule = FreezeSchedule({"image": 1, "text": 2})
    schedule.on_fit_start(None, module)  # type: ignore[arg-type]
    states = []
    for epoch in range(3):
        schedule.on_train_epoch_start(SimpleNamespace(current_epoch=epoch), module)  # type: ignore[arg-type]
        states.append(tuple(module.model.encoders[m].weight.requires_grad for m in ("image", "text")))
    assert states == [(False, False), (True, False), (True, True)]
    with pytest.raises(ValueError, match=r"cannot freeze \['audio'\]"):
        FreezeSchedule({"audio": 1}).on_fit_start(None, module)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="freeze epochs"):
        FinetuneConfig(freeze_epochs={"image": -1})


def test_raw_data_module_batches_token_dicts(tmp_path: Path) -> None:
    raw = load_vision_language(write_toy_vision_language(tmp_path / "d", "mmbt", per_class=(3, 1, 1)), "mmbt")
    tokenizer = wordpiece_tokenizer(build_wordpiece_vocab(s.text or "" for s in raw.train), max_length=10)
    datasets = {split: raw_dataset(raw, split, tokenizer, image_size=16) for split in ("train", "val", "test")}
    batch = next(iter(RawDataModule(datasets, batch_size=4, seed=0).train_dataloader()))
    assert batch["inputs"]["image"].shape == (4, 3, 16, 16)
    assert batch["inputs"]["text"]["input_ids"].shape == (4, 10)
    assert batch["label"].shape == batch["index"].shape == (4,)
    with pytest.raises(ValueError, match="missing"):
        RawDataModule({"train": datasets["train"]}, batch_size=4, seed=0)


def test_vision_language_end_to_end_with_frozen_image_encoder_and_accumulation(tmp_path: Path) -> None:
    raw = load_vision_language(
        write_toy_vision_language(tmp_path / "d", "json-array", per_class=(8, 2, 3)), "json-array"
    )
    options = EncoderOptions(image_arch="resnet18", max_length=12, random_text=TINY_TEXT)
    finetune = FinetuneConfig(freeze_epochs={"image": 5}, accumulate_grad_batches=2, image_size=16)
    with pytest.warns(UserWarning, match="random"):
        fit = fit_end_to_end(raw, "iid-p", 0, quick_config(), finetune, options)
    encoders = fit.module.model.encoders
    with pytest.warns(UserWarning):  # the same seed rebuilds the same initial encoders
        fresh, _ = build_encoders(raw, replace(options, init_seed=0))
    initial = {name: p.detach().clone() for name, p in fresh["image"].named_parameters()}
    for name, parameter in encoders["image"].named_parameters():
        torch.testing.assert_close(parameter.detach(), initial[name])  # frozen all along: untouched by AdamW
    text_initial = dict(fresh["text"].named_parameters())
    assert any(not torch.equal(p.detach(), text_initial[n].detach()) for n, p in encoders["text"].named_parameters())
    # 24 training samples in batches of 8 = 3 batches per epoch; a step every 2 batches -> 2 steps per epoch.
    assert fit.module.trainer.global_step == 2 * 2
    assert [m.noise for m in fit.metrics] == [0.0, 10.0]
    assert all(0.0 <= m.accuracy <= 1.0 for m in fit.metrics) and fit.epochs == 2


def test_rgbd_end_to_end_learns_the_toy_task(tmp_path: Path) -> None:
    raw = load_rgbd(write_toy_rgbd(tmp_path / "d", per_class=(12, 6)), val_fraction=0.25)
    config = quick_config(**{"train.max_epochs": 4, "optim.lr": 3e-3, "eval.noise": (0.0,)})
    # Both (random) ResNets stay frozen, so the heads learn on their features; a CPU step is cheap.
    finetune = FinetuneConfig(freeze_epochs={"rgb": 10, "depth": 10}, image_size=16)
    with pytest.warns(UserWarning, match="random initialisation"):
        fit = fit_end_to_end(raw, "iid-q", 0, config, finetune, EncoderOptions())
    assert fit.metrics[0].accuracy > 0.6  # colours and depth ramps separate the 3 classes; chance is 1/3


def test_trainable_blocks_train_only_the_last_blocks_and_keep_the_others_fixed(tmp_path: Path) -> None:
    raw = load_vision_language(write_toy_vision_language(tmp_path / "d", "mmbt", per_class=(4, 2, 2)), "mmbt")
    options = EncoderOptions(image_arch="resnet18", max_length=12, random_text=TINY_TEXT)
    finetune = FinetuneConfig(freeze_epochs={}, trainable_blocks={"image": 1, "text": 1}, image_size=16)
    with pytest.warns(UserWarning, match="random"):
        fit = fit_end_to_end(
            raw, "lf-static", 0, quick_config(**{"train.max_epochs": 1, "eval.noise": (0.0,)}), finetune, options
        )
    with pytest.warns(UserWarning):
        fresh, _ = build_encoders(raw, replace(options, init_seed=0))
    for modality, last in (("image", "backbone.layer4."), ("text", "model.encoder.layer.1.")):
        initial = fresh[modality].state_dict()  # parameters and BatchNorm statistics
        changed = {
            name
            for name, value in fit.module.model.encoders[modality].state_dict().items()
            if value.is_floating_point() and not torch.equal(value, initial[name])
        }
        assert changed and all(name.startswith(last) or name.startswith("model.pooler.") for name in changed), (
            modality,
            sorted(changed)[:5],
        )
    with pytest.raises(ValueError, match="trainable blocks"):
        FinetuneConfig(trainable_blocks={"image": -1})
