"""Encoders from the ecosystem: timm / torchvision models (mocked: torchvision, and so timm, does not
import beside the pinned CPU torch here) and Hugging Face ids from the local cache (real, offline)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from iidfusion.data.raw.families import image_encoder
from iidfusion.encoders import ecosystem
from iidfusion.encoders.ecosystem import EcosystemImageEncoder
from iidfusion.encoders.image import ImageEncoder
from iidfusion.encoders.resnet import build_resnet
from iidfusion.encoders.text import RandomTextConfig, cached_model_dir, load_text_encoder


def _fake_timm() -> types.ModuleType:
    """timm's create_model contract: pretrained=False, num_classes=0 -> pooled features, ``num_features``."""

    def create_model(name: str, pretrained: bool, num_classes: int) -> torch.nn.Module:
        assert pretrained is False and num_classes == 0, "nothing may be downloaded; no classifier"
        if not name.startswith("resnet"):
            raise RuntimeError(f"Unknown model ({name})")
        model = build_resnet(name, num_classes=None)
        model.num_features = model.feature_dim
        return model

    return types.SimpleNamespace(create_model=create_model)  # type: ignore[return-value]


def _fake_torchvision() -> types.ModuleType:
    def get_model(name: str, weights: object) -> torch.nn.Module:
        assert weights is None
        if not name.startswith("resnet"):
            raise ValueError(f"Unknown model {name}")
        return build_resnet(name)  # torchvision's layout, with its fc classifier

    return types.SimpleNamespace(models=types.SimpleNamespace(get_model=get_model))  # type: ignore[return-value]


@pytest.fixture
def libraries(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", _fake_timm())
    monkeypatch.setitem(sys.modules, "torchvision", _fake_torchvision())


def test_timm_and_torchvision_models_are_trunks_with_the_weights_given(libraries, tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = build_resnet("resnet18").eval()
    weights = tmp_path / "w.pth"
    torch.save(reference.state_dict(), weights)  # with fc.*: the classifier's keys are left over
    ours = ImageEncoder("resnet18", weights=weights, regions=3).eval()
    images = torch.randn(2, 3, 64, 64)
    for source, regions in (("timm:resnet18", 1), ("timm:resnet18", 3), ("torchvision:resnet18", 1)):
        encoder = image_encoder(source, weights=str(weights), regions=regions).eval()
        assert isinstance(encoder, EcosystemImageEncoder) and encoder.output_dim == 512 * regions
        with torch.no_grad():
            out = encoder(images)
        expected = ours(images) if regions == 3 else reference.forward_features(images).mean(dim=(2, 3))
        torch.testing.assert_close(out, expected)
        assert encoder.describe()["arch"] == source and encoder.describe()["weights"] == str(weights)


def test_ecosystem_errors_are_one_clear_line(libraries, monkeypatch, tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="nothing is downloaded"):
        EcosystemImageEncoder("timm:resnet18")
    with pytest.raises(ValueError, match="timm:vit_tiny: Unknown model"):
        EcosystemImageEncoder("timm:vit_tiny")
    with pytest.raises(ValueError, match="pooling to regions needs a feature map"):
        EcosystemImageEncoder("torchvision:resnet18", regions=3)
    torch.save(build_resnet("resnet34").state_dict(), tmp_path / "other.pth")
    with pytest.raises(ValueError, match="does not fit timm:resnet18"):
        EcosystemImageEncoder("timm:resnet18", weights=tmp_path / "other.pth")
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ValueError, match=r"not installed: pip install 'iidfusion\[vision\]'"):
        EcosystemImageEncoder("timm:resnet18")

    def broken(name: str) -> None:
        raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.setattr(ecosystem, "importlib", types.SimpleNamespace(import_module=broken))
    with pytest.raises(ValueError, match="installed but does not import beside torch .*torchvision::nms"):
        EcosystemImageEncoder("torchvision:resnet18")


def test_the_built_in_resnets_need_neither_package(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.warns(UserWarning):
        assert isinstance(image_encoder("resnet18", weights=None, regions=1), ImageEncoder)


def test_a_hugging_face_id_is_read_from_the_local_cache_offline(tmp_path: Path, monkeypatch) -> None:
    """The cache layout huggingface_hub writes (models--ORG--NAME/snapshots/REV, refs/main)."""
    with pytest.warns(UserWarning):
        source, tokenizer = load_text_encoder(
            None,
            corpus=["a cat", "a dog"],
            max_length=8,
            random_config=RandomTextConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32),
        )
    repo = tmp_path / "hub" / "models--tiny-org--tiny-bert"
    snapshot = repo / "snapshots" / "0123abcd"
    source.model.save_pretrained(snapshot)
    tokenizer.save(snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cached_model_dir("tiny-org/tiny-bert") == snapshot.resolve()
    encoder, loaded = load_text_encoder("tiny-org/tiny-bert", max_length=8)
    tokens = loaded.batch(["a cat"])
    with torch.no_grad():
        torch.testing.assert_close(encoder.eval()(tokens), source.eval()(tokens))
    assert encoder.describe()["type"] == "tiny-org/tiny-bert"
    with pytest.raises(
        FileNotFoundError, match="not found: neither a local folder nor a Hugging Face model in the local cache"
    ):
        load_text_encoder("tiny-org/not-cached")
