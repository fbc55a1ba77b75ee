"""The noise protocol (docs/reproduce.md, "Noise protocol") on feature views (test data only; the caller applies it).

Each view of each sample is corrupted with probability ``probability`` (0.5 in the protocol),
**independently per view** (``mask="independent"``, the default), as QMF's code corrupts each
modality with a coin of its own (the text noise and the image ``RandomApply`` are separate
draws): a sample may be noisy in one view and clean in the other, the case dynamic fusion
weights exist for. ``mask="shared"`` draws one coin per sample for all the corrupted views (a
corrupted sample is noisy in every view, a clean one in none), the protocol of earlier
releases. Kinds of corruption, at a level ``eps >= 0``:

* ``gaussian``: add N(0, s^2) per feature with ``s = (eps / 10) * std``, ``std`` the feature's
  standard deviation on the REFERENCE split (the training split, as the scaling is fitted
  there): the level's unit is "a tenth of the feature's training std", so levels 0, 5, 10 add
  noise of 0, 0.5 and 1 standard deviation. A constant training feature (std 0) gets none.
* ``salt-and-pepper``: each feature of a corrupted sample is replaced, with probability
  ``min(1, 0.05 * eps)`` (level 10: half of them), by the feature's training minimum or
  maximum, either with probability 1/2.

Reproducibility: each view's coins come from ``(seed, view name)`` (the shared mask from
``seed`` alone) and each view's noise from ``(seed, view name)`` on another stream, all drawn
in sample order, so the same seed gives the same corruption, a view's corruption does not
depend on which other views are corrupted, and the first k samples of a split are corrupted
the same way as in the whole split. Inputs are never modified; untouched views are shared
with the input, not copied.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import torch

from iidfusion.data.features.base import MultiViewData

NOISE_PROBABILITY = 0.5
SALT_AND_PEPPER_RATE = 0.05  # fraction of features replaced per unit of level
NOISE_MASKS: tuple[str, ...] = ("independent", "shared")


Corruption = Callable[[np.ndarray, np.ndarray, float, np.random.Generator], np.ndarray]
"""``(view (N, d), reference view, level, generator) -> corrupted view``, applied to every row;
:func:`corrupt_views` keeps the corrupted rows of the masked samples only."""


def gaussian_corruption(view: np.ndarray, reference: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Add N(0, s^2), ``s = (level / 10) *`` the feature's reference std."""
    return view + rng.standard_normal(view.shape) * (level / 10.0) * reference.std(axis=0)


def salt_and_pepper_corruption(
    view: np.ndarray, reference: np.ndarray, level: float, rng: np.random.Generator
) -> np.ndarray:
    """Replace ``min(1, 0.05 * level)`` of the features by the reference minimum or maximum."""
    replaced = rng.random(view.shape) < min(1.0, SALT_AND_PEPPER_RATE * level)
    salt = rng.random(view.shape) < 0.5
    return np.where(replaced, np.where(salt, reference.max(axis=0), reference.min(axis=0)), view)


FEATURE_NOISE: dict[str, Corruption] = {
    "gaussian": gaussian_corruption,
    "salt-and-pepper": salt_and_pepper_corruption,
}


def corrupt_views(
    data: MultiViewData,
    level: float,
    *,
    reference: MultiViewData,
    kind: str = "gaussian",
    views: str | Sequence[str] | None = None,
    probability: float = NOISE_PROBABILITY,
    mask: str = "independent",
    seed: int = 0,
) -> MultiViewData:
    """Corrupt ``views`` of ``data`` (all when ``None``) with the noise ``kind`` at ``level``.

    ``reference`` is the split whose per-feature statistics (population std, min, max) set the
    noise scale: the training split, in the same feature space as ``data`` (both as
    :func:`~iidfusion.data.load_dataset` returns them, scaled). Each view of a sample is
    corrupted with ``probability``, with a coin of its own (``mask="independent"``) or one coin
    per sample for every view (``"shared"``); see the module docstring for the units and the
    seeding.
    """
    if kind not in FEATURE_NOISE:
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {sorted(FEATURE_NOISE)}")
    if mask not in NOISE_MASKS:
        raise ValueError(f"unknown noise mask {mask!r}; expected one of {list(NOISE_MASKS)}")
    if not (math.isfinite(level) and level >= 0):
        raise ValueError(f"noise level must be finite and >= 0, got {level}")
    if not 0 <= probability <= 1:
        raise ValueError(f"corruption probability must lie in [0, 1], got {probability}")
    chosen = _chosen_views(data, reference, views)
    shared = np.random.default_rng([seed, 0]).random(len(data)) < probability
    noisy = dict(data.views)
    for name in chosen:
        view = data.views[name]
        clean = view.detach().cpu().numpy().astype(np.float64)
        ref = reference.views[name].detach().cpu().numpy().astype(np.float64)
        key = zlib.crc32(name.encode())
        rng = np.random.default_rng([seed, 1, key])
        corrupted_rows = (
            shared if mask == "shared" else np.random.default_rng([seed, 2, key]).random(len(data)) < probability
        )
        rows = corrupted_rows.reshape((-1,) + (1,) * (clean.ndim - 1))
        corrupted = np.where(rows, FEATURE_NOISE[kind](clean, ref, level, rng), clean)
        if not np.isfinite(corrupted).all() or np.abs(corrupted).max(initial=0) > torch.finfo(view.dtype).max:
            raise ValueError(f"noise level {level:g} overflows view {name!r} in {view.dtype}")
        noisy[name] = torch.from_numpy(corrupted).to(device=view.device, dtype=view.dtype)
    return MultiViewData(noisy, data.labels)


def _chosen_views(data: MultiViewData, reference: MultiViewData, views: str | Sequence[str] | None) -> list[str]:
    chosen = list(data.views) if views is None else [views] if isinstance(views, str) else list(views)
    for name in chosen:
        if name not in data.views:
            raise ValueError(f"unknown view {name!r}; the data has views {list(data.views)}")
        if name not in reference.views or reference.views[name].shape[1:] != data.views[name].shape[1:]:
            raise ValueError(f"view {name!r} of the reference split is missing or has a different width")
    return chosen
