"""Vision-language data sets from their raw files: MVSA-Single, MVSA-Multiple, HFM, Food101.

Formats (DESIGN.md 3; checked against the published splits):

* ``mmbt``: ``train.jsonl``, ``dev.jsonl``, ``test.jsonl`` in one folder, one JSON object a
  line ``{"id", "label", "text", "img"}``, ``img`` relative to the folder of the ``.jsonl``
  (MMBT's splits of Food101 and MVSA-Single, as QMF and PDF ship them).
* ``json-array``: ``train.json``, ``dev.json`` (or ``valid.json``) and ``test.json``, each a
  JSON array of ``{"id", "text", "emotion_label"}``, images at ``dataset_image/<id>.jpg``
  beside the split files or one folder up (CLMLF's MVSA-Single / MVSA-Multiple folds, whose
  images are shared by the folds, and HFM).

The classes are the distinct labels of the training split in sorted order (numbers
numerically, names alphabetically), the order :func:`iidfusion.data.multiview.encode_labels`
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

import json
import logging
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

from iidfusion.data.input_noise import InputNoise
from iidfusion.encoders.image import VISION_LANGUAGE_TRANSFORM, ImageTransform
from iidfusion.encoders.text import TextTokenizer

logger = logging.getLogger(__name__)

DATA_FORMATS: tuple[str, ...] = ("mmbt", "json-array")
ERROR_POLICIES: tuple[str, ...] = ("raise", "skip")
SPLITS: tuple[str, ...] = ("train", "val", "test")
IMAGE_DIR_NAME = "dataset_image"
# Split files of each format; the first existing name of a tuple is used.
SPLIT_FILES: dict[str, dict[str, tuple[str, ...]]] = {
    "mmbt": {"train": ("train.jsonl",), "val": ("dev.jsonl",), "test": ("test.jsonl",)},
    "json-array": {"train": ("train.json",), "val": ("dev.json", "valid.json"), "test": ("test.json",)},
}


@dataclass(frozen=True)
class RawSample:
    """One sample on disk: an id, a label value, an image file and (vision-language) a text.

    A sample of text modalities only (HFM's tweet and image-attribute words,
    :mod:`iidfusion.data.hfm`) has no image and its texts by modality in ``texts``.
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
    names = tuple(str(value) for value in sorted(set(labels)))  # type: ignore[type-var]
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
            raise ValueError(f"{split} sample {sample.id!r}: {problem} (pass on_error='skip' to drop such samples)")
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
            parts[split], class_names, split=split, on_error=on_error, verify_images=verify_images, extra_check=extra_check
        )
        for split in SPLITS
    }
    skipped = {split: dropped for split, (_, dropped) in checked.items() if dropped}
    return RawSplits(name, family, *(checked[split][0] for split in SPLITS), class_names=class_names, skipped=skipped)


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
                raise ValueError(f"{path}, line {number}: missing keys {missing}; expected {{'id', 'label', 'text', 'img'}}")
            samples.append(RawSample(str(row["id"]), _label(row["label"], path, number), path.parent / str(row["img"]), str(row["text"] or "")))
    return samples


def read_json_array_split(path: Path, image_dir: Path) -> list[RawSample]:
    """Samples of one JSON-array split file; images at ``image_dir/<id>.jpg``."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON array of {{'id', 'text', 'emotion_label'}} objects, got {type(rows).__name__}")
    samples = []
    for number, row in enumerate(rows):
        missing = [key for key in ("id", "text", "emotion_label") if not isinstance(row, dict) or key not in row]
        if missing:
            raise ValueError(f"{path}, entry {number}: missing keys {missing}; expected {{'id', 'text', 'emotion_label'}}")
        sample_id = str(row["id"])
        samples.append(RawSample(sample_id, _label(row["emotion_label"], path, number), image_dir / f"{sample_id}.jpg", str(row["text"] or "")))
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
    raise FileNotFoundError(f"{root}: no {split} split file (looked for {' or '.join(names)}) for the {data_format} format")


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
) -> RawSplits:
    """The train / val / test samples of a vision-language data set in ``data_format``.

    ``root`` holds the split files; ``image_dir`` (json-array only) overrides the search for
    ``dataset_image/``. ``verify_images=False`` skips decoding every image up front (faster on
    a trusted copy; a bad image then fails when it is read).
    """
    root = Path(root)
    if data_format not in DATA_FORMATS:
        raise ValueError(f"unknown vision-language format {data_format!r}; expected one of {list(DATA_FORMATS)}")
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    if data_format == "mmbt":
        parts = {split: read_mmbt_split(_split_file(root, data_format, split)) for split in SPLITS}
    else:
        images = Path(image_dir) if image_dir is not None else find_image_dir(root)
        parts = {split: read_json_array_split(_split_file(root, data_format, split), images) for split in SPLITS}
    return check_splits(
        name or root.name, "vision-language", parts, on_error=on_error, verify_images=verify_images, extra_check=_empty_text
    )


def open_image(path: Path) -> Image.Image:
    """``path`` decoded as RGB; a ValueError names the file if it changed since it was checked."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from error


