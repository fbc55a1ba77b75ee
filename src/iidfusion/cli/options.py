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
from dataclasses import is_dataclass
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


# The top-level options of a configuration, by the group of ``--help`` that lists them; every
# other option is listed under its section (``model``, ``loss``, ``train``, ...).
DATA_OPTIONS = frozenset(
    {"data", "views", "labels", "id_column", "val_fraction", "test_fraction", "features", "vocabulary"}
)
GROUP_TITLES = {"": "runs", "data": "data"}


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
    parser.add_argument("--config", metavar="FILE_OR_NAME", default=None, help=CONFIG_HELP)
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved configuration as YAML (a --config FILE) and exit",
    )
    add_option_arguments(parser, base, exclude)
    parser.epilog = (
        "At these defaults, the IID methods run with " + departures_line(base or ExperimentConfig(), MAIN_METHODS) + "."
    )


CONFIG_HELP = (
    "YAML config file, or the name of one shipped with iidfusion (e.g. mvsa_single, kg/umls; the files of "
    "configs/); flags override it (default: none)"
)


def add_option_arguments(
    parser: argparse.ArgumentParser, base: Any = None, exclude: frozenset[str] = frozenset(), prefix: str = ""
) -> None:
    """One flag per option of ``base`` (any configuration of documented options; the
    classification's :class:`ExperimentConfig` by default, its keys under ``prefix``), minus
    the dotted keys in ``exclude``, in one argument group per section of the configuration
    (``--help`` lists them by section). An option with a few allowed values shows them as its
    placeholder (``{sum,mean}``).
    """
    config = ExperimentConfig() if base is None else base
    groups: dict[str, Any] = {}
    for option in iter_options(config, prefix):
        if option.key in exclude:
            continue
        title = _group_title(option.key.removeprefix(prefix), prefix)
        if title not in groups:
            section = getattr(config, title, None)
            about = _about(section)
            groups[title] = parser.add_argument_group(f"{title} options", " ".join(about.split()) or None)
        default = option.default
        if isinstance(default, tuple):
            default = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default) or "none"
        elif default is None:
            default = "none"
        kwargs: dict[str, Any] = {"dest": option.dest, "default": None}
        if option.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif option.rule is not None and option.rule.choices:
            kwargs["metavar"] = "{" + ",".join(option.rule.choices) + "}"
        else:
            kwargs["metavar"] = option.flag.removeprefix("--").replace("-", "_").upper()
        groups[title].add_argument(option.flag, help=f"{option.help} (default: {default})", **kwargs)


def _about(section: Any) -> str:
    """The first paragraph of a section's own docstring (none for a dataclass without one)."""
    doc = (type(section).__doc__ or "").strip() if is_dataclass(section) else ""
    return "" if doc.startswith(type(section).__name__ + "(") else doc.split("\n\n")[0]


def _group_title(key: str, prefix: str) -> str:
    """The group of the option ``key`` (relative to ``prefix``): its section, or for a top-level
    option data or runs (:data:`DATA_OPTIONS`); the options under a ``prefix`` are that section's.
    """
    if prefix:
        return prefix.rstrip(".")
    if "." in key:
        return key.split(".", 1)[0]
    return GROUP_TITLES["data" if key in DATA_OPTIONS else ""]


class _Renamed(argparse.Action):
    """A flag that was renamed: given, it is a usage error naming the new name (exit 2)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: Any = None) -> None:
        parser.error(f"{option} is now {self.const}")


def refuse_renamed(parser: argparse.ArgumentParser, renamed: dict[str, str]) -> None:
    """Hidden flags under the old names of ``renamed`` (old -> new) that refuse, in one line, to run,
    naming the new one: one name for one thing across the commands (docs/architecture.md).
    """
    for old, new in renamed.items():
        parser.add_argument(
            old,
            action=_Renamed,
            const=new,
            nargs="?",
            dest=argparse.SUPPRESS,
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
        )


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
