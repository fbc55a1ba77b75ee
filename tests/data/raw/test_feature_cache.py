"""Feature caches: split-form files that load_dataset reads, noisy test variants, stale-cache detection."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from iidfusion.data import load_dataset
from iidfusion.data.raw.families import raw_dataset
from iidfusion.data.raw.feature_cache import (
    MANIFEST_NAME,
    CacheKey,
    build_feature_cache,
    cached_levels,
    input_checksum,
    load_feature_cache,
)
from iidfusion.data.raw.input_noise import InputNoise
from iidfusion.data.raw.rgbd import load_rgbd
from iidfusion.data.raw.vision_language import RawSplits
from tests.toy_data import write_toy_rgbd


class MeanColour(nn.Module):
    """A stand-in encoder: the mean of each channel (cheap and deterministic)."""

    output_dim = 3

    def forward(self, images: Tensor) -> Tensor:
        return images.mean(dim=(2, 3))


ENCODERS = {"rgb": MeanColour(), "depth": MeanColour()}


def build(directory: Path, raw: RawSplits, key: CacheKey, levels: tuple[float, ...] = (0.0, 5.0)) -> list[str]:
    lines: list[str] = []

    def make_dataset(split: str, level: float) -> torch.utils.data.Dataset:
        noise = InputNoise(level, family="rgbd", probability=1.0) if level else None
        return raw_dataset(raw, split, None, noise=noise, image_size=16)

    build_feature_cache(directory, raw, key, ENCODERS, make_dataset, levels=levels, batch_size=8, log=lines.append)
    return lines


@pytest.fixture()
def raw(tmp_path: Path) -> RawSplits:
    return load_rgbd(write_toy_rgbd(tmp_path / "toy", per_class=(6, 3)), val_fraction=0.34)


def key_of(raw: RawSplits, **settings: object) -> CacheKey:
    return CacheKey(input_checksum(raw), {"encoders": "mean-colour", **settings})


def test_cache_files_load_through_load_dataset_with_noisy_test_variants(tmp_path: Path, raw: RawSplits) -> None:
    out = tmp_path / "cache"
    lines = build(out, raw, key_of(raw))
    assert len(lines) == 4  # train, val, test clean + test at noise 5
    assert sorted(p.name for p in out.iterdir()) == ["features.npz", "features_noise5.npz", MANIFEST_NAME]
    clean = load_dataset(out / "features.npz", scale=False)
    assert clean.class_names == raw.class_names and clean.view_dims == {"rgb": 3, "depth": 3}
    assert (len(clean.train), len(clean.val), len(clean.test)) == (len(raw.train), len(raw.val), len(raw.test))
    assert torch.equal(clean.test.labels, raw.labels("test"))
    noisy = load_feature_cache(out, noise=5.0, scale=False)
    assert torch.equal(noisy.train.views["rgb"], clean.train.views["rgb"])  # same training data
    assert not torch.equal(noisy.test.views["rgb"], clean.test.views["rgb"])  # noisy test split
    assert noisy.name == "toy"


def test_current_cache_is_reused_and_new_levels_are_added(tmp_path: Path, raw: RawSplits) -> None:
    out = tmp_path / "cache"
    key = key_of(raw)
    build(out, raw, key)
    assert cached_levels(out, key) == {0.0, 5.0}
    assert build(out, raw, key) == []  # nothing extracted again
    lines = build(out, raw, key, levels=(0.0, 10.0))
    assert len(lines) == 1 and lines[0].startswith(f"extracted test (noise 10): {len(raw.test)} samples")
    assert cached_levels(out, key) == {0.0, 5.0, 10.0}


def test_changed_input_or_setting_makes_the_cache_stale(tmp_path: Path, raw: RawSplits) -> None:
    out = tmp_path / "cache"
    key = key_of(raw)
    build(out, raw, key)
    image = raw.test[0].image
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a touched (possibly replaced) file
    touched = key_of(raw)
    assert touched.inputs != key.inputs
    assert cached_levels(out, touched) == set()
    assert len(build(out, raw, touched)) == 4  # everything extracted again
    other = key_of(raw, regions=3)
    assert cached_levels(out, other) == set()
    assert cached_levels(out, touched) == {0.0, 5.0}


def test_damaged_feature_file_is_detected(tmp_path: Path, raw: RawSplits) -> None:
    out = tmp_path / "cache"
    key = key_of(raw)
    build(out, raw, key)
    with open(out / "features_noise5.npz", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01\x02")
    assert cached_levels(out, key) == {0.0}
    with pytest.raises(ValueError, match="differs from the file the manifest recorded"):
        load_feature_cache(out, noise=5.0)
    lines = build(out, raw, key)
    assert len(lines) == 1 and lines[0].startswith("extracted test (noise 5)")
    (out / "features.npz").write_bytes(b"")
    assert cached_levels(out, key) == set()  # without clean features nothing is current
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_load_feature_cache_errors(tmp_path: Path, raw: RawSplits) -> None:
    with pytest.raises(FileNotFoundError, match="not a feature cache"):
        load_feature_cache(tmp_path)
    build(tmp_path / "cache", raw, key_of(raw), levels=(0.0,))
    with pytest.raises(ValueError, match="no features at noise level 5"):
        load_feature_cache(tmp_path / "cache", noise=5.0)
    assert np.isfinite(load_feature_cache(tmp_path / "cache").train.views["depth"].numpy()).all()
