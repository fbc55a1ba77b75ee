"""Cached features of frozen encoders, as multi-view files that ``fit`` and ``compare`` read.

``iidfusion extract`` runs the encoders once per split and writes a folder:

* ``features.npz``: the clean train / val / test features in the split form of
  :mod:`iidfusion.data.features.multiview` (``<modality>_train``, ..., ``labels_train``, ...), labels
  stored as the files give them, so :func:`iidfusion.data.load_dataset` recovers the class
  names in the same sorted order as the raw loaders;
* ``features_noise<eps>.npz`` for each noise level eps > 0: the same train and val, and the
  test split extracted from inputs corrupted by the raw-input protocol
  (:mod:`iidfusion.data.raw.input_noise`), so a model trained on one file is evaluated under
  noise by pointing ``fit`` / ``compare`` at another (same train split, same seed, same model);
* ``manifest.json`` (written last): the cache key (a checksum of the inputs and the
  extraction settings: encoder names and configurations, transforms, noise protocol), the
  class names, the SHA-256 of every feature file, the samples skipped as unusable, and what
  the extraction cost (seconds, peak resident memory of the process).

A cache is reused only when its manifest's key equals the key of the requested extraction
and its files hash as recorded; anything else (a changed, added or removed input file, a
relabelled sample, another encoder or weight file) makes it stale and it is rebuilt. Input
checksums use each file's size and modification time (``content=True`` hashes the bytes).
Every file is written under a temporary name and renamed, so an interrupted extraction never
leaves a cache that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from iidfusion.core.progress import progress_bar
from iidfusion.data.features.base import DatasetSplits
from iidfusion.data.features.multiview import make_splits, read_multiview_file
from iidfusion.data.raw.vision_language import SPLITS, RawSplits

CACHE_VERSION = 1
MANIFEST_NAME = "manifest.json"


def feature_file(level: float) -> str:
    """The file name of the features at noise ``level`` (0: clean)."""
    return "features.npz" if level == 0 else f"features_noise{level:g}.npz"


def input_checksum(raw: RawSplits, *, content: bool = False) -> str:
    """SHA-256 over every sample (split, id, label, texts) and its image file's size and mtime.

    ``content=True`` hashes the image bytes instead of size and mtime (slower, robust to
    copies that reset modification times). Samples without an image hash their texts alone.
    """
    digest = hashlib.sha256()
    for split in SPLITS:
        for sample in raw.split(split):
            image, stamp = None, None
            if sample.image is not None:
                stat = sample.image.stat()
                image = str(sample.image.resolve())
                stamp = _file_sha256(sample.image) if content else f"{stat.st_size}:{stat.st_mtime_ns}"
            entry: list[Any] = [split, sample.id, str(sample.label), sample.text, image, stamp]
            if sample.texts:
                entry.append(dict(sorted(sample.texts.items())))
            digest.update(json.dumps(entry).encode("utf-8"))
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheKey:
    """What cached features depend on: the inputs' checksum and the extraction settings."""

    inputs: str
    settings: Mapping[str, Any]

    def digest(self) -> str:
        payload = json.dumps(
            {"version": CACHE_VERSION, "inputs": self.inputs, "settings": self.settings}, sort_keys=True, default=str
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    """The cache manifest of ``directory``, or None when there is none (or it is unreadable)."""
    path = Path(directory) / MANIFEST_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def cached_levels(directory: str | Path, key: CacheKey) -> set[float]:
    """Noise levels whose features in ``directory`` are current for ``key`` (empty: stale or absent).

    Current means: the manifest's key digest equals ``key``'s, and each listed file exists and
    has the SHA-256 the manifest recorded.
    """
    manifest = read_manifest(directory)
    if manifest is None or manifest.get("key") != key.digest():
        return set()
    levels = set()
    for level, entry in manifest.get("files", {}).items():
        path = Path(directory) / entry["file"]
        if path.is_file() and _file_sha256(path) == entry["sha256"]:
            levels.add(float(level))
    return levels if 0.0 in levels else set()


@torch.no_grad()
def extract_features(
    encoders: Mapping[str, nn.Module],
    dataset: Dataset,
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    bar: Any = None,
) -> dict[str, np.ndarray]:
    """Each encoder's output over ``dataset`` (items as :class:`~iidfusion.data.raw.vision_language.RawDataset` gives
    them).

    Encoders run in eval mode without gradients; rows follow the dataset's order. Returns
    ``{modality: (N, d_m) float32}``. A non-finite feature is an error naming the modality.
    ``bar``: a progress bar (:mod:`iidfusion.core.progress`) advanced by the samples of each batch.
    """
    device = torch.device(device)
    for encoder in encoders.values():
        encoder.eval().to(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in encoders}
    for batch in loader:
        for name, encoder in encoders.items():
            out = encoder(_to_device(batch["inputs"][name], device)).float()
            if not torch.isfinite(out).all():
                raise ValueError(
                    f"encoder {name!r} produced non-finite features (batch of samples {batch['index'][:3].tolist()}...)"
                )
            chunks[name].append(out.cpu().numpy())
        if bar is not None:
            bar.update(len(batch["index"]))
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, Mapping):
        return {key: item.to(device) for key, item in value.items()}
    return value.to(device)


