"""The ``iidfusion`` command: one entry point, one subcommand per job.

Each subcommand lives in its own module ``iidfusion.cli.<name>`` that exposes
``register(subparsers) -> None``; ``register`` adds a parser and sets its ``handler``
default to a function ``handler(args) -> int``. Heavy imports stay inside the handlers, and the
flags of the configurations come from the committed schema (:mod:`iidfusion.cli.schema`), so
that ``iidfusion --help`` and every command's ``--help`` import no torch. Other distributions
add commands through the entry-point group :data:`COMMANDS_GROUP` (a name and a module with
``register``), imported for every command, so under the same rule: the repository's studies
add ``bench`` and ``sweep`` (``pip install -e studies``). The command line needs the extra
``train`` (said before any parser is built, though building one imports none of it).

Errors. Bad input is one line on stderr, ``iidfusion COMMAND: error: ...``, naming the file,
key, option or value, and exit code 2: a :class:`CommandError`, a usage error of the parser,
or a ``ValueError`` that iidfusion's own code raised (the library's way of refusing input,
e.g. a NaN in a view). So is an error of the user's environment or files, whichever library
raised it (:func:`is_user_error`): an ``OSError`` (a missing or unreadable file, a full disk,
a read-only folder), a file that is not UTF-8 text, memory running out. Any other exception,
or a ``ValueError`` raised inside a third-party library, is a bug: one line saying so, exit code 1. A missing
optional dependency is bad input too, with the extra to install (``pip install
'iidfusion[vl]'`` for ``transformers``, see :mod:`iidfusion.core.extras`). ``--debug``
(before or after the command) or ``IIDFUSION_DEBUG=1`` prints the traceback as well. Ctrl-C is one
line and exit code 130 (``fit`` adds how to continue with ``--resume``).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
import sys
import traceback
import warnings
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import NoReturn

from iidfusion import __version__
from iidfusion.core.extras import extra_hint, require_extra

# Modules of iidfusion.cli that provide a subcommand, in the order --help lists them.
SUBCOMMANDS: tuple[str, ...] = (
    "demo",
    "fit",
    "predict",
    "compare",
    "suite",
    "datasets",
    "kg",
    "extract",
    "finetune",
    "plot",
)
DEBUG_ENV = "IIDFUSION_DEBUG"
EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130
_PACKAGE = Path(__file__).resolve().parents[1]
COMMANDS_GROUP = "iidfusion.commands"


def plugin_commands() -> dict[str, ModuleType]:
    """The commands other distributions register in the entry-point group :data:`COMMANDS_GROUP`,
    by name (sorted): each a module with ``register(subparsers)``.
    """
    found = sorted(entry_points(group=COMMANDS_GROUP), key=lambda entry: entry.name)
    return {entry.name: entry.load() for entry in found if entry.name not in SUBCOMMANDS}


def own_folders(modules: dict[str, ModuleType]) -> tuple[Path, ...]:
    """The folders whose code counts as the command line's own when an error is judged (bad input
    or a bug): iidfusion's and the top-level package of each plug-in command.
    """
    packages = {importlib.import_module(module.__name__.partition(".")[0]) for module in modules.values()}
    return (_PACKAGE, *sorted({Path(package.__file__ or "").resolve().parent for package in packages}))


class CommandError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


class CommandInterrupted(Exception):
    """Ctrl-C during a command, with what the user can do next: one line, exit code 130."""


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line (the usage itself is in ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(plugins: dict[str, ModuleType] | None = None) -> argparse.ArgumentParser:
    """The parser of every command: iidfusion's own (:data:`SUBCOMMANDS`), then the plug-ins'."""
    parser = _Parser(
        prog="iidfusion", description="Multimodal fusion with IID: train, compare and predict with fusion methods."
    )
    parser.add_argument(
        "--debug", action="store_true", help=f"print the traceback of an error too (or set {DEBUG_ENV}=1)"
    )
    parser.add_argument("--version", action="version", version=f"iidfusion {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"iidfusion.cli.{name}").register(subparsers)
    for module in (plugin_commands() if plugins is None else plugins).values():
        module.register(subparsers)
    for command in _command_parsers(parser):
        # --debug after the command too; SUPPRESS keeps a --debug given before it.
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        command.set_defaults(command_parser=command)  # the innermost command's parser reports stray arguments
    return parser


def _command_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every (sub)command's parser below ``parser``, outer ones first."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in dict.fromkeys(action.choices.values()):
                found += [command, *_command_parsers(command)]
    return found


def is_user_error(error: BaseException, own: tuple[Path, ...] = (_PACKAGE,)) -> bool:
    """Whether ``error`` refuses the user's input or environment (exit 2) rather than reveals a bug (exit 1).

    By its cause, not by where it was raised, for what can only come from outside: the file
    system (any ``OSError``: no such file, no space left, permission denied, an I/O error), a
    user's file that is not UTF-8 text, and memory; a ``ValueError`` only when iidfusion's own
    code raised it (inside a library, it is our misuse of that library).
    """
    if isinstance(error, (CommandError, OSError, UnicodeDecodeError)) or _out_of_memory(error):
        return True
    return isinstance(error, ValueError) and _raised_in(error, own)


def _out_of_memory(error: BaseException) -> bool:
    """Numpy's MemoryError, torch's OutOfMemoryError (CUDA) or its CPU allocator's RuntimeError."""
    return (
        isinstance(error, MemoryError)
        or type(error).__name__ == "OutOfMemoryError"
        or (isinstance(error, RuntimeError) and "can't allocate memory" in str(error))
    )


