"""Suite-wide fixtures: one torch thread, tiny multi-view data (3 views of width 8, 3 classes, 120 samples),
a small quiet configuration, and the payload of a crafted pickle."""

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from iidfusion.data import SyntheticConfig, generate_synthetic, load_dataset
from iidfusion.tasks.classification.config import load_config

TINY = SyntheticConfig(num_modalities=3, num_classes=3, relevant_dims=4, noise_dims=4, shift=2.0)


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """One torch thread: the tests use tiny tensors, and on a shared 2-core machine spinning
    intra-op threads make them 10-100x slower, not faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class ShellPayload:
    """Pickles as a call of ``touch MARKER``: what a crafted pickle, checkpoint or feature file holds.

    A test that loads one asserts MARKER was not created (the payload did not run).
    """

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="session")
def shell_payload() -> type[ShellPayload]:
    return ShellPayload


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
