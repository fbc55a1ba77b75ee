"""data.raw.families: the raw-input families (vision-language, rgbd, texts), the formats each reads, their
modalities, image transforms, encoders and datasets (docs/reproduce.md, "Data")."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from iidfusion.data.raw.families import (
    DEFAULT_IMAGE_ENCODER,
    FAMILY_MODALITIES,
    RAW_FORMATS,
    EncoderOptions,
    RawDataOptions,
    build_encoders,
    describe_encoders,
    encoder_preprocessing,
    family_of,
    image_transforms,
    load_raw,
    raw_dataset,
)
from iidfusion.data.raw.rgbd import RGBDDataset
from iidfusion.data.raw.vision_language import RawSplits
from iidfusion.encoders.text import RandomTextConfig
from tests.toy_data import write_toy_rgbd, write_toy_vision_language

HFM = Path(__file__).resolve().parents[2] / "fixtures" / "hfm"
TINY_TEXT = RandomTextConfig(hidden_size=16, num_layers=1, num_heads=1, intermediate_size=32)


@pytest.fixture(scope="module")
def rgbd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_rgbd(tmp_path_factory.mktemp("rgbd"), per_class=(5, 2))


@pytest.fixture(scope="module")
def rgbd(rgbd_root: Path) -> RawSplits:
    return load_raw(RawDataOptions("rgbd", rgbd_root))


@pytest.fixture(scope="module")
def mmbt(tmp_path_factory: pytest.TempPathFactory) -> RawSplits:
    root = write_toy_vision_language(tmp_path_factory.mktemp("mmbt"), "mmbt", per_class=(2, 1, 1))
    return load_raw(RawDataOptions("mmbt", root))


def random_encoders(raw: RawSplits, options: EncoderOptions):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random initialisation, said once per encoder
        return build_encoders(raw, options)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


# ---------------------------------------------------------------- formats and families


@pytest.mark.parametrize(
    ("data_format", "family", "modalities"),
    [
        ("mmbt", "vision-language", ("image", "text")),
        ("json-array", "vision-language", ("image", "text")),
        ("csv", "vision-language", ("image", "text")),
        ("rgbd", "rgbd", ("rgb", "depth")),
        ("hfm", "texts", ("text", "attributes")),
    ],
)
def test_every_raw_format_belongs_to_one_family_with_its_modalities(data_format, family, modalities):
    assert family_of(data_format) == family and FAMILY_MODALITIES[family] == modalities


def test_the_formats_are_exactly_those_of_the_three_families():
    assert RAW_FORMATS == ("mmbt", "json-array", "csv", "rgbd", "hfm")
    assert {family_of(f) for f in RAW_FORMATS} == set(FAMILY_MODALITIES)
    with pytest.raises(ValueError) as error:
        family_of("nyud")
    assert (
        str(error.value) == "unknown data format 'nyud'; expected one of ['mmbt', 'json-array', 'csv', 'rgbd', 'hfm']"
    )


def test_load_raw_reads_each_family_with_its_own_options(rgbd_root, rgbd, mmbt):
    assert (mmbt.family, mmbt.class_names, len(mmbt.train)) == ("vision-language", ("class0", "class1", "class2"), 6)
    texts = load_raw(RawDataOptions("hfm", HFM))
    assert (texts.family, texts.class_names, len(texts.train), len(texts.test)) == ("texts", ("0", "1"), 10, 4)
    assert rgbd.family == "rgbd" and (len(rgbd.train), len(rgbd.val), len(rgbd.test)) == (12, 3, 6)
    wider = load_raw(RawDataOptions("rgbd", rgbd_root, val_fraction=0.4, seed=1))
    assert (len(wider.train), len(wider.val)) == (9, 6)  # the validation share carved from train


# ---------------------------------------------------------------- image transforms


@pytest.mark.parametrize(("size", "load"), [(224, 256), (32, 37), (16, 18)])
def test_image_transforms_scale_the_originals_resize_with_the_crop(size, load):
    rgbd_train, rgbd_eval = image_transforms("rgbd", size)
    assert (rgbd_train.resize, rgbd_train.crop, rgbd_eval.resize, rgbd_eval.crop) == (load, size, size, size)
    assert rgbd_train.square and rgbd_train.normalization == rgbd_eval.normalization == "rgbd"
    vl_train, vl_eval = image_transforms("vision-language", size)
    assert vl_train == vl_eval  # vision-language trains without augmentation, as MMBT
    assert (vl_eval.resize, vl_eval.crop, vl_eval.square, vl_eval.normalization) == (load, size, False, "mmbt")


def test_an_encoders_preprocessing_replaces_the_originals_normalisation():
    class Pretrained(nn.Identity):
        preprocessing = {"normalization": "inception", "resample": "bicubic"}

    assert encoder_preprocessing({"rgb": Pretrained(), "depth": nn.Identity()}) == Pretrained.preprocessing
    assert encoder_preprocessing({"image": nn.Identity(), "text": Pretrained()}) == {}  # the image encoder's only
    train, test = image_transforms("rgbd", 32, encoder_preprocessing({"rgb": Pretrained()}))
    assert (train.normalization, test.resample, train.crop) == ("inception", "bicubic", 32)
    with pytest.raises(ValueError, match=r"^image size must be >= 1, got 0$"):
        image_transforms("rgbd", 0)


# ---------------------------------------------------------------- encoders


def test_rgbd_builds_one_seeded_resnet_per_modality_and_no_tokenizer(rgbd):
    options = EncoderOptions(image_arch="resnet18")
    encoders, tokenizer = random_encoders(rgbd, options)
    assert tokenizer is None and list(encoders) == list(FAMILY_MODALITIES["rgbd"])
    assert [(e.arch, e.regions, e.output_dim) for e in encoders.values()] == [("resnet18", 1, 512)] * 2
    again, _ = random_encoders(rgbd, options)
    other, _ = random_encoders(rgbd, replace(options, init_seed=1))
    assert same_weights(encoders["rgb"], again["rgb"]) and not same_weights(encoders["rgb"], other["rgb"])
    assert set(describe_encoders(encoders)) == {"rgb", "depth"}


def test_vision_language_pools_a_named_resnet_into_the_originals_bands_unless_told(mmbt):
    options = EncoderOptions(image_arch="resnet18", random_text=TINY_TEXT, max_length=16)
    banded, tokenizer = random_encoders(mmbt, options)
    assert DEFAULT_IMAGE_ENCODER["vision-language"] == ("resnet152", 3)
    assert (banded["image"].regions, banded["image"].output_dim, banded["text"].output_dim) == (3, 3 * 512, 16)
    assert tokenizer is not None
    one, _ = random_encoders(mmbt, replace(options, regions=1))
    assert one["image"].output_dim == 512


def test_the_texts_family_gives_each_modality_its_own_copy_of_one_initialisation():
    raw = load_raw(RawDataOptions("hfm", HFM))
    encoders, tokenizer = random_encoders(raw, EncoderOptions(random_text=TINY_TEXT, max_length=16))
    assert list(encoders) == ["text", "attributes"] and tokenizer is not None
    assert encoders["text"] is not encoders["attributes"] and same_weights(encoders["text"], encoders["attributes"])
    described = describe_encoders(encoders)
    assert described["text"] == described["attributes"] and described["text"]["hidden_size"] == 16


# ---------------------------------------------------------------- datasets


def test_a_text_family_needs_the_tokenizer_of_its_encoder(mmbt):
    with pytest.raises(ValueError, match=r"^a vision-language dataset needs the text encoder's tokenizer$"):
        raw_dataset(mmbt, "train", None)
    with pytest.raises(ValueError, match=r"^a text dataset needs the text encoder's tokenizer$"):
        raw_dataset(load_raw(RawDataOptions("hfm", HFM)), "train", None)


def test_rgbd_datasets_augment_only_when_asked_at_the_given_size(rgbd):
    augmented = raw_dataset(rgbd, "train", None, augment=True, image_size=16)
    plain = raw_dataset(rgbd, "test", None, image_size=16)
    assert isinstance(augmented, RGBDDataset) and augmented.train and not plain.train
    assert (augmented.transform.resize, plain.transform.resize) == (18, 16)
    item = plain[0]
    assert item["inputs"]["rgb"].shape == item["inputs"]["depth"].shape == (3, 16, 16)
    assert len(plain) == 6 and item["label"] == rgbd.labels("test")[0]
