"""RGB-D scene recognition from raw files: NYU Depth V2 (10 classes), SUN RGB-D (19 classes).

Format (QMF's and PDF's ``AlignedConcDataset``): ``root/train/<class>/*.png`` and
``root/test/<class>/*.png``; each png holds the RGB image in its left half and the depth map
(rendered as a 3-channel image) in its right half. Classes are the class folders of the
training split in sorted order, as torchvision's ``find_classes`` gives them there.

Validation: the originals have no validation split and select the epoch on the TEST set
(early stopping and the reported checkpoint both read test accuracy), which overstates
accuracy. We carve a stratified validation split from the training split (``val_fraction``,
by ``seed``, with :func:`iidfusion.data.features.multiview.stratified_split`) and never look at the
test split before the final evaluation.

Transforms (:mod:`iidfusion.encoders.image`): training halves resized to 256x256, one random
224 crop and one horizontal flip drawn once per sample and applied to RGB and depth alike
(the published scripts passed each half through the transform separately, so their crops and
flips did not match; their synchronised ``RandomCrop`` class was defined but unused);
evaluation halves resized to 224x224.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from iidfusion.data.features.multiview import VAL_FRACTION, stratified_split
from iidfusion.data.raw.input_noise import InputNoise
from iidfusion.data.raw.vision_language import (
    RawDataset,
    RawSample,
    RawSplits,
    check_splits,
    class_order,
    open_image,
)
from iidfusion.encoders.image import RGBD_EVAL_TRANSFORM, RGBD_TRAIN_TRANSFORM, ImageTransform

RGBD_MODALITIES: tuple[str, str] = ("rgb", "depth")


def scan_rgbd_split(folder: Path) -> list[RawSample]:
    """The ``<class>/**/*.png`` files under ``folder``, classes and files in sorted order."""
    if not folder.is_dir():
        raise FileNotFoundError(f"RGB-D split folder not found: {folder} (expected root/train and root/test)")
    samples = [
        RawSample(str(path.relative_to(folder)), class_dir.name, path)
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir())
        for path in sorted(p for p in class_dir.rglob("*") if p.suffix.lower() == ".png" and p.is_file())
    ]
    if not samples:
        raise ValueError(f"{folder}: no <class>/*.png files")
    return samples


def load_rgbd(
    root: str | Path,
    *,
    val_fraction: float = VAL_FRACTION,
    seed: int = 0,
    on_error: str = "raise",
    verify_images: bool = True,
    name: str | None = None,
) -> RawSplits:
    """Train / val / test samples of an RGB-D folder; val is carved from train (stratified, by ``seed``)."""
    root = Path(root)
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    train = scan_rgbd_split(root / "train")
    test = scan_rgbd_split(root / "test")
    classes = class_order([s.label for s in train], f"{root / 'train'}")
    codes = np.array([classes.index(str(s.label)) for s in train])
    parts = stratified_split(codes, {"val": val_fraction}, "train", seed=seed, class_names=classes)
    splits = {"train": [train[i] for i in parts["train"]], "val": [train[i] for i in parts["val"]], "test": test}
    return check_splits(name or root.resolve().name, "rgbd", splits, on_error=on_error, verify_images=verify_images)


class RGBDDataset(RawDataset):
    """RGB and depth halves of each png: ``{"rgb": (3, 224, 224), "depth": (3, 224, 224)}``.

    ``train=True`` applies the synchronised random crop and flip (drawn from torch's RNG,
    which Lightning seeds per worker); otherwise the evaluation resize, after which the
    ``noise`` protocol (if any) corrupts each half independently.
    """

    def __init__(
        self,
        samples: Sequence[RawSample],
        class_names: Sequence[str],
        *,
        train: bool,
        noise: InputNoise | None = None,
        train_transform: ImageTransform = RGBD_TRAIN_TRANSFORM,
        eval_transform: ImageTransform = RGBD_EVAL_TRANSFORM,
    ) -> None:
        super().__init__(samples, class_names, noise)
        self.train = train
        self.transform = train_transform if train else eval_transform

    def inputs(self, index: int) -> dict[str, Any]:
        path = self.samples[index].image
        assert path is not None  # an RGB-D sample always has its image
        image = open_image(path)
        width, height = image.size
        if width < 2:
            raise ValueError(f"{self.samples[index].image}: width {width} cannot hold an RGB half and a depth half")
        halves = {"rgb": image.crop((0, 0, width // 2, height)), "depth": image.crop((width // 2, 0, width, height))}
        pixels = {name: self.transform.resize_image(half) for name, half in halves.items()}
        if self.noise is not None:
            pixels = {name: self.noise.pixels(array, index, name) for name, array in pixels.items()}
        if not self.train:
            return {name: self.transform.finish(array) for name, array in pixels.items()}
        offset = self.transform.random_offset(pixels["rgb"])
        flip = bool(torch.rand(()) < 0.5)
        return {name: self.transform.finish(array, offset, flip) for name, array in pixels.items()}
