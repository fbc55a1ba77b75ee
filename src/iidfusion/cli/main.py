"""The ``iidfusion`` command: one entry point, one subcommand per job.

Each subcommand lives in its own module ``iidfusion.cli.<name>`` that exposes
``register(subparsers) -> None``; ``register`` adds a parser and sets its ``handler``
default to a function ``handler(args) -> int``. Heavy imports stay inside the handlers so
that ``iidfusion --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules of iidfusion.cli that provide a subcommand, in the order --help lists them.
SUBCOMMANDS: tuple[str, ...] = ("demo", "fit", "compare", "suite", "datasets", "kg", "extract", "finetune", "bench", "plot", "sweep")


class CommandError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iidfusion",
        description="Multimodal fusion with IID: train, compare and benchmark fusion methods.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"iidfusion.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; user errors print one line to stderr and return 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (CommandError, ValueError, FileNotFoundError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"iidfusion {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
