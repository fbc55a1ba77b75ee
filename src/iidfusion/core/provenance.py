"""What produced a result: the code, the libraries, the machine, and the full configuration.

Every metrics and results file iidfusion writes (``fit``'s metrics.json, ``compare``'s
results.json, ``suite``'s suite.json, ``kg``'s metrics.json and results.json, ``sweep``'s
json) merges in :func:`provenance`, so a number can always be traced back to the package
version and git commit that computed it, the torch / Lightning / Python it ran on, the device,
and every option it ran with (defaults included, not only those typed).
"""

from __future__ import annotations

import dataclasses
import functools
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from iidfusion import __version__

_PACKAGE = Path(__file__).resolve().parents[1]  # src/iidfusion, the package itself
_GIT_TIMEOUT_S = 5


def provenance(config: Any, *, device: str | None = None) -> dict[str, Any]:
    """``{"provenance": {...}, "config": {...}}``, the two entries every results file carries.

    ``config``: the resolved configuration (a dataclass such as ``ExperimentConfig``, or an
    already plain mapping), written out in full. ``device``: what the run trained on (e.g.
    ``"cpu, 2 processes"``); by default the accelerator torch sees (``cuda`` or ``cpu``).
    """
    return {"provenance": {**_environment(), "device": device or default_device()}, "config": _plain(config)}


def default_device() -> str:
    """``"cuda (NAME)"`` when torch sees a GPU, else ``"cpu"``: what ``--accelerator auto`` picks."""
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return "cpu"


@functools.cache
def _environment() -> dict[str, Any]:
    import lightning

    commit, dirty = git_state()
    return {
        "iidfusion": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "numpy": metadata.version("numpy"),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "argv": list(sys.argv),
    }


def git_state(package: Path = _PACKAGE) -> tuple[str | None, bool | None]:
    """(commit, uncommitted changes) of the git checkout the package runs from; (None, None)
    when it is not run from one (an installed wheel), git is missing, or git fails.

    Only a checkout whose ``src/iidfusion`` IS this package counts: a package installed in a
    virtual environment inside some other repository must not report that repository's commit.
    """

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(package), *args], capture_output=True, text=True, timeout=_GIT_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if not top or (Path(top) / "src" / "iidfusion").resolve() != package.resolve():
        return None, None
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, (bool(status) if status is not None else None)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _plain(value: Any) -> Any:
    """Dataclasses, tuples and paths as JSON-ready dicts, lists and strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
