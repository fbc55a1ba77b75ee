"""Vision-language data sets from their raw files: MVSA-Single, MVSA-Multiple, HFM, Food101.

Formats (docs/reproduce.md, "Data"; checked against the published splits):

* ``mmbt``: ``train.jsonl``, ``dev.jsonl``, ``test.jsonl`` in one folder, one JSON object a
  line ``{"id", "label", "text", "img"}``, ``img`` relative to the folder of the ``.jsonl``
  (MMBT's splits of Food101 and MVSA-Single, as QMF and PDF ship them).
* ``json-array``: ``train.json``, ``dev.json`` (or ``valid.json``) and ``test.json``, each a
  JSON array of ``{"id", "text", "emotion_label"}``, images at ``dataset_image/<id>.jpg``
  beside the split files or one folder up (CLMLF's MVSA-Single / MVSA-Multiple folds, whose
  images are shared by the folds, and HFM).
* ``csv``: ``train.csv``, ``dev.csv`` (or ``valid.csv``, ``val.csv``) and ``test.csv`` with a
  header row; the image path (relative to the folder of the ``.csv``, or absolute), text and
  label columns are named by :class:`CsvColumns` (default ``image``, ``text``, ``label``; an
  ``id`` column is optional, the row number otherwise). A label column of integers only is
  read as integers (classes ordered numerically).

Images may be of any size and mode (grey, palette, RGBA, CMYK, 16-bit...): :func:`to_rgb`
turns each into 8-bit RGB.

The classes are the distinct labels of the training split in sorted order (numbers
numerically, names alphabetically), the order :func:`iidfusion.data.features.multiview.encode_labels`
gives a cached feature file, so raw and cached runs agree; the originals used the order of
first appearance in ``train.jsonl``, which depends on the file's line order.

Sample problems (an empty text, a missing or undecodable image, a label the training split
does not have) are found when the data set is loaded, never in the middle of an epoch:
``on_error="raise"`` stops with a message naming the split, sample and problem;
``on_error="skip"`` drops those samples, logs how many and why, and records them in
:attr:`RawSplits.skipped`. This module also holds what the RGB-D loader shares with it
(:class:`RawSample`, :class:`RawSplits`, :class:`RawDataset`, :func:`check_samples`).
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from iidfusion.data.raw.input_noise import InputNoise
from iidfusion.encoders.image import VISION_LANGUAGE_TRANSFORM, ImageTransform
from iidfusion.encoders.text import TextTokenizer

logger = logging.getLogger(__name__)

DATA_FORMATS: tuple[str, ...] = ("mmbt", "json-array", "csv")
ERROR_POLICIES: tuple[str, ...] = ("raise", "skip")
SPLITS: tuple[str, ...] = ("train", "val", "test")
IMAGE_DIR_NAME = "dataset_image"
# Split files of each format; the first existing name of a tuple is used.
SPLIT_FILES: dict[str, dict[str, tuple[str, ...]]] = {
    "mmbt": {"train": ("train.jsonl",), "val": ("dev.jsonl",), "test": ("test.jsonl",)},
    "json-array": {"train": ("train.json",), "val": ("dev.json", "valid.json"), "test": ("test.json",)},
    "csv": {"train": ("train.csv",), "val": ("dev.csv", "valid.csv", "val.csv"), "test": ("test.csv",)},
}
INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class CsvColumns:
    """Column names of a ``csv`` data set: image path, text, label and (optional) sample id."""

    image: str = "image"
    text: str = "text"
    label: str = "label"
    id: str = "id"

    @classmethod
    def parse(cls, text: str) -> CsvColumns:
        """``"image=path,text=caption,label=y"`` -> the columns (the others keep their defaults)."""
        names: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            role, _, column = part.partition("=")
            if role.strip() not in cls.__dataclass_fields__ or not column.strip():
                raise ValueError(
                    f"--csv-columns takes role=column pairs with roles {list(cls.__dataclass_fields__)}, got {text!r}"
                )
            names[role.strip()] = column.strip()
        return cls(**names)


@dataclass(frozen=True)
class RawSample:
    """One sample on disk: an id, a label value, an image file and (vision-language) a text.

    A sample of text modalities only (HFM's tweet and image-attribute words,
    :mod:`iidfusion.data.raw.hfm`) has no image and its texts by modality in ``texts``.
    """

    id: str
    label: str | int
    image: Path | None
    text: str | None = None
    texts: Mapping[str, str] = field(default_factory=dict)


@dataclass
class RawSplits:
    """Train / val / test samples of one raw data set, with its fixed class order.

    ``family`` is "vision-language", "rgbd" or "texts"; ``skipped`` maps a split to the
    ``(sample id, problem)`` pairs dropped under ``on_error="skip"``; ``notes`` says how the
    loader handled what else it met (recorded in feature-cache manifests).
    """

    name: str
    family: str
    train: list[RawSample]
    val: list[RawSample]
    test: list[RawSample]
    class_names: tuple[str, ...]
    skipped: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> list[RawSample]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {list(SPLITS)}")
        return getattr(self, name)

    def labels(self, split: str) -> Tensor:
        """Class codes 0..C-1 of a split's samples."""
        index = {name: code for code, name in enumerate(self.class_names)}
        return torch.tensor([index[str(s.label)] for s in self.split(split)], dtype=torch.long)

    def label_values(self, split: str) -> np.ndarray:
        """A split's labels as the files give them (integers or names), for feature files."""
        values = [s.label for s in self.split(split)]
        return np.array(values, dtype=np.int64 if all(isinstance(v, int) for v in values) else str)


