"""Tiny multi-view data for the training tests: 3 views of width 8, 3 classes, 120 samples."""

from pathlib import Path

import numpy as np
import pytest

from iidfusion.data import SyntheticConfig, generate_synthetic, load_dataset
from iidfusion.training.config import load_config

TINY = SyntheticConfig(num_modalities=3, num_classes=3, relevant_dims=4, noise_dims=4, shift=2.0)


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory) -> Path:
    data = generate_synthetic(TINY, num_samples=120, seed=0)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, labels=data.labels.numpy(), **{k: v.numpy() for k, v in data.views.items()})
    return path


@pytest.fixture(scope="session")
def tiny_splits(tiny_npz):
    return load_dataset(tiny_npz, seed=0)


@pytest.fixture
def fast_config():
    """Small, quiet, single-threaded runs (the CPU is shared)."""
    return load_config(
        overrides={
            "model.width": 8,
            "model.hidden": 16,
            "loss.d1": 4,
            "loss.d2": 8,
            "loss.max_iter": 20,
            "train.batch_size": 32,
            "train.max_epochs": 2,
            "train.threads": 1,
            "train.progress_bar": False,
            "train.accelerator": "cpu",
            "eval.noise": "0,10",
        }
    )
