"""Tiny random models and batches shared by the fusion tests."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from iidfusion.fusion import FusionModel, get_strategy_class

MODALITY_NAMES = ("image", "text", "depth", "audio")
NUM_CLASSES = 3
WIDTH = 8
NUM_SAMPLES = 32


def input_dim(position: int) -> int:
    """Input width of the modality at ``position`` (different per modality on purpose)."""
    return 3 + position


def build_model(
    num_modalities: int = 2,
    mode: str = "if",
    strategy: str = "static",
    *,
    seed: int = 0,
    unimodal_heads: str = "separate",
    **strategy_kwargs: Any,
) -> FusionModel:
    """A FusionModel over tiny random MLP encoders (widths differ per modality)."""
    torch.manual_seed(seed)
    names = MODALITY_NAMES[:num_modalities]
    encoders = {name: nn.Sequential(nn.Linear(input_dim(i), 4 + i), nn.Tanh()) for i, name in enumerate(names)}
    if get_strategy_class(strategy).requires_num_samples:
        strategy_kwargs.setdefault("num_samples", NUM_SAMPLES)
    return FusionModel(
        encoders,
        {name: 4 + i for i, name in enumerate(names)},
        NUM_CLASSES,
        width=WIDTH,
        mode=mode,
        strategy=strategy,
        strategy_kwargs=strategy_kwargs,
        unimodal_heads=unimodal_heads,
    )


def build_inputs(
    model: FusionModel, batch_size: int = 6, seed: int = 1, dtype: torch.dtype = torch.float32
) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        name: torch.randn(batch_size, input_dim(i), generator=generator).to(dtype)
        for i, name in enumerate(model.modalities)
    }


def build_labels(batch_size: int = 6, seed: int = 2) -> Tensor:
    return torch.randint(0, NUM_CLASSES, (batch_size,), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(params=["static", "qmf", "pdf"])
def strategy_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=["if", "lf"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_model() -> Any:
    """Factory: ``make_model(num_modalities, mode, strategy, seed=0, unimodal_heads="separate", **strategy_kwargs)``."""
    return build_model


@pytest.fixture
def make_inputs() -> Any:
    """Factory: ``make_inputs(model, batch_size=6, seed=1, dtype=float32)`` -> {modality: Tensor}."""
    return build_inputs


@pytest.fixture
def make_labels() -> Any:
    """Factory: ``make_labels(batch_size=6, seed=2)`` -> labels in 0..NUM_CLASSES-1."""
    return build_labels
