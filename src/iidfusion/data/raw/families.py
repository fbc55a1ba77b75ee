"""The paper's two raw-input families: their loaders, encoders and datasets (docs/reproduce.md, "Data").

* ``vision-language`` (MVSA-Single, MVSA-Multiple, HFM, Food101; formats ``mmbt``,
  ``json-array`` and ``csv``): modalities ``image`` and ``text``. The originals' image encoder
  is ResNet-152 pooled to 3 x 2048 (BERT's pooled output, 768 for bert-base, for the text);
  given no image encoder, ``--weights FILE`` means that ResNet-152, and without weights the
  pretrained EfficientNet-Lite0 of the ``vision-pretrained`` extra is the default
  (:func:`default_image_encoder`): a default is never a random network;
* ``rgbd`` (NYU Depth V2, SUN RGB-D; format ``rgbd``): modalities ``rgb`` and ``depth``,
  a ResNet-18 each (512 features);
* ``texts`` (HFM as its authors distribute it, format ``hfm``, :mod:`iidfusion.data.raw.hfm`):
  modalities ``text`` (the tweet) and ``attributes`` (the image-attribute words), each with
  its own copy of the same text encoder.

``iidfusion extract`` (frozen encoders, cached features) and ``iidfusion finetune`` (encoders
trained inside the fusion module) both build their encoders and datasets here, so the two
ways to train see the same inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from iidfusion.data.features.multiview import VAL_FRACTION
from iidfusion.data.raw.hfm import HFM_MODALITIES, TextsDataset, load_hfm
from iidfusion.data.raw.input_noise import InputNoise
from iidfusion.data.raw.rgbd import RGBD_MODALITIES, RGBDDataset, load_rgbd
from iidfusion.data.raw.vision_language import (
    DATA_FORMATS,
    CsvColumns,
    RawDataset,
    RawSplits,
    VisionLanguageDataset,
    load_vision_language,
)
from iidfusion.encoders.ecosystem import EcosystemImageEncoder, import_library, is_ecosystem_encoder
from iidfusion.encoders.efficientnet_lite import EXTRA, EfficientNetLiteEncoder, is_pretrained_encoder, require_packages
from iidfusion.encoders.image import (
    RGBD_EVAL_TRANSFORM,
    RGBD_TRAIN_TRANSFORM,
    VISION_LANGUAGE_TRANSFORM,
    ImageEncoder,
    ImageTransform,
)
from iidfusion.encoders.text import RandomTextConfig, TextTokenizer, load_text_encoder

RAW_FORMATS: tuple[str, ...] = (*DATA_FORMATS, "rgbd", "hfm")
FAMILY_MODALITIES: dict[str, tuple[str, ...]] = {
    "vision-language": ("image", "text"),
    "rgbd": RGBD_MODALITIES,
    "texts": HFM_MODALITIES,
}
FORMAT_FAMILIES: dict[str, str] = {"rgbd": "rgbd", "hfm": "texts"}  # the others: vision-language
# The originals' encoders: (image architecture, pooled regions) per family.
DEFAULT_IMAGE_ENCODER: dict[str, tuple[str, int]] = {"vision-language": ("resnet152", 3), "rgbd": ("resnet18", 1)}
# The vision-language image encoder when neither an encoder nor a weight file is given.
PRETRAINED_DEFAULT = "efficientnet-lite0"
IMAGE_SIZE = 224


def image_transforms(
    family: str, size: int = IMAGE_SIZE, preprocessing: Mapping[str, str] | None = None
) -> tuple[ImageTransform, ImageTransform]:
    """The (training, evaluation) image transforms of ``family`` at crop ``size``.

    224 gives the originals' transforms; another size (e.g. 32 for quick CPU runs) scales the
    256 resize by the same ratio. Vision-language trains without augmentation, as MMBT.
    ``preprocessing``: the normalisation and resampling the image encoder's weights were
    trained with (:func:`encoder_preprocessing`), in place of the originals'.
    """
    if size < 1:
        raise ValueError(f"image size must be >= 1, got {size}")
    load = round(size * 256 / IMAGE_SIZE)
    extra: dict[str, Any] = dict(preprocessing or {})
    if family == "rgbd":
        return (
            replace(RGBD_TRAIN_TRANSFORM, resize=load, crop=size, **extra),
            replace(RGBD_EVAL_TRANSFORM, resize=size, crop=size, **extra),
        )
    transform = replace(VISION_LANGUAGE_TRANSFORM, resize=load, crop=size, **extra)
    return transform, transform


def encoder_preprocessing(encoders: Mapping[str, nn.Module]) -> dict[str, str]:
    """The image transform fields the image (RGB) encoder asks for (its ``preprocessing``), or none."""
    image = next((encoders[m] for m in ("image", "rgb") if m in encoders), None)
    return dict(getattr(image, "preprocessing", None) or {})


def family_of(data_format: str) -> str:
    """``"rgbd"`` for the RGB-D folder format, ``"texts"`` for HFM's own files, ``"vision-language"`` for the others."""
    if data_format not in RAW_FORMATS:
        raise ValueError(f"unknown data format {data_format!r}; expected one of {list(RAW_FORMATS)}")
    return FORMAT_FAMILIES.get(data_format, "vision-language")


