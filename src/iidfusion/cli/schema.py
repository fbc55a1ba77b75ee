"""The options of the commands as data (``schema.json``), so that the command line starts without torch.

The flags of the training and KG commands are the documented options of their configurations
(:func:`iidfusion.core.config.option`); the modules that declare those options import torch
(a strategy's options are registered with the strategy), about a second and a half. So the
options are written once, by :func:`generate`, into ``schema.json`` beside this module -- each
option's key, flag, argparse destination, type, default, choices, rule and help, and the section
of ``--help`` it is listed under -- and the parsers are built from that file
(:mod:`iidfusion.cli.options`); the declarations are imported only by the handlers, which check
values with the real rules. ``python -m iidfusion.cli.schema`` writes the file again; a test
fails while the committed file differs from what the declarations generate
(docs/architecture.md, "The command line starts at once").
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from iidfusion.tasks.classification.config import ExperimentConfig

SCHEMA_FILE = Path(__file__).with_name("schema.json")
REGENERATE = "python -m iidfusion.cli.schema"

# The configurations whose options are flags: name -> (the dataclass, as "module:class"; the prefix of its keys).
CONFIGURATIONS: dict[str, tuple[str, str]] = {
    "experiment": ("iidfusion.tasks.classification.config:ExperimentConfig", ""),
    "kg": ("iidfusion.tasks.kg.config:KGExperimentConfig", ""),
    "kg-compare": ("iidfusion.tasks.kg.config:KGCompareConfig", "compare."),
}
# The settings over the experiment's defaults that a command of the library shows in --help (the
# demo's), as "module:attribute": their departures from the paper are written with the schema.
SETTINGS: tuple[str, ...] = ("iidfusion.cli.demo:DEMO_SETTINGS",)

# The top-level options of a configuration, by the group of ``--help`` that lists them; every
# other option is listed under its section (``model``, ``loss``, ``train``, ...).
DATA_OPTIONS = frozenset(
    {"data", "views", "labels", "id_column", "val_fraction", "test_fraction", "features", "vocabulary"}
)
GROUP_TITLES = {"": "runs", "data": "data"}


@functools.cache
def load() -> dict[str, Any]:
    """The committed schema (read once per process)."""
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def configuration(name: str) -> dict[str, Any]:
    """The schema of one configuration of :data:`CONFIGURATIONS`: its ``groups`` (title ->
    description, in the order of ``--help``) and ``options`` (one mapping per flag).

    A configuration with the strategies' sections is read from the declarations instead when this
    process registered a strategy the file does not hold (a user's own, which gets its section
    and flags with no other edit): the registry is then imported, and torch with it.
    """
    described = load()["configurations"][name]
    registry = sys.modules.get("iidfusion.fusion.registry")
    registered = registry is not None and list(registry.STRATEGIES) != load()["strategies"]
    if registered and any(option["key"].startswith("strategy.") for option in described["options"]):
        reference, prefix = CONFIGURATIONS[name]
        return describe(_resolve(reference)(), prefix)
    return described


def option_keys(name: str) -> tuple[str, ...]:
    """The dotted keys of the options of the configuration ``name``."""
    return tuple(option["key"] for option in configuration(name)["options"])


def _resolve(reference: str) -> Any:
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


def settings_config(settings: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """The experiment's configuration with ``settings`` (dotted keys -> values) over its defaults."""
    from iidfusion.core.config import merge_config, nest
    from iidfusion.tasks.classification.config import ExperimentConfig

    return merge_config(ExperimentConfig(), nest(settings or {}), "the command's defaults")


def departures_epilog(settings: Mapping[str, Any] | None = None) -> str:
    """The end of a training command's ``--help``: the departures from the paper that the
    defaults (``settings`` over the experiment's) make (docs/method.md).
    """
    from iidfusion.fusion.methods import MAIN_METHODS
    from iidfusion.tasks.classification.departures import departures_line

    return (
        "At these defaults, the IID methods run with " + departures_line(settings_config(settings), MAIN_METHODS) + "."
    )


def plain(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples as lists), so that settings compare with the schema's."""
    return json.loads(json.dumps(value))


def epilog_of(settings: Mapping[str, Any] | None) -> str | None:
    """The departures epilog the schema holds for ``settings``; None for settings it does not know."""
    wanted = plain(dict(settings or {}))
    return next((entry["epilog"] for entry in load()["epilogs"] if entry["settings"] == wanted), None)


def describe(config: Any, prefix: str = "") -> dict[str, Any]:
    """The options of ``config`` (a dataclass of documented options, its keys under ``prefix``)
    as plain data: the schema of one configuration.
    """
    from iidfusion.core.config import iter_options

    groups: dict[str, str | None] = {}
    options = []
    for option in iter_options(config, prefix):
        group = _group_title(option.key.removeprefix(prefix), prefix)
        if group not in groups:
            groups[group] = " ".join(_about(getattr(config, group, None)).split()) or None
        rule = option.rule
        options.append(
            {
                "key": option.key,
                "flag": option.flag,
                "dest": option.dest,
                "type": _type_name(option.type),
                "default": plain(option.default),
                "choices": list(rule.choices) if rule is not None else [],
                "rule": rule.expected if rule is not None else None,
                "help": option.help,
                "group": group,
            }
        )
    return {"prefix": prefix, "groups": groups, "options": options}


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _about(section: Any) -> str:
    """The first paragraph of a section's own docstring (none for a dataclass without one)."""
    doc = (type(section).__doc__ or "").strip() if dataclasses.is_dataclass(section) else ""
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


def generate() -> dict[str, Any]:
    """The schema, from the option declarations as they are now."""
    settings = [{}, *(_resolve(reference) for reference in SETTINGS)]
    return {
        "generated_by": REGENERATE,
        "strategies": list(_resolve("iidfusion.fusion.registry:STRATEGIES")),
        "configurations": {
            name: describe(_resolve(reference)(), prefix) for name, (reference, prefix) in CONFIGURATIONS.items()
        },
        "epilogs": [{"settings": plain(dict(s)), "epilog": departures_epilog(s)} for s in settings],
    }


def render(schema: dict[str, Any]) -> str:
    """The text of ``schema.json`` (stable, so that a change of an option is a small diff)."""
    return json.dumps(schema, indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    SCHEMA_FILE.write_text(render(generate()), encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
