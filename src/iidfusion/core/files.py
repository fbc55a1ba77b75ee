"""Text files a user gives: triples, HFM's literal lists and entity texts read as UTF-8, and YAML configuration files.

A configuration is a file, or the name of one shipped in the package (``src/iidfusion/configs``,
which the repository's ``configs/`` links to): ``--config mvsa_single`` is
``configs/vl/mvsa_single.yaml``, ``--config kg/umls`` is ``configs/kg/umls.yaml``
(:func:`resolve_config`); an existing file of that name wins.

A byte that is not UTF-8 is the user's file, not a bug: it is a ValueError naming the file, the
line and the byte (Python's own decoding error names neither), raised before any line is used.
A configuration file is read with PyYAML's safe loader, bounded in size and expansion.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


def read_utf8_lines(path: str | Path) -> list[str]:
    """The lines of the UTF-8 text file ``path``, without their LF or CRLF endings."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); "
            "save the file as UTF-8"
        ) from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the end of the last line, not a line
    return [line.removesuffix("\r") for line in lines]


# Bounds of a config file: a configuration is a few hundred values, so anything far beyond is
# refused before it is expanded (an alias bomb: nine anchors of nine aliases each are 9**9 values).
CONFIG_MAX_BYTES = 2**20
CONFIG_MAX_DEPTH = 16
CONFIG_MAX_ALIASES = 100
CONFIG_MAX_VALUES = 20_000  # scalars and collections, each alias counted as what it expands to


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the bounds above checked on the composed nodes, before any
    Python object is built.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases = getattr(self, "aliases", 0) + 1
            if self.aliases > CONFIG_MAX_ALIASES:
                raise yaml.YAMLError(f"more than {CONFIG_MAX_ALIASES} aliases (*name)")
        self.depth = getattr(self, "depth", 0) + 1
        if self.depth > CONFIG_MAX_DEPTH:
            raise yaml.YAMLError(f"nested deeper than {CONFIG_MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        sizes: dict[int, int] = {}

        def expanded(node: Any) -> int:
            if sizes.get(id(node)) == -1:
                raise yaml.YAMLError("an alias inside the value it names (a recursive structure)")
            if id(node) not in sizes:
                sizes[id(node)] = -1  # being counted
                children = (
                    node.value
                    if isinstance(node, yaml.SequenceNode)
                    else ([part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else [])
                )
                sizes[id(node)] = min(1 + sum(expanded(child) for child in children), CONFIG_MAX_VALUES + 1)
            return sizes[id(node)]

        if node is not None and expanded(node) > CONFIG_MAX_VALUES:
            raise yaml.YAMLError(f"more than {CONFIG_MAX_VALUES} values once its aliases are expanded")
        return node


def named_configs() -> dict[str, Path]:
    """The configurations shipped in the package, by name: the path below ``configs/`` without
    ``.yaml`` (``vl/mvsa_single``), sorted.
    """
    with resources.as_file(resources.files("iidfusion").joinpath("configs")) as folder:
        return {path.relative_to(folder).with_suffix("").as_posix(): path for path in sorted(folder.rglob("*.yaml"))}


def resolve_config(name_or_path: str | Path) -> Path:
    """The file ``name_or_path`` when it exists, else the shipped configuration of that name: its
    path below ``configs/`` (``vl/mvsa_single``, with or without ``.yaml``) or, when no other
    shipped file has it, its stem alone (``mvsa_single``). Neither is a FileNotFoundError listing the names.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = path.as_posix().removesuffix(".yaml").removeprefix("configs/")
    shipped = named_configs()
    if name in shipped:
        return shipped[name]
    by_stem = [found for key, found in shipped.items() if key.rsplit("/", 1)[-1] == name]
    if len(by_stem) == 1:
        return by_stem[0]
    raise FileNotFoundError(f"config file not found: {path} (not a file, nor a named config: {', '.join(shipped)})")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file, or in a shipped one by name (:func:`resolve_config`);
    missing, unreadable, oversized or non-mapping files are errors.
    """
    path = resolve_config(path)
    try:
        if path.stat().st_size > CONFIG_MAX_BYTES:
            raise ValueError(
                f"config file {path}: {path.stat().st_size} bytes, more than a config file's {CONFIG_MAX_BYTES}"
            )
        values = yaml.load(path.read_text(encoding="utf-8"), Loader=_BoundedLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read config file {path}: {str(error).splitlines()[0]}") from None
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ValueError(f"config file {path} must hold a mapping of options, got {type(values).__name__}")
    return dict(values)
