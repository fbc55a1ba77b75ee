"""data.extraction: the cache key covers what the features depend on, and nothing else."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import pytest

from iidfusion.data.raw.extraction import ExtractionOptions, cache_key, extract_to_cache
from iidfusion.data.raw.families import EncoderOptions, RawDataOptions, build_encoders, load_raw
from tests.toy_data import write_toy_rgbd

OPTIONS = ExtractionOptions(image_size=32, batch_size=8)
ENCODERS = EncoderOptions(image_arch="resnet18")


@pytest.fixture(scope="module")
def rgbd(tmp_path_factory: pytest.TempPathFactory) -> RawDataOptions:
    root = write_toy_rgbd(tmp_path_factory.mktemp("nyud") / "nyud", per_class=(3, 2))
    return RawDataOptions("rgbd", root, val_fraction=0.2)


def _key(data: RawDataOptions, encoder_options: EncoderOptions = ENCODERS, options: ExtractionOptions = OPTIONS) -> str:
    raw = load_raw(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random initialisation
        encoders, _ = build_encoders(raw, encoder_options)
    return cache_key(raw, data, encoders, encoder_options, options).digest()


def test_the_key_changes_with_what_the_features_depend_on_only(rgbd: RawDataOptions):
    key = _key(rgbd)
    assert _key(rgbd) == key
    assert _key(rgbd, options=replace(OPTIONS, batch_size=3, num_workers=1, force=True)) == key
    assert _key(rgbd, options=replace(OPTIONS, image_size=40)) != key
    assert _key(rgbd, options=replace(OPTIONS, noise_kind="salt-and-pepper")) != key
    assert _key(replace(rgbd, val_fraction=0.4)) != key
    assert _key(rgbd, encoder_options=replace(ENCODERS, init_seed=1)) != key


def test_extract_then_reuse(rgbd: RawDataOptions, tmp_path: Path):
    lines: list[str] = []
    with pytest.warns(UserWarning, match="random"):
        first = extract_to_cache(rgbd, ENCODERS, replace(OPTIONS, levels=(0.0, 5.0)), tmp_path, log=lines.append)
    assert sorted(first.files) == [0.0, 5.0] and all(path.is_file() for path in first.files.values())
    assert len(lines) == 4  # train, val, test clean, then the noisy test split
    with pytest.warns(UserWarning, match="random"):
        again = extract_to_cache(rgbd, ENCODERS, OPTIONS, tmp_path, log=lines.append)
    assert len(lines) == 4 and again.files == first.files  # current: nothing extracted, the noisy level kept
    with pytest.warns(UserWarning, match="random"):
        extract_to_cache(rgbd, ENCODERS, replace(OPTIONS, seed=1), tmp_path, log=lines.append)
    assert len(lines) == 7  # another seed initialises other encoders: the cache is rebuilt