class RawDataset(Dataset):
    """Items ``{"inputs": {modality: ...}, "label": LongTensor (), "index": LongTensor ()}`` of raw samples.

    ``noise`` corrupts the inputs with the test protocol (:mod:`iidfusion.data.input_noise`);
    subclasses implement :meth:`inputs`.
    """

    def __init__(self, samples: Sequence[RawSample], class_names: Sequence[str], noise: InputNoise | None = None) -> None:
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
        pixels = self.transform.resize_image(open_image(sample.image))
        if self.noise is not None:
            text = self.noise.text(text, index, "text")
            pixels = self.noise.pixels(pixels, index, "image")
        return {"image": self.transform.finish(pixels), "text": self.tokenizer(text)}


TOY_WORDS: tuple[str, ...] = ("sun", "rain", "city", "photo", "today", "friend", "road", "music", "game", "food", "park", "night")


def toy_color(code: int, classes: int) -> np.ndarray:
    """A class's base colour in the toy data sets: hues spread evenly over the classes."""
    hue = code / classes
    return np.array([127 + 100 * np.cos(2 * np.pi * (hue + shift)) for shift in (0, 1 / 3, 2 / 3)])


def write_toy_vision_language(
    root: str | Path,
    data_format: str = "mmbt",
    *,
    classes: int = 3,
    per_class: tuple[int, int, int] = (8, 3, 3),
    seed: int = 0,
    size: tuple[int, int] = (48, 40),
) -> Path:
    """Write a small vision-language data set in ``data_format`` under ``root``; return ``root``.

    Each class has its own image colour (plus pixel noise) and its own keyword among filler
    words, so a model can learn it. ``per_class`` counts the samples of each class in train,
    val and test. For smoke tests and trying the pipeline without downloading anything.
    """
    if data_format not in DATA_FORMATS:
        raise ValueError(f"unknown vision-language format {data_format!r}; expected one of {list(DATA_FORMATS)}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    image_dir = root / ("images" if data_format == "mmbt" else IMAGE_DIR_NAME)
    image_dir.mkdir(parents=True, exist_ok=True)
    labels: list[str | int] = [f"class{code}" for code in range(classes)] if data_format == "mmbt" else list(range(classes))
    for split, count in zip(SPLITS, per_class):
        rows = []
        for code in range(classes):
            for i in range(count):
                sample_id = f"{split}{code}x{i}"
                noise = rng.normal(0, 20, (size[1], size[0], 3))
                pixels = np.clip(toy_color(code, classes) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(image_dir / f"{sample_id}.jpg", quality=90)
                words = [str(w) for w in rng.choice(TOY_WORDS, size=5)]
                words.insert(int(rng.integers(0, 6)), f"keyword{code}")
                rows.append({"id": sample_id, "text": " ".join(words), "label": labels[code], "img": f"{image_dir.name}/{sample_id}.jpg"})
        file = SPLIT_FILES[data_format][split][0]
        if data_format == "mmbt":
            (root / file).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        else:
            entries = [{"id": row["id"], "text": row["text"], "emotion_label": row["label"]} for row in rows]
            (root / file).write_text(json.dumps(entries, indent=1), encoding="utf-8")
    return root
