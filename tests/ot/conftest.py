"""Shared fixtures of the optimal-transport tests."""

from __future__ import annotations

import pytest
import torch


def _clouds(
    n_problems: int,
    n: int,
    m: int,
    d: int = 3,
    *,
    seed: int = 0,
    shift: float = 0.5,
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
