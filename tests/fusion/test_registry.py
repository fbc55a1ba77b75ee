"""The strategy registry, and the meta-tests that every registered strategy has its tests and declares its options."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from pathlib import Path

import pytest
from torch import nn

from iidfusion.fusion import FusionStrategy, StaticStrategy, available_strategies, create_strategy, register_strategy
from iidfusion.fusion.base import StrategyOptions
from iidfusion.fusion.pdf import PDFOptions
from iidfusion.fusion.qmf import QMFOptions
from iidfusion.fusion.registry import STRATEGIES, get_strategy_class, strategy_options, strategy_sections


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


@pytest.mark.parametrize("name", available_strategies())
def test_every_strategy_declares_documented_options_with_its_constructor_defaults(name):
    """The options class is the one declaration of a strategy's options: each field documented,
    a keyword argument of the constructor with the same default (so a config and a direct call agree)."""
    cls = get_strategy_class(name)
    assert issubclass(cls.options_class, StrategyOptions) and dataclasses.is_dataclass(cls.options_class)
    parameters = inspect.signature(cls.__init__).parameters
    for field in dataclasses.fields(cls.options_class):
        assert field.metadata.get("help"), f"{name}.{field.name} has no help text"
        assert field.name in parameters, f"{name}.{field.name} is not a keyword argument of {cls.__name__}"
        assert parameters[field.name].default == field.default, (
            f"{name}.{field.name}: default differs from the constructor's"
        )
    default = cls.options_class()
    assert strategy_options(name) == default and strategy_options(name, {}) == default


def test_options_reach_the_strategy_as_a_section_or_a_mapping():
    build = {"modalities": ("a", "b"), "num_classes": 3, "width": 8, "num_samples": 4}
    assert create_strategy("qmf", {"lam_rank": 0.25}, **build).lam_rank == 0.25
    assert create_strategy("qmf", QMFOptions(min_weight=0.5), **build).min_weight == 0.5
    pdf = create_strategy("pdf", {"confidnet_hidden": 5}, modalities=("a", "b"), num_classes=3, width=8)
    assert pdf.confidnets["a"][0].out_features == 5
    bad = [
        (
            {"lam_rnk": 1.0},
            r"unknown config key 'qmf\.lam_rnk' in the options of strategy 'qmf'; known keys: energy_temperature",
        ),
        ({"lam_rank": "big"}, r"config key 'qmf\.lam_rank' must be a float, got 'big'"),
        ({"lam_rank": -1.0}, r"qmf\.lam_rank must be finite and >= 0, got -1\.0"),
        (PDFOptions(), "strategy 'qmf' takes QMFOptions, got PDFOptions"),
    ]
    for options, message in bad:
        with pytest.raises(ValueError, match=message):
            create_strategy("qmf", options, **build)
    with pytest.raises(ValueError, match=r"\['lam_rank'\] given both in options and as keyword arguments"):
        create_strategy("qmf", {"lam_rank": 0.5}, lam_rank=0.1, **build)


def test_the_sections_of_every_strategy_survive_pickling():
    """A config goes to `compare --jobs` worker processes by pickle; its strategy section's class is made at run
    time."""
    sections = strategy_sections(qmf=QMFOptions(lam_rank=0.3))
    assert [f.name for f in dataclasses.fields(sections)] == list(STRATEGIES)
    copy = pickle.loads(pickle.dumps(sections))
    assert copy == sections and type(copy) is type(sections) and copy.qmf.lam_rank == 0.3


def test_a_registered_strategy_must_declare_options_it_takes(monkeypatch):
    monkeypatch.setattr(STRATEGIES, "_entries", dict(STRATEGIES._entries))  # registrations undone after the test

    @dataclasses.dataclass(frozen=True)
    class Unknown(StrategyOptions):
        sharpness: float = 1.0

    with pytest.raises(ValueError, match=r"its options \['sharpness'\] are not keyword arguments of Sharp"):
        register_strategy("sharp", options=Unknown)(type("Sharp", (StaticStrategy,), {}))
    with pytest.raises(ValueError, match="must be a StrategyOptions dataclass"):
        register_strategy("sharp", options=dict)(type("Sharp", (StaticStrategy,), {}))  # type: ignore[arg-type]
    assert "sharp" not in available_strategies()