def class_order(labels: Sequence[str | int], source: str) -> tuple[str, ...]:
    """Distinct label values in sorted order (numbers numerically), as names."""
    kinds = {type(label) for label in labels}
    if not labels:
        raise ValueError(f"{source}: no samples")
    if len(kinds) > 1:
        raise ValueError(f"{source}: labels mix numbers and names ({sorted(map(str, set(labels)))[:6]})")
    names = tuple(str(value) for value in sorted(set(labels)))
    if len(names) < 2:
        raise ValueError(f"{source}: a single class ({names[0]}); need at least two")
    return names


def check_image(path: Path) -> str | None:
    """Why ``path`` cannot serve as an image (``"<problem>: <details>"``), or None if it can.

    The whole file is decoded (JPEGs at reduced scale with ``draft``, which still reads the
    entire stream), so a truncated file is caught here rather than by a data-loader worker.
    """
    if not path.is_file():
        return f"missing image file: {path}"
    try:
        with Image.open(path) as image:
            image.draft("RGB", (64, 64))
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return f"unreadable image: {path} ({error})"
    return None


def check_samples(
    samples: list[RawSample],
    class_names: Sequence[str],
    *,
    split: str,
    on_error: str,
    verify_images: bool = True,
    extra_check: Callable[[RawSample], str | None] | None = None,
) -> tuple[list[RawSample], list[tuple[str, str]]]:
    """The samples without problems, and the ``(id, problem)`` of the others (``on_error="skip"``).

    Checks, in order: ``extra_check`` (the format's own, e.g. an empty text), a label outside
    ``class_names``, and (``verify_images``) the image file. With ``on_error="raise"`` the first
    problem found stops with a ValueError naming the split, the sample and the problem.
    """
    if on_error not in ERROR_POLICIES:
        raise ValueError(f"unknown on_error {on_error!r}; expected one of {list(ERROR_POLICIES)}")
    known = set(class_names)
    kept: list[RawSample] = []
    skipped: list[tuple[str, str]] = []
    for sample in samples:
        problem = extra_check(sample) if extra_check is not None else None
        if problem is None and str(sample.label) not in known:
            problem = f"unknown label: {sample.label!r} (classes of the training split: {list(class_names)})"
        if problem is None and verify_images and sample.image is not None:
            problem = check_image(sample.image)
        if problem is None:
            kept.append(sample)
        elif on_error == "raise":
            raise ValueError(
                f"{split} sample {sample.id!r}: {problem} "
                "(--on-error skip, on_error='skip' in Python, drops such samples)"
            )
        else:
            skipped.append((sample.id, problem))
    if skipped:
        reasons = Counter(problem.split(":")[0] for _, problem in skipped)
        logger.warning("%s: skipped %d of %d samples: %s", split, len(skipped), len(samples), dict(reasons))
    if not kept:
        raise ValueError(f"{split}: no usable samples left ({len(skipped)} skipped)")
    return kept, skipped


