"""Name -> class registry of fusion-weight strategies (PyKEEN / timm style, DESIGN.md 4).

Strategies register themselves with :func:`register_strategy` when their module is imported;
:mod:`iidfusion.fusion` imports ``static``, ``qmf`` and ``pdf``, so the three names exist as
soon as the package does. ``tests/fusion/test_registry.py`` fails for a registered name that
has no ``tests/fusion/test_<name>.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from iidfusion.fusion.base import FusionStrategy

StrategyClass = TypeVar("StrategyClass", bound=type[FusionStrategy])

_STRATEGIES: dict[str, type[FusionStrategy]] = {}


def register_strategy(name: str) -> Callable[[StrategyClass], StrategyClass]:
    """Class decorator: register a :class:`FusionStrategy` subclass under ``name``."""

    def decorate(cls: StrategyClass) -> StrategyClass:
        if not (isinstance(cls, type) and issubclass(cls, FusionStrategy)):
            raise ValueError(f"{cls!r} is not a FusionStrategy subclass")
        if name in _STRATEGIES and _STRATEGIES[name] is not cls:
            raise ValueError(f"a fusion strategy is already registered as {name!r}: {_STRATEGIES[name].__name__}")
        cls.name = name
        _STRATEGIES[name] = cls
        return cls

    return decorate


def available_strategies() -> tuple[str, ...]:
    """The registered strategy names, sorted."""
    return tuple(sorted(_STRATEGIES))


def get_strategy_class(name: str) -> type[FusionStrategy]:
    """The class registered as ``name``; ValueError listing the known names otherwise."""
    if name not in _STRATEGIES:
        raise ValueError(f"unknown fusion strategy {name!r}; available: {list(available_strategies())}")
    return _STRATEGIES[name]


def create_strategy(name: str, **kwargs: Any) -> FusionStrategy:
    """Build the strategy ``name`` with ``kwargs`` (modalities, num_classes, width, mode, options)."""
    return get_strategy_class(name)(**kwargs)
