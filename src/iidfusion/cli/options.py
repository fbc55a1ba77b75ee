"""The flags of the training commands, built from the options of their configurations
(:mod:`iidfusion.tasks.classification.config`, :mod:`iidfusion.tasks.kg.config`) as the
committed schema holds them (:mod:`iidfusion.cli.schema`), so that no parser imports torch.

One flag per config option, named after its leaf (``train.max_epochs`` -> ``--max-epochs``;
a strategy's options after the strategy and the leaf, ``strategy.qmf.lam_rank`` ->
``--qmf-lam-rank``), with the option's help and default; which options a command leaves out is
said here, so the library's configuration knows nothing of argparse.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from iidfusion.cli import schema

if TYPE_CHECKING:
    from iidfusion.tasks.classification.config import ExperimentConfig

# Options only some commands read: `fit` trains one (method, seed), `compare` many on one data
# set, `suite` many on several data sets.
FIT_ONLY = frozenset({"method", "seed"})
COMPARE_ONLY = frozenset({"methods", "seeds", "jobs"})
SUITE_ONLY = frozenset({"datasets", "variants"})


def add_config_arguments(
    parser: argparse.ArgumentParser,
    settings: Mapping[str, Any] | None = None,
    exclude: frozenset[str] = frozenset(),
) -> None:
    """One flag per option of the experiment (minus the dotted keys in ``exclude``), help showing
    its default, or its value in ``settings`` (dotted keys -> values: a command's own defaults).

    Flags default to ``None`` so that :func:`overrides_from_args` tells a given flag from an
    absent one and a config file value is only replaced by a flag the user typed. The help ends
    with the departures from the paper that the defaults make (docs/method.md): as the schema
    holds them for the library's commands, made when the help is shown for a plug-in's settings.
    """
    parser.add_argument("--config", metavar="FILE_OR_NAME", default=None, help=CONFIG_HELP)
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved configuration as YAML (a --config FILE) and exit",
    )
    add_option_arguments(parser, "experiment", exclude, settings)
    epilog = schema.epilog_of(settings)
    if epilog is None:  # a plug-in's settings: made when shown, as the departures need the configuration (torch)
        parser.epilog, parser.formatter_class = _Epilog(lambda: schema.departures_epilog(settings)), _Formatter
    else:
        parser.epilog = epilog


class _Epilog(str):
    """An epilog made by ``make`` when ``--help`` shows it (by :class:`_Formatter`)."""

    make: Callable[[], str]

    def __new__(cls, make: Callable[[], str]) -> _Epilog:
        epilog = super().__new__(cls)
        epilog.make = make
        return epilog


class _Formatter(argparse.HelpFormatter):
    def add_text(self, text: str | None) -> None:
        super().add_text(text.make() if isinstance(text, _Epilog) else text)


CONFIG_HELP = (
    "YAML config file, or the name of one shipped with iidfusion (e.g. mvsa_single, kg/umls; the files of "
    "configs/); flags override it (default: none)"
)


def add_option_arguments(
    parser: argparse.ArgumentParser,
    configuration: str = "experiment",
    exclude: frozenset[str] = frozenset(),
    settings: Mapping[str, Any] | None = None,
) -> None:
    """One flag per option of ``configuration`` (a configuration of the schema: the
    classification's ``experiment`` by default, ``kg``, ``kg-compare``), minus the dotted keys in
    ``exclude``, in one argument group per section of the configuration (``--help`` lists them
    by section). An option with a few allowed values shows them as its placeholder (``{sum,mean}``).
    """
    described = schema.configuration(configuration)
    groups: dict[str, Any] = {}
    for option in described["options"]:
        if option["key"] in exclude:
            continue
        title = option["group"]
        if title not in groups:
            groups[title] = parser.add_argument_group(f"{title} options", described["groups"][title])
        default = (settings or {}).get(option["key"], option["default"])
        kwargs: dict[str, Any] = {"dest": option["dest"], "default": None}
        if option["type"] == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif option["choices"]:
            kwargs["metavar"] = "{" + ",".join(option["choices"]) + "}"
        else:
            kwargs["metavar"] = option["flag"].removeprefix("--").replace("-", "_").upper()
        groups[title].add_argument(option["flag"], help=f"{option['help']} (default: {_shown(default)})", **kwargs)


def _shown(default: Any) -> str:
    """A default as ``--help`` shows it: a list comma-separated (``none`` when empty), None as ``none``."""
    if isinstance(default, (tuple, list)):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default) or "none"
    return "none" if default is None else str(default)


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


def overrides_from_args(args: argparse.Namespace, configuration: str = "experiment") -> dict[str, Any]:
    """The dotted keys of the config flags the user gave on the command line. ``configuration``:
    the configuration of the schema the flags were made from (:func:`add_option_arguments`).
    """
    options = schema.configuration(configuration)["options"]
    return {o["key"]: getattr(args, o["dest"]) for o in options if getattr(args, o["dest"], None) is not None}


def config_from_args(args: argparse.Namespace, settings: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """The configuration a command runs with: the defaults < ``settings`` < ``--config FILE`` < flags."""
    from iidfusion.tasks.classification.config import load_config

    return load_config(args.config, overrides_from_args(args), base=schema.settings_config(settings))


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