def check_splits(
    name: str,
    family: str,
    parts: dict[str, list[RawSample]],
    *,
    on_error: str,
    verify_images: bool,
    extra_check: Callable[[RawSample], str | None] | None = None,
) -> RawSplits:
    """Fix the class order from the training split, check every split, assemble a :class:`RawSplits`."""
    class_names = class_order([s.label for s in parts["train"]], f"{name} train split")
    checked = {
        split: check_samples(
            parts[split],
            class_names,
            split=split,
            on_error=on_error,
            verify_images=verify_images,
            extra_check=extra_check,
        )
        for split in SPLITS
    }
    skipped = {split: dropped for split, (_, dropped) in checked.items() if dropped}
    train, val, test = (checked[split][0] for split in SPLITS)
    return RawSplits(name, family, train, val, test, class_names=class_names, skipped=skipped)


def _empty_text(sample: RawSample) -> str | None:
    return "empty text" if not (sample.text or "").strip() else None


def read_mmbt_split(path: Path) -> list[RawSample]:
    """Samples of one MMBT ``.jsonl`` file; a malformed line is an error naming file and line."""
    samples = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not valid JSON ({error})") from error
            missing = [key for key in ("id", "label", "text", "img") if not isinstance(row, dict) or key not in row]
            if missing:
                raise ValueError(
                    f"{path}, line {number}: missing keys {missing}; expected {{'id', 'label', 'text', 'img'}}"
                )
            samples.append(
                RawSample(
                    str(row["id"]),
                    _label(row["label"], path, number),
                    path.parent / str(row["img"]),
                    str(row["text"] or ""),
                )
            )
    return samples


def read_json_array_split(path: Path, image_dir: Path) -> list[RawSample]:
    """Samples of one JSON-array split file; images at ``image_dir/<id>.jpg``."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(rows, list):
        raise ValueError(
            f"{path}: expected a JSON array of {{'id', 'text', 'emotion_label'}} objects, got {type(rows).__name__}"
        )
    samples = []
    for number, row in enumerate(rows):
        missing = [key for key in ("id", "text", "emotion_label") if not isinstance(row, dict) or key not in row]
        if missing:
            raise ValueError(
                f"{path}, entry {number}: missing keys {missing}; expected {{'id', 'text', 'emotion_label'}}"
            )
        sample_id = str(row["id"])
        samples.append(
            RawSample(
                sample_id,
                _label(row["emotion_label"], path, number),
                image_dir / f"{sample_id}.jpg",
                str(row["text"] or ""),
            )
        )
    return samples


def read_csv_split(path: Path, columns: CsvColumns) -> list[RawSample]:
    """Samples of one ``.csv`` split file; a missing column or a short row is an error naming file and line."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [name for name in (columns.image, columns.text, columns.label) if name not in header]
        if missing:
            raise ValueError(
                f"{path}: no column {missing} in the header {header}; name the columns with --csv-columns "
                "image=...,text=...,label=..."
            )
        rows = []
        for row in reader:
            line = reader.line_num
            if None in row.values() or None in row:  # fewer or more fields than the header
                raise ValueError(
                    f"{path}, line {line}: {len([v for v in row.values() if v is not None])} fields, the header has "
                    f"{len(header)}"
                )
            rows.append((line, row))
    labels = [row[columns.label].strip() for _, row in rows]
    numeric = bool(labels) and all(INTEGER.fullmatch(label) for label in labels)
    samples = []
    for (line, row), label in zip(rows, labels, strict=True):
        if not label:
            raise ValueError(f"{path}, line {line}: empty label in column {columns.label!r}")
        image = Path(row[columns.image].strip())
        sample_id = row[columns.id] if columns.id in row and row[columns.id] else str(line - 1)
        samples.append(
            RawSample(
                sample_id,
                int(label) if numeric else label,
                image if image.is_absolute() else path.parent / image,
                row[columns.text],
            )
        )
    return samples


def _label(value: Any, path: Path, where: int) -> str | int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{path}, entry {where}: label {value!r} is neither a name nor an integer")
    return value


def _split_file(root: Path, data_format: str, split: str) -> Path:
    names = SPLIT_FILES[data_format][split]
    for name in names:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(
        f"{root}: no {split} split file (looked for {' or '.join(names)}) for the {data_format} format"
    )


def find_image_dir(root: Path) -> Path:
    """``dataset_image`` beside the split files, else one folder up (CLMLF's folds share it)."""
    for candidate in (root / IMAGE_DIR_NAME, root.parent / IMAGE_DIR_NAME):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no {IMAGE_DIR_NAME}/ folder in {root} or {root.parent}; pass the image folder explicitly")


