"""The strategy registry, and the meta-test that every registered strategy has its tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from iidfusion.fusion import FusionStrategy, StaticStrategy, available_strategies, create_strategy, register_strategy


def test_the_three_strategies_of_the_paper_are_registered():
    assert {"static", "qmf", "pdf"} <= set(available_strategies())
    assert list(available_strategies()) == sorted(available_strategies())


@pytest.mark.parametrize("name", available_strategies())
def test_every_registered_strategy_has_a_test_module(name):
    test_module = Path(__file__).parent / f"test_{name}.py"
    assert test_module.is_file(), f"strategy {name!r} is registered but {test_module} does not exist"


@pytest.mark.parametrize("name", available_strategies())
def test_create_strategy_builds_the_registered_class(name):
    options = {"num_samples": 4} if name == "qmf" else {}
    strategy = create_strategy(name, modalities=("a", "b", "c"), num_classes=3, width=8, mode="if", **options)
    assert isinstance(strategy, FusionStrategy)
    assert type(strategy).name == name and strategy.modalities == ("a", "b", "c")


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown fusion strategy 'average'; available: \['pdf', 'qmf', 'static'"):
        create_strategy("average", modalities=("a", "b"), num_classes=3, width=8)


def test_a_taken_name_cannot_be_registered_again():
    class Other(StaticStrategy):
        pass

    with pytest.raises(ValueError, match="already registered as 'static'"):
        register_strategy("static")(Other)
    assert create_strategy("static", modalities=("a", "b"), num_classes=3, width=8).__class__ is StaticStrategy


def test_only_fusion_strategies_can_be_registered():
    with pytest.raises(ValueError, match="not a FusionStrategy subclass"):
        register_strategy("linear")(nn.Linear)
    assert "linear" not in available_strategies()