@dataclass(frozen=True)
class RawDataOptions:
    """Where a raw data set lies and how to read it."""

    data_format: str
    root: Path
    image_dir: Path | None = None  # json-array: the folder of <id>.jpg (default: dataset_image/ found near root)
    name: str | None = None
    val_fraction: float = VAL_FRACTION  # rgbd: the validation share carved from train
    seed: int = 0  # rgbd: the seed of that carve
    on_error: str = "raise"
    verify_images: bool = True
    missing_attributes: str = "empty"  # hfm: a tweet without attribute words: empty text, skip or raise
    keyword_filter: bool = True  # hfm: drop the tweets HFM's preprocessing drops
    columns: CsvColumns = CsvColumns()  # csv: the image, text, label and id columns


def load_raw(options: RawDataOptions) -> RawSplits:
    """The samples of a raw data set in any of :data:`RAW_FORMATS`."""
    if options.data_format == "hfm":
        return load_hfm(
            options.root,
            missing_attributes=options.missing_attributes,
            keyword_filter=options.keyword_filter,
            on_error=options.on_error,
            name=options.name,
        )
    common: dict[str, Any] = {
        "on_error": options.on_error,
        "verify_images": options.verify_images,
        "name": options.name,
    }
    if family_of(options.data_format) == "rgbd":
        return load_rgbd(options.root, val_fraction=options.val_fraction, seed=options.seed, **common)
    return load_vision_language(
        options.root, options.data_format, image_dir=options.image_dir, columns=options.columns, **common
    )


@dataclass(frozen=True)
class EncoderOptions:
    """Which encoders to build; ``None`` fields take the family's defaults (the originals').

    ``text``: a local Hugging Face model folder, ``"minilm"`` (bundled all-MiniLM-L6-v2) or
    ``None`` / ``"random"`` (a random BERT of ``random_text`` size). ``image_*`` is the image
    encoder (the RGB encoder in RGB-D), ``depth_*`` the depth encoder. ``init_seed`` seeds
    every random initialisation, so a random encoder is the same in every run.
    """

    text: str | None = None
    max_length: int = 512
    image_arch: str | None = None
    image_weights: str | None = None
    regions: int | None = None
    depth_arch: str = "resnet18"
    depth_weights: str | None = None
    init_seed: int = 0
    random_text: RandomTextConfig = field(default_factory=RandomTextConfig)


def require_encoder_packages(options: EncoderOptions, family: str = "vision-language") -> None:
    """Import the package of every timm / torchvision / pretrained encoder named or defaulted
    (:func:`default_image_encoder`), so that a missing or broken package is one clear error
    before any data is read.
    """
    image = options.image_arch or (
        default_image_encoder(family, options.image_weights)[0] if family in DEFAULT_IMAGE_ENCODER else None
    )
    for arch in (image, options.depth_arch):
        if arch is not None and is_ecosystem_encoder(arch):
            import_library(arch.partition(":")[0])
        elif arch is not None and is_pretrained_encoder(arch):
            require_packages(arch)


def default_image_encoder(family: str, weights: str | None) -> tuple[str, int]:
    """(architecture, regions) of the image encoder when none is named.

    RGB-D: the originals' ResNet-18. Vision-language: with a weight file, the originals'
    ResNet-152 pooled to 3 bands (the file is theirs); without one, the pretrained
    EfficientNet-Lite0, whose weights come with its package; if that package is missing, a
    ValueError names the extra (a random ResNet-152 is only built when asked for by name).
    """
    arch, regions = DEFAULT_IMAGE_ENCODER[family]
    if family != "vision-language" or weights is not None:
        return arch, regions
    try:
        require_packages(PRETRAINED_DEFAULT)
    except ValueError:
        raise ValueError(
            f"no image encoder given: the default, a pretrained {PRETRAINED_DEFAULT}, needs the optional extra "
            f"'{EXTRA}' (pip install 'iidfusion[{EXTRA}]'); or give --weights FILE for a ResNet-152, or "
            "--image-encoder NAME"
        ) from None
    return PRETRAINED_DEFAULT, 1


