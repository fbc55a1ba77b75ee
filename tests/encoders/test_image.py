"""Image encoder pooling and the originals' transforms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from iidfusion.encoders.image import NORMALIZATIONS, RGBD_EVAL_TRANSFORM, ImageEncoder, ImageTransform
from iidfusion.encoders.resnet import resnet18


def test_image_encoder_warns_without_weights_and_pools_regions() -> None:
    with pytest.warns(UserWarning, match="random initialisation"):
        encoder = ImageEncoder("resnet18", regions=3).eval()
    assert encoder.output_dim == 3 * 512
    images = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        out = encoder(images)
        fmap = encoder.backbone.forward_features(images)  # (2, 512, 3, 2)
    assert out.shape == (2, 1536)
    # Band by band, top to bottom, each band the mean over its rows and all columns (MMBT's order).
    expected = torch.cat([fmap[:, :, band].mean(dim=-1) for band in range(3)], dim=1)
    torch.testing.assert_close(out, expected)


def test_image_encoder_loads_local_weights(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    torch.manual_seed(1)
    source = resnet18().eval()
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    encoder = ImageEncoder("resnet18", weights=path).eval()
    assert not [w for w in recwarn if "random initialisation" in str(w.message)]
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), source.forward_features(x).mean(dim=(2, 3)))
    assert encoder.describe() == {
        "type": "resnet",
        "arch": "resnet18",
        "regions": 1,
        "pool": "avg",
        "weights": str(path),
    }


def test_bad_encoder_options() -> None:
    with pytest.raises(ValueError, match="regions"):
        ImageEncoder("resnet18", regions=0)
    with pytest.raises(ValueError, match="pooling"):
        ImageEncoder("resnet18", pool="median")


def test_vision_language_transform_resizes_shorter_side_and_centre_crops() -> None:
    transform = ImageTransform(resize=16, crop=8, normalization="imagenet")
    image = Image.fromarray(np.full((20, 40, 3), 255, dtype=np.uint8))  # height 20, width 40
    resized = transform.resize_image(image)
    assert resized.shape == (16, 32, 3) and resized.dtype == np.uint8
    assert transform.center_offset(resized) == (4, 12)
    out = transform(image)
    mean, std = NORMALIZATIONS["imagenet"]
    assert out.shape == (3, 8, 8)
    torch.testing.assert_close(out[:, 0, 0], (1 - torch.tensor(mean)) / torch.tensor(std))


def test_finish_crops_at_offset_and_flips() -> None:
    transform = ImageTransform(resize=4, crop=2, square=True, normalization="rgbd")
    array = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in NORMALIZATIONS["rgbd"])
    raw = lambda t: (t * std + mean) * 255  # noqa: E731 - undo the normalisation
    patch = raw(transform.finish(array, (1, 2)))
    torch.testing.assert_close(patch, torch.from_numpy(array[1:3, 2:4]).permute(2, 0, 1).float())
    flipped = raw(transform.finish(array, (1, 2), flip=True))
    torch.testing.assert_close(flipped, patch.flip(-1))
    with pytest.raises(ValueError, match="crop at"):
        transform.finish(array, (3, 3))


def test_random_offset_within_bounds_and_seeded() -> None:
    transform = ImageTransform(resize=10, crop=4, square=True)
    array = np.zeros((10, 10, 3), dtype=np.uint8)
    offsets = {transform.random_offset(array, torch.Generator().manual_seed(s)) for s in range(30)}
    assert all(0 <= top <= 6 and 0 <= left <= 6 for top, left in offsets)
    assert len(offsets) > 5
    first = transform.random_offset(array, torch.Generator().manual_seed(3))
    assert first == transform.random_offset(array, torch.Generator().manual_seed(3))


def test_transform_validation_and_rgbd_eval_size() -> None:
    with pytest.raises(ValueError, match="crop <= resize"):
        ImageTransform(resize=100, crop=224)
    with pytest.raises(ValueError, match="normalization"):
        ImageTransform(normalization="nope")
    image = Image.fromarray(np.zeros((300, 500, 3), dtype=np.uint8))
    assert RGBD_EVAL_TRANSFORM(image).shape == (3, 224, 224)
