"""Shared fixtures of the encoder tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run convolutions on one thread: on a few shared cores, OpenMP threads spinning against
    other processes make a small ResNet forward ten times slower than a single thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
