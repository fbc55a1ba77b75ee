"""Configuration dataclasses: documented options, their ranges, and the one loader of nested mappings.

Every option of the library is a dataclass field declared with :func:`option` (its default, its
help text, optionally its flag and the :class:`Rule` its values obey), so that the command line,
``--help`` and the range checks are generated from one declaration, wherever the dataclass lives
(the training configuration, a fusion strategy's options). :func:`merge_config` is the one
loader of every configuration: the training commands' ``ExperimentConfig``, the KG's
``KGExperimentConfig``, a KG model's options, a strategy's options. A key the dataclass does
not know, or a value of the wrong type, is a ValueError naming the key; nothing is silently
ignored. Standard library only, so that every layer may use it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Rule:
    """What a valid value is (``check``) and how a message says it (``expected``); ``choices``:
    the values, when they are few (what ``--help`` shows as the flag's placeholder).
    """

    check: Callable[[Any], bool]
    expected: str
    choices: tuple[str, ...] = ()


def at_least(low: float, at_most: float | None = None) -> Rule:
    """A finite number >= ``low`` (and <= ``at_most``: a size option's upper bound, so that a
    value no machine can hold is refused before anything is allocated).
    """
    if at_most is None:
        return Rule(lambda v: math.isfinite(v) and v >= low, f"finite and >= {low:g}")
    return Rule(lambda v: math.isfinite(v) and low <= v <= at_most, f"in [{low:g}, {at_most:g}]")


def positive() -> Rule:
    """A finite number > 0."""
    return Rule(lambda v: math.isfinite(v) and v > 0, "finite and > 0")


def one_of(choices: tuple[str, ...]) -> Rule:
    """One of ``choices``."""
    return Rule(lambda v: v in choices, f"one of {', '.join(choices)}", tuple(choices))


INT_LIMIT = 2**63 - 1
# Upper bounds of the size options: far beyond any run of the paper's scale, and small enough that
# a typo (1e20) is refused before it reaches torch as an allocation or an overflowing integer.
MAX_WIDTH = 2**16  # features of an encoder or an embedding: its weight matrices hold width x width values
MAX_LAYERS = 1_000
MAX_BATCH = 2**24  # samples of one batch (or of a sample a loss or a monitor reads)
MAX_EPOCHS = 10**6  # epochs, iterations or steps
MAX_PROCESSES = 2**12  # processes, threads, workers or machines
MAX_RUNS = 10**5  # seeds, or tuning trials, of one command
# A noise level is the noise's std in tenths of a view's: 1e6 drowns every feature 1e5 times over, far
# inside float32 (a level of 1e308 made every noisy feature inf, and the accuracy at it meaningless).
MAX_NOISE_LEVEL = 1e6
SEED_LIMIT = 2**32 - 1  # numpy's and Lightning's seed range
SEED_RULE = Rule(lambda v: 0 <= v <= SEED_LIMIT, f"in [0, {SEED_LIMIT}]")


def option(default: Any, help: str, *, flag: str | None = None, rule: Rule | None = None) -> Any:
    """A dataclass field with its help text (immutable defaults only: tuples, scalars).

    Every leaf of a command's configuration is declared so: the command line builds one
    documented flag per leaf from the metadata (``train.max_epochs`` -> ``--max-epochs``).
    ``flag``: the flag, when the leaf name alone would be ambiguous or unclear (``tune.alpha``
    is ``--tune-alpha``, as ``--alpha`` is ``loss.alpha``). ``rule``: the values the option
    accepts, checked by :func:`check_rules` (and by the commands before they read any data,
    naming the flag).
    """
    metadata = {"help": help} | ({"flag": flag} if flag else {}) | ({"rule": rule} if rule else {})
    return field(default=default, metadata=metadata)


def redefault(cls: type, name: str, default: Any, help: str | None = None) -> Any:
    """The option ``name`` of the dataclass ``cls`` with another ``default`` (and ``help``), for a
    subclass that declares other defaults: its rule and flag stay those of ``cls``.
    """
    metadata = dict({f.name: f for f in dataclasses.fields(cls)}[name].metadata) | ({"help": help} if help else {})
    return field(default=default, metadata=metadata)


def check_rules(config: Any, prefix: str = "", *, name_flags: bool = True) -> None:
    """A ValueError naming the first option of ``config`` (any dataclass of :func:`option`
    fields and sections, its keys under ``prefix``) whose value breaks its rule.

    The message names the option's flag and dotted key (``--lr (optim.lr) must be ...``), or,
    with ``name_flags=False``, the key alone (``model.options.align_weight must be ...``: options
    given as a mapping, which have no flag of their own).
    """
    for leaf in iter_options(config, prefix):
        rule = leaf.rule
        if rule is not None and not rule.check(leaf.default):
            name = f"{leaf.flag} ({leaf.key})" if name_flags else leaf.key
            raise ValueError(f"{name} must be {rule.expected}, got {leaf.default!r}")


@dataclass(frozen=True)
class ConfigOption:
    """One leaf option of a configuration: its dotted key, type, value and help, flag and rule."""

    key: str
    type: Any
    default: Any
    help: str

    flag_override: str | None = None
    rule: Rule | None = None

    @property
    def flag(self) -> str:
        """The command-line flag: the declared one, else ``--`` and the leaf name (``max_epochs`` ->
        ``--max-epochs``).
        """
        return self.flag_override or "--" + self.key.rsplit(".", 1)[-1].replace("_", "-")

    @property
    def dest(self) -> str:
        """The argparse destination of the flag."""
        return self.key.replace(".", "__")


def iter_options(config: Any, prefix: str = "", flag_prefix: str = "") -> Iterator[ConfigOption]:
    """Every leaf option of ``config`` (a dataclass of sections and options), depth first.

    The sub-sections of a section marked ``flags_named_by_section`` put their name before
    their leaves' flags (``strategy.qmf.lam_rank`` -> ``--qmf-lam-rank``).
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if is_section(hints[f.name]) and f.metadata.get("flags_named_by_section"):
            for sub in dataclasses.fields(value):
                section_prefix = sub.name.replace("_", "-") + "-"
                yield from iter_options(getattr(value, sub.name), f"{prefix}{f.name}.{sub.name}.", section_prefix)
        elif is_section(hints[f.name]):
            yield from iter_options(value, prefix + f.name + ".", flag_prefix)
        else:
            flag = f.metadata.get("flag") or (f"--{flag_prefix}{f.name.replace('_', '-')}" if flag_prefix else None)
            yield ConfigOption(prefix + f.name, hints[f.name], value, f.metadata["help"], flag, f.metadata.get("rule"))


def is_section(tp: Any) -> bool:
    """Whether ``tp`` is a section (a dataclass) rather than an option."""
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def coerce_option(key: str, tp: Any, value: Any) -> Any:
    """``value`` (from YAML or a flag string) as type ``tp``; a ValueError names the key."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        (item,) = {a for a in typing.get_args(tp) if a is not Ellipsis}
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config key {key!r} must be a list, got {value!r}")
        return tuple(coerce_option(key, item, v) for v in value)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):  # an optional value: X | None ("none" on a command line)
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        unset = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        return None if unset else coerce_option(key, inner, value)
    if origin is dict:
        key_type, value_type = typing.get_args(tp)
        if not isinstance(value, Mapping):
            raise ValueError(f"config key {key!r} must be a mapping, got {value!r}")
        return {
            coerce_option(key, key_type, k): coerce_option(f"{key}[{k!r}]", value_type, v) for k, v in value.items()
        }
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "yes", "1", "false", "no", "0"}:
            return value.lower() in {"true", "yes", "1"}
        raise ValueError(f"config key {key!r} must be true or false, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"config key {key!r} must be a string, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ValueError(f"config key {key!r} must be a number, got {value!r}")
        try:
            number = tp(value) if isinstance(value, str) else value
        except ValueError:
            raise ValueError(f"config key {key!r} must be {_article(tp)}, got {value!r}") from None
        if tp is int and isinstance(number, float) and number.is_integer():
            number = int(number)
        if not isinstance(number, (int, float)) or (tp is int and not isinstance(number, int)):
            raise ValueError(f"config key {key!r} must be {_article(tp)}, got {value!r}")
        if tp is int and abs(number) > INT_LIMIT:  # beyond a 64-bit integer: no library takes it
            raise ValueError(f"config key {key!r} must be an int within +-{INT_LIMIT}, got {value!r}")
        return tp(number)
    raise TypeError(f"unsupported option type for {key!r}: {tp}")


def _article(tp: type) -> str:
    return "an int" if tp is int else f"a {tp.__name__}"


def merge_config(config: Any, values: Mapping[str, Any], source: str, prefix: str = "") -> Any:
    """``config`` (any dataclass of sections and options) with ``values`` (a nested mapping)
    merged in; an unknown key or a value of the wrong type is a ValueError naming the key.

    The one loader of every command's configuration: ``fit``, ``compare``, ``suite``,
    ``finetune`` (:class:`ExperimentConfig`) and ``kg`` (``KGExperimentConfig``).
    """
    if not isinstance(values, Mapping):
        raise ValueError(
            f"{prefix.rstrip('.') or 'the config'} in {source} must be a mapping of options, got {values!r}"
        )
    hints = typing.get_type_hints(type(config))
    names = {f.name for f in dataclasses.fields(config)}
    changes: dict[str, Any] = {}
    for name, value in values.items():
        key = prefix + str(name)
        if name not in names:
            raise ValueError(f"unknown config key {key!r} in {source}; known keys: {', '.join(sorted(names))}")
        if is_section(hints[name]):
            if not isinstance(value, Mapping):
                raise ValueError(f"config key {key!r} in {source} must be a mapping of options, got {value!r}")
            changes[name] = merge_config(getattr(config, name), value, source, key + ".")
        else:
            changes[name] = coerce_option(key, hints[name], value)
    return dataclasses.replace(config, **changes)


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys as nested mappings, what :func:`merge_config` reads: ``{"loss.alpha": 1}`` -> ``{"loss": {"alpha":
    1}}``.
    """
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *sections, leaf = key.split(".")
        node = nested
        for depth, section in enumerate(sections):
            node = node.setdefault(section, {})
            if not isinstance(node, dict):
                inside = ".".join(sections[: depth + 1])
                raise ValueError(f"{key!r} sets a key inside {inside!r}, which is set to a value")
        if isinstance(node.get(leaf), dict):
            raise ValueError(f"{key!r} is set to a value and also has keys set inside it")
        node[leaf] = value
    return nested
