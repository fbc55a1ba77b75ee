"""Vision-language loaders on fixtures in MMBT's jsonl, CLMLF's JSON-array and the CSV formats."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from iidfusion.data.raw.input_noise import InputNoise
from iidfusion.data.raw.vision_language import (
    CsvColumns,
    VisionLanguageDataset,
    class_order,
    load_vision_language,
    open_image,
    to_rgb,
)
from iidfusion.encoders.image import ImageTransform
from iidfusion.encoders.text import build_wordpiece_vocab, wordpiece_tokenizer
from tests.toy_data import write_toy_vision_language

SMALL = ImageTransform(resize=20, crop=16)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_mmbt_splits_classes_and_relative_images(tmp_path: Path) -> None:
    root = write_toy_vision_language(tmp_path / "mvsa", "mmbt", per_class=(4, 2, 2))
    raw = load_vision_language(root, "mmbt")
    assert raw.name == "mvsa" and raw.family == "vision-language"
    assert raw.class_names == ("class0", "class1", "class2")
    assert (len(raw.train), len(raw.val), len(raw.test)) == (12, 6, 6)
    first = read_jsonl(root / "train.jsonl")[0]
    assert raw.train[0].image == root / first["img"] and raw.train[0].text == first["text"]
    assert raw.labels("test").tolist() == [0, 0, 1, 1, 2, 2]
    assert raw.label_values("train").dtype.kind == "U"


def test_class_order_is_sorted_not_first_appearance(tmp_path: Path) -> None:
    root = write_toy_vision_language(tmp_path / "d", "mmbt", per_class=(2, 1, 1))
    rows = read_jsonl(root / "train.jsonl")
    write_jsonl(root / "train.jsonl", rows[::-1])  # class2 appears first now
    assert load_vision_language(root, "mmbt").class_names == ("class0", "class1", "class2")
    assert class_order([10, 2, 1], "x") == ("1", "2", "10")  # numbers numerically
    with pytest.raises(ValueError, match="mix numbers and names"):
        class_order([1, "a"], "x")
    with pytest.raises(ValueError, match="single class"):
        class_order(["a", "a"], "x")


def test_json_array_with_shared_image_folder_and_valid_split(tmp_path: Path) -> None:
    base = tmp_path / "MVSA-multiple"
    write_toy_vision_language(base, "json-array", per_class=(3, 1, 2))
    fold = base / "10-flod-1"  # CLMLF: split files in a fold folder, images one level up
    fold.mkdir()
    for name in ("train.json", "test.json"):
        (base / name).rename(fold / name)
    (base / "dev.json").rename(fold / "valid.json")  # HFM names its validation split valid.json
    raw = load_vision_language(fold, "json-array")
    assert raw.class_names == ("0", "1", "2")
    assert raw.label_values("train").dtype == np.int64
    assert raw.train[0].image == base / "dataset_image" / f"{raw.train[0].id}.jpg"
    assert (len(raw.train), len(raw.val), len(raw.test)) == (9, 3, 6)


def test_dataset_items_and_text_noise(tmp_path: Path) -> None:
    raw = load_vision_language(write_toy_vision_language(tmp_path / "d", "mmbt", per_class=(2, 1, 2)), "mmbt")
    tokenizer = wordpiece_tokenizer(build_wordpiece_vocab(s.text or "" for s in raw.train), max_length=12)
    dataset = VisionLanguageDataset(raw.test, raw.class_names, tokenizer, transform=SMALL)
    item = dataset[3]
    assert item["inputs"]["image"].shape == (3, 16, 16)
    assert item["inputs"]["text"]["input_ids"].shape == (12,)
    assert int(item["label"]) == 1 and int(item["index"]) == 3
    batch = torch.utils.data.default_collate([dataset[0], dataset[1]])
    assert batch["inputs"]["text"]["attention_mask"].shape == (2, 12)
    noise = InputNoise(10.0)  # a selected text is blanked entirely
    noisy = VisionLanguageDataset(raw.test, raw.class_names, tokenizer, transform=SMALL, noise=noise)
    for i in range(len(raw.test)):
        expected = tokenizer(noise.text(raw.test[i].text or "", i))["input_ids"]
        assert torch.equal(noisy[i]["inputs"]["text"]["input_ids"], expected)
    assert any(noise.text(s.text or "", i) != s.text for i, s in enumerate(raw.test))


def _break_fixture(root: Path) -> None:
    rows = read_jsonl(root / "test.jsonl")
    rows[0]["text"] = "   "
    (root / rows[1]["img"]).unlink()
    (root / rows[2]["img"]).write_bytes(b"\xff\xd8\xff not really a jpeg")
    rows[3]["label"] = "class9"
    write_jsonl(root / "test.jsonl", rows)


def test_bad_samples_raise_with_split_id_and_problem(tmp_path: Path) -> None:
    root = write_toy_vision_language(tmp_path / "d", "mmbt", per_class=(2, 1, 3))
    _break_fixture(root)
    with pytest.raises(ValueError, match="test sample 'test0x0': empty text .*--on-error skip"):
        load_vision_language(root, "mmbt")


def test_a_data_set_read_from_a_relative_root_is_named_after_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_toy_vision_language(tmp_path / "tweets", "mmbt", per_class=(2, 1, 3))
    monkeypatch.chdir(root)
    assert load_vision_language(".", "mmbt").name == "tweets"


def test_bad_samples_skipped_counted_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = write_toy_vision_language(tmp_path / "d", "mmbt", per_class=(2, 1, 3))
    _break_fixture(root)
    with caplog.at_level(logging.WARNING):
        raw = load_vision_language(root, "mmbt", on_error="skip")
    assert len(raw.test) == 9 - 4
    problems = [problem.split(":")[0] for _, problem in raw.skipped["test"]]
    assert problems == ["empty text", "missing image file", "unreadable image", "unknown label"]
    assert "skipped 4 of 9 samples" in caplog.text


def test_truncated_jpeg_is_caught_up_front(tmp_path: Path) -> None:
    root = write_toy_vision_language(tmp_path / "d", "mmbt", per_class=(2, 1, 1))
    path = root / read_jsonl(root / "dev.jsonl")[0]["img"]
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, quality=95)
    path.write_bytes(path.read_bytes()[:-600])
    with pytest.raises(ValueError, match="val sample .*unreadable image"):
        load_vision_language(root, "mmbt")
    assert len(load_vision_language(root, "mmbt", verify_images=False).val) == 3


def test_format_errors_name_the_file_and_line(tmp_path: Path) -> None:
    root = write_toy_vision_language(tmp_path / "d", "mmbt", per_class=(2, 1, 1))
    with open(root / "dev.jsonl", "a") as handle:
        handle.write('{"id": "x", "text": "t"}\n')
    with pytest.raises(ValueError, match=r"dev.jsonl, line 4: missing keys \['label', 'img'\]"):
        load_vision_language(root, "mmbt")
    (root / "dev.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match="line 1: not valid JSON"):
        load_vision_language(root, "mmbt")
    (root / "dev.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="no val split file"):
        load_vision_language(root, "mmbt")
    with pytest.raises(ValueError, match="unknown vision-language format"):
        load_vision_language(root, "parquet")
    with pytest.raises(FileNotFoundError, match="dataset_image"):
        load_vision_language(root, "json-array")


FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "vision_language"
FIXTURE_COLUMNS = CsvColumns(image="file", text="caption", label="sentiment", id="tweet_id")


def test_fixture_in_mvsa_layout_reads_every_image_mode_as_rgb() -> None:
    """tests/fixtures/vision_language: RGB, grey, CMYK, palette, RGBA, grey + alpha and 16-bit images."""
    raw = load_vision_language(FIXTURE / "mmbt", "mmbt")
    assert raw.class_names == ("negative", "neutral", "positive") and (len(raw.train), len(raw.val), len(raw.test)) == (
        9,
        3,
        3,
    )
    modes = set()
    for sample in raw.train + raw.val + raw.test:
        assert sample.image is not None
        with Image.open(sample.image) as original:
            modes.add(original.mode)
        image = open_image(sample.image)
        assert image.mode == "RGB" and image.size == Image.open(sample.image).size
        assert (
            np.asarray(image).max() > 100
        )  # 16-bit and alpha images are scaled and composited, not clipped to white or black
    assert {"RGB", "L", "CMYK", "P", "RGBA", "LA", "I;16"} <= modes
    tokenizer = wordpiece_tokenizer(build_wordpiece_vocab(s.text or "" for s in raw.train), max_length=12)
    dataset = VisionLanguageDataset(raw.train, raw.class_names, tokenizer, transform=SMALL)
    assert all(dataset[i]["inputs"]["image"].shape == (3, 16, 16) for i in range(len(dataset)))


def test_to_rgb_scales_16_bit_and_composites_transparency_on_white() -> None:
    ramp = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16))
    assert np.asarray(to_rgb(ramp))[0, :, 0].tolist() == [0, 128, 255]
    clear = Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    assert np.asarray(to_rgb(clear)).min() == 255
    assert np.asarray(to_rgb(Image.new("CMYK", (2, 2), (0, 255, 0, 0))))[0, 0].tolist() == [255, 0, 255]


def test_csv_with_named_columns_reads_the_same_samples_as_the_jsonl() -> None:
    jsonl = load_vision_language(FIXTURE / "mmbt", "mmbt")
    table = load_vision_language(FIXTURE / "csv", "csv", columns=FIXTURE_COLUMNS)
    assert table.class_names == jsonl.class_names
    for split in ("train", "val", "test"):
        pairs = zip(table.split(split), jsonl.split(split), strict=True)
        assert all(
            (a.id, a.label, a.text, a.image.resolve()) == (b.id, b.label, b.text, b.image.resolve()) for a, b in pairs
        )
    assert CsvColumns.parse("image=file, text=caption,label=sentiment,id=tweet_id") == FIXTURE_COLUMNS
    with pytest.raises(ValueError, match="role=column"):
        CsvColumns.parse("picture=file")


def test_csv_errors_and_integer_labels(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"train.csv: no column \['image', 'text', 'label'\]"):
        load_vision_language(FIXTURE / "csv", "csv")
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(image)
    header = "image,text,label\n"
    for split, labels in (("train", [2, 10, 2]), ("dev", [10]), ("test", [2])):
        (tmp_path / f"{split}.csv").write_text(header + "".join(f"{image},text {label},{label}\n" for label in labels))
    raw = load_vision_language(tmp_path, "csv")
    assert (
        raw.class_names == ("2", "10") and raw.train[0].id == "1" and raw.train[0].image == image
    )  # absolute path kept
    (tmp_path / "dev.csv").write_text(header + "a.png,only two fields\n")
    with pytest.raises(ValueError, match="dev.csv, line 2: 2 fields, the header has 3"):
        load_vision_language(tmp_path, "csv")
    (tmp_path / "dev.csv").write_text(header + "missing.png,text,2\n")
    with pytest.raises(ValueError, match=r"val sample '1': missing image file: .*missing.png"):
        load_vision_language(tmp_path, "csv")
