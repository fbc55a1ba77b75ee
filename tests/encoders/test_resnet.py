"""Our ResNets have torchvision's state_dict layout and parameter counts, and load weight files strictly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from iidfusion.encoders.resnet import build_resnet, load_resnet_weights, read_state_dict, resnet18, resnet50

# Keys as torchvision names them (torchvision.models.resnet50().state_dict()).
TORCHVISION_RESNET50_KEYS = (
    "conv1.weight",
    "bn1.weight",
    "bn1.running_mean",
    "bn1.num_batches_tracked",
    "layer1.0.conv1.weight",
    "layer1.0.downsample.0.weight",
    "layer1.0.downsample.1.running_var",
    "layer2.3.bn2.bias",
    "layer3.5.conv3.weight",
    "layer4.2.bn3.running_var",
    "fc.weight",
    "fc.bias",
)


def test_resnet50_keys_and_parameter_count_match_torchvision() -> None:
    model = resnet50()
    keys = set(model.state_dict())
    assert set(TORCHVISION_RESNET50_KEYS) <= keys
    assert "layer3.6.conv1.weight" not in keys  # resnet50 has 6 blocks in layer3
    assert model.state_dict()["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert model.state_dict()["fc.weight"].shape == (1000, 2048)
    assert sum(p.numel() for p in model.parameters()) == 25_557_032


def test_resnet18_parameter_count_and_keys() -> None:
    model = resnet18()
    assert sum(p.numel() for p in model.parameters()) == 11_689_512
    keys = set(model.state_dict())
    assert {"layer1.1.conv2.weight", "layer2.0.downsample.0.weight", "layer4.1.bn2.running_mean", "fc.bias"} <= keys
    assert not any(".conv3." in key for key in keys)  # basic blocks have two convolutions
    assert "layer1.0.downsample.0.weight" not in keys  # 64 -> 64 at stride 1 needs no projection


def test_forward_shapes_on_small_images() -> None:
    model = resnet18(num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
        assert model.forward_features(torch.randn(2, 3, 64, 64)).shape == (2, 512, 2, 2)
    trunk = build_resnet("resnet18", num_classes=None)
    assert trunk.fc is None and trunk.feature_dim == 512
    with pytest.raises(ValueError, match="unknown ResNet"):
        build_resnet("resnet19")
    with pytest.raises(ValueError, match=r"\(batch, 3, height, width\)"):
        trunk(torch.randn(2, 1, 32, 32))


def test_weights_round_trip_strictly_into_full_model_and_trunk(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = resnet18().eval()
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    full = resnet18().eval()
    load_resnet_weights(full, path)
    trunk = build_resnet("resnet18", num_classes=None).eval()
    load_resnet_weights(trunk, path)  # the classifier fc.* of the file is not needed by a trunk
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(full(x), source(x))
        torch.testing.assert_close(trunk.forward_features(x), source.forward_features(x))


def test_wrapped_and_dataparallel_checkpoints_unwrap(tmp_path: Path) -> None:
    state = resnet18().state_dict()
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    assert set(read_state_dict(path)) == set(state)


def test_wrong_depth_and_bad_files_raise_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18().state_dict(), path)
    with pytest.raises(ValueError, match="does not fit this ResNet"):
        load_resnet_weights(build_resnet("resnet34"), path)
    with pytest.raises(FileNotFoundError, match="weight file not found"):
        load_resnet_weights(resnet18(), tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read weights"):
        read_state_dict(garbage)