def write_feature_file(
    path: Path, views: Mapping[str, Mapping[str, np.ndarray]], labels: Mapping[str, np.ndarray]
) -> str:
    """Write a split-form ``.npz`` atomically; return its SHA-256."""
    arrays: dict[str, Any] = {f"{view}_{split}": a for split, by_view in views.items() for view, a in by_view.items()}
    arrays.update({f"labels_{split}": array for split, array in labels.items()})
    _atomic_write(path, lambda handle: np.savez(handle, **arrays))
    return _file_sha256(path)


def write_manifest(
    directory: Path, key: CacheKey, raw: RawSplits, files: Mapping[float, tuple[str, str]], seconds: float
) -> None:
    """The manifest (last, atomically): key, classes, files and their hashes, skipped samples."""
    manifest = {
        "version": CACHE_VERSION,
        "key": key.digest(),
        "inputs": key.inputs,
        "settings": key.settings,
        "name": raw.name,
        "family": raw.family,
        "class_names": list(raw.class_names),
        "samples": {split: len(raw.split(split)) for split in SPLITS},
        "skipped": {split: [list(item) for item in items] for split, items in raw.skipped.items()},
        "notes": list(raw.notes),
        "files": {f"{level:g}": {"file": name, "sha256": sha} for level, (name, sha) in sorted(files.items())},
        "seconds": round(seconds, 3),
        "peak_mib": peak_memory_mib(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
    _atomic_write(directory / MANIFEST_NAME, lambda handle: handle.write(text.encode("utf-8")))


def peak_memory_mib() -> int | None:
    """The largest resident memory of this process so far, in MiB (None where the platform does
    not say: Windows has no ``resource``); recorded with the extraction's time.
    """
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024))


