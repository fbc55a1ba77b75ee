"""Shared fixtures of the optimal-transport tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """Run on one thread: these problems are tiny, and on a shared 2-core machine OpenMP
    threads waiting for each other make them 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _clouds(
    n_problems: int, n: int, m: int, d: int = 3, *, seed: int = 0, shift: float = 0.5,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two batches of Gaussian clouds ``(P, n, d)``, ``(P, m, d)``, the second shifted."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n_problems, n, d, generator=generator, dtype=dtype)
    y = torch.randn(n_problems, m, d, generator=generator, dtype=dtype) + shift
    return x, y


@pytest.fixture
def make_clouds():  # type: ignore[no-untyped-def]
    """The :func:`_clouds` factory (fixtures cannot be imported across test modules)."""
    return _clouds
