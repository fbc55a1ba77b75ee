"""Name -> class registry of fusion-weight strategies (PyKEEN / timm style; :class:`iidfusion.core.Registry`).

Strategies register themselves with :func:`register_strategy` when their module is imported;
:mod:`iidfusion.fusion` imports ``static``, ``qmf`` and ``pdf``, so the three names exist as
soon as the package does. Every registered strategy has tests of its own.

Each strategy declares its options as a dataclass (:class:`~iidfusion.fusion.base.StrategyOptions`,
fields declared with :func:`iidfusion.core.config.option`), given to :func:`register_strategy`.
:func:`strategy_sections` gathers the options of every registered strategy into one
configuration section, one sub-section per name, which is how the training configuration gets
``strategy.<name>.<option>`` (and the flags ``--<name>-<option>``) for every strategy,
a user's included, with no edit anywhere else.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from iidfusion.core.config import check_rules, merge_config
from iidfusion.core.registry import Registry
from iidfusion.fusion.base import FusionStrategy, StrategyOptions

StrategyClass = TypeVar("StrategyClass", bound=type[FusionStrategy])

STRATEGIES: Registry[type[FusionStrategy]] = Registry("fusion strategy")


def register_strategy(
    name: str, options: type[StrategyOptions] | None = None
) -> Callable[[StrategyClass], StrategyClass]:
    """Class decorator: register a :class:`FusionStrategy` subclass under ``name``.

    ``options``: the dataclass of the strategy's own options (None: the class's inherited
    ``options_class``); each field must be a keyword argument of the class's constructor.
    """

    def decorate(cls: StrategyClass) -> StrategyClass:
        if not (isinstance(cls, type) and issubclass(cls, FusionStrategy)):
            raise ValueError(f"{cls!r} is not a FusionStrategy subclass")
        options_class = cls.options_class if options is None else options
        if not (
            isinstance(options_class, type)
            and issubclass(options_class, StrategyOptions)
            and dataclasses.is_dataclass(options_class)
        ):
            raise ValueError(
                f"the options of strategy {name!r} must be a StrategyOptions dataclass, got {options_class!r}"
            )
        parameters = inspect.signature(cls.__init__).parameters
        missing = [f.name for f in dataclasses.fields(options_class) if f.name not in parameters]
        if missing:
            raise ValueError(f"strategy {name!r}: its options {missing} are not keyword arguments of {cls.__name__}")
        STRATEGIES.register(name, cls)
        cls.name = name
        cls.options_class = options_class
        return cls

    return decorate


def available_strategies() -> tuple[str, ...]:
    """The registered strategy names, sorted."""
    return tuple(sorted(STRATEGIES))


def get_strategy_class(name: str) -> type[FusionStrategy]:
    """The class registered as ``name``; ValueError listing the known names otherwise."""
    return STRATEGIES.get(name, known=available_strategies())


def strategy_options(
    name: str, values: StrategyOptions | Mapping[str, Any] | None = None, *, prefix: str | None = None
) -> StrategyOptions:
    """The options of strategy ``name``: its defaults, updated by the mapping ``values`` (an
    unknown key or a wrong type is a ValueError naming it), or ``values`` itself if it already
    is that strategy's options; checked against each option's rule. Messages name a key as
    ``prefix + option`` (default ``"<name>."``).
    """
    options_class = get_strategy_class(name).options_class
    prefix = f"{name}." if prefix is None else prefix
    if isinstance(values, StrategyOptions):
        if type(values) is not options_class:
            raise ValueError(f"strategy {name!r} takes {options_class.__name__}, got {type(values).__name__}")
        options = values
    else:
        options = merge_config(options_class(), values or {}, f"the options of strategy {name!r}", prefix)
    check_rules(options, prefix, name_flags=False)
    return options


def create_strategy(
    name: str, options: StrategyOptions | Mapping[str, Any] | None = None, **kwargs: Any
) -> FusionStrategy:
    """Build the strategy ``name`` with its ``options`` (:func:`strategy_options`) and ``kwargs``
    (modalities, num_classes, width, mode, the base options; or, without ``options``, the
    strategy's options as keywords).
    """
    cls = get_strategy_class(name)
    if options is not None:
        parsed = strategy_options(name, options)
        clash = [f.name for f in dataclasses.fields(parsed) if f.name in kwargs]
        if clash:
            raise ValueError(f"strategy {name!r}: {clash} given both in options and as keyword arguments")
        kwargs |= {f.name: getattr(parsed, f.name) for f in dataclasses.fields(parsed)}
    return cls(**kwargs)


@dataclasses.dataclass(frozen=True)
class StrategySections:
    """Base of the section that holds every registered strategy's options (:func:`strategy_sections`).

    Its subclasses are made from the registry, so a pickled instance (a config sent to a worker
    process) is rebuilt from the sections it holds rather than from its class's name.
    """

    if TYPE_CHECKING:  # a field per registered strategy, made at run time

        def __getattr__(self, name: str) -> Any: ...

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_sections, (tuple((f.name, getattr(self, f.name)) for f in dataclasses.fields(self)),))


def strategy_sections(**given: StrategyOptions) -> StrategySections:
    """One field per registered strategy, in registration order, holding its options (defaults
    where not ``given``): the ``strategy`` section of the training configuration.
    """
    return _sections_class(tuple((name, STRATEGIES.get(name).options_class) for name in STRATEGIES))(**given)


def _rebuild_sections(items: tuple[tuple[str, StrategyOptions], ...]) -> StrategySections:
    return strategy_sections(**dict(items))


@functools.cache
def _sections_class(entries: tuple[tuple[str, type[StrategyOptions]], ...]) -> type[StrategySections]:
    fields = [
        (
            name,
            options,
            dataclasses.field(default_factory=options, metadata={"help": f"options of the {name!r} strategy"}),
        )
        for name, options in entries
    ]
    sections = dataclasses.make_dataclass("RegisteredStrategyOptions", fields, bases=(StrategySections,), frozen=True)
    sections.__module__ = __name__
    return sections