def load_feature_cache(
    directory: str | Path, *, noise: float = 0.0, seed: int = 0, scale: bool | Any = True
) -> DatasetSplits:
    """The cached features at ``noise`` as :class:`DatasetSplits` (read as ``load_dataset`` reads a file),
    with the test split of every noise level in ``input_noise_tests``, scaled as the training
    split (so that evaluation at level eps sees the features of inputs corrupted at eps).

    Checks the manifest lists the level and that each file's hash is the recorded one.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest is None:
        raise FileNotFoundError(f"{directory}: no {MANIFEST_NAME}; not a feature cache written by `iidfusion extract`")
    if f"{noise:g}" not in manifest["files"]:
        raise ValueError(
            f"{directory}: no features at noise level {noise:g}; cached levels: {sorted(manifest['files'])}"
        )
    splits = _load_level(directory, manifest, noise, seed, scale)
    splits.name = str(manifest.get("name", splits.name))
    for level in sorted(float(name) for name in manifest["files"]):
        test = (
            splits.test
            if level == noise
            else _load_level(directory, manifest, level, seed, splits.scaler or False).test
        )
        splits.input_noise_tests[level] = test
    return splits


def _load_level(
    directory: Path, manifest: Mapping[str, Any], level: float, seed: int, scale: bool | Any
) -> DatasetSplits:
    path = directory / manifest["files"][f"{level:g}"]["file"]
    if not path.is_file() or _file_sha256(path) != manifest["files"][f"{level:g}"]["sha256"]:
        raise ValueError(
            f"{path} is missing or differs from the file the manifest recorded; run `iidfusion extract` again"
        )
    splits = make_splits(read_multiview_file(path), path.stem, seed=seed, scale=scale)  # as load_dataset reads a file
    if list(splits.class_names) != list(manifest["class_names"]):
        raise ValueError(
            f"{path}: classes {list(splits.class_names)} differ from the manifest's {manifest['class_names']}"
        )
    return splits


def _atomic_write(path: Path, write: Callable[[Any], Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(name, 0o644)  # mkstemp creates 0600 files
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def remove_stale(directory: Path, keep: Iterable[str]) -> None:
    """Delete the manifest first (the cache is then invalid), then the feature files it listed
    that are not in ``keep``; a file no manifest of ours lists (a user's own) is never deleted.
    """
    manifest = read_manifest(directory)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    listed = (
        {entry.get("file") for entry in files.values() if isinstance(entry, dict)} if isinstance(files, dict) else set()
    )
    (directory / MANIFEST_NAME).unlink(missing_ok=True)
    keep = set(keep)
    for path in directory.glob("features*.npz"):
        if path.name in listed and path.name not in keep:
            path.unlink()


def build_feature_cache(
    directory: str | Path,
    raw: RawSplits,
    key: CacheKey,
    encoders: Mapping[str, nn.Module],
    make_dataset: Callable[[str, float], Dataset],
    *,
    levels: Iterable[float] = (0.0,),
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    force: bool = False,
    log: Callable[[str], None] = print,
    progress: bool = False,
) -> dict[float, Path]:
    """Extract (or reuse) the features of ``raw`` at every noise level; the path of each level's file.

    ``make_dataset(split, level)`` builds the dataset of a split with the inputs corrupted at
    ``level`` (0: clean). Levels already cached for ``key`` are reused unless ``force``; a
    stale cache is removed first; levels cached before and not asked for now are kept.
    ``log`` receives one line per extracted split; ``progress`` draws a bar over the samples to
    encode (:mod:`iidfusion.core.progress`).
    """
    directory = Path(directory)
    current = set() if force else cached_levels(directory, key)
    if not current:
        remove_stale(directory, keep=())
    levels = sorted({0.0, *current, *(float(level) for level in levels)})
    start = time.perf_counter()
    labels = {split: raw.label_values(split) for split in SPLITS}

    def run(split: str, level: float) -> dict[str, np.ndarray]:
        began = time.perf_counter()
        bar.set_postfix_str(f"{split} split, noise {level:g}")
        views = extract_features(
            encoders, make_dataset(split, level), batch_size=batch_size, device=device, num_workers=num_workers, bar=bar
        )
        with bar.external_write_mode(file=sys.stderr):
            log(
                f"extracted {split} (noise {level:g}): {len(labels[split])} samples in "
                f"{time.perf_counter() - began:.1f} "
                "s"
            )
        return views

    manifest = read_manifest(directory) if current else None
    files = (
        {level: (feature_file(level), manifest["files"][f"{level:g}"]["sha256"]) for level in current}
        if manifest
        else {}
    )
    missing = [level for level in levels if level not in current]
    if not missing:
        return {level: directory / name for level, (name, _) in files.items()}
    samples = sum(len(labels[s]) for s in SPLITS) * (0.0 not in current) + len(labels["test"]) * sum(
        level > 0 for level in missing
    )
    with progress_bar(samples, "extract", enabled=progress, unit="sample") as bar:
        if 0.0 in current:
            with np.load(directory / feature_file(0.0), allow_pickle=False) as archive:
                clean = {split: {m: archive[f"{m}_{split}"] for m in encoders} for split in SPLITS}
        else:
            clean = {split: run(split, 0.0) for split in SPLITS}
        for level in missing:
            views = clean if level == 0 else {**clean, "test": run("test", level)}
            files[level] = (feature_file(level), write_feature_file(directory / feature_file(level), views, labels))
    write_manifest(directory, key, raw, files, time.perf_counter() - start)
    return {level: directory / name for level, (name, _) in files.items()}
