"""Image encoders (torchvision-compatible ResNets) and the originals' image transforms.

Vision-language (MMBT, QMF, PDF): ResNet-152, the last feature map average-pooled to 3
horizontal bands of 2048 features each (``regions=3``, flattened band by band to 6144), images
resized to 256 on the shorter side, centre-cropped to 224 and normalised with MMBT's
statistics. RGB-D (QMF, PDF): one ResNet-18 for RGB and one for depth (512 features each,
``regions=1``); training images resized to 256x256, then one random 224 crop and one random
horizontal flip drawn once and applied to RGB and depth alike; test images resized to 224x224.

Noise protocols act on the raw pixels (0-255) between resizing and cropping, as in the
originals, so the transform is split in two steps: :meth:`ImageTransform.resize` to a uint8
array, and :meth:`ImageTransform.finish` (crop, flip, to tensor, normalise).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from iidfusion.encoders.resnet import build_resnet, load_resnet_weights

# Channel statistics used by the originals (RGB order, on [0, 1] pixels).
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    # MMBT's statistics, reused by QMF and PDF for MVSA and Food101.
    "mmbt": ((0.46777044, 0.44531429, 0.40661017), (0.12221994, 0.12145835, 0.14380469)),
    # QMF's NYU Depth V2 / SUN RGB-D statistics, applied to RGB and depth alike.
    "rgbd": ((0.4951, 0.3601, 0.4587), (0.1474, 0.1950, 0.1646)),
    # torchvision's ImageNet statistics (CLMLF's MVSA / HFM pipelines).
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # TensorFlow's "inception" statistics, (x - 127) / 128 on 0-255 pixels: EfficientNet-Lite's.
    "inception": ((127 / 255,) * 3, (128 / 255,) * 3),
}
RESAMPLING: dict[str, Image.Resampling] = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


class ImageEncoder(nn.Module):
    """A ResNet trunk whose last feature map is pooled to ``regions`` horizontal bands.

    ``forward(images (B, 3, H, W)) -> (B, regions * C)`` with C = 512 (ResNet-18/34) or 2048
    (ResNet-50+), bands in top-to-bottom order, as MMBT's image encoder flattens them.
    ``weights``: a local torchvision weight file; without one the trunk is random and a
    warning says so (nothing is ever downloaded).
    """

    def __init__(
        self, arch: str = "resnet152", *, weights: str | Path | None = None, regions: int = 1, pool: str = "avg"
    ) -> None:
        super().__init__()
        if regions < 1:
            raise ValueError(f"regions must be >= 1, got {regions}")
        pools = {"avg": nn.AdaptiveAvgPool2d, "max": nn.AdaptiveMaxPool2d}
        if pool not in pools:
            raise ValueError(f"unknown pooling {pool!r}; expected one of {sorted(pools)}")
        self.arch, self.regions, self.pool_type = arch, regions, pool
        self.weights = str(weights) if weights is not None else None
        self.backbone = build_resnet(arch, num_classes=None)
        if weights is not None:
            load_resnet_weights(self.backbone, weights)
        else:
            warnings.warn(
                f"no weights given for the {arch} image encoder: it starts from a random initialisation, "
                "so its features are not those of a pretrained ResNet",
                stacklevel=2,
            )
        self.pool = pools[pool]((regions, 1))
        self.output_dim = self.backbone.feature_dim * regions

    def forward(self, images: Tensor) -> Tensor:
        pooled = self.pool(self.backbone.forward_features(images))  # (B, C, regions, 1)
        return pooled.flatten(2).transpose(1, 2).flatten(1)

    def blocks(self) -> list[nn.Module]:
        """The stem then the four stages, in order (for partial fine-tuning)."""
        trunk = self.backbone
        return [nn.ModuleList([trunk.conv1, trunk.bn1]), trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4]

    def describe(self) -> dict[str, Any]:
        """What determines this encoder's features (for feature caches and run records)."""
        return {
            "type": "resnet",
            "arch": self.arch,
            "regions": self.regions,
            "pool": self.pool_type,
            "weights": self.weights,
        }


@dataclass(frozen=True)
class ImageTransform:
    """Resize, then crop to ``crop`` x ``crop``, to a tensor in [0, 1], normalised.

    ``square=False`` resizes the shorter side to ``resize`` keeping the aspect ratio
    (torchvision ``Resize(256)``, vision-language); ``square=True`` resizes to
    ``resize`` x ``resize`` (RGB-D). ``normalization`` names an entry of
    :data:`NORMALIZATIONS`, ``resample`` one of :data:`RESAMPLING` (bilinear: torchvision's
    default, the originals').
    """

    resize: int = 256
    crop: int = 224
    square: bool = False
    normalization: str = "mmbt"
    resample: str = "bilinear"

    def __post_init__(self) -> None:
        if not 1 <= self.crop <= self.resize:
            raise ValueError(f"need 1 <= crop <= resize, got crop {self.crop}, resize {self.resize}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {self.normalization!r}; expected one of {sorted(NORMALIZATIONS)}")
        if self.resample not in RESAMPLING:
            raise ValueError(f"unknown resampling {self.resample!r}; expected one of {sorted(RESAMPLING)}")

    def resize_image(self, image: Image.Image) -> np.ndarray:
        """The resized image as a (H, W, 3) uint8 array (the pixels the noise protocols act on)."""
        image = image.convert("RGB")
        width, height = image.size
        if self.square:
            size = (self.resize, self.resize)
        elif width <= height:
            size = (self.resize, int(self.resize * height / width))
        else:
            size = (int(self.resize * width / height), self.resize)
        return np.array(image.resize(size, RESAMPLING[self.resample]), dtype=np.uint8)

    def center_offset(self, array: np.ndarray) -> tuple[int, int]:
        """(top, left) of the centred crop, rounded as torchvision rounds it."""
        height, width = array.shape[:2]
        return int(round((height - self.crop) / 2.0)), int(round((width - self.crop) / 2.0))

    def random_offset(self, array: np.ndarray, generator: torch.Generator | None = None) -> tuple[int, int]:
        """(top, left) of a uniformly random crop, drawn from torch's RNG (seeded per worker)."""
        height, width = array.shape[:2]
        top = int(torch.randint(0, height - self.crop + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - self.crop + 1, (1,), generator=generator))
        return top, left

    def finish(self, array: np.ndarray, offset: tuple[int, int] | None = None, flip: bool = False) -> Tensor:
        """Crop at ``offset`` (centre by default), flip horizontally if asked, normalise: (3, crop, crop)."""
        top, left = self.center_offset(array) if offset is None else offset
        patch = array[top : top + self.crop, left : left + self.crop]
        if patch.shape[:2] != (self.crop, self.crop):
            raise ValueError(f"crop at {(top, left)} of size {self.crop} leaves an image of shape {array.shape}")
        if flip:
            patch = patch[:, ::-1]
        mean, std = NORMALIZATIONS[self.normalization]
        tensor = torch.from_numpy(np.ascontiguousarray(patch)).permute(2, 0, 1).float().div_(255.0)
        return (tensor - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)

    def __call__(self, image: Image.Image) -> Tensor:
        """The evaluation transform: resize, centre crop, normalise."""
        return self.finish(self.resize_image(image))


# The originals' pipelines.
VISION_LANGUAGE_TRANSFORM = ImageTransform(resize=256, crop=224, square=False, normalization="mmbt")
RGBD_TRAIN_TRANSFORM = ImageTransform(resize=256, crop=224, square=True, normalization="rgbd")
RGBD_EVAL_TRANSFORM = ImageTransform(resize=224, crop=224, square=True, normalization="rgbd")
