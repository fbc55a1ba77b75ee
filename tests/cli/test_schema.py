"""The committed schema of the options is what the declarations generate, and the command line
starts without torch: `--help`, every command's `--help` and `--version` import none of the
packages a fit needs (docs/architecture.md, "The command line starts at once")."""

import json
import subprocess
import sys

import pytest

from iidfusion.cli import schema
from iidfusion.cli.main import _command_parsers, build_parser

HEAVY = ("torch", "lightning", "torchmetrics", "transformers")


def test_the_committed_schema_is_what_the_declarations_generate():
    committed = schema.SCHEMA_FILE.read_text(encoding="utf-8")
    assert committed == schema.render(schema.generate()), (
        f"src/iidfusion/cli/schema.json is stale: run `{schema.REGENERATE}` and commit it"
    )


def test_the_demo_shows_its_settings_and_their_departures():
    """The demo's defaults are the configuration its settings make, and its --help's departures are theirs."""
    from iidfusion.cli.demo import DEMO_CONFIG, DEMO_SETTINGS

    help_text = build_parser({}).parse_args(["demo"]).command_parser.format_help()
    assert DEMO_CONFIG.train.max_epochs == DEMO_SETTINGS["train.max_epochs"] == 15
    assert " ".join(schema.departures_epilog(DEMO_SETTINGS).split()) in " ".join(help_text.split())


def _commands() -> list[list[str]]:
    """Every command of iidfusion's own (the studies' plug-ins aside), as its words after `iidfusion`."""
    return [command.prog.split()[1:] for command in _command_parsers(build_parser({}))]


STARTUP = (
    "import json, sys\nfrom iidfusion.cli.main import main\n"
    "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as stop:\n    code = stop.code\n"
    f"print(json.dumps([code, sorted({{m.partition('.')[0] for m in sys.modules}} & {set(HEAVY)!r})]))"
)


@pytest.mark.parametrize("arguments", [["--help"], ["--version"], *([*c, "--help"] for c in _commands())], ids=" ".join)
def test_the_command_line_starts_without_torch(arguments):
    done = subprocess.run([sys.executable, "-c", STARTUP, *arguments], capture_output=True, text=True, check=True)
    code, imported = json.loads(done.stdout.splitlines()[-1])
    assert code == 0 and imported == [], done.stderr


def test_the_schema_ships_in_the_wheel():
    import tomllib
    from fnmatch import fnmatch
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["iidfusion"]
    assert any(fnmatch(schema.SCHEMA_FILE.relative_to(schema.SCHEMA_FILE.parents[1]).as_posix(), p) for p in patterns)
