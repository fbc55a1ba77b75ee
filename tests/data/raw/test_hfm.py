"""HFM's own files (tweets + image-attribute words): safe parsing, the join, the protocol, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from iidfusion.data.raw.hfm import TextsDataset, load_hfm, read_literal_lines
from iidfusion.data.raw.input_noise import BLANK_TOKEN, InputNoise
from iidfusion.encoders.text import build_wordpiece_vocab, wordpiece_tokenizer

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "hfm"


@pytest.fixture
def hfm_copy(tmp_path: Path) -> Path:
    """A writable copy of the fixture, for the bad-input cases."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "hfm"))


def by_id(samples) -> dict:
    return {sample.id: sample for sample in samples}


def test_fixture_is_in_the_distributed_format() -> None:
    assert b"\r\n" in (FIXTURE / "train.txt").read_bytes() and b"\r\n" not in (FIXTURE / "extract_all").read_bytes()
    assert [len(row) for _, row in read_literal_lines(FIXTURE / "test2.txt")] == [4, 4, 4, 4]


def test_splits_labels_attributes_and_notes() -> None:
    raw = load_hfm(FIXTURE)
    assert raw.family == "texts" and raw.class_names == ("0", "1")
    assert (len(raw.train), len(raw.val), len(raw.test)) == (10, 4, 4)  # two training tweets filtered
    train = by_id(raw.train)
    assert "800000000000000009" not in train and "800000000000000010" not in train  # '# sarcasm', '<url>'
    first = train["800000000000000001"]
    assert first.image is None and first.label == 1
    assert first.texts["text"].endswith("emoji_40 …") and first.texts["attributes"] == "man car road sign woman"
    assert train["800000000000000005"].texts["attributes"] == ""  # no attributes: an empty attribute text
    test = by_id(raw.test)
    assert (test["800000000000000033"].label, test["800000000000000034"].label) == (0, 1)  # the last field
    assert test["800000000000000031"].texts["text"] == "great , it 's raining on the one day i washed the car"
    assert "tweets without image attributes: train 1, val 0, test 0; their attribute text is empty" in raw.notes
    assert any("keyword filter dropped" in note and "train 2, val 0, test 0" in note for note in raw.notes)


def test_keyword_filter_off_and_missing_attribute_policies() -> None:
    assert len(load_hfm(FIXTURE, keyword_filter=False).train) == 12
    skipped = load_hfm(FIXTURE, missing_attributes="skip")
    assert len(skipped.train) == 9 and skipped.skipped["train"][0][0] == "800000000000000005"
    with pytest.raises(ValueError, match=r"train.txt:5: tweet '800000000000000005' has no attributes in extract_all"):
        load_hfm(FIXTURE, missing_attributes="raise")
    with pytest.raises(ValueError, match="unknown missing_attributes 'zero'"):
        load_hfm(FIXTURE, missing_attributes="zero")


def test_lines_are_parsed_as_literals_never_run(hfm_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with (hfm_copy / "train.txt").open("a", encoding="utf-8", newline="") as handle:
        handle.write(f"__import__('pathlib').Path({str(marker)!r}).touch()\r\n")
    with pytest.raises(ValueError, match=r"train.txt:13: not a Python literal"):
        load_hfm(hfm_copy)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("file", "line", "message"),
    [
        (
            "valid2.txt",
            "['900', 'text', 1]",
            r"valid2.txt:5: expected 4 fields \(tweet id, text, hashtag label, annotator label\), got 3",
        ),
        ("train.txt", "['900', 'text', 2]", r"train.txt:13: label 2 is not 0 or 1"),
        ("train.txt", "{'id': 1}", r"train.txt:13: expected a list, got dict"),
        (
            "train.txt",
            "['800000000000000031', 'again', 1]",
            r"test2.txt:1: tweet '800000000000000031' is already listed in train.txt",
        ),
        (
            "extract_all",
            "['800000000000000001', 'cat', 'dog', 'sky', 'sea', 'sun']",
            r"extract_all:\d+: image '800000000000000001' is listed twice",
        ),
        ("train.txt", "['901', '   ', 0]", r"train sample '901': empty text"),
    ],
)
def test_bad_lines_name_file_and_line(hfm_copy: Path, file: str, line: str, message: str) -> None:
    with (hfm_copy / file).open("a", encoding="utf-8", newline="") as handle:
        handle.write(line + "\r\n")
    with pytest.raises(ValueError, match=message):
        load_hfm(hfm_copy)


def test_missing_files(hfm_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="HFM folder not found"):
        load_hfm(tmp_path / "none")
    (hfm_copy / "extract_all").unlink()
    with pytest.raises(FileNotFoundError, match="HFM file not found: .*extract_all"):
        load_hfm(hfm_copy)


def test_texts_dataset_tokenizes_each_modality_and_blanks_words_per_modality() -> None:
    raw = load_hfm(FIXTURE)
    texts = [s.texts[m] for s in raw.train for m in ("text", "attributes")]
    tokenizer = wordpiece_tokenizer(build_wordpiece_vocab(texts), max_length=24)
    item = TextsDataset(raw.test, raw.class_names, tokenizer)[0]
    assert set(item["inputs"]) == {"text", "attributes"} and item["inputs"]["text"]["input_ids"].shape == (24,)
    assert torch.equal(
        item["inputs"]["attributes"]["input_ids"], tokenizer(raw.test[0].texts["attributes"])["input_ids"]
    )
    noisy = TextsDataset(raw.test, raw.class_names, tokenizer, noise=InputNoise(10, family="texts", seed=3))
    blank = tokenizer(BLANK_TOKEN)["input_ids"][1]
    corrupted = {
        m: sum(int((noisy[i]["inputs"][m]["input_ids"] == blank).any()) for i in range(4))
        for m in ("text", "attributes")
    }
    assert 0 < sum(corrupted.values()) < 8  # each modality's own coin, probability 0.5, every word blanked at eps 10
    assert torch.equal(noisy[1]["inputs"]["text"]["input_ids"], noisy[1]["inputs"]["text"]["input_ids"])
