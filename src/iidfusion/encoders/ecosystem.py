"""Image encoders from the ecosystem: any timm or torchvision model, when that package is installed.

``--image-encoder timm:NAME`` (e.g. ``timm:convnext_tiny``) or ``torchvision:NAME`` (e.g.
``torchvision:efficientnet_b0``) builds that model without its classifier, as the image (or
RGB) encoder of ``extract`` and ``finetune``; a plain name (``resnet152``) keeps the project's own
ResNets (:mod:`iidfusion.encoders.resnet`), which need neither package. The packages are the
optional extra ``vision`` (``pip install 'iidfusion[vision]'``); PyPI's torchvision imports only
beside the torch build it was made for, so a torchvision that is installed but does not import
is said as such.

Nothing is downloaded: the models are built with ``pretrained=False`` / ``weights=None`` and
take their weights from a local file (``--weights``: a ``.pth`` / ``.pt`` state dict or a
``.safetensors`` file, read without pickles); without one they stay random, with a warning.
Features: the model's pooled penultimate output (B, C); with ``regions > 1`` (timm
convolutional models only) the last feature map average-pooled to horizontal bands, as
:class:`~iidfusion.encoders.image.ImageEncoder` pools a ResNet's.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

from iidfusion.encoders.resnet import read_state_dict

LIBRARIES: tuple[str, ...] = ("timm", "torchvision")
_CLASSIFIERS: tuple[str, ...] = ("fc", "classifier", "heads", "head")  # torchvision's names for the last layer


def is_ecosystem_encoder(source: str) -> bool:
    """Whether ``source`` names a timm / torchvision model (``LIBRARY:NAME``)."""
    return source.partition(":")[0] in LIBRARIES and ":" in source


def import_library(name: str) -> ModuleType:
    """Timm or torchvision, or a ValueError that says how to get a working one."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        raise ValueError(
            f"--image-encoder {name}:...: needs the optional package {name!r}, which is not installed: "
            "pip install 'iidfusion[vision]' (or use one of the built-in ResNets, e.g. resnet50)"
        ) from None
    except Exception as error:  # installed but broken: a torchvision built for another torch
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"--image-encoder {name}:...: {name} is installed but does not import beside torch {torch.__version__} "
            f"({reason}); install the {name} build made for this torch, or use a built-in ResNet"
        ) from None


class EcosystemImageEncoder(nn.Module):
    """A timm or torchvision model without its classifier: ``(B, 3, H, W) -> (B, regions * C)``."""

    trunk: Any  # a timm or torchvision module: its own call and forward_features

    def __init__(self, source: str, *, weights: str | Path | None = None, regions: int = 1) -> None:
        super().__init__()
        library, _, name = source.partition(":")
        if library not in LIBRARIES or not name:
            raise ValueError(f"--image-encoder {source!r}: expected timm:NAME or torchvision:NAME")
        if regions < 1:
            raise ValueError(f"regions must be >= 1, got {regions}")
        if regions > 1 and library != "timm":
            raise ValueError(
                f"--regions {regions}: pooling to regions needs a feature map; use timm:NAME, or --regions 1"
            )
        self.source, self.regions = source, regions
        self.weights = str(weights) if weights is not None else None
        self.trunk, self.output_dim = _timm_trunk(name) if library == "timm" else _torchvision_trunk(name)
        self.output_dim *= regions
        self.pool = nn.AdaptiveAvgPool2d((regions, 1))
        if weights is not None:
            _load_weights(self.trunk, weights, source)
        else:
            warnings.warn(
                f"no weights given for the {source} image encoder: it starts from a random initialisation "
                "(nothing is downloaded; give a local weight file with --weights)",
                stacklevel=2,
            )

    def forward(self, images: Tensor) -> Tensor:
        if self.regions == 1:
            return self.trunk(images).flatten(1)
        features = self.trunk.forward_features(images)
        if features.ndim != 4:
            raise ValueError(
                f"{self.source} gives features of shape {tuple(features.shape)}, not a feature map; use --regions 1"
            )
        return self.pool(features).flatten(2).transpose(1, 2).flatten(1)

    def describe(self) -> dict[str, Any]:
        """What determines this encoder's features (for feature caches and run records)."""
        return {
            "type": self.source.partition(":")[0],
            "arch": self.source,
            "regions": self.regions,
            "weights": self.weights,
        }


def _timm_trunk(name: str) -> tuple[nn.Module, int]:
    timm = import_library("timm")
    try:
        model = timm.create_model(name, pretrained=False, num_classes=0)
    except RuntimeError as error:  # timm's "Unknown model"
        raise ValueError(f"--image-encoder timm:{name}: {str(error).splitlines()[0]}") from None
    return model, int(model.num_features)


def _torchvision_trunk(name: str) -> tuple[nn.Module, int]:
    torchvision = import_library("torchvision")
    try:
        model = torchvision.models.get_model(name, weights=None)
    except ValueError as error:  # torchvision's "Unknown model"
        raise ValueError(f"--image-encoder torchvision:{name}: {str(error).splitlines()[0]}") from None
    for attribute in _CLASSIFIERS:
        layer = getattr(model, attribute, None)
        last = layer[-1] if isinstance(layer, nn.Sequential) and len(layer) else layer
        if isinstance(last, nn.Linear):
            if isinstance(layer, nn.Sequential):
                layer[-1] = nn.Identity()
            else:
                setattr(model, attribute, nn.Identity())
            return model, int(last.in_features)
    raise ValueError(f"--image-encoder torchvision:{name}: no linear classifier found under {', '.join(_CLASSIFIERS)}")


def _load_weights(model: nn.Module, path: str | Path, source: str) -> None:
    """Every parameter of the trunk from ``path``; only keys of the removed classifier may be left over
    (so that the weights of a deeper sibling, a superset of the keys, are refused too).
    """
    state = read_state_dict(path)
    expected = model.state_dict()
    classifier = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")  # timm names its head
    heads = tuple(f"{name}." for name in (*_CLASSIFIERS, *([classifier] if classifier else [])))
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(k for k in set(state) - set(expected) if not k.startswith(heads))
    mismatched = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{path} does not fit {source}: {len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected "
            "keys "
            f"{unexpected[:5]}, shape mismatches {mismatched[:5]}"
        )
    model.load_state_dict({k: state[k] for k in expected})