def user_error_message(error: BaseException, out: str | None = None) -> str:
    """One line for an error of the user's input or environment (:func:`is_user_error`):
    an ``OSError`` names its file (or, without one, the output folder ``out`` it was writing to).
    """
    if _out_of_memory(error):
        return f"not enough memory ({_first_line(error)}); try a smaller --batch-size, --width or data set"
    if isinstance(error, UnicodeDecodeError):
        return f"a file given is not UTF-8 text ({_first_line(error)})"
    if isinstance(error, OSError) and error.errno is not None and error.strerror:
        files = " -> ".join(str(name) for name in (error.filename, error.filename2) if name is not None)
        if files:
            return f"{files}: {error.strerror}"
        return f"{error.strerror} (errno {errno.errorcode.get(error.errno, error.errno)})" + (
            f" while writing to --out {out}" if out else ""
        )
    return _first_line(error)


def _raised_in(error: BaseException, own: tuple[Path, ...]) -> bool:
    """Whether the innermost Python frame of ``error`` is iidfusion's code (a builtin such as
    ``open`` it called counts as its own; a library it called does not). An error re-raised
    from a worker process (``compare --jobs N``) is judged by the worker's traceback.
    """
    remote = getattr(error.__cause__, "tb", None)  # concurrent.futures' _RemoteTraceback text
    if isinstance(remote, str):
        files = re.findall(r'File "([^"]+)"', remote)
        return bool(files) and _in_folders(files[-1], own)
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and _in_folders(frames[-1].filename, own)


def _in_folders(filename: str, folders: tuple[Path, ...]) -> bool:
    return any(Path(filename).resolve().is_relative_to(folder) for folder in folders)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _before_command(arguments: list[str]) -> list[str]:
    """The options given before the command (``iidfusion --debug --version``)."""
    position = next((i for i, argument in enumerate(arguments) if not argument.startswith("-")), len(arguments))
    return arguments[:position]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; exit codes: 0 done, 2 bad input, 1 a bug, 130 interrupted."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    prog = "iidfusion"
    if "--version" in _before_command(arguments):  # answered before any command (and its extras) is imported
        print(f"{prog} {__version__}")
        return 0
    try:
        require_extra("train")  # the command line comes with the extra 'train', though its parsers import none of it
        plugins = plugin_commands()
        parser = build_parser(plugins)
    except ModuleNotFoundError as error:  # the core install (torch, numpy) has no command line
        missing = extra_hint(error)
        if missing is None:
            raise
        print(f"{prog}: error: {missing}", file=sys.stderr)
        return EXIT_USER_ERROR
    own = own_folders(plugins)
    args, stray = parser.parse_known_args(arguments)
    if stray:
        args.command_parser.error(f"unrecognized arguments: {' '.join(stray)}")
    command = " ".join(filter(None, (args.command, getattr(args, "kg_command", None))))
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    formatwarning = warnings.formatwarning
    if not debug:  # a warning is one line naming the command, as an error is (--debug: where it was raised)
        warnings.formatwarning = lambda message, *_, **__: f"{prog} {command}: warning: {_first_line(message)}\n"
    try:
        return int(args.handler(args) or 0)
    except (KeyboardInterrupt, CommandInterrupted) as interruption:
        if debug:
            traceback.print_exc()
        hint = _first_line(interruption) if isinstance(interruption, CommandInterrupted) else "interrupted"
        print(f"{prog} {command}: {hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if debug:
            traceback.print_exc()
        missing = extra_hint(error)
        if missing is not None or is_user_error(error, own):
            message = missing or user_error_message(error, getattr(args, "out", None))
            print(f"{prog} {command}: error: {message}", file=sys.stderr)
            return EXIT_USER_ERROR
        print(
            f"{prog} {command}: internal error: {type(error).__name__}: {_first_line(error)} (a bug, not your input; "
            f"rerun with `{prog} --debug {command} ...` or {DEBUG_ENV}=1 for the traceback, and report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR
    finally:
        warnings.formatwarning = formatwarning


if __name__ == "__main__":
    sys.exit(main())
