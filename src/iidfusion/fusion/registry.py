"""Name -> class registry of fusion-weight strategies (PyKEEN / timm style; :class:`iidfusion.core.Registry`).

Strategies register themselves with :func:`register_strategy` when their module is imported;
:mod:`iidfusion.fusion` imports ``static``, ``qmf`` and ``pdf``, so the three names exist as
soon as the package does. ``tests/fusion/test_registry.py`` fails for a registered name that
has no ``tests/fusion/test_<name>.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from iidfusion.core.registry import Registry
from iidfusion.fusion.base import FusionStrategy

StrategyClass = TypeVar("StrategyClass", bound=type[FusionStrategy])

STRATEGIES: Registry[type[FusionStrategy]] = Registry("fusion strategy")


def register_strategy(name: str) -> Callable[[StrategyClass], StrategyClass]:
    """Class decorator: register a :class:`FusionStrategy` subclass under ``name``."""

    def decorate(cls: StrategyClass) -> StrategyClass:
        if not (isinstance(cls, type) and issubclass(cls, FusionStrategy)):
            raise ValueError(f"{cls!r} is not a FusionStrategy subclass")
        STRATEGIES.register(name, cls)
        cls.name = name
        return cls

    return decorate


def available_strategies() -> tuple[str, ...]:
    """The registered strategy names, sorted."""
    return tuple(sorted(STRATEGIES))


def get_strategy_class(name: str) -> type[FusionStrategy]:
    """The class registered as ``name``; ValueError listing the known names otherwise."""
    return STRATEGIES.get(name, known=available_strategies())


def create_strategy(name: str, **kwargs: Any) -> FusionStrategy:
    """Build the strategy ``name`` with ``kwargs`` (modalities, num_classes, width, mode, options)."""
    return get_strategy_class(name)(**kwargs)
