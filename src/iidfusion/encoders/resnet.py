"""ResNet-18/34/50/101/152 whose ``state_dict`` keys are torchvision's, so local weight files load.

torchvision cannot be imported beside our torch build, yet the originals of QMF and PDF use
torchvision's ImageNet ResNets (ResNet-152 for vision-language, ResNet-18 for RGB and depth;
docs/reproduce.md, "Data"). This module rebuilds the same architecture (ResNet v1.5: the stride of a
bottleneck sits on its 3x3 convolution) with the same attribute names (``conv1``, ``bn1``,
``layer1.0.downsample.0``, ``fc``), so a ``resnet50-0676ba61.pth`` saved by torchvision loads
with ``load_state_dict(strict=True)`` and gives the same outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, with a residual connection (ResNet-50+)."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """The torchvision ResNet layout; ``num_classes=None`` drops ``fc`` (a feature trunk).

    :meth:`forward_features` returns the last feature map (B, C, H/32, W/32), which the image
    encoders pool; :meth:`forward` adds global average pooling and ``fc`` when present.
    Initialisation follows torchvision (Kaiming normal, fan-out, for convolutions; BatchNorm
    weight 1, bias 0), so a random ResNet here is a fair stand-in for an untrained one there.
    """

    def __init__(self, block: Block, layers: tuple[int, int, int, int], num_classes: int | None = 1000) -> None:
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.feature_dim = 512 * block.expansion
        self.fc = nn.Linear(self.feature_dim, num_classes) if num_classes is not None else None
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.in_planes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.in_planes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion)
            )
        modules: list[nn.Module] = [block(self.in_planes, planes, stride, downsample)]
        self.in_planes = planes * block.expansion
        modules += [block(self.in_planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*modules)

    def forward_features(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"ResNet expects images of shape (batch, 3, height, width), got {tuple(x.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.flatten(self.avgpool(self.forward_features(x)), 1)
        return pooled if self.fc is None else self.fc(pooled)


ARCHITECTURES: dict[str, tuple[Block, tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
    "resnet152": (Bottleneck, (3, 8, 36, 3)),
}


def build_resnet(arch: str, num_classes: int | None = 1000) -> ResNet:
    """A randomly initialised ResNet by torchvision name (``resnet18`` ... ``resnet152``)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown ResNet architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    block, layers = ARCHITECTURES[arch]
    return ResNet(block, layers, num_classes)


def _make_factory(arch: str) -> Callable[..., ResNet]:
    def factory(num_classes: int | None = 1000) -> ResNet:
        return build_resnet(arch, num_classes)

    factory.__name__ = arch
    factory.__doc__ = f"torchvision's ``{arch}`` layout, randomly initialised."
    return factory


resnet18 = _make_factory("resnet18")
resnet34 = _make_factory("resnet34")
resnet50 = _make_factory("resnet50")
resnet101 = _make_factory("resnet101")
resnet152 = _make_factory("resnet152")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a weight file: a torchvision ``.pth`` / ``.pt`` or a ``.safetensors`` file.

    A checkpoint that wraps the weights (``{"state_dict": ...}`` or ``{"model": ...}``) and the
    ``module.`` prefix that DataParallel adds are both unwrapped. Only tensors are read
    (``weights_only=True``), so a weight file cannot run code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: object = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and OS errors alike: one clear message
        raise ValueError(f"cannot read weights from {path}: {error}") from error
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state_dict of tensors")
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}


def load_resnet_weights(model: ResNet, path: str | Path) -> None:
    """Load torchvision weights into ``model`` strictly; ``fc.*`` may be absent from a trunk.

    A trunk (``num_classes=None``) ignores the file's classifier ``fc.weight`` / ``fc.bias``;
    every other key must match in name and shape, or a ValueError lists what differs (the
    usual cause: weights of another depth, e.g. resnet50 weights for a resnet152).
    """
    state = read_state_dict(path)
    if model.fc is None:
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{path} does not fit this ResNet: {len(missing)} missing keys {missing[:5]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:5]}, shape mismatches {mismatched[:5]}"
        )
    model.load_state_dict(state, strict=True)