def load_vision_language(
    root: str | Path,
    data_format: str = "mmbt",
    *,
    image_dir: str | Path | None = None,
    on_error: str = "raise",
    verify_images: bool = True,
    name: str | None = None,
    columns: CsvColumns = CsvColumns(),
) -> RawSplits:
    """The train / val / test samples of a vision-language data set in ``data_format``.

    ``root`` holds the split files; ``image_dir`` (json-array only) overrides the search for
    ``dataset_image/``; ``columns``: the column names of the ``csv`` format. ``verify_images=False`` skips decoding
    every image up front (faster on
    a trusted copy; a bad image then fails when it is read).
    """
    root = Path(root)
    if data_format not in DATA_FORMATS:
        raise ValueError(f"unknown vision-language format {data_format!r}; expected one of {list(DATA_FORMATS)}")
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    if data_format == "mmbt":
        parts = {split: read_mmbt_split(_split_file(root, data_format, split)) for split in SPLITS}
    elif data_format == "csv":
        parts = {split: read_csv_split(_split_file(root, data_format, split), columns) for split in SPLITS}
    else:
        images = Path(image_dir) if image_dir is not None else find_image_dir(root)
        parts = {split: read_json_array_split(_split_file(root, data_format, split), images) for split in SPLITS}
    return check_splits(
        name or root.resolve().name,
        "vision-language",
        parts,
        on_error=on_error,
        verify_images=verify_images,
        extra_check=_empty_text,
    )


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit RGB, whatever its mode.

    Grey, palette, CMYK and YCbCr convert as PIL converts them. Transparency (RGBA, LA, a
    palette with a transparent colour) is composited on white, as a viewer shows it, rather
    than dropped (PIL keeps the colour values under transparent pixels, often black). 16- and
    32-bit integer and float images are scaled to 0-255 from their mode's range (16-bit:
    divided by 257; float: [0, 1]) instead of clipped at 255, which would turn them white.
    """
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        scale = (
            1 / 255
            if image.mode == "F"
            else 257.0
            if image.mode.startswith("I;16") or values.max(initial=0) > 255
            else 1.0
        )
        grey = np.clip(np.rint(values / scale), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return image.convert("RGB")


def open_image(path: Path) -> Image.Image:
    """``path`` decoded as RGB (:func:`to_rgb`); a ValueError names the file if it changed since it was checked."""
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(image)
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from error


class RawDataset(Dataset):
    """Items ``{"inputs": {modality: ...}, "label": LongTensor (), "index": LongTensor ()}`` of raw samples.

    ``noise`` corrupts the inputs with the test protocol (:mod:`iidfusion.data.raw.input_noise`);
    subclasses implement :meth:`inputs`.
    """

    def __init__(
        self, samples: Sequence[RawSample], class_names: Sequence[str], noise: InputNoise | None = None
    ) -> None:
        index = {name: code for code, name in enumerate(class_names)}
        unknown = sorted({str(s.label) for s in samples} - set(index))
        if unknown:
            raise ValueError(f"labels {unknown} are not among the classes {list(class_names)}")
        self.samples = list(samples)
        self.codes = [index[str(s.label)] for s in self.samples]
        self.noise = noise

    def __len__(self) -> int:
        return len(self.samples)

    def inputs(self, index: int) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "inputs": self.inputs(index),
            "label": torch.tensor(self.codes[index], dtype=torch.long),
            "index": torch.tensor(index, dtype=torch.long),
        }


class VisionLanguageDataset(RawDataset):
    """Image and text of each sample: ``{"image": (3, 224, 224), "text": {"input_ids", "attention_mask"}}``."""

    def __init__(
        self,
        samples: Sequence[RawSample],
        class_names: Sequence[str],
        tokenizer: TextTokenizer,
        *,
        transform: ImageTransform = VISION_LANGUAGE_TRANSFORM,
        noise: InputNoise | None = None,
    ) -> None:
        super().__init__(samples, class_names, noise)
        self.tokenizer = tokenizer
        self.transform = transform

    def inputs(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        text = sample.text or ""
        assert sample.image is not None  # a vision-language sample always has its image
        pixels = self.transform.resize_image(open_image(sample.image))
        if self.noise is not None:
            text = self.noise.text(text, index, "text")
            pixels = self.noise.pixels(pixels, index, "image")
        return {"image": self.transform.finish(pixels), "text": self.tokenizer(text)}
