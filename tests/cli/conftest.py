"""Tiny multi-view data for the command-line tests: 3 views of width 8, 3 classes, 120 samples."""

from pathlib import Path

import numpy as np
import pytest

from iidfusion.data import SyntheticConfig, generate_synthetic


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory) -> Path:
    config = SyntheticConfig(num_modalities=3, num_classes=3, relevant_dims=4, noise_dims=4, shift=2.0)
    data = generate_synthetic(config, num_samples=120, seed=0)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, labels=data.labels.numpy(), **{k: v.numpy() for k, v in data.views.items()})
    return path
