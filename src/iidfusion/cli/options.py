"""The flags of the training commands, built from the configuration schema
(:mod:`iidfusion.tasks.classification.config`).

One flag per config option, named after its leaf (``train.max_epochs`` -> ``--max-epochs``;
a strategy's options after the strategy and the leaf, ``strategy.qmf.lam_rank`` ->
``--qmf-lam-rank``), with the option's help and default; which options a command leaves out is
said here, so the library's configuration knows nothing of argparse.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from iidfusion.core.config import iter_options
from iidfusion.fusion.methods import MAIN_METHODS
from iidfusion.tasks.classification.config import ExperimentConfig, load_config
from iidfusion.tasks.classification.departures import departures_line

# Options only some commands read: `fit` trains one (method, seed), `compare` many on one data
# set, `suite` many on several data sets.
FIT_ONLY = frozenset({"method", "seed"})
COMPARE_ONLY = frozenset({"methods", "seeds", "jobs"})
SUITE_ONLY = frozenset({"datasets", "variants"})


def add_config_arguments(
    parser: argparse.ArgumentParser,
    base: ExperimentConfig | None = None,
    exclude: frozenset[str] = frozenset(),
) -> None:
    """One flag per option (minus the dotted keys in ``exclude``), help showing ``base``'s default.

    Flags default to ``None`` so that :func:`overrides_from_args` tells a given flag from an
    absent one and a config file value is only replaced by a flag the user typed. The help ends
    with the departures from the paper that the defaults make (docs/method.md).
    """
    parser.add_argument("--config", metavar="FILE", default=None, help="YAML config file (default: none)")
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved configuration as YAML (a --config FILE) and exit",
    )
    add_option_arguments(parser, base, exclude)
    parser.epilog = (
        "At these defaults, the IID methods run with " + departures_line(base or ExperimentConfig(), MAIN_METHODS) + "."
    )


def add_option_arguments(
    parser: Any, base: Any = None, exclude: frozenset[str] = frozenset(), prefix: str = ""
) -> None:
    """One flag per option of ``base`` (any configuration of documented options; the
    classification's :class:`ExperimentConfig` by default, its keys under ``prefix``), minus
    the dotted keys in ``exclude``. ``parser``: a parser or an argument group.
    """
    for option in iter_options(ExperimentConfig() if base is None else base, prefix):
        if option.key in exclude:
            continue
        default = option.default
        if isinstance(default, tuple):
            default = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default) or "none"
        elif default is None:
            default = "none"
        kwargs: dict[str, Any] = {"dest": option.dest, "default": None}
        if option.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = option.key.rsplit(".", 1)[-1].upper()
        parser.add_argument(option.flag, help=f"{option.help} (default: {default})", **kwargs)


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type`` for a size flag outside the configuration: an int in [low, high], so a
    typo (``1e20``) is a usage error naming the flag before anything is read or allocated.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an int in [{low}, {high}], got {text!r}")
        return value

    return parse


def overrides_from_args(args: argparse.Namespace, schema: Any = None, prefix: str = "") -> dict[str, Any]:
    """The dotted keys of the config flags the user gave on the command line. ``schema``: the
    configuration the flags were made from (:func:`add_option_arguments`; default: :class:`ExperimentConfig`).
    """
    options = iter_options(ExperimentConfig() if schema is None else schema, prefix)
    return {o.key: getattr(args, o.dest) for o in options if getattr(args, o.dest, None) is not None}


def config_from_args(args: argparse.Namespace, base: ExperimentConfig | None = None) -> ExperimentConfig:
    """The configuration a command runs with: ``base`` < ``--config FILE`` < flags."""
    return load_config(args.config, overrides_from_args(args), base=base)


def print_config(args: argparse.Namespace, values: Any) -> bool:
    """With ``--print-config``: print ``values`` (a configuration, or its dict) as YAML, which
    ``--config`` reads back, and return True (the command then stops, exit code 0).
    """
    if not getattr(args, "print_config", False):
        return False
    import yaml

    from iidfusion.tasks.classification.config import config_to_dict

    plain = values if isinstance(values, dict) else config_to_dict(values)
    print(yaml.safe_dump(plain, sort_keys=False), end="")
    return True
