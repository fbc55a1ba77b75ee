"""Regenerate ``handwritten.npz`` from the UCI Handwritten ``.mat`` file (not needed at run time).

Usage, from the repository root::

    python src/iidfusion/data/features/bundled/make_handwritten.py /path/to/handwritten.mat

The ``.mat`` holds ``X`` (1x6 cell, samples x features, in the order of ``VIEW_NAMES``) and
``Y`` (2000x1, digits 0-9). Integer views keep their dtype (exact); float64 views are stored
as float32 (relative error below 1e-7, and every view becomes float32 at load anyway), which
halves the file. The output is in the ``.npz`` layout that :mod:`iidfusion.data.features.multiview`
reads: one array per view, labels under ``labels``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

# UCI file names of the six feature sets, with the width each must have, in the .mat's order.
VIEW_NAMES: tuple[tuple[str, int], ...] = (
    ("pix", 240),  # pixel averages in 2x3 windows
    ("fou", 76),  # Fourier coefficients of the character shapes
    ("fac", 216),  # profile correlations
    ("zer", 47),  # Zernike moments
    ("kar", 64),  # Karhunen-Loeve coefficients
    ("mor", 6),  # morphological features
)


def convert(source: Path, target: Path) -> None:
    content = scipy.io.loadmat(source)
    cells = content["X"].ravel()
    arrays: dict[str, Any] = {}
    for (name, width), view in zip(VIEW_NAMES, cells, strict=True):
        if view.shape != (2000, width):
            raise ValueError(f"view {name!r}: expected shape (2000, {width}), got {view.shape}")
        stored = view.astype(np.float32) if view.dtype == np.float64 else view
        if not np.allclose(stored, view, rtol=1e-6, atol=0.0):
            raise ValueError(f"view {name!r} does not round-trip through {stored.dtype}")
        arrays[name] = stored
    arrays["labels"] = content["Y"].ravel().astype(np.uint8)
    np.savez_compressed(target, **arrays)


if __name__ == "__main__":
    convert(Path(sys.argv[1]), Path(__file__).with_name("handwritten.npz"))
