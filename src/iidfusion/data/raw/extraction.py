"""Frozen encoders over a raw data set, into a feature cache (what ``iidfusion extract`` runs).

The cache key (:class:`~iidfusion.data.raw.feature_cache.CacheKey`) is made here, from everything
an extraction's features depend on: the inputs' checksum, the format and family, the encoders
as built (names, configurations, weights' digests: :func:`describe_encoders`), their
initialisation seed and text length, the image transform, the noise protocol, the RGB-D
validation carve and the error policy. A change in any of them rebuilds the cache; nothing
else (batch size, device, workers) does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from iidfusion.data.raw.families import (
    EncoderOptions,
    RawDataOptions,
    build_encoders,
    describe_encoders,
    encoder_preprocessing,
    family_of,
    image_transforms,
    load_raw,
    raw_dataset,
    require_encoder_packages,
)
from iidfusion.data.raw.feature_cache import CacheKey, build_feature_cache, input_checksum
from iidfusion.data.raw.input_noise import NOISE_PROBABILITY, SALT_AND_PEPPER_DENSITY, InputNoise
from iidfusion.data.raw.vision_language import RawSplits


@dataclass(frozen=True)
class ExtractionOptions:
    """How the encoders run: the test split's noise ``levels`` (0: clean only) of ``noise_kind``;
    ``seed`` of random encoder initialisations and of the noise; the image crop ``image_size``;
    ``hash_content``: checksum image bytes instead of sizes and modification times; ``force``:
    extract again even if the cache is current.
    """

    levels: tuple[float, ...] = (0.0,)
    noise_kind: str = "gaussian"
    seed: int = 0
    image_size: int = 224
    batch_size: int = 32
    device: str = "cpu"
    num_workers: int = 0
    hash_content: bool = False
    force: bool = False


@dataclass
class ExtractedFeatures:
    """An extraction's result: the raw data read, the encoders built and a file per noise level."""

    raw: RawSplits
    encoders: dict[str, nn.Module]
    files: dict[float, Path]


def cache_key(
    raw: RawSplits,
    data: RawDataOptions,
    encoders: dict[str, nn.Module],
    encoder_options: EncoderOptions,
    options: ExtractionOptions,
) -> CacheKey:
    """The key of the features ``encoders`` compute from ``raw`` with ``options`` (module docstring)."""
    settings: dict[str, Any] = {
        "format": data.data_format,
        "family": raw.family,
        "encoders": describe_encoders(encoders),
        "init_seed": encoder_options.init_seed,
        "max_length": encoder_options.max_length,
        "transform": asdict(image_transforms(raw.family, options.image_size, encoder_preprocessing(encoders))[1])
        if raw.family != "texts"
        else None,
        "noise": {
            "kind": options.noise_kind,
            "seed": options.seed,
            "probability": NOISE_PROBABILITY,
            "density": SALT_AND_PEPPER_DENSITY,
        },
        "val_fraction": data.val_fraction if raw.family == "rgbd" else None,
        "on_error": data.on_error,
    }
    return CacheKey(input_checksum(raw, content=options.hash_content), settings)


def extract_to_cache(
    data: RawDataOptions,
    encoder_options: EncoderOptions,
    options: ExtractionOptions,
    out: str | Path,
    *,
    log: Callable[[str], None] = print,
    progress: bool = False,
) -> ExtractedFeatures:
    """Read ``data``, build its family's encoders (initialised from ``options.seed``) and write,
    or reuse, their features in ``out`` (:func:`~iidfusion.data.raw.feature_cache.build_feature_cache`).

    The tokenizer goes to ``out/tokenizer``: a random text encoder's vocabulary belongs to its
    features. ``log`` gets one line per extracted split, ``progress`` draws a bar.
    """
    out = Path(out)
    encoder_options = replace(encoder_options, init_seed=options.seed)
    require_encoder_packages(encoder_options, family_of(data.data_format))
    raw = load_raw(data)
    encoders, tokenizer = build_encoders(raw, encoder_options)
    key = cache_key(raw, data, encoders, encoder_options, options)
    preprocessing = encoder_preprocessing(encoders)

    def make_dataset(split: str, level: float) -> Dataset:
        noise = InputNoise(level, options.noise_kind, raw.family, options.seed) if level > 0 else None
        return raw_dataset(
            raw, split, tokenizer, noise=noise, image_size=options.image_size, preprocessing=preprocessing
        )

    files = build_feature_cache(
        out,
        raw,
        key,
        encoders,
        make_dataset,
        levels=options.levels,
        batch_size=options.batch_size,
        device=options.device,
        num_workers=options.num_workers,
        force=options.force,
        log=log,
        progress=progress,
    )
    if tokenizer is not None:
        tokenizer.save(out / "tokenizer")
    return ExtractedFeatures(raw, encoders, files)
