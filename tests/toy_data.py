"""Tiny raw data sets the tests write for themselves: vision-language (``mmbt``, ``json-array``) and RGB-D.

Each class has its own image colour (plus pixel noise) and, for texts, its own keyword, so a
model can learn it; nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from iidfusion.data.raw.vision_language import DATA_FORMATS, IMAGE_DIR_NAME, SPLIT_FILES, SPLITS

TOY_WORDS: tuple[str, ...] = (
    "sun",
    "rain",
    "city",
    "photo",
    "today",
    "friend",
    "road",
    "music",
    "game",
    "food",
    "park",
    "night",
)


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
    labels: list[str | int] = (
        [f"class{code}" for code in range(classes)] if data_format == "mmbt" else list(range(classes))
    )
    for split, count in zip(SPLITS, per_class, strict=True):
        rows = []
        for code in range(classes):
            for i in range(count):
                sample_id = f"{split}{code}x{i}"
                noise = rng.normal(0, 20, (size[1], size[0], 3))
                pixels = np.clip(toy_color(code, classes) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(image_dir / f"{sample_id}.jpg", quality=90)
                words = [str(w) for w in rng.choice(TOY_WORDS, size=5)]
                words.insert(int(rng.integers(0, 6)), f"keyword{code}")
                rows.append(
                    {
                        "id": sample_id,
                        "text": " ".join(words),
                        "label": labels[code],
                        "img": f"{image_dir.name}/{sample_id}.jpg",
                    }
                )
        file = SPLIT_FILES[data_format][split][0]
        if data_format == "mmbt":
            (root / file).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        else:
            entries = [{"id": row["id"], "text": row["text"], "emotion_label": row["label"]} for row in rows]
            (root / file).write_text(json.dumps(entries, indent=1), encoding="utf-8")
    return root


def write_toy_rgbd(
    root: str | Path,
    *,
    classes: int = 3,
    per_class: tuple[int, int] = (10, 4),
    seed: int = 0,
    size: tuple[int, int] = (40, 32),
) -> Path:
    """Write a small RGB-D data set (``root/{train,test}/<class>/*.png``, RGB left, depth right); return ``root``.

    RGB carries a class colour, depth a class-dependent vertical gradient, both with pixel
    noise, so a model can learn either. For smoke tests and trying the pipeline offline.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    width, height = size
    for split, count in zip(("train", "test"), per_class, strict=True):
        for code in range(classes):
            folder = root / split / f"scene{code}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                rgb = toy_color(code, classes) + rng.normal(0, 20, (height, width, 3))
                ramp = np.linspace(0, 255 * (code + 1) / classes, height)[:, None, None]
                depth = np.broadcast_to(ramp, (height, width, 3)) + rng.normal(0, 10, (height, width, 3))
                pixels = np.clip(np.concatenate([rgb, depth], axis=1), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root