def build_encoders(raw: RawSplits, options: EncoderOptions) -> tuple[dict[str, nn.Module], TextTokenizer | None]:
    """The encoders of ``raw``'s family (modality -> module with ``output_dim``) and the tokenizer (None for RGB-D)."""
    if raw.family == "texts":
        return _text_encoders(raw, options)
    arch, regions = (
        (options.image_arch, DEFAULT_IMAGE_ENCODER[raw.family][1])
        if options.image_arch
        else default_image_encoder(raw.family, options.image_weights)
    )
    # The originals' band pooling is for their ResNets; other encoders pool to one vector.
    if options.regions is not None:  # 0 is refused by the encoder, not read as the default
        regions = options.regions
    elif is_ecosystem_encoder(arch) or is_pretrained_encoder(arch):
        regions = 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.init_seed)
        if raw.family == "rgbd":
            encoders: dict[str, nn.Module] = {
                "rgb": image_encoder(arch, weights=options.image_weights, regions=regions),
                "depth": image_encoder(options.depth_arch, weights=options.depth_weights, regions=regions),
            }
            return encoders, None
        text, tokenizer = load_text_encoder(
            options.text,
            max_length=options.max_length,
            corpus=[sample.text or "" for sample in raw.train],
            random_config=replace(options.random_text, seed=options.init_seed),
        )
        return {"image": image_encoder(arch, weights=options.image_weights, regions=regions), "text": text}, tokenizer


def image_encoder(arch: str, *, weights: str | None, regions: int) -> nn.Module:
    """A built-in ResNet (``resnet18`` ... ``resnet152``), the pretrained ``efficientnet-lite0``
    (:mod:`iidfusion.encoders.efficientnet_lite`) or a timm / torchvision model (``timm:NAME``,
    :mod:`iidfusion.encoders.ecosystem`), pooled to ``regions`` bands.
    """
    if is_ecosystem_encoder(arch):
        return EcosystemImageEncoder(arch, weights=weights, regions=regions)
    if is_pretrained_encoder(arch):
        return EfficientNetLiteEncoder(arch, weights=weights, regions=regions)
    return ImageEncoder(arch, weights=weights, regions=regions)


def _text_encoders(raw: RawSplits, options: EncoderOptions) -> tuple[dict[str, nn.Module], TextTokenizer]:
    """One copy of the text encoder per text modality (same initialisation), and its tokenizer.

    A random encoder's vocabulary comes from the training texts of every modality.
    """
    modalities = FAMILY_MODALITIES["texts"]
    corpus = [sample.texts[m] for sample in raw.train for m in modalities]
    encoders: dict[str, nn.Module] = {}
    tokenizer: TextTokenizer | None = None
    for modality in modalities:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(options.init_seed)
            encoders[modality], tokenizer = load_text_encoder(
                options.text,
                max_length=options.max_length,
                corpus=corpus,
                random_config=replace(options.random_text, seed=options.init_seed),
            )
    assert tokenizer is not None  # the family has modalities
    return encoders, tokenizer


def describe_encoders(encoders: dict[str, nn.Module]) -> dict[str, Any]:
    """Each encoder's ``describe()`` (what its features depend on)."""
    return {name: encoder.describe() for name, encoder in encoders.items()}  # type: ignore[operator]


def raw_dataset(
    raw: RawSplits,
    split: str,
    tokenizer: TextTokenizer | None,
    *,
    augment: bool = False,
    noise: InputNoise | None = None,
    image_size: int = IMAGE_SIZE,
    preprocessing: Mapping[str, str] | None = None,
) -> RawDataset:
    """The dataset of one split; ``augment`` turns on RGB-D's training augmentation;
    ``preprocessing``: the image encoder's (:func:`encoder_preprocessing`).
    """
    if raw.family == "texts":
        if tokenizer is None:
            raise ValueError("a text dataset needs the text encoder's tokenizer")
        return TextsDataset(raw.split(split), raw.class_names, tokenizer, FAMILY_MODALITIES["texts"], noise=noise)
    train_transform, eval_transform = image_transforms(raw.family, image_size, preprocessing)
    if raw.family == "rgbd":
        return RGBDDataset(
            raw.split(split),
            raw.class_names,
            train=augment,
            noise=noise,
            train_transform=train_transform,
            eval_transform=eval_transform,
        )
    if tokenizer is None:
        raise ValueError("a vision-language dataset needs the text encoder's tokenizer")
    return VisionLanguageDataset(raw.split(split), raw.class_names, tokenizer, transform=eval_transform, noise=noise)
