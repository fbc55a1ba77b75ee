"""RGB-D loader: folder format, halves, a validation split carved from train, synchronised augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from iidfusion.data.raw.input_noise import InputNoise
from iidfusion.data.raw.rgbd import RGBDDataset, load_rgbd, scan_rgbd_split
from iidfusion.encoders.image import ImageTransform
from tests.toy_data import write_toy_rgbd

TRAIN = ImageTransform(resize=20, crop=16, square=True, normalization="rgbd")
EVAL = ImageTransform(resize=16, crop=16, square=True, normalization="rgbd")


def test_classes_and_stratified_validation_from_train(tmp_path: Path) -> None:
    root = write_toy_rgbd(tmp_path / "nyud", per_class=(10, 4))
    raw = load_rgbd(root, val_fraction=0.2, seed=0)
    assert raw.family == "rgbd" and raw.class_names == ("scene0", "scene1", "scene2")
    assert (len(raw.train), len(raw.val), len(raw.test)) == (24, 6, 12)
    assert raw.labels("val").bincount().tolist() == [2, 2, 2]
    assert not {s.image for s in raw.train} & {s.image for s in raw.val}
    assert {s.image for s in raw.train} | {s.image for s in raw.val} == {
        s.image for s in scan_rgbd_split(root / "train")
    }
    assert all(s.image.parent.parent.name == "test" for s in raw.test)  # the test split is never touched
    assert [s.id for s in load_rgbd(root, val_fraction=0.2, seed=0).val] == [s.id for s in raw.val]
    assert [s.id for s in load_rgbd(root, val_fraction=0.2, seed=1).val] != [s.id for s in raw.val]


def test_left_half_is_rgb_right_half_is_depth(tmp_path: Path) -> None:
    folder = tmp_path / "d" / "test" / "kitchen"
    folder.mkdir(parents=True)
    pixels = np.zeros((16, 32, 3), dtype=np.uint8)
    pixels[:, :16, 0] = 255  # red left
    pixels[:, 16:, 2] = 255  # blue right
    Image.fromarray(pixels).save(folder / "a.png")
    samples = scan_rgbd_split(tmp_path / "d" / "test")
    item = RGBDDataset(samples, ("kitchen",), train=False, eval_transform=EVAL)[0]
    rgb, depth = item["inputs"]["rgb"], item["inputs"]["depth"]
    assert rgb.shape == depth.shape == (3, 16, 16)
    assert rgb[0].mean() > rgb[2].mean() and depth[2].mean() > depth[0].mean()


def test_training_crop_and_flip_are_the_same_for_rgb_and_depth(tmp_path: Path) -> None:
    folder = tmp_path / "d" / "train" / "office"
    folder.mkdir(parents=True)
    half = np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    Image.fromarray(np.concatenate([half, half], axis=1)).save(folder / "a.png")
    dataset = RGBDDataset(scan_rgbd_split(tmp_path / "d" / "train"), ("office",), train=True, train_transform=TRAIN)
    torch.manual_seed(0)
    items = [dataset[0]["inputs"] for _ in range(6)]
    for item in items:
        torch.testing.assert_close(item["rgb"], item["depth"])  # identical halves stay identical
    assert len({item["rgb"].sum().item() for item in items}) > 1  # yet the crops / flips vary


def test_test_noise_corrupts_halves_independently(tmp_path: Path) -> None:
    raw = load_rgbd(write_toy_rgbd(tmp_path / "d", per_class=(4, 10)))
    clean = RGBDDataset(raw.test, raw.class_names, train=False, eval_transform=EVAL)
    noisy = RGBDDataset(
        raw.test, raw.class_names, train=False, eval_transform=EVAL, noise=InputNoise(10.0, family="rgbd")
    )
    changed = np.array(
        [
            [not torch.equal(clean[i]["inputs"][m], noisy[i]["inputs"][m]) for m in ("rgb", "depth")]
            for i in range(len(clean))
        ]
    )
    assert changed.any(axis=0).all() and not changed.all()
    assert (changed[:, 0] != changed[:, 1]).any()  # separate coins for the two halves


def test_errors_and_skips(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="expected root/train"):
        load_rgbd(tmp_path)
    root = write_toy_rgbd(tmp_path / "d", per_class=(4, 2))
    (root / "test" / "scene1" / "000.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="test sample 'scene1/000.png': unreadable image"):
        load_rgbd(root, val_fraction=0.25)
    raw = load_rgbd(root, val_fraction=0.25, on_error="skip")
    assert len(raw.test) == 5 and raw.skipped["test"][0][0] == "scene1/000.png"
    (root / "test" / "scene1" / "000.png").unlink()
    (root / "test" / "scene7").mkdir()
    Image.fromarray(np.zeros((8, 16, 3), dtype=np.uint8)).save(root / "test" / "scene7" / "x.png")
    with pytest.raises(ValueError, match="unknown label: 'scene7'"):
        load_rgbd(root, val_fraction=0.25)
    with pytest.raises(ValueError, match="val_fraction"):
        load_rgbd(root, val_fraction=1.5)
